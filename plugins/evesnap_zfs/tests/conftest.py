from __future__ import annotations

import pytest

from evesnap_zfs.harness import ZfsHarness


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here needs real ZFS (the workspace conftest skips them outside the VM)."""
    for item in items:
        if "evesnap_zfs" in str(item.path):
            item.add_marker(pytest.mark.zfs)


@pytest.fixture
def conformance_harness_class() -> type[ZfsHarness]:
    return ZfsHarness
