"""Running the suite against an installed backend and tabulating the result
(``evesnap conformance NAME``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.testing.conformance import suite


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


def run_suite(backend: str, extra_args: list[str] | None = None) -> list[CaseResult]:
    """Run every case against installed backend `backend`; one result per case."""
    collector = _Collector()
    with tempfile.TemporaryDirectory(prefix="evesnap-conformance-") as tmp:
        args = [
            str(Path(suite.__file__)),
            "-p",
            "evesnap_core.testing.conformance.plugin",
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
        pytest.main(args, plugins=[collector])
    return list(collector.results.values())
