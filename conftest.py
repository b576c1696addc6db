"""Workspace-wide pytest set-up.

pytest's importlib mode names a test module after its path from the root
(``evesnap_core.tests...``) and would create a placeholder ``evesnap_core``
module that hides the installed package; importing the package first avoids it.
"""

from pathlib import Path

import pytest

import evesnap_core  # noqa: F401

ZFS_COMMAND = "contrib/zfsvm/zfsvm run -- .venv/bin/pytest -m zfs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `zfs` need /dev/zfs; outside the ZFS VM they are skipped, naming the way in."""
    if Path("/dev/zfs").exists():
        return
    skip = pytest.mark.skip(reason=f"needs real ZFS (/dev/zfs); run them in the ZFS VM: {ZFS_COMMAND}")
    for item in items:
        if item.get_closest_marker("zfs"):
            item.add_marker(skip)
