"""Content images that name other files, for the refusal tests of every backend.

A qcow2 image can make qemu read a file besides itself: a backing file, or an
external data file (``data_file``), whose bytes are the image's data. A backend
that converts such an image copies the named host file into an app's volume.
Each image here names a "host secret" file full of a marker byte, so a test can
also prove the secret's bytes reached no volume.
"""

from __future__ import annotations

from pathlib import Path

from evesnap_core.handler_types import ContentSource
from evesnap_core.process import run

MIB = 1 << 20
SECRET_BYTE = 0x5A
REFERENCE_KINDS = ("data-file", "data-file-raw", "backing-file")


def host_secret(folder: Path, size: int = 2 * MIB) -> Path:
    secret = folder / "host-secret.bin"
    secret.write_bytes(bytes([SECRET_BYTE]) * size)
    return secret


def referencing_image(folder: Path, kind: str) -> tuple[ContentSource, Path]:
    """A qcow2 content image of `kind` (REFERENCE_KINDS) and the host file it names."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = host_secret(folder)
    image = folder / f"content-{kind}.qcow2"
    if kind == "backing-file":
        opts = ["-b", str(secret), "-F", "raw"]
    elif kind == "data-file":
        opts = ["-o", f"data_file={secret}"]
    elif kind == "data-file-raw":
        opts = ["-o", f"data_file={secret},data_file_raw=on"]
    else:
        raise ValueError(f"unknown kind {kind!r}: one of {REFERENCE_KINDS}")
    run(["qemu-img", "create", "-q", "-f", "qcow2", *opts, str(image), str(2 * MIB)], timeout=60)
    return ContentSource(path=image, format="qcow2"), secret
