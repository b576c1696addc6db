"""A mutation test of the conformance suite: an honest raw-file backend written
from the plugin author guide passes it, and a one-bug copy of it for each bug
class of issue #17 is caught, through `evesnap conformance` and through the
pytest plugin, both in new processes as a backend author runs them.

The backend (rawfile/evesnap_rawfile.py) is installed for these runs as a
distribution of its own: a dist-info with its entry points on PYTHONPATH, so
discovery finds it exactly as it finds any installed backend. A mutant is picked
with ``EVESNAP_RAWFILE_MUTANT`` (the backend's option ``mutant``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

RAWFILE = Path(__file__).parent / "rawfile" / "evesnap_rawfile.py"
EVESNAP = Path(sys.executable).parent / "evesnap"
ENTRY_POINTS = """\
[evesnap.volume_handlers]
rawfile = evesnap_rawfile:make

[evesnap.conformance]
rawfile = evesnap_rawfile:RawFileHarness
"""

CAUGHT_BY = {
    "delete-leaves-copy": "TestLeftovers and deleting",
    "destroy-leaves-trash": "TestLeftovers and destroy",
    "copies-leave-tmp": "TestLeftovers and deleting",
    "close-leaves-nbd": "TestLeftovers and deleting",
    "state-in-module-dict": "TestNewProcess",
    "naive-names": "TestMergedIds and naive",
    "rollback-skips-zero-chunks": "TestWholeVolume and every_snapshot",
    "no-space-check": "TestNoSpace",
    "dangling-parent": "TestParents",
    "check-says-yes": "TestTypedErrors and unknown_snapshots",
    "rollback-shares": "TestIndependence and after_rollback",
    "clone-hard-links": "TestIndependence and clone",
    "live-not-implemented": "TestLiveSnapshot or TestLiveDelete",
    "missing-volume-untyped": "TestTypedErrors and missing_volume",
}
"""Each mutant and the cases (a pytest -k expression) that must catch it."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding evesnap-rawfile as an installed distribution."""
    folder = tmp_path_factory.mktemp("rawfile-site")
    shutil.copy(RAWFILE, folder / RAWFILE.name)
    info = folder / "evesnap_rawfile-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evesnap-rawfile\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


def environ(site: Path, mutant: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVESNAP_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    if mutant:
        env["EVESNAP_RAWFILE_MUTANT"] = mutant
    return env


HANG_DUMP = 120
"""Seconds after which a case still running dumps every thread's stack to stderr."""
LIMIT = 420
"""Seconds a whole run may take (the slowest takes ~10 s on a quiet machine)."""


def bounded_run(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `args` in a session of its own with stdin closed; past LIMIT, abort the
    whole session and fail with everything it printed, the stacks of every thread
    among it (pytest's faulthandler_timeout dumps them earlier in plugin runs)."""
    with subprocess.Popen(
        args,
        cwd=cwd,
        env={**env, "PYTHONFAULTHANDLER": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to stderr
            try:
                out, err = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                out, err = process.communicate()
            pytest.fail(f"{args} still running after {LIMIT} s; it printed:\n{out[-4000:]}\n{err[-12000:]}")
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def conformance(site: Path, *args: str, mutant: str = "") -> subprocess.CompletedProcess[str]:
    return bounded_run([str(EVESNAP), "conformance", "rawfile", "--json", *args], environ(site, mutant))


def test_the_honest_backend_passes_the_whole_suite_through_the_cli(site: Path) -> None:
    run = conformance(site)
    results = json.loads(run.stdout)  # valid JSON on stdout alone
    failed = [r for r in results if r["outcome"] == "FAIL"]
    assert not failed, f"the honest backend failed: {json.dumps(failed, indent=1)}"
    assert run.returncode == 0, run.stderr[-3000:]
    passed = {r["case"] for r in results if r["outcome"] == "pass"}
    for case in ("TestNewProcess", "TestMergedIds", "TestWholeVolume", "TestNoSpace", "TestLeftovers"):
        assert any(c.startswith(case) for c in passed), f"{case} did not pass (or run): {sorted(passed)}"


@pytest.mark.parametrize("mutant", sorted(CAUGHT_BY))
def test_every_mutant_is_caught_through_the_cli(site: Path, mutant: str) -> None:
    run = conformance(site, "-k", CAUGHT_BY[mutant], mutant=mutant)
    assert run.returncode == 1, f"expected exit 1 (a case failed), got {run.returncode}: {run.stderr[-2000:]}"
    results = json.loads(run.stdout)
    failed = [r for r in results if r["outcome"] == "FAIL"]
    assert failed, f"mutant {mutant} was not caught: {results}"
    for result in failed:
        assert result["reason"], f"a failure without a reason: {result}"


CONFTEST = """
import pytest
from evesnap_rawfile import RawFileHarness


def pytest_configure(config):
    config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")


@pytest.fixture
def conformance_harness_class():
    return RawFileHarness
"""


def plugin_run(site: Path, tmp_path: Path, *args: str, mutant: str = "") -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "tests"
    tests.mkdir(parents=True)
    (tests / "conftest.py").write_text(CONFTEST)
    suite = "from evesnap_core.testing.conformance.suite import *  # noqa\n"
    (tests / "test_conformance.py").write_text(suite)
    return bounded_run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            f"faulthandler_timeout={HANG_DUMP}",
            "--rootdir",
            str(tmp_path),
            *args,
        ],
        environ(site, mutant),
        cwd=tests,
    )


def test_the_pytest_plugin_passes_the_honest_backend_and_catches_a_mutant(site: Path, tmp_path: Path) -> None:
    honest = plugin_run(site, tmp_path / "honest", "-k", "TestWholeVolume or TestNewProcess or TestLeftovers")
    assert honest.returncode == 0, honest.stdout[-3000:]
    caught = plugin_run(site, tmp_path / "mutant", "-k", CAUGHT_BY["naive-names"], mutant="naive-names")
    assert caught.returncode == 1, caught.stdout[-3000:]
    assert "expected" in caught.stdout, "the failure should say what was expected"


def test_an_unknown_backend_exits_2_with_one_line(site: Path) -> None:
    run = subprocess.run(
        [str(EVESNAP), "conformance", "no-such-backend", "--json"],
        env=environ(site),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout)
    assert len(run.stderr.strip().splitlines()) == 1 and "no-such-backend" in run.stderr, run.stderr


def test_an_unloadable_backend_exits_2_with_one_line(site: Path) -> None:
    run = conformance(site, mutant="no-such-mutant")
    assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout)
    assert len(run.stderr.strip().splitlines()) == 1 and "no-such-mutant" in run.stderr, run.stderr


def test_socket_paths_stay_short_whatever_tmpdir_is(tmp_path: Path) -> None:
    from evesnap_core.testing.conformance.harness import MAX_SOCKET_PATH, SOCKET_NAME_BUDGET, Harness

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(deep)
    try:
        import tempfile

        tempfile.tempdir = None
        harness = Harness(deep / "work")
        try:
            longest = harness.runtime_dir / ("s" * SOCKET_NAME_BUDGET)
            assert len(os.fsencode(longest)) <= MAX_SOCKET_PATH, f"{longest} is too long for a socket"
        finally:
            harness.cleanup()
    finally:
        if old is None:
            os.environ.pop("TMPDIR")
        else:
            os.environ["TMPDIR"] = old
        tempfile.tempdir = None
