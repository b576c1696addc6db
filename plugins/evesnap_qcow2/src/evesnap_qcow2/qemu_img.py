"""qemu-img, called the safe way, with its failures turned into typed errors.

Every call names the image through ``--image-opts driver=qcow2,...`` so that a
damaged header is reported as such and never probed as raw; paths are absolute
so that no file name is read as an option; the output is JSON where qemu-img
has it; each call has a timeout and keeps stderr in the error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evesnap_core import (
    CommandFailed,
    CorruptVolume,
    EvesnapError,
    FormatError,
    NoSpace,
    SnapshotNotFound,
    VolumeLocked,
    VolumeNotFound,
)
from evesnap_core.toolkit import run

QEMU_IMG = "qemu-img"
TIMEOUT = 120.0
"""The reference gives qemu-img two minutes."""
COPY_TIMEOUT = 3600.0


def image_opts(path: Path, **extra: str) -> str:
    """``--image-opts`` for a qcow2 file; commas in the path are doubled, as QEMU wants."""
    escaped = str(path.absolute()).replace(",", ",,")  # absolute: never read as an option
    opts = f"driver=qcow2,file.filename={escaped}"
    for key, value in extra.items():
        opts += f",{key.replace('_', '-')}={value}"
    return opts


def translate(exc: CommandFailed, image: Path, what: str = "") -> EvesnapError:
    """The typed error a qemu-img failure stands for."""
    return typed(exc.stderr, image, what) or exc


def typed(err: str, image: Path, what: str = "") -> EvesnapError | None:
    """The typed error QEMU's message `err` about `image` stands for (qemu-img's
    stderr or a QMP error's text: the block layer words them alike); None when
    it is none of them. `what` names the snapshot the call was about."""
    key = image.name
    if 'Failed to get "write" lock' in err or "Failed to get shared" in err:
        return VolumeLocked(key, err.strip().splitlines()[-1] if err.strip() else "")
    if "Image is not in qcow2 format" in err or "not in qcow2 format" in err:
        return FormatError(f"{image} is not a qcow2 image: {err.strip()}")
    if "No space left on device" in err or "-28" in err:
        stat = os.statvfs(image.parent) if image.parent.exists() else None
        return NoSpace(str(image.parent), 0, stat.f_bavail * stat.f_frsize if stat else 0)
    lowered = err.lower()
    if what and ("can't find" in lowered or "could not find" in lowered or "not found" in lowered):
        return SnapshotNotFound(what, key)
    if what and "does not exist on device" in lowered:  # QMP's word for a missing snapshot
        return SnapshotNotFound(what, key)
    if "corrupt" in lowered:
        return CorruptVolume(f"{image} is corrupt: {err.strip()}")
    if "No such file or directory" in err:
        return VolumeNotFound(key, "image file missing")
    return None


def qemu_img(
    args: list[str], image: Path, what: str = "", timeout: float = TIMEOUT, ok_codes: tuple[int, ...] = (0,)
) -> Any:
    try:
        return run([QEMU_IMG, *args], timeout=timeout, ok_codes=ok_codes)
    except CommandFailed as exc:
        if exc.returncode == -9:  # our timeout
            raise
        raise translate(exc, image, what) from exc


def create(path: Path, size: int) -> None:
    qemu_img(
        ["create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", str(path.resolve()), str(size)], path
    )


def info(path: Path, force_share: bool = False) -> dict[str, Any]:
    args = ["info", "--output=json", "--image-opts", image_opts(path)]
    if force_share:
        args.insert(1, "-U")
    return dict(json.loads(qemu_img(args, path).stdout))


def repair_leaks(path: Path) -> None:
    """``qemu-img check -r leaks``: give back the clusters a write cut short (a full
    disk) left allocated and unused. Only refcounts are rewritten, in place, so it
    works on a full disk too; a leak is harmless to the data, never a corruption."""
    qemu_img(["check", "-q", "-r", "leaks", "--image-opts", image_opts(path)], path, ok_codes=(0, 1, 2, 3))


def snapshot(action: str, path: Path, tag: str) -> None:
    """``-c`` create, ``-a`` apply, ``-d`` delete one internal snapshot."""
    qemu_img(["snapshot", "-q", action, tag, "--image-opts", image_opts(path)], path, what=tag)


def measure(
    source_opts: str, source: Path, snapshot_tag: str | None = None, force_share: bool = False
) -> int:
    """Bytes a qcow2 copy of `source` (or of one of its snapshots) needs, to check
    free space before writing; errors typed like every other call on `source`."""
    args = ["measure", "--output=json", "-O", "qcow2", "--image-opts", source_opts]
    if snapshot_tag:
        args[4:4] = ["-l", f"snapshot.name={snapshot_tag}"]
    if force_share:
        args.insert(1, "-U")
    result = qemu_img(args, source, what=snapshot_tag or "")
    return int(json.loads(result.stdout)["required"])


def convert(source: list[str], target: Path, timeout: float = COPY_TIMEOUT) -> None:
    """``qemu-img convert SOURCE... -O qcow2 TARGET`` (source words include -f or --image-opts)."""
    qemu_img(
        ["convert", "-q", *source, "-O", "qcow2", "-o", "cluster_size=65536", str(target.resolve())],
        target,
        timeout=timeout,
    )


def resize(path: Path, size: int) -> None:
    qemu_img(["resize", "-q", "--image-opts", image_opts(path), str(size)], path)
