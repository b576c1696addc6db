"""The suite catches a backend whose rollback does nothing to the bytes.

The broken backend is the real one with ``evesnap_rollback`` replaced by one
that checks the snapshot and moves the head (so listings and parents still look
right) but never restores the bytes. The suite runs in a separate pytest
process, as a backend author runs it, once against the broken backend and once
against the real one through the same generated harness (the control: the
failure comes from the rollback, not from the set-up).
"""

from pathlib import Path

import pytest

CONFTEST = """
from pathlib import Path

from evesnap_core import RollbackResult, SnapshotNotFound, hookimpl
from evesnap_core.testing.conformance import load_backends

from evesnap_reflink.backend import ReflinkBackend
from evesnap_reflink.harness import ReflinkHarness

import pytest

pytest_plugins = ["evesnap_core.testing.conformance.plugin"]

BROKEN = {broken!r}


class NoOpRollbackBackend(ReflinkBackend):
    @hookimpl
    def evesnap_rollback(self, volume, snapshot_id):
        folder = self._folder(volume)
        manifest = folder.read_manifest()
        if manifest.find(snapshot_id) is None:
            raise SnapshotNotFound(snapshot_id, volume.key)
        folder.write_manifest(manifest.model_copy(update={{"head": snapshot_id}}))
        return RollbackResult(snapshot_id=snapshot_id)  # the bytes are never restored


class Harness(ReflinkHarness):
    reflink_dir = Path({xfs!r})

    def load(self):
        # an `extra` factory replaces the installed entry point of the same name
        # (blocking "reflink" with EVESNAP_BLOCK_PLUGINS would block the extra too)
        extra = [("reflink", NoOpRollbackBackend)] if BROKEN else []
        backend = load_backends(self.persist, environ=self.environ(), extra=extra).get("reflink")
        plugin = backend.pm.get_plugin("reflink")
        assert isinstance(plugin, NoOpRollbackBackend) == BROKEN, f"loaded {{type(plugin).__name__}}"
        return backend


@pytest.fixture
def conformance_harness_class():
    return Harness
"""

FAILURE_LINE = (
    "FAILED test_conformance.py::TestRollback::test_rollback_restores_exact_bytes"
    " - AssertionError: after rollback to s1: volume bytes are wrong, first difference at offset *"
)


def run_suite(pytester: pytest.Pytester, xfs_root: Path, broken: bool) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST.format(broken=broken, xfs=str(xfs_root)))
    pytester.makepyfile(test_conformance="from evesnap_core.testing.conformance.suite import *  # noqa\n")
    # the cases a rollback touches and enough others for a control (the whole
    # suite is proven elsewhere: test_conformance.py)
    cases = "TestRollback or TestDelete or TestListing or TestClone or TestIdempotentCreate or Hostile"
    return pytester.runpytest_subprocess("-vv", "-rf", "-p", "no:cacheprovider", "-k", cases, timeout=1500)


# minutes: much of the suite in a subprocess; test_mutants.py covers every bug class by default
@pytest.mark.slow
def test_suite_fails_a_backend_whose_rollback_does_nothing(pytester: pytest.Pytester, xfs_root: Path) -> None:
    result = run_suite(pytester, xfs_root, broken=True)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines([FAILURE_LINE])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 20, f"the rest of the suite should still pass: {outcomes}"


# minutes: much of the suite in a subprocess; test_mutants.py covers every bug class by default
@pytest.mark.slow
def test_the_same_harness_passes_with_the_real_backend(pytester: pytest.Pytester, xfs_root: Path) -> None:
    result = run_suite(pytester, xfs_root, broken=False)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*TestRollback::test_rollback_restores_exact_bytes *PASSED*"])
