"""The conformance suite, run on a real XFS loop filesystem (one per session)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_reflink.harness import ReflinkHarness
from evesnap_reflink.scratchfs import scratch_fs


def pytest_configure(config: pytest.Config) -> None:
    # not `pytest_plugins = [...]`: pytest refuses that in a conftest.py below
    # the rootdir (docs/plugin-author-guide.md, section 4); import_plugin is
    # idempotent, so a run that already loaded a plugin is unaffected
    for plugin in ("evesnap_core.testing.conformance.plugin", "pytester"):
        config.pluginmanager.import_plugin(plugin)


@pytest.fixture(scope="session")
def xfs_root() -> Iterator[Path]:
    """A loop-mounted XFS for the whole session; each test works in its own folder on it."""
    with scratch_fs("xfs") as root:
        yield root


@pytest.fixture
def conformance_harness_class(xfs_root: Path) -> type[ReflinkHarness]:
    return ReflinkHarness.on(xfs_root)


@pytest.fixture
def reflink_harness(xfs_root: Path, tmp_path: Path) -> Iterator[ReflinkHarness]:
    """A harness with its persist folder on the session's XFS, for tests beyond the suite."""
    made = ReflinkHarness.on(xfs_root)(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
