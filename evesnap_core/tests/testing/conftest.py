import pytest

from evesnap_core.testing.loopfs import loop_filesystems  # noqa: F401 (the fixture, offered by name)


def pytest_configure(config: pytest.Config) -> None:
    # the suite's markers (and fixtures), for the tests that read the suite's cases
    config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")
