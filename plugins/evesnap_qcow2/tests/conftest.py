from __future__ import annotations

import pytest

from evesnap_qcow2.harness import Qcow2Harness


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")


@pytest.fixture
def conformance_harness_class() -> type[Qcow2Harness]:
    return Qcow2Harness
