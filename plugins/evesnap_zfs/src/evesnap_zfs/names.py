"""Dataset and snapshot names of the ZFS backend.

A volume is the zvol ``<pool>/<prefix>/volumes/<uuid>.<generation>``, as the
reference's ``persist/vault/volumes/<uuid>.<gen>``. A snapshot is
``<zvol>@<YYYYMMDD-HHMMSSmmm>`` (the reference's form; ``-<n>`` is appended in
the rare case two are made in the same millisecond). The app-level snapshot id
is not part of the name: it is kept in the user property ``evesnap:id``,
base64url-encoded so that any id survives ``zfs list``'s tab-separated output;
``evesnap:parent`` likewise names the parent. A snapshot without ``evesnap:id``
(EVE's own) is listed, rolled back to and deleted under its full name.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import UUID

ID_PROP = "evesnap:id"
PARENT_PROP = "evesnap:parent"


def volumes_root(pool: str, prefix: str) -> str:
    return f"{pool}/{prefix}/volumes" if prefix else f"{pool}/volumes"


def zvol(root: str, volume: UUID, generation: int) -> str:
    return f"{root}/{volume}.{generation}"


def snapshot_name(dataset: str, when: datetime, taken: set[str]) -> str:
    stamp = when.astimezone(UTC).strftime("%Y%m%d-%H%M%S") + f"{when.microsecond // 1000:03d}"
    name = f"{dataset}@{stamp}"
    n = 1
    while name in taken:
        name = f"{dataset}@{stamp}-{n}"
        n += 1
    return name


def encode(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")


def decode(value: str) -> str | None:
    if value in ("", "-"):
        return None
    try:
        return base64.urlsafe_b64decode(value.encode("ascii")).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeDecodeError):
        return None
