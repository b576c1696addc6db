"""Where evesnap keeps its state and volumes when nobody says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

PERSIST_ENV = "EVESNAP_PERSIST"
RUNTIME_DIR_ENV = "EVESNAP_RUNTIME_DIR"
VOLUME_FORMAT_ENV = "EVESNAP_VOLUME_FORMAT"
CONTENT_ROOTS_ENV = "EVESNAP_CONTENT_ROOTS"


def default_persist_dir() -> Path:
    """``$EVESNAP_PERSIST``; else /var/lib/evesnap for root, the XDG data dir otherwise."""
    env = os.environ.get(PERSIST_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/evesnap")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "evesnap"


def default_runtime_dir() -> Path:
    """Where sockets live (QMP of running apps, NBD of read-only snapshots): a unix
    socket path must stay under 108 bytes, so not under a deep persist folder."""
    env = os.environ.get(RUNTIME_DIR_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/evesnap")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "evesnap" if xdg else Path(f"/tmp/evesnap-{os.geteuid()}")  # noqa: S108


def default_volume_format() -> str:
    """The format of blank volumes: ``qcow2`` (default), ``raw``, or ``zvol`` on a
    device whose persist storage is a ZFS pool (EVE decides the same way)."""
    return os.environ.get(VOLUME_FORMAT_ENV) or "qcow2"


def content_roots() -> tuple[Path, ...] | None:
    """The folders content files (a content tree's ``file://`` URL) may come from:
    ``$EVESNAP_CONTENT_ROOTS``, absolute paths separated by ``:``; None (unset or
    empty) means the safe default, the folder of the config file being applied
    and what lies below it. A relative entry is ignored (it would depend on the
    current folder)."""
    env = os.environ.get(CONTENT_ROOTS_ENV, "")
    roots = tuple(Path(p) for p in env.split(":") if p and Path(p).is_absolute())
    return roots or None
