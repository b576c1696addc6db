"""Filling a new volume from a content image (capability populate_volume).

A raw image on the same filesystem is reflinked: instant and free. Anything
else (a qcow2 image, or a raw one on another filesystem) goes through
``qemu-img convert -O raw``, which writes only the image's data and leaves
holes for its zeros; the space that takes is measured with ``qemu-img map``
and checked before the first byte is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evesnap_core import BackendUnavailable, CommandFailed, ContentSource, FormatError, NoSpace
from evesnap_core.process import run
from evesnap_reflink.reflink import clone_file, free_bytes
from evesnap_reflink.store import resize

QEMU_IMG_TIMEOUT = 120.0
SLOWEST_COPY = 20 * 1024 * 1024
"""Bytes per second a convert is allowed at worst before its time limit hits."""


@dataclass(frozen=True)
class ContentImage:
    """A content file as qemu-img sees it."""

    source: ContentSource
    virtual_size: int
    data_bytes: int
    """Bytes a sparse copy writes: the image's allocated data."""


def inspect(source: ContentSource) -> ContentImage:
    """Size and data of a content image; FormatError when it is not what it claims
    to be, or depends on another file (a backing file would be read behind the
    back of whoever verified this one)."""
    if not source.path.is_file():
        raise FormatError(f"content image {source.path} is not a regular file")
    info = _qemu_img_json(["info", "-f", source.format, "--output=json", str(source.path)], source)
    if not isinstance(info, dict) or not isinstance(info.get("virtual-size"), int):
        raise FormatError(f"qemu-img info gave no virtual size for {source.path}")
    if info.get("backing-filename"):
        raise FormatError(f"content image {source.path} has a backing file ({info['backing-filename']})")
    extents = _qemu_img_json(["map", "-f", source.format, "--output=json", str(source.path)], source)
    if not isinstance(extents, list):
        raise FormatError(f"qemu-img map gave no extent list for {source.path}")
    data = sum(int(e["length"]) for e in extents if isinstance(e, dict) and e.get("data"))
    return ContentImage(source, int(info["virtual-size"]), data)


def write_volume(image: ContentImage, target: Path, size: int) -> None:
    """Write `image` as a raw file `target` of `size` bytes (size >= the image's):
    reflinked when possible, converted otherwise after checking for space."""
    if image.source.format == "raw":
        try:
            clone_file(image.source.path, target)
        except BackendUnavailable:
            pass  # another filesystem (EXDEV): convert below
        else:
            resize(target, size)
            return
    available = free_bytes(target.parent)
    if image.data_bytes > available:
        raise NoSpace(str(target.parent), image.data_bytes, available)
    run(
        ["qemu-img", "convert", "-f", image.source.format, "-O", "raw", str(image.source.path), str(target)],
        timeout=QEMU_IMG_TIMEOUT + image.data_bytes / SLOWEST_COPY,
    )
    target.chmod(0o600)
    resize(target, size)


def _qemu_img_json(args: list[str], source: ContentSource) -> Any:
    try:
        result = run(["qemu-img", *args], timeout=QEMU_IMG_TIMEOUT)
    except CommandFailed as exc:
        raise FormatError(f"content image {source.path} is not a valid {source.format} image: {exc}") from exc
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise FormatError(f"qemu-img {args[0]} printed no JSON for {source.path}: {exc}") from exc
