"""Play an app's guest in the examples: write or read bytes of a running app's
volume through its QEMU (the apps of the examples run no guest OS, so this is
how you put data in and see it come back after a rollback).

    python contrib/examples/guest.py write APP VOLUME BYTE   # fill the first MiB with BYTE
    python contrib/examples/guest.py read APP VOLUME         # print the first 16 bytes

APP is an app's name or UUID, VOLUME its volume's position in volumeRefList
(0, 1, ...). It finds the app's QMP socket in $EVESNAP_RUNTIME_DIR as evesnap
does. Exit 2 with one line when the app does not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from evesnap_core.qemu import QmpClient
from evesnap_core.runtimes.qemu import guest_device
from evesnap_core.settings import default_runtime_dir

EVESNAP = str(Path(sys.executable).with_name("evesnap"))


def find_app(name: str) -> tuple[str, list[dict[str, str]]]:
    """The app's UUID and its volumes (location, format) in volumeRefList order."""
    argv = [EVESNAP, "status", "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    status = json.loads(out.stdout)
    # location and format are evesnap's own facts, beside the eve-api reports
    # under "evesnap", one entry per volume in the same order
    own = status.get("evesnap", {}).get("volumes", [])
    volumes: dict[str, dict[str, str]] = {}
    for v in sorted(own, key=lambda v: int(v.get("generationCount", 0))):
        volumes[v["uuid"]] = v  # the newest generation: the one the app runs on
    for app in status["apps"]:
        if name in (app["AppID"], app.get("AppName")):
            return str(app["AppID"]), [volumes[ref] for ref in app.get("volumeRefs", [])]
    raise SystemExit(f"guest.py: no app named {name!r} (see 'evesnap status')")


def read_first_bytes(volume: dict[str, str]) -> str:
    """The first 16 bytes of a volume, read from its image beside the running QEMU
    (qemu-io -U shares the image read-only; the writes were flushed)."""
    out = subprocess.run(
        ["qemu-io", "-U", "-r", "-f", volume["format"], "-c", "read -v 0 16", volume["location"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = re.search(r"^00000000:\s+((?:[0-9a-f]{2} ){15}[0-9a-f]{2})", out.stdout, re.MULTILINE)
    return found.group(1) if found else out.stdout.strip()


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] not in ("read", "write") or (argv[0] == "write") != (len(argv) == 4):
        raise SystemExit(__doc__)
    verb, app, volume = argv[0], argv[1], int(argv[2])
    uuid, volumes = find_app(app)
    socks = sorted(Path(os.environ.get("EVESNAP_RUNTIME_DIR") or default_runtime_dir()).glob(f"*-{uuid}.qmp"))
    if not socks:
        print(f"guest.py: app {app} is not running (no QMP socket)", file=sys.stderr)
        raise SystemExit(2)
    with QmpClient(socks[0]) as qmp:
        device = guest_device(volume)
        if verb == "write":
            qmp.hmp(f'qemu-io -d {device} "write -P {int(argv[3], 0)} 0 1M"')
            qmp.hmp(f'qemu-io -d {device} "flush"')
            print(f"wrote 1 MiB of {int(argv[3], 0):#04x} at the start of volume {volume} of {app}")
        else:
            print(read_first_bytes(volumes[volume]))


if __name__ == "__main__":
    main(sys.argv[1:])
