"""Reading a qcow2 image's snapshot table straight from its header.

Listing and verifying snapshots is on the hot path (after every create), and a
``qemu-img`` process costs more than the work. The qcow2 format (QEMU's
docs/interop/qcow2.txt) keeps the table at ``snapshots_offset`` with
``nb_snapshots`` entries: l1 offset (8), l1 size (4), id length (2), name
length (2), date sec (4), date nsec (4), vm clock nsec (8), vm state size (4),
extra data size (4), extra data, id, name, padding to 8 bytes. Anything
inconsistent raises CorruptVolume or FormatError, never a wrong answer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from evesnap_core import CorruptVolume, FormatError, VolumeNotFound

MAGIC = b"QFI\xfb"
MAX_SNAPSHOTS = 65536


@dataclass(frozen=True)
class TableEntry:
    id: str
    name: str
    date_sec: int
    date_nsec: int


def read_snapshot_table(path: Path) -> list[TableEntry]:
    try:
        with open(path, "rb") as f:
            head = f.read(72)
            if len(head) < 72 or head[:4] != MAGIC:
                raise FormatError(f"{path} is not a qcow2 image")
            version = struct.unpack(">I", head[4:8])[0]
            if version not in (2, 3):
                raise FormatError(f"{path} is qcow2 version {version}, not 2 or 3")
            count, offset = struct.unpack(">IQ", head[60:72])
            if count > MAX_SNAPSHOTS:
                raise CorruptVolume(f"{path}: snapshot count {count} is implausible")
            size = f.seek(0, 2)
            entries: list[TableEntry] = []
            pos = offset
            for _ in range(count):
                if pos + 40 > size:
                    raise CorruptVolume(f"{path}: snapshot table runs past the end of the file")
                f.seek(pos)
                fixed = f.read(40)
                _, _, id_len, name_len, sec, nsec, _, _, extra = struct.unpack(">QIHHIIQII", fixed)
                rest = f.read(extra + id_len + name_len)
                if len(rest) != extra + id_len + name_len:
                    raise CorruptVolume(f"{path}: truncated snapshot table entry")
                ident = rest[extra : extra + id_len].decode("ascii", "replace")
                name = rest[extra + id_len :].decode("utf-8", "replace")
                entries.append(TableEntry(ident, name, sec, nsec))
                pos += 40 + extra + id_len + name_len
                pos = (pos + 7) & ~7
            return entries
    except FileNotFoundError:
        raise VolumeNotFound(str(path), "image file missing") from None
