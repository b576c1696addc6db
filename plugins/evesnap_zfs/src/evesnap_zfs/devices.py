"""The block devices of zvols: finding them, flushing their cache, direct I/O."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from evesnap_core import EvesnapError

BLKFLSBUF = 0x1261


def device_path(dataset: str) -> Path:
    return Path("/dev/zvol") / dataset


def wait_for_device(dataset: str, timeout: float = 30.0) -> Path:
    """The zvol's device node, once udev has made it."""
    path = device_path(dataset)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise EvesnapError(f"the device of zvol {dataset} did not appear at {path} within {timeout:g} s")
        time.sleep(0.05)
    return path


def flush_buffers(dataset: str) -> None:
    """Drop the kernel's cached pages of a zvol: after a rollback a buffered read
    could otherwise return the old, pre-rollback data."""
    path = device_path(dataset)
    if not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, BLKFLSBUF, 0)
    finally:
        os.close(fd)
