"""Reading a qcow2 image's header and snapshot table straight from the file.

Listing and verifying snapshots is on the hot path (after every create), and a
``qemu-img`` process costs more than the work. The qcow2 format (QEMU's
docs/interop/qcow2.txt) keeps the table at ``snapshots_offset`` with
``nb_snapshots`` entries: l1 offset (8), l1 size (4), id length (2), name
length (2), date sec (4), date nsec (4), vm clock nsec (8), vm state size (4),
extra data size (4), extra data, id, name, padding to 8 bytes. Anything
inconsistent raises CorruptVolume or FormatError, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from evesnap_core import CorruptVolume, FormatError, VolumeNotFound

MAGIC = b"QFI\xfb"
MAX_SNAPSHOTS = 65536
READ_STEP = 64 * 1024


DIRTY, CORRUPT = 1 << 0, 1 << 1
"""Incompatible feature bits: refcounts need repair; QEMU found the image corrupt."""


@dataclass(frozen=True)
class Sizes:
    virtual_size: int
    allocated: int
    dirty: bool
    corrupt: bool


@contextlib.contextmanager
def _header(path: Path, length: int) -> Iterator[tuple[int, bytes, int]]:
    """The open image (fd), its first `length` bytes and its qcow2 version;
    VolumeNotFound or FormatError when it is missing or not qcow2 v2/v3."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise VolumeNotFound(str(path), "image file missing") from None
    try:
        head = os.pread(fd, length, 0)
        if len(head) < 72 or head[:4] != MAGIC:
            raise FormatError(f"{path} is not a qcow2 image")
        version = struct.unpack(">I", head[4:8])[0]
        if version not in (2, 3):
            raise FormatError(f"{path} is qcow2 version {version}, not 2 or 3")
        yield fd, head, version
    finally:
        os.close(fd)


def read_sizes(path: Path) -> Sizes:
    """The virtual size and the header's dirty and corrupt bits (offsets 24 and
    72 of the header), and the bytes the file occupies on disk (what qemu-img
    calls actual-size): what every ``status`` asks of every volume, without
    starting a process or scanning the image."""
    with _header(path, 80) as (fd, head, version):
        virtual = struct.unpack(">Q", head[24:32])[0]
        features = struct.unpack(">Q", head[72:80])[0] if version == 3 and len(head) == 80 else 0
        return Sizes(virtual, os.fstat(fd).st_blocks * 512, bool(features & DIRTY), bool(features & CORRUPT))


@dataclass(frozen=True)
class TableEntry:
    id: str
    name: str
    date_sec: int
    date_nsec: int


def read_snapshot_table(path: Path) -> list[TableEntry]:
    """The snapshot table, read with a few ``pread`` calls (the table is one
    contiguous run of entries), because this runs before and after every create."""
    with _header(path, 72) as (fd, head, _):
        count, offset = struct.unpack(">IQ", head[60:72])
        if count > MAX_SNAPSHOTS:
            raise CorruptVolume(f"{path}: snapshot count {count} is implausible")
        size = os.fstat(fd).st_size
        if count and offset + 40 > size:
            raise CorruptVolume(f"{path}: snapshot table runs past the end of the file")
        table = b""
        entries: list[TableEntry] = []
        pos = 0
        for _ in range(count):
            if pos + 40 > len(table):
                table = _read_more(fd, offset, table, pos + 40, size, path)
            _, _, id_len, name_len, sec, nsec, _, _, extra = struct.unpack_from(">QIHHIIQII", table, pos)
            end = pos + 40 + extra + id_len + name_len
            if end > len(table):
                table = _read_more(fd, offset, table, end, size, path)
            ident = table[pos + 40 + extra : pos + 40 + extra + id_len].decode("ascii", "replace")
            name = table[pos + 40 + extra + id_len : end].decode("utf-8", "replace")
            entries.append(TableEntry(ident, name, sec, nsec))
            pos = (end + 7) & ~7
        return entries


def _read_more(fd: int, offset: int, table: bytes, needed: int, size: int, path: Path) -> bytes:
    """`table` grown to at least `needed` bytes (in 64 KiB steps), or CorruptVolume."""
    if offset + needed > size:
        raise CorruptVolume(f"{path}: snapshot table runs past the end of the file")
    want = min(max(needed, len(table) + READ_STEP), size - offset)
    table += os.pread(fd, want - len(table), offset + len(table))
    if len(table) < needed:
        raise CorruptVolume(f"{path}: truncated snapshot table entry")
    return table
