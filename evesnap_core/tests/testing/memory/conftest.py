from __future__ import annotations

import pytest

from evesnap_core.testing.conformance.harness import Harness
from evesnap_core.testing.conformance.memory import FullCopyMemoryHarness, MemoryHarness


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")


@pytest.fixture(params=[MemoryHarness, FullCopyMemoryHarness], ids=["cow", "full-copy"])
def conformance_harness_class(request: pytest.FixtureRequest) -> type[Harness]:
    harness: type[Harness] = request.param
    return harness
