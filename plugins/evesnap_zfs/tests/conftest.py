from __future__ import annotations

from pathlib import Path

import pytest

from evesnap_zfs.harness import ZfsHarness

HARNESS = "see plugins/evesnap_zfs/README.md"


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path("/dev/zfs").exists():
        return
    skip = pytest.mark.skip(reason=f"needs real ZFS (/dev/zfs): run inside a ZFS VM ({HARNESS})")
    for item in items:
        if "evesnap_zfs" in str(item.fspath):
            item.add_marker(pytest.mark.zfs)
            item.add_marker(skip)


@pytest.fixture
def conformance_harness_class() -> type[ZfsHarness]:
    return ZfsHarness
