"""What tests of the real `evesnap` command share: a device folder, the CLI as
a subprocess, a QEMU app's guest writes, and reads of volume bytes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evesnap_core.qemu import QmpClient
from evesnap_core.runtimes.qemu import guest_device
from evesnap_core.testing.conformance.harness import qemu_io_read

EVESNAP = str(Path(sys.executable).with_name("evesnap"))
APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOL = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
VOL2 = "6ba7b815-9dad-41d1-80b4-00c04fd430c8"
MIB = 1024 * 1024


def controller_view(messages: Any) -> dict[str, Any]:
    """The agent's reports file (a list of eve-api ZInfoMsg), each message parsed
    strictly by Google's proto3 JSON parser, as {"apps": [ZInfoApp], "volumes": [ZInfoVolume]}."""
    from google.protobuf import json_format

    from evesnap_core.model.eve_proto import info_message

    assert isinstance(messages, list), f"the reports file is not a list of ZInfoMsg: {str(messages)[:200]}"
    view: dict[str, Any] = {"apps": [], "volumes": []}
    for msg in messages:
        json_format.ParseDict(msg, info_message("ZInfoMsg"))  # raises on anything not eve-api's
        if msg["ztype"] == "ZiApp":
            view["apps"].append(msg["ainfo"])
        else:
            assert msg["ztype"] == "ZiVolume", msg
            view["volumes"].append(msg["vinfo"])
    return view


def volume_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """`status --json` volumes with evesnap's own facts (backend, location, ...) merged in."""
    own = status["evesnap"]["volumes"]
    return [{**extra, **vol} for vol, extra in zip(status["volumes"], own, strict=True)]


class Cli:
    """A device folder driven through the real `evesnap` command."""

    def __init__(self, root: Path, volumes: tuple[str, ...] = (VOL,)) -> None:
        self.root = root
        self.volumes = volumes
        self.run_dir = Path(
            subprocess.run(
                ["mktemp", "-d", "/tmp/es-cli-XXXXXX"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EVESNAP_")}
        self.env.update(EVESNAP_PERSIST=str(root / "persist"), EVESNAP_RUNTIME_DIR=str(self.run_dir))
        self.agent: subprocess.Popen[str] | None = None

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EVESNAP, *args], env=self.env, capture_output=True, text=True, timeout=300, input=stdin
        )

    def config_data(
        self,
        snapshots: list[str] | None = None,
        version: str = "1",
        counter: int = 0,
        active: str = "",
        activate: bool = True,
    ) -> dict[str, Any]:
        return {
            "apps": [
                {
                    "uuidandversion": {"uuid": APP, "version": version},
                    "displayname": "shop",
                    "activate": activate,
                    "volumeRefList": [{"uuid": v} for v in self.volumes],
                    "snapshot": {
                        "maxSnapshots": 5,
                        "snapshots": [{"id": s, "type": 2} for s in snapshots or []],
                        "rollbackCmd": {"counter": counter},
                        "activeSnapshot": active,
                    },
                }
            ],
            "volumes": [
                {"uuid": v, "maxsizebytes": str(16 * MIB), "origin": {"type": "VCOT_BLANK"}}
                for v in self.volumes
            ],
        }

    def config(self, **kwargs: Any) -> Path:
        path = self.root / f"config-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(self.config_data(**kwargs)))
        return path

    def status(self) -> dict[str, Any]:
        out = self("status", "--json")
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def location(self, volume: str = VOL) -> str:
        return str(next(v for v in volume_rows(self.status()) if v["uuid"] == volume)["location"])

    def guest_write(self, value: int, index: int = 0) -> None:
        sock = next(self.run_dir.glob(f"*-{APP}.qmp"))
        with QmpClient(sock) as qmp:
            qmp.hmp(f'qemu-io -d {guest_device(index)} "write -P {value} 0 1M"')
            qmp.hmp(f'qemu-io -d {guest_device(index)} "flush"')

    def data(self, volume: str = VOL) -> bytes:
        return qemu_io_read(self.location(volume), "qcow2", 0, MIB)

    # ------------------------------------------------------------ the agent

    def start_agent(
        self, config: Path, reports: Path, crash_at: str | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        env = dict(self.env)
        if crash_at:
            env["EVESNAP_CRASH_AT"] = crash_at
        self.agent = subprocess.Popen(
            [
                EVESNAP,
                "agent",
                "--config",
                str(config),
                "--reports",
                str(reports),
                "--interval",
                "0.2",
                *extra,
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_reports(
        self, reports: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = controller_view(json.loads(reports.read_text()))
                if predicate(data):
                    return data
            except (OSError, ValueError, KeyError, IndexError):
                pass
            if self.agent is not None and self.agent.poll() is not None:
                raise AssertionError(f"agent exited with {self.agent.returncode}: {self.agent.stderr}")
            time.sleep(0.1)
        raise AssertionError(f"no such report within {timeout:g} s: {reports.read_text()[:2000]}")

    def stop_agent(self) -> int | None:
        if self.agent is None:
            return None
        if self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
        code = self.agent.wait(timeout=60)
        self.agent = None
        return code

    def cleanup(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
        self("apply", "/dev/stdin", stdin='{"apps": []}')
        left = self("status", "--json")  # clones are the device's own: a config never removes them
        for app in json.loads(left.stdout).get("apps", []) if left.returncode == 0 else []:
            self("clone", "delete", app["AppID"])
        for pid in _qemus_using(self.run_dir):  # last resort: no VM of a test outlives it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(self.run_dir)], check=False)


def _qemus_using(folder: Path) -> list[int]:
    """qemu-system processes whose command line names `folder` (their sockets are there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        named = os.path.basename(argv[0]).startswith(b"qemu-system")
        if named and any(str(folder).encode() in a for a in argv):
            found.append(int(entry.name))
    return found
