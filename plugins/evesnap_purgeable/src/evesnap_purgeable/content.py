"""Building a raw volume from a content image.

A raw content image is copied (reflinked where possible) like any volume file.
A qcow2 content image is converted with ``qemu-img convert -O raw``, after
two checks: it has no backing file (qemu-img would otherwise read a host file
the image names, and put its bytes in the volume), and the filesystem has room
for every data byte the image holds (the raw file stays sparse elsewhere).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evesnap_core import ContentSource, FormatError, NoSpace, ProgressCallback
from evesnap_core.process import run
from evesnap_purgeable import copying

QEMU_IMG_TIMEOUT = 120.0
CONVERT_TIMEOUT = 4 * 3600.0
"""A conversion writes the whole volume: gigabytes on slow flash."""


def _qemu_img_json(*args: str) -> Any:
    return json.loads(run(["qemu-img", *args, "--output=json"], timeout=QEMU_IMG_TIMEOUT).stdout)


def data_bytes(source: ContentSource) -> int:
    """Bytes of data (not holes, not zeroes) in the image: what the raw copy allocates."""
    extents = _qemu_img_json("map", "-f", source.format, str(source.path.resolve()))
    return sum(int(e["length"]) for e in extents if e.get("data"))


def convert_to_raw(source: ContentSource, dest: Path, progress: ProgressCallback | None) -> None:
    """Write the image's content into the new raw file `dest`; NoSpace before a byte."""
    image = str(source.path.resolve())
    info = _qemu_img_json("info", "-f", source.format, image)
    if info.get("backing-filename"):
        raise FormatError(
            f"content image {source.path} has a backing file ({info['backing-filename']}): refused"
        )
    needed, available = data_bytes(source), copying.free_space(dest.parent)
    if needed > available:
        raise NoSpace(str(dest.parent), needed, available)
    if progress is not None:
        progress(0, needed)
    run(
        ["qemu-img", "convert", "-f", source.format, "-O", "raw", image, str(dest.resolve())],
        timeout=CONVERT_TIMEOUT,
    )
    if progress is not None:
        progress(needed, needed)
