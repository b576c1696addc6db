from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.discovery import load_backends

from .world import Device


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    registry = load_backends(tmp_path)
    missing = [n for n in ("qcow2", "purgeable") if n not in registry.backends]
    if missing:
        pytest.skip(f"backends not installed: {', '.join(missing)} (run scripts/setup)")
    made = Device(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
