"""What qcow2 cannot record: which app-level id a tag stands for, and the tree.

One small file beside each image (``<image>.evesnap.json``), changed only under
the image's lock. It maps each tag to its snapshot id and parent, remembers the
snapshot the image's content descends from (``current``, which moves on create
and rollback), and the read-only exports in use. If it is lost, listing still
works from the image's own table (ids that were UUIDs come back; hashed ones
are reported by tag) and a warning says so.

The file is a log of whole states, one JSON document per line; the last line
that parses is the state. A save appends one line and ``fdatasync``s it: a
single flush instead of the temp file, rename and two fsyncs of an atomic
replace, which would cost as much as 10% of a ``qemu-img snapshot`` on a
1 GiB image. A crash mid-append leaves a torn last line, which is skipped, so
a reader sees the old state or the new, never a mix (each line starts with a
newline, so a torn tail never glues onto the next line). Past ``COMPACT_AT``
bytes the file is replaced atomically by its last state.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from evesnap_core.errors import UnsafePath
from evesnap_core.toolkit import append_durably, atomic_write, crashpoint, durable_unlink, read_regular

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
COMPACT_AT = 64 * 1024
"""Bytes of log after which a save rewrites the file with the last state only."""
MAX_BYTES = 32 << 20
"""A sidecar larger than this is not read (damage): the image's table is used instead."""


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
        data = read_regular(path, MAX_BYTES)  # never through a link, never a FIFO
    except FileNotFoundError:
        return Sidecar()
    except (OSError, UnsafePath) as exc:
        log.warning(
            "%s is unreadable (%s); snapshot ids and parents fall back to the image's table", path, exc
        )
        return Sidecar()
    lines = [line for line in data.split(b"\n") if line.strip()]
    for age, line in enumerate(reversed(lines)):
        try:
            state = Sidecar.model_validate_json(line)
        except (ValidationError, ValueError):
            continue
        if age:
            log.warning("%s: skipped %d unreadable newer entries (a torn write?)", path, age)
        state._readable = True
        return state
    log.warning("%s has no readable state; snapshot ids and parents fall back to the image's table", path)
    return Sidecar()


def save(image: Path, sidecar: Sidecar) -> None:
    """Record `sidecar` as the image's state, durably (see the module doc)."""
    path = sidecar_path(image)
    line = sidecar.model_dump_json(by_alias=True).encode()
    try:
        info = os.lstat(path)
        size: int | None = info.st_size if stat.S_ISREG(info.st_mode) else None
    except FileNotFoundError:
        size = None
    if size is None or size + len(line) + 2 > COMPACT_AT:  # new, odd (a link: replaced), or compacted
        atomic_write(path, line + b"\n")
        return
    append_durably(path, b"\n" + line + b"\n")  # never through a link


def save_during(
    image: Path, before: Sidecar, after: Sidecar, work: Callable[[], None], point: str = ""
) -> None:
    """Record `after` while `work` (a qemu-img call) runs, for rollback and delete.

    The flush then overlaps the several milliseconds qemu-img needs, instead of
    adding to them. The record may land first, so it states the intent; if
    `work` fails, `before` is recorded again and the error raised. (Not for
    create: there the record must be durable BEFORE the snapshot exists, or a
    crash could leave a hashed tag nobody can name.) `point` names the crash
    point right after `work`, while the record may or may not have landed."""
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            save(image, after)
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    writer = threading.Thread(target=flush, name="evesnap-sidecar")
    writer.start()
    try:
        work()
    except BaseException:
        writer.join()
        save(image, before)
        raise
    if point:
        crashpoint(point)
    writer.join()
    if errors:  # qemu-img did its part: one more try to record it, else the error
        save(image, after)


def remove(image: Path) -> None:
    durable_unlink(sidecar_path(image))
