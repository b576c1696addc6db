"""qcow2 snapshot tags made from app-level snapshot ids.

The reference names a snapshot ``<volumeUUID>#<generation>-snapshot-<timestamp>``.
evesnap uses ``<volumeUUID>#<generation>-snapshot-<token>``, where the token is
the snapshot id itself when it is a canonical UUID (what controllers send) and
``h`` plus 40 hex digits of its sha256 otherwise. The tag is therefore ASCII,
never numeric (qemu-img reads a numeric argument as a snapshot *ID*), always
under 128 bytes, the same for the same id after a restart, and safe whatever
characters the id holds; the creation time is in the snapshot table anyway.
"""

from __future__ import annotations

import hashlib
import re
from uuid import UUID

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_TAG = 127


def token(snapshot_id: str) -> str:
    if UUID_RE.match(snapshot_id):
        return snapshot_id
    return "h" + hashlib.sha256(snapshot_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def prefix(volume: UUID, generation: int) -> str:
    return f"{volume}#{generation}-snapshot-"


def tag(volume: UUID, generation: int, snapshot_id: str) -> str:
    name = prefix(volume, generation) + token(snapshot_id)
    assert len(name) <= MAX_TAG and name.isascii()
    return name


def id_from_tag(name: str, volume: UUID, generation: int) -> str | None:
    """The snapshot id a tag stands for when the token is the id itself; else None."""
    head = prefix(volume, generation)
    if not name.startswith(head):
        return None
    rest = name[len(head) :]
    return rest if UUID_RE.match(rest) else None
