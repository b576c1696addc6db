"""Where evesnap keeps its state and volumes when nobody says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

PERSIST_ENV = "EVESNAP_PERSIST"


def default_persist_dir() -> Path:
    """``$EVESNAP_PERSIST``; else /var/lib/evesnap for root, the XDG data dir otherwise."""
    env = os.environ.get(PERSIST_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/evesnap")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "evesnap"
