"""The suite's requirements: a case the harness cannot serve is skipped naming the
requirement, never passed; every real backend's harness provides every
requirement, so none of their cases is ever skipped that way."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from importlib import metadata
from pathlib import Path

import pytest

from evesnap_core.testing.conformance import suite
from evesnap_core.testing.conformance.harness import Harness
from evesnap_core.testing.conformance.memory import FullCopyMemoryHarness, MemoryHarness, MemoryRequirements
from evesnap_core.testing.conformance.requirements import (
    MARKER,
    REQUIREMENTS,
    Requirements,
    requires,
    skip_unless_provided,
    unmet,
)

RAWFILE = Path(__file__).parent / "rawfile" / "evesnap_rawfile.py"
BUNDLED = {"qcow2", "purgeable", "zfs", "reflink"}


def suite_cases() -> dict[str, list[str]]:
    """Every case the suite exports ("Class::method") and the requirements its
    marks (the class's and the method's) name."""
    cases = {}
    for class_name in suite.__all__:
        cls = getattr(suite, class_name)
        class_marks = [m for m in getattr(cls, "pytestmark", []) if m.name == MARKER]
        for name, method in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("test_"):
                continue
            marks = class_marks + [m for m in getattr(method, "pytestmark", []) if m.name == MARKER]
            cases[f"{class_name}::{name}"] = [str(n) for m in marks for n in m.args]
    return cases


def skipped_for(harness: type[Harness]) -> set[str]:
    return {case for case, needs in suite_cases().items() if unmet(harness.requirements, needs)}


def rawfile_harness() -> type[Harness]:
    """The honest raw-file backend's harness (the mutation tests' backend)."""
    spec = importlib.util.spec_from_file_location("evesnap_rawfile", RAWFILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("evesnap_rawfile", module)
    spec.loader.exec_module(module)
    harness: type[Harness] = module.RawFileHarness
    return harness


def real_harnesses() -> dict[str, type[Harness]]:
    found: dict[str, type[Harness]] = {
        ep.name: ep.load() for ep in metadata.entry_points(group="evesnap.conformance")
    }
    found["rawfile"] = rawfile_harness()
    return found


def test_every_real_backends_harness_provides_every_requirement() -> None:
    harnesses = real_harnesses()
    assert set(harnesses) >= BUNDLED, f"expected the bundled backends' harnesses, found {sorted(harnesses)}"
    missing = {name: unmet(h.requirements, REQUIREMENTS) for name, h in harnesses.items()}
    assert not any(missing.values()), f"a real backend's harness opts out of requirements: {missing}"


def test_no_case_is_skipped_for_qcow2_by_a_requirement() -> None:
    from evesnap_qcow2.harness import Qcow2Harness

    cases = suite_cases()
    assert any(cases.values()), "the walk found no case naming a requirement: it proves nothing"
    assert skipped_for(Qcow2Harness) == set()


def test_the_memory_backend_skips_exactly_what_it_cannot_serve() -> None:
    expected = {
        case
        for case in suite_cases()
        if case.startswith(
            ("TestNewProcess::", "TestLiveSnapshot::", "TestLiveDelete::", "TestBesideARunningVM::")
        )
    }
    assert expected, "the suite lost its new-process and live cases"
    for harness in (MemoryHarness, FullCopyMemoryHarness):
        assert skipped_for(harness) == expected


def test_every_requirement_is_named_by_a_case_and_true_by_default() -> None:
    named = {n for needs in suite_cases().values() for n in needs}
    assert named == set(REQUIREMENTS), f"requirements no case names: {set(REQUIREMENTS) - named}"
    assert unmet(Requirements, REQUIREMENTS) == []
    assert Harness.requirements is Requirements


def test_an_unprovided_requirement_skips_naming_it() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"requires state_outlives_process \(.*NEW process"):
        skip_unless_provided(MemoryRequirements, ["state_outlives_process"], "MemoryHarness")
    skip_unless_provided(MemoryRequirements, ["leftovers_visible"], "MemoryHarness")  # provided: no skip


def test_unknown_requirements_are_refused() -> None:
    with pytest.raises(ValueError, match="no_such_thing"):
        requires("no_such_thing")

    class Misspelled(Requirements):
        state_outlive_process = False  # a typo must not silently change nothing

    with pytest.raises(TypeError, match="state_outlive_process is no requirement"):
        unmet(Misspelled, REQUIREMENTS)

    class NotABool(Requirements):
        state_outlives_process = "no"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="True or False"):
        unmet(NotABool, REQUIREMENTS)
