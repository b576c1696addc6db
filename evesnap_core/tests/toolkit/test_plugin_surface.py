"""The backends import only the documented plugin surface of the core.

Walks every Python file of the four bundled backends (their ``src`` and their
tests) and lists each ``evesnap_core`` module they import. A backend's own code
may use the hook marker, types and errors (``evesnap_core``,
``evesnap_core.hookspecs``, ``evesnap_core.handler_types``,
``evesnap_core.errors``) and the toolkit; its harness and tests may also use
``evesnap_core.testing``. Anything else is the core's own business.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BACKENDS = [
    "plugins/evesnap_qcow2",
    "plugins/evesnap_purgeable",
    "plugins/evesnap_zfs",
    "contrib/evesnap_reflink",
]
SURFACE = ("evesnap_core", "evesnap_core.hookspecs", "evesnap_core.handler_types", "evesnap_core.errors")
TOOLKIT = "evesnap_core.toolkit"
TESTING = "evesnap_core.testing"


def allowed(module: str, for_tests: bool) -> bool:
    if module in SURFACE or module == TOOLKIT or module.startswith(TOOLKIT + "."):
        return True
    return for_tests and (module == TESTING or module.startswith(TESTING + "."))


def core_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "evesnap_core":
                names = (
                    [f"{node.module}.{a.name}" for a in node.names] if node.module == "evesnap_core" else []
                )
                found.append((node.lineno, node.module))
                found += [(node.lineno, n) for n in names if n.rsplit(".", 1)[1] in ("toolkit", "testing")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "evesnap_core"]
    return found


def is_test_side(path: Path) -> bool:
    return bool({"tests", "benchmarks"} & set(path.parts)) or path.name in ("harness.py", "conftest.py")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_imports_only_the_plugin_surface(backend: str) -> None:
    files = sorted((ROOT / backend).rglob("*.py"))
    assert files, f"no sources found under {backend}"
    outside = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files
        for line, module in core_imports(path)
        if not allowed(module, is_test_side(path))
    ]
    assert not outside, "imports outside the documented plugin surface:\n" + "\n".join(outside)


def test_the_walk_catches_an_import_outside_the_surface(tmp_path: Path) -> None:
    """The control: the same walk flags the imports the rule forbids."""
    source = tmp_path / "backend.py"
    source.write_text(
        "from evesnap_core.durable import atomic_write\nimport evesnap_core.process\n"
        "from evesnap_core.toolkit import run\nfrom evesnap_core.testing.conformance import Harness\n"
    )
    flagged = [m for _, m in core_imports(source) if not allowed(m, for_tests=False)]
    assert flagged == ["evesnap_core.durable", "evesnap_core.process", "evesnap_core.testing.conformance"]
