"""Where the backend keeps volumes under the persist folder, and how it locks them.

Layout, under ``<persist>/reflink/``::

    volumes/<uuid>.<generation>/volume.raw          the volume (a sparse raw image)
    volumes/<uuid>.<generation>/volume.json         its manifest (records.py)
    volumes/<uuid>.<generation>/snapshots/<sha256>.raw   one reflink copy per snapshot
    locks/<uuid>.<generation>.lock                  the toolkit's per-volume lock

A volume folder appears whole: it is built under a temporary name and renamed
into place, and it disappears whole: renamed away before it is removed. Those
are the toolkit's temporaries: a killed operation's are swept by the next build.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pydantic

from evesnap_core import AlreadyExists, CorruptVolume, NoSpace, VolumeNotFound
from evesnap_core.toolkit import (
    atomic_write,
    ensure_dir,
    free_bytes,
    fsync_dir,
    sweep,
    temp_dir,
    temp_file,
    volume_lock,
)
from evesnap_reflink.records import VolumeManifest

IMAGE = "volume.raw"
MANIFEST = "volume.json"
SNAPSHOTS = "snapshots"


@dataclass(frozen=True)
class VolumeFolder:
    """The files of one volume; where they are, not what they hold."""

    path: Path
    key: str
    """``<uuid>#<generation>``, for messages."""

    @property
    def image(self) -> Path:
        return self.path / IMAGE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def snapshots(self) -> Path:
        return self.path / SNAPSHOTS

    def snapshot_file(self, name: str) -> Path:
        return self.snapshots / f"{name}.raw"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def read_manifest(self) -> VolumeManifest:
        """The manifest; VolumeNotFound when the volume does not exist, CorruptVolume
        when its manifest cannot be trusted (never a guess)."""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            raise VolumeNotFound(self.key, f"no reflink volume at {self.path}") from None
        try:
            return VolumeManifest.model_validate_json(raw)
        except pydantic.ValidationError as exc:
            raise CorruptVolume(
                f"volume {self.key}: unreadable manifest {self.manifest_path}: {exc}"
            ) from exc

    def write_manifest(self, manifest: VolumeManifest) -> None:
        atomic_write(self.manifest_path, manifest.model_dump_json(indent=2).encode())


class Store:
    """The backend's folder: volume folders and their locks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.volumes = root / "volumes"
        self.locks = root / "locks"

    def prepare(self) -> None:
        """Create the folders (0700, durably) on first use, not when loaded."""
        ensure_dir(self.volumes)
        ensure_dir(self.locks)

    def folder(self, uuid: UUID, generation: int) -> VolumeFolder:
        # UUID and int: nothing a caller controls becomes part of the path
        return VolumeFolder(self.volumes / f"{uuid}.{generation}", f"{uuid}#{generation}")

    def locked(self, folder: VolumeFolder) -> contextlib.AbstractContextManager[None]:
        """Hold the volume's lock (the toolkit's per-volume lock): operations on
        one volume never interleave, in this process or another. The lock file is
        removed on the way out when its volume does not exist."""
        self.prepare()
        path = self.locks / f"{folder.path.name}.lock"
        return volume_lock(path, folder.key, gone=lambda: not folder.path.exists())

    def build(self, folder: VolumeFolder, manifest: VolumeManifest, fill: Callable[[Path], None]) -> None:
        """Make a new volume folder whole or not at all: `fill` writes the image
        into a temporary folder, the manifest follows, and one rename publishes both.
        Anything `fill` raises leaves nothing behind."""
        sweep(self.volumes)  # what a killed build or removal left
        with temp_dir(folder.path) as staging:
            (staging / SNAPSHOTS).mkdir(mode=0o700)
            fill(staging / IMAGE)
            atomic_write(staging / MANIFEST, manifest.model_dump_json(indent=2).encode())
            fsync_dir(staging)
            try:
                staging.rename(folder.path)
            except OSError as exc:  # ENOTEMPTY/EEXIST: someone made it meanwhile
                raise AlreadyExists(f"volume {folder.key} appeared while it was being created") from exc
            fsync_dir(self.volumes)

    def remove(self, folder: VolumeFolder) -> None:
        """Remove a volume folder: renamed away first (durably), so that a crash
        during the removal never leaves a half-deleted volume under its name (and
        what it leaves is a temporary the next build sweeps)."""
        with temp_file(folder.path) as doomed:
            try:
                folder.path.rename(doomed)
            except FileNotFoundError:
                return
            fsync_dir(self.volumes)


def resize(image: Path, size: int) -> None:
    """Make `image` `size` bytes long (growing leaves a hole) and durable; a size
    the filesystem cannot hold is NoSpace, not a crash."""
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except (OSError, OverflowError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
            raise
        raise NoSpace(f"{image.parent} (a file of {size} bytes)", size, free_bytes(image.parent)) from exc
    finally:
        os.close(fd)
