"""The conformance suite's pytest plugin: opt-in, never auto-loaded.

Load it from your backend's ``conftest.py`` (``import_plugin``, not
``pytest_plugins``, which pytest refuses in a conftest that is not top-level)::

    def pytest_configure(config):
        config.pluginmanager.import_plugin("evesnap_core.testing.conformance.plugin")

    @pytest.fixture
    def conformance_harness_class():
        return MyHarness            # a subclass of evesnap_core.testing.conformance.Harness

and collect the cases in a test module::

    from evesnap_core.testing.conformance.suite import *  # noqa: F403

Without a ``conformance_harness_class`` fixture, ``--evesnap-backend NAME`` picks
the harness an installed backend registered under the entry-point group
``evesnap.conformance`` (that is how ``evesnap conformance NAME`` runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

# the cases are imported into backends' test modules: rewrite their asserts so
# every failure shows the values compared (set before the suite is imported)
pytest.register_assert_rewrite(
    "evesnap_core.testing.conformance.suite", "evesnap_core.testing.conformance.integrity"
)

from evesnap_core.backend import Backend  # noqa: E402
from evesnap_core.errors import EvesnapError  # noqa: E402
from evesnap_core.handler_types import Capability, VolumeHandle  # noqa: E402
from evesnap_core.testing.conformance.harness import Harness  # noqa: E402
from evesnap_core.testing.conformance.requirements import (  # noqa: E402
    MARKER,
    required_by,
    skip_unless_provided,
)

HARNESS_GROUP = "evesnap.conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("evesnap", "evesnap backend conformance")
    group.addoption(
        "--evesnap-backend",
        default=None,
        help=f"run the conformance suite against this installed backend ({HARNESS_GROUP} entry point)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "capability(name): the backend capability a conformance case exercises"
    )
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): what a conformance case needs from the harness (requirements.Requirements)",
    )


def harness_for(name: str) -> type[Harness]:
    """The harness class an installed backend registered for the suite."""
    for ep in metadata.entry_points(group=HARNESS_GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Harness)):
                raise TypeError(f"{ep.value} is not a Harness subclass")
            return cls
    known = ", ".join(sorted(ep.name for ep in metadata.entry_points(group=HARNESS_GROUP)))
    raise LookupError(f"no conformance harness registered for {name!r} (registered: {known or 'none'})")


@pytest.fixture
def conformance_harness_class(request: pytest.FixtureRequest) -> type[Harness]:
    name = request.config.getoption("--evesnap-backend")
    if not name:
        pytest.fail(
            "no conformance harness: define a conformance_harness_class fixture in your "
            "conftest.py or run with --evesnap-backend NAME"
        )
    return harness_for(str(name))


@pytest.fixture
def harness(
    conformance_harness_class: type[Harness], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Harness]:
    """The case's harness; the case is skipped, naming what is missing, when it
    requires something the harness class does not provide (before it is built)."""
    skip_unless_provided(
        conformance_harness_class.requirements,
        required_by(request.node),
        conformance_harness_class.__qualname__,
    )
    made = conformance_harness_class(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def backend(harness: Harness) -> Backend:
    loaded = harness.load()
    if not loaded.info.available:
        pytest.skip(f"backend {loaded.name} is unavailable here: {loaded.info.unavailable_reason}")
    return loaded


def _require(backend: Backend, capability: Capability) -> None:
    if not backend.has(capability):
        pytest.skip(f"not declared: {capability.value}")


@pytest.fixture
def volume(harness: Harness, backend: Backend) -> Iterator[VolumeHandle]:
    """A fresh volume, destroyed after the test."""
    made = harness.new_volume(backend)
    try:
        yield made
    finally:
        with contextlib.suppress(EvesnapError):
            backend.destroy_volume(made)


@pytest.fixture
def snapshots(backend: Backend) -> Backend:
    """The backend, when it declares snapshots (the case is skipped otherwise)."""
    _require(backend, Capability.SNAPSHOT)
    return backend
