"""What qcow2 cannot record: which app-level id a tag stands for, and the tree.

One small JSON file beside each image (``<image>.evesnap.json``), written
atomically under the image's lock. It maps each tag to its snapshot id and
parent, remembers the snapshot the image's content descends from (``current``,
which moves on create and rollback), and the read-only exports in use. If it is
lost, listing still works from the image's own table (ids that were UUIDs come
back; hashed ones are reported by tag) and a warning says so.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from evesnap_core.durable import atomic_write, durable_unlink

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


class TagRecord(BaseModel):
    snapshot_id: str
    parent: str | None = None
    created: datetime | None = None


class ExportRecord(BaseModel):
    tag: str
    pid: int
    socket: str


class Sidecar(BaseModel):
    schema_version: int = Field(default=SCHEMA_VERSION, alias="schemaVersion")
    tags: dict[str, TagRecord] = Field(default_factory=dict)
    current: str | None = None
    exports: dict[str, ExportRecord] = Field(default_factory=dict)

    model_config = {"populate_by_name": True}
    _readable: bool = PrivateAttr(default=False)

    @property
    def readable(self) -> bool:
        """Read from an intact file: a tag it does not know is not evesnap's.
        False for a missing or damaged sidecar, where nothing can be told apart."""
        return self._readable


def sidecar_path(image: Path) -> Path:
    return image.with_name(image.name + ".evesnap.json")


def load(image: Path) -> Sidecar:
    """The image's sidecar; an empty one when it is missing or unreadable."""
    path = sidecar_path(image)
    try:
        state = Sidecar.model_validate_json(path.read_bytes())
        state._readable = True
        return state
    except FileNotFoundError:
        return Sidecar()
    except (OSError, ValidationError, ValueError) as exc:
        log.warning(
            "%s is unreadable (%s); snapshot ids and parents fall back to the image's table", path, exc
        )
        return Sidecar()


def save(image: Path, sidecar: Sidecar) -> None:
    atomic_write(sidecar_path(image), sidecar.model_dump_json(by_alias=True).encode())


def remove(image: Path) -> None:
    durable_unlink(sidecar_path(image))
