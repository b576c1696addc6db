"""The CLI tests' common fixture: a device folder driven through the real
`evesnap` command (qcow2 volumes, the QEMU runtime), cleaned up after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.discovery import load_backends

from ..support import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
