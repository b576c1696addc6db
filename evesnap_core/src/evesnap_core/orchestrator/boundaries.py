"""Before an app starts: none of its volumes makes qemu read a file outside the
persist folder.

A qcow2 image can name other files qemu opens with it: a backing file, an
external data file. evesnap never makes such images (content images naming
files are refused before they are converted, `toolkit.content`), but an image
in the persist folder can be replaced: a planted image whose backing file is
``/etc/shadow`` would hand that file to the app. So each volume's image header
is read here (never by qemu) before the app starts, and an image naming a file
outside the persist folder is refused, reported on the app.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from evesnap_core.errors import FormatError
from evesnap_core.handler_types import VolumeHandle
from evesnap_core.toolkit.content import ENCRYPTION, QCOW2_MAGIC, qcow2_named_files


def check_volumes(app: str, volumes: tuple[VolumeHandle, ...], persist: Path | None) -> None:
    """FormatError naming the volume and the file when one of `volumes` (a qcow2
    image file) names a backing or data file outside `persist` (any file at all
    when there is no persist folder)."""
    inside = Path(os.path.realpath(persist)) if persist is not None else None
    for handle in volumes:
        image = Path(handle.location)
        if not _is_qcow2_file(image):
            continue  # a zvol, a raw file, a block device: they name no other file
        for kind, name in qcow2_named_files(image):
            if kind == ENCRYPTION:
                continue
            target = Path(name or "")
            if not target.is_absolute():
                target = image.parent / target
            real = Path(os.path.realpath(target))
            if inside is None or name in (None, "(named at run time)") or inside not in real.parents:
                raise FormatError(
                    f"volume {handle.key} of app {app}: its image {image} names {kind} {name!r}, "
                    "outside the persist folder; refused before the app starts"
                )


def _is_qcow2_file(path: Path) -> bool:
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return False
        with open(path, "rb") as f:
            return f.read(4) == QCOW2_MAGIC
    except OSError:
        return False
