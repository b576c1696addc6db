"""The core's layout rules (issue #18), checked on the source so that they stay true.

- no module over 400 lines without its reason written in its docstring
  ("... on purpose: ...");
- the orchestrator's façade stays thin (under 300 lines);
- the journal is opened only as ``with ledger.intent(...)``: no module of the
  orchestrator but the ledger calls the store's begin or commit;
- the state store and the policy never import the orchestrator.
"""

from __future__ import annotations

import ast
from pathlib import Path

import evesnap_core

ROOT = Path(evesnap_core.__file__).parent
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_long_module_says_why_at_its_top() -> None:
    unexplained = []
    for path in modules():
        text = path.read_text()
        if text.count("\n") <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if "on purpose" not in docstring:
            unexplained.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not unexplained, f"over {MAX_LINES} lines without a reason in the docstring: {unexplained}"


def test_the_orchestrator_facade_is_thin() -> None:
    lines = (ROOT / "orchestrator" / "engine.py").read_text().count("\n")
    assert lines < 300, f"orchestrator/engine.py has {lines} lines"


def test_only_the_ledger_opens_and_commits_intents() -> None:
    offenders = []
    for path in sorted((ROOT / "orchestrator").glob("*.py")):
        if path.name in {"ledger.py", "store.py"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"begin", "commit"}
            ):
                offenders.append(f"{path.name}:{node.lineno} .{node.func.attr}(...)")
    assert not offenders, f"hand-written intent begin/commit: {offenders}"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_store_and_the_policy_do_not_import_the_orchestrator() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("state", "policy")
        for path in sorted((ROOT / folder).glob("*.py"))
        for name in _imports(path)
        if name == "evesnap_core.orchestrator" or name.startswith("evesnap_core.orchestrator.")
    ]
    assert not offenders, offenders
