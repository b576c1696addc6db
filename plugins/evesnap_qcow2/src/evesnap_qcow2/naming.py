"""qcow2 snapshot tags made from app-level snapshot ids.

The reference names a snapshot ``<volumeUUID>#<generation>-snapshot-<timestamp>``.
evesnap uses ``<volumeUUID>#<generation>-snapshot-<token>``, where the token is
the toolkit's safe name of the id (:func:`evesnap_core.toolkit.safe_name`: the
id itself when it is a canonical UUID, ``h`` plus 40 hex digits of its sha256
otherwise). The tag is therefore ASCII,
never numeric (qemu-img reads a numeric argument as a snapshot *ID*), always
under 128 bytes, the same for the same id after a restart, and safe whatever
characters the id holds; the creation time is in the snapshot table anyway.
A tag of the volume that evesnap did not make (EVE's, with a timestamp) is
listed under its own name, and the backend takes that name as its id.
"""

from __future__ import annotations

from uuid import UUID

from evesnap_core.toolkit import safe_name
from evesnap_core.toolkit.names import id_from_name

MAX_TAG = 127


def token(snapshot_id: str) -> str:
    """The toolkit's safe name of the id (injective, at most 41 ASCII characters)."""
    return safe_name(snapshot_id)


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
    return id_from_name(name[len(head) :])
