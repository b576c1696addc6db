"""What a conformance case needs from the harness besides the backend, and the
skip when the harness cannot provide it (SQLAlchemy's dialect-suite
``SuiteRequirements`` is the model).

A case names what it needs with ``@requires("state_outlives_process")``; a
harness says what it provides with its ``requirements`` class, a subclass of
:class:`Requirements` that sets to False what it cannot provide. Every
requirement is True by default, so a harness of a real backend that overrides
nothing runs every case; a case whose requirement is not provided is skipped
with a reason naming the requirement, never passed.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterable

import pytest


class Requirements:
    """Every requirement a case can name, each provided (True) unless a harness's
    subclass sets it to False. The attribute docstrings are the skip reasons."""

    state_outlives_process: bool = True
    """a backend loaded in a NEW process finds the snapshots again (the state is
    kept in files, a pool): TestNewProcess"""

    volumes_attach_to_qemu: bool = True
    """a real QEMU can hold the volumes (``Harness.attached()``, each volume a file
    or device qemu opens): the live_snapshot and live_delete cases"""

    leftovers_visible: bool = True
    """``Harness.backend_files()`` sees everything the backend keeps (files under
    ``backend_roots()``, or what the harness lists instead): TestLeftovers"""


def _documented() -> dict[str, str]:
    """Requirement name -> its attribute docstring, read from the source."""
    body = ast.parse(textwrap.dedent(inspect.getsource(Requirements))).body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, str] = {}
    for node, after in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
        ):
            found[node.target.id] = " ".join(str(after.value.value).split())
    return found


REQUIREMENTS: dict[str, str] = _documented()
"""Every requirement, with what it means (the first line of its docstring)."""

MARKER = "requires"


def requires(*names: str) -> pytest.MarkDecorator:
    """Mark a case (or a class of cases) as needing `names` from the harness."""
    unknown = [n for n in names if n not in REQUIREMENTS]
    if unknown or not names:
        raise ValueError(f"unknown requirement(s) {unknown}: one of {', '.join(REQUIREMENTS)}")
    mark: pytest.MarkDecorator = getattr(pytest.mark, MARKER)(*names)
    return mark


def check_requirements_class(requirements: type[Requirements]) -> None:
    """TypeError for a requirements class that is not a Requirements, sets a name
    no case knows (a misspelling would otherwise change nothing) or a non-bool."""
    if not (isinstance(requirements, type) and issubclass(requirements, Requirements)):
        raise TypeError(f"{requirements!r} is not a subclass of {Requirements.__qualname__}")
    for klass in requirements.__mro__:
        if klass in (Requirements, object):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if name not in REQUIREMENTS:
                raise TypeError(
                    f"{klass.__qualname__}.{name} is no requirement: one of {', '.join(REQUIREMENTS)}"
                )
            if not isinstance(value, bool):
                raise TypeError(f"{klass.__qualname__}.{name} must be True or False, not {value!r}")


def unmet(requirements: type[Requirements], names: Iterable[str]) -> list[str]:
    """Which of `names` the harness's `requirements` does not provide."""
    check_requirements_class(requirements)
    return [n for n in names if not getattr(requirements, n)]


def skip_unless_provided(requirements: type[Requirements], names: Iterable[str], harness: str) -> None:
    """Skip the running case, naming each requirement `harness` does not provide."""
    missing = unmet(requirements, names)
    if missing:
        what = "; ".join(f"{n} ({REQUIREMENTS[n]})" for n in missing)
        pytest.skip(f"requires {what}, which {harness} does not provide")


def required_by(node: pytest.Item | pytest.Collector) -> list[str]:
    """Every requirement the case's markers (its own and its class's) name."""
    return [str(name) for mark in node.iter_markers(MARKER) for name in mark.args]
