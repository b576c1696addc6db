"""Read-only NBD exports of one internal snapshot, for standard tools.

``qemu-nbd --read-only -l snapshot.name=TAG`` serves the snapshot (not the
image's current content) on a unix socket; ``qemu-img``, ``qemu-io`` or
``nbd-client`` read it with ``nbd+unix:///?socket=PATH``. Writes are refused by
qemu-nbd itself.

The server opens the image with ``force-share=on`` (qemu-nbd 7.2 has no
``--force-share`` option): it takes no lock, so the
app's QEMU can hold the image (running when the export opens, or started while
it is open). Reading beside a writer is sound for an internal snapshot: its
clusters and tables are copy-on-write and never change while the snapshot
exists, and evesnap closes every export before it deletes the snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

from evesnap_core import EvesnapError
from evesnap_core.toolkit import run
from evesnap_qcow2.qemu_img import image_opts


def socket_path(runtime_dir: Path, image: Path, tag: str) -> Path:
    """Short on purpose: a unix socket path must stay under 108 bytes."""
    digest = hashlib.sha256(f"{image.resolve()}\0{tag}".encode()).hexdigest()[:16]
    return runtime_dir / f"qcow2-{digest}.nbd"


def start(image: Path, tag: str, sock: Path) -> int:
    """Serve snapshot `tag` of `image` read-only on `sock`; the server's pid."""
    pidfile = sock.with_suffix(".pid")
    for stale in (sock, pidfile):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    run(
        [
            "qemu-nbd",
            "--read-only",
            "--persistent",
            "--fork",
            "--shared=8",
            f"--pid-file={pidfile}",
            f"--socket={sock}",
            "-l",
            f"snapshot.name={tag}",
            "--image-opts",
            image_opts(image, force_share="on"),
        ],
        timeout=60,
    )
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        if time.monotonic() > deadline:
            raise EvesnapError(f"qemu-nbd for {image.name} wrote no pid file")
        time.sleep(0.02)
    return int(pidfile.read_text().strip())


def alive(pid: int) -> bool:
    try:
        return b"qemu-nbd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(pid: int, sock: Path) -> None:
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for leftover in (sock, sock.with_suffix(".pid")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
