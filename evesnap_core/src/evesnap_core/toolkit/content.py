"""Content images (what a volume is populated from): inspected, then written.

A qcow2 content image may name other files qemu would read while converting it:
a backing file, an external data file (``data-file``, whose bytes ARE the
image's data: any host file root can read would end up in an app's disk). Such
an image is refused before qemu opens it: :func:`inspect_content` reads the qcow2
header itself (backing file offset, the external-data-file feature bit and
header extension) and raises FormatError naming the reference, then asks
``qemu-img info`` (with ``--image-opts``, so nothing is probed and no file name
is parsed as options) and refuses again anything that still names another file.

:func:`write_content` writes an inspected image as a raw file or onto a block
device, and :func:`populate_raw` does the whole populate of a raw volume file:
free space checked first, a temporary beside the volume, published whole.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evesnap_core.errors import CommandFailed, FormatError
from evesnap_core.handler_types import ContentSource, ProgressCallback
from evesnap_core.process import run
from evesnap_core.toolkit import copies, space, tempfiles

QEMU_IMG_TIMEOUT = 120.0
SLOWEST_COPY = 20 * 1024 * 1024
"""Bytes per second a conversion may take at worst before its time limit hits."""

QCOW2_MAGIC = b"QFI\xfb"
EXT_END = 0x00000000
EXT_DATA_FILE = 0x44415441
EXT_ENCRYPTION = 0x0537BE77
INCOMPAT_DATA_FILE = 1 << 2
ENCRYPTION = "encryption (a key held elsewhere)"
REFERENCE_KEYS = ("backing-filename", "full-backing-filename", "backing-filename-format", "data-file")


@dataclass(frozen=True)
class ContentImage:
    """A content image as qemu sees it, checked to be self-contained."""

    path: Path
    format: str
    virtual_size: int
    data_bytes: int
    """Bytes of data (not holes, not zeroes): what a sparse raw copy allocates."""

    def convert_timeout(self) -> float:
        return QEMU_IMG_TIMEOUT + self.virtual_size / SLOWEST_COPY


def image_opts(path: Path, fmt: str) -> str:
    """``--image-opts`` naming `path` as a plain file of format `fmt` (commas doubled)."""
    escaped = str(path.absolute()).replace(",", ",,")
    return f"driver={fmt},file.driver=file,file.filename={escaped}"


def qcow2_references(path: Path) -> list[str]:
    """What a qcow2 file names besides itself, read from its header (never by
    qemu): ``backing file X``, ``external data file Y``, ``encryption``."""
    return [kind if name is None else f"{kind} {name!r}" for kind, name in qcow2_named_files(path)]


def qcow2_named_files(path: Path) -> list[tuple[str, str | None]]:
    """`qcow2_references` as (what, file name): ``("backing file", name)``,
    ``("external data file", name)`` (name ``(named at run time)`` when the
    header does not say), ``("encryption (a key held elsewhere)", None)``."""
    with open(path, "rb") as f:
        head = f.read(104)
        if len(head) < 72 or head[:4] != QCOW2_MAGIC:
            raise FormatError(f"content image {path} is not a valid qcow2 image (no qcow2 header)")
        version, backing_offset, backing_size, cluster_bits = struct.unpack(">IQII", head[4:24])
        crypt = struct.unpack(">I", head[32:36])[0]
        found: list[tuple[str, str | None]] = []
        if backing_offset:
            f.seek(backing_offset)
            name = f.read(min(backing_size, 1023)).decode("utf-8", "replace")
            found.append(("backing file", name))
        if crypt:
            found.append((ENCRYPTION, None))
        if version < 3 or len(head) < 104:
            return found
        incompatible = struct.unpack(">Q", head[72:80])[0]
        header_length = struct.unpack(">I", head[100:104])[0]
        cluster = 1 << min(max(cluster_bits, 9), 21)
        f.seek(header_length)
        area = f.read(max(0, cluster - header_length))
    data_file = ""
    pos = 0
    while pos + 8 <= len(area):
        kind, length = struct.unpack(">II", area[pos : pos + 8])
        if kind == EXT_END:
            break
        if kind == EXT_DATA_FILE:
            data_file = area[pos + 8 : pos + 8 + length].decode("utf-8", "replace")
        if kind == EXT_ENCRYPTION and (ENCRYPTION, None) not in found:
            found.append((ENCRYPTION, None))
        pos += 8 + ((length + 7) & ~7)
    if incompatible & INCOMPAT_DATA_FILE or data_file:
        found.append(("external data file", data_file or "(named at run time)"))
    return found


def _qemu_img_json(args: list[str], path: Path, fmt: str) -> Any:
    try:
        result = run(["qemu-img", *args], timeout=QEMU_IMG_TIMEOUT)
    except CommandFailed as exc:
        raise FormatError(f"content image {path} is not a valid {fmt} image: {exc}") from exc
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise FormatError(f"qemu-img {args[0]} printed no JSON for {path}: {exc}") from exc


def inspect_content(source: ContentSource) -> ContentImage:
    """Format, virtual size and data bytes of a content image; FormatError when it
    is not what it claims, or when qemu would read another file for it (naming
    that file)."""
    path = source.path.resolve()
    if not path.is_file():
        raise FormatError(f"content image {source.path} is not a regular file")
    if source.format == "qcow2":
        refs = qcow2_references(path)
        if refs:
            raise FormatError(
                f"content image {source.path} refers to another file ({', '.join(refs)}): "
                "refused, only self-contained images are used"
            )
    opts = image_opts(path, source.format)
    info = _qemu_img_json(["info", "--output=json", "--image-opts", opts], path, source.format)
    if not isinstance(info, dict) or not isinstance(info.get("virtual-size"), int):
        raise FormatError(f"qemu-img info gave no virtual size for {source.path}")
    specific = info.get("format-specific", {}).get("data", {})
    named = [f"{k} {info[k]!r}" for k in REFERENCE_KEYS if info.get(k)]
    named += [f"data-file {specific['data-file']!r}"] if specific.get("data-file") else []
    if named:
        raise FormatError(f"content image {source.path} refers to another file ({', '.join(named)}): refused")
    extents = _qemu_img_json(["map", "--output=json", "--image-opts", opts], path, source.format)
    if not isinstance(extents, list):
        raise FormatError(f"qemu-img map gave no extent list for {source.path}")
    data = sum(int(e["length"]) for e in extents if isinstance(e, dict) and e.get("data"))
    return ContentImage(path, source.format, int(info["virtual-size"]), data)


def write_content(
    image: ContentImage,
    target: Path,
    size: int,
    progress: ProgressCallback | None = None,
    *,
    device: bool = False,
) -> None:
    """Write `image`'s bytes into `target`: a new raw file (which must not exist;
    grown to `size`, holes kept), or with ``device=True`` an existing block device
    at least that large. Free space for a new file is checked first."""
    if progress is not None:
        progress(0, image.data_bytes)
    if not device and image.format == "raw":
        copies.copy_file(image.path, target)
    else:
        if not device:
            space.require_space(target.parent, image.data_bytes)
        args = ["qemu-img", "convert", "-q", "--image-opts", image_opts(image.path, image.format)]
        args += ["-O", "raw", *(["-n"] if device else []), str(target.absolute())]
        with space.enospc_as_nospace(target.parent, image.data_bytes):
            run(args, timeout=image.convert_timeout())
    if not device:
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o600)
            if size > os.fstat(fd).st_size:
                with space.enospc_as_nospace(target.parent, size):
                    os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    if progress is not None:
        progress(image.data_bytes, image.data_bytes)


def populate_raw(
    source: ContentSource, dest: Path, size: int, progress: ProgressCallback | None = None
) -> ContentImage:
    """Make the raw volume file `dest` hold `source` (at least `size` bytes): the
    image is inspected, free space checked before a byte is written, the bytes
    written to a temporary beside `dest` and published whole; on any failure
    nothing is left."""
    image = inspect_content(source)
    with tempfiles.temp_file(dest) as tmp:
        write_content(image, tmp, max(size, image.virtual_size), progress)
        tempfiles.publish(tmp, dest)
    return image
