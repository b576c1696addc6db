"""Running the suite against an installed backend and tabulating the result
(``evesnap conformance NAME``)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.errors import EvesnapError
from evesnap_core.testing.conformance import plugin as conformance_plugin
from evesnap_core.testing.conformance import suite
from evesnap_core.testing.conformance.plugin import harness_for


class SuiteCannotRun(EvesnapError):
    """The backend has no harness registered, or cannot be loaded: one line."""


@dataclass
class CaseResult:
    case: str
    capability: str
    outcome: str
    reason: str = ""


class _Collector:
    """A pytest plugin object that records each case's outcome and capability."""

    def __init__(self) -> None:
        self.capability: dict[str, str] = {}
        self.results: dict[str, CaseResult] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("capability")
            self.capability[item.nodeid] = str(marker.args[0]) if marker else "declared capabilities"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        case = report.nodeid.split("::", 1)[-1]
        cap = self.capability.get(report.nodeid, "")
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            outcome = "not declared" if reason.startswith("not declared") else "skipped"
            self.results[report.nodeid] = CaseResult(case, cap, outcome, reason)
        elif report.failed:
            message = _failure_line(report)
            self.results[report.nodeid] = CaseResult(case, cap, "FAIL", f"{report.when}: {message}")
        elif report.when == "call":
            self.results.setdefault(report.nodeid, CaseResult(case, cap, "pass"))


def _failure_line(report: pytest.TestReport) -> str:
    crash: Any = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0]
    return str(report.longrepr).strip().splitlines()[-1]


def check_runnable(backend: str) -> None:
    """SuiteCannotRun unless `backend` registered a harness and loads here."""
    try:
        harness_for(backend)
    except (LookupError, TypeError, ImportError) as exc:
        raise SuiteCannotRun(f"cannot run the conformance suite for {backend!r}: {exc}") from exc
    discovery_log = logging.getLogger("evesnap_core.discovery")
    level = discovery_log.level
    discovery_log.setLevel(logging.ERROR)  # the one line below says it; no warning besides
    with tempfile.TemporaryDirectory(prefix="evesnap-conformance-load-") as tmp:
        try:
            load_backends(Path(tmp), environ=os.environ).get(backend)
        except EvesnapError as exc:
            raise SuiteCannotRun(f"cannot run the conformance suite for {backend!r}: {exc}") from exc
        finally:
            discovery_log.setLevel(level)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout meanwhile (pytest's report, any child
    process) goes to stderr, so that stdout carries only what the caller prints."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_suite(backend: str, extra_args: list[str] | None = None, quiet: bool = False) -> list[CaseResult]:
    """Run every case against installed backend `backend`; one result per case.
    With `quiet`, nothing reaches stdout (``--json``)."""
    check_runnable(backend)
    collector = _Collector()
    guard = stdout_to_stderr() if quiet else contextlib.nullcontext()
    with guard, tempfile.TemporaryDirectory(prefix="evesnap-conformance-") as tmp:
        args = [
            str(Path(suite.__file__)),
            "--evesnap-backend",
            backend,
            "-c",
            str(Path(tmp) / "none.ini"),
            "--rootdir",
            tmp,
            "--basetemp",
            str(Path(tmp) / "t"),
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "-q",
            "--no-header",
            "-o",
            "python_files=*.py",
            *(extra_args or []),
        ]
        (Path(tmp) / "none.ini").write_text("[pytest]\n")
        # the plugin goes in as the module object: named with -p, pytest would try to
        # import it again for assertion rewriting and warn that it cannot
        pytest.main(args, plugins=[collector, conformance_plugin])
    return list(collector.results.values())
