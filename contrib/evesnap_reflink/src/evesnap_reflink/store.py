"""Where the backend keeps volumes under the persist folder, and how it locks them.

Layout, under ``<persist>/reflink/``::

    volumes/<uuid>.<generation>/volume.raw          the volume (a sparse raw image)
    volumes/<uuid>.<generation>/volume.json         its manifest (records.py)
    volumes/<uuid>.<generation>/snapshots/<sha256>.raw   one reflink copy per snapshot
    locks/<uuid>.<generation>.lock                  flock'ed around every operation

A volume folder appears whole: it is built under a temporary name and renamed
into place, and it disappears whole: renamed away before it is removed. Names
starting with a dot are such temporaries; after a crash they are safe to delete.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pydantic

from evesnap_core import AlreadyExists, CorruptVolume, NoSpace, VolumeNotFound
from evesnap_core.durable import atomic_write, durable_unlink, ensure_dir, fsync_dir
from evesnap_reflink.records import VolumeManifest
from evesnap_reflink.reflink import free_bytes

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

    @contextlib.contextmanager
    def locked(self, folder: VolumeFolder) -> Iterator[None]:
        """Hold the volume's lock: operations on one volume never interleave, in
        this process or another (the agent and a CLI command, say).

        A lock file outlives nothing: it is removed on the way out when its volume
        does not exist (destroyed, or never made). So after taking the lock we check
        that it is still the file under that name; if not, we lock the new one.
        """
        self.prepare()
        path = self.locks / f"{folder.path.name}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if _same_file(fd, path):
                    try:
                        yield
                    finally:
                        if not folder.path.exists():
                            durable_unlink(path)
                    return
            finally:
                os.close(fd)

    def build(self, folder: VolumeFolder, manifest: VolumeManifest, fill: Callable[[Path], None]) -> None:
        """Make a new volume folder whole or not at all: `fill` writes the image
        into a temporary folder, the manifest follows, and one rename publishes both.
        Anything `fill` raises leaves nothing behind."""
        staging = self.volumes / f".{folder.path.name}.{secrets.token_hex(6)}.new"
        staging.mkdir(mode=0o700)
        try:
            (staging / SNAPSHOTS).mkdir(mode=0o700)
            fill(staging / IMAGE)
            atomic_write(staging / MANIFEST, manifest.model_dump_json(indent=2).encode())
            fsync_dir(staging)
            try:
                staging.rename(folder.path)
            except OSError as exc:  # ENOTEMPTY/EEXIST: someone made it meanwhile
                raise AlreadyExists(f"volume {folder.key} appeared while it was being created") from exc
            fsync_dir(self.volumes)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def remove(self, folder: VolumeFolder) -> None:
        """Remove a volume folder: renamed away first (durably), so that a crash
        during the removal never leaves a half-deleted volume under its name."""
        doomed = self.volumes / f".{folder.path.name}.{secrets.token_hex(6)}.gone"
        try:
            folder.path.rename(doomed)
        except FileNotFoundError:
            return
        fsync_dir(self.volumes)
        shutil.rmtree(doomed)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


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
