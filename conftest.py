"""Workspace-wide pytest set-up.

pytest's importlib mode names a test module after its path from the root
(``evesnap_core.tests...``) and would create a placeholder ``evesnap_core``
module that hides the installed package; importing the package first avoids it.
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

import evesnap_core  # noqa: F401

# Property tests are deterministic by default (CI, scripts/test): the same
# examples every run, so a red run is a real change, not a random draw.
# EVESNAP_HYPOTHESIS=random draws new examples each run (a longer hunt by hand:
# add --hypothesis-seed=N to replay one).
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("EVESNAP_HYPOTHESIS", "deterministic"))

ZFS_COMMAND = "contrib/zfsvm/zfsvm run -- .venv/bin/pytest -m zfs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `zfs` need /dev/zfs; outside the ZFS VM they are skipped, naming the way in."""
    if Path("/dev/zfs").exists():
        return
    skip = pytest.mark.skip(reason=f"needs real ZFS (/dev/zfs); run them in the ZFS VM: {ZFS_COMMAND}")
    for item in items:
        if item.get_closest_marker("zfs"):
            item.add_marker(skip)
