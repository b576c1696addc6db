from __future__ import annotations

import pytest

from evesnap_core.testing.loopfs import loop_filesystems  # noqa: F401 (the fixture, offered by name)
from evesnap_purgeable.harness import PurgeableHarness


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")


@pytest.fixture
def conformance_harness_class() -> type[PurgeableHarness]:
    return PurgeableHarness
