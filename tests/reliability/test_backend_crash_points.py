"""SIGKILL inside the backends: the `evesnap` process doing a snapshot, a
rollback or a deletion dies at each of the qcow2 and purgeable backends' own
step boundaries (``evesnap_qcow2.backend.CRASH_POINTS``,
``evesnap_purgeable.backend.CRASH_POINTS``), a new process converges (`evesnap
apply` of the same config: recovery, then reconcile), and then:

- no snapshot lost or duplicated (``evesnap snapshot list --json``);
- every qcow2 image's own table (``qemu-img snapshot -l``) and its sidecar,
  and the purgeable store's records and retained files, hold exactly the
  snapshots evesnap lists as available: no backend snapshot without a record,
  no record without a backend snapshot, no half-written file left;
- a rollback applied exactly once (what the guest writes afterwards survives
  another restart);
- the volumes' bytes as expected (read with qemu-img, never through evesnap).

Apps are real QEMU processes. The ``mixed`` app has a purgeable OS volume
(built from a qcow2 content image, generation bumped by an update) and two
blank qcow2 volumes, so its snapshots are offline: they go through the qcow2
backend's resident qemu-storage-daemon (``qcow2.daemon.command`` kills evesnap
with the images open in it, and the daemon dies with evesnap); the ``qcow2``
app has only the two qcow2 volumes and snapshots live over QMP. Every point
runs in the default suite; ``-m slow`` adds the same points reached on other
paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.testing.conformance.harness import qemu_io_read

from ..support import APP, EVESNAP, MIB, VOL, VOL2, Cli

pytestmark = pytest.mark.qemu

OS = "6ba7b811-9dad-41d1-80b4-00c04fd430c8"
TREES = ["6ba7b816-9dad-41d1-80b4-00c04fd430c8", "6ba7b817-9dad-41d1-80b4-00c04fd430c8"]

# (operation, app, point). The default run: each backend's create, rollback
# and delete once (about 50 s); -m slow: every point, and on other paths.
CASES = [
    ("update", "mixed", "purgeable.snapshot.moved"),
    ("create", "mixed", "qcow2.snapshot.sidecar_recorded"),
    ("create", "mixed", "purgeable.snapshot.copied"),
    ("create", "qcow2", "qcow2.snapshot.live_done"),
    ("rollback", "mixed", "qcow2.rollback.applied"),
    ("rollback", "mixed", "purgeable.rollback.copied"),
    ("delete", "mixed", "qcow2.delete.tag_deleted"),
    ("delete", "mixed", "purgeable.delete.data_removed"),
    ("create", "mixed", "qcow2.daemon.command"),
]
SLOW_CASES = [
    ("update", "mixed", "qcow2.snapshot.tag_made"),
    ("create", "mixed", "purgeable.snapshot.copy_written"),
    ("create", "mixed", "purgeable.snapshot.recorded"),
    ("rollback", "mixed", "qcow2.rollback.recorded"),
    ("rollback", "mixed", "purgeable.rollback.copy_written"),
    ("delete", "mixed", "qcow2.delete.recorded"),
    ("delete", "mixed", "purgeable.delete.record_removed"),
    ("update", "mixed", "purgeable.snapshot.recorded"),
    ("update", "mixed", "qcow2.snapshot.sidecar_recorded"),
    ("update", "mixed", "qcow2.snapshot.tag_made:2"),
    ("create", "mixed", "qcow2.snapshot.tag_made"),
    ("create", "qcow2", "qcow2.snapshot.sidecar_recorded"),
    ("delete", "qcow2", "qcow2.delete.tag_deleted"),
    ("delete", "qcow2", "qcow2.delete.recorded"),
    ("delete", "mixed", "qcow2.daemon.command"),
    ("update", "mixed", "qcow2.daemon.command"),
]
RESULTS: dict[str, bool] = {}


class Rig(Cli):
    """The device, with a purgeable OS volume in the ``mixed`` app."""

    def __init__(self, root: Path, mixed: bool) -> None:
        super().__init__(root, volumes=(VOL, VOL2))
        self.mixed = mixed
        self.contents: list[Path] = []
        for index in range(len(TREES) if mixed else 0):
            path = root / f"os-v{index + 1}.qcow2"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "8M"], check=True)
            subprocess.run(
                ["qemu-io", "-f", "qcow2", "-c", f"write -P {0x10 + index} 0 1M", str(path)],
                check=True,
                capture_output=True,
            )
            self.contents.append(path)

    @property
    def persist(self) -> Path:
        return self.root / "persist"

    def config_data(  # type: ignore[override]
        self,
        snapshots: list[str] | None = None,
        version: str = "1",
        os_gen: int = 0,
        activate: bool = True,
    ) -> dict[str, Any]:
        data = super().config_data(snapshots=None, version=version, activate=activate)
        app = data["apps"][0]
        app["snapshot"]["snapshots"] = [{"id": s, "type": 1} for s in snapshots or []]
        if self.mixed:
            app["volumeRefList"].insert(0, {"uuid": OS, "generationCount": os_gen})
            data["volumes"].insert(
                0,
                {
                    "uuid": OS,
                    "generationCount": os_gen,
                    "maxsizebytes": str(8 * MIB),
                    "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREES[os_gen]},
                },
            )
            data["contentInfo"] = [
                {"uuid": t, "URL": p.as_uri(), "iformat": "QCOW2"}
                for t, p in zip(TREES, self.contents, strict=True)
            ]
        return data

    def apply(self, crash_at: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["apply", str(self.config(**kwargs))], crash_at)

    def run(self, args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if crash_at:
            env["EVESNAP_CRASH_AT"] = crash_at
        return subprocess.run(
            [EVESNAP, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    def index(self, volume: str) -> int:
        """The volume's disk index inside the app's QEMU (the OS volume first)."""
        return int(self.mixed) + (0 if volume == VOL else 1)

    def kill_vms(self) -> None:
        """Cleanup without another evesnap process: the app's QEMU killed."""
        for pidfile in (self.persist / "run" / "apps").glob("*/qemu.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(self.run_dir)], check=False)

    # ------------------------------------------------------------ what the backends hold

    def image(self, volume: str, generation: int = 0) -> Path:
        return self.persist / "vault" / "volumes" / f"{volume}#{generation}.qcow2"

    def bytes_of(self, volume: str, generation: int = 0) -> bytes:
        return qemu_io_read(str(self.image(volume, generation)), "qcow2", 0, MIB)

    def listed(self) -> list[dict[str, Any]]:
        out = self("snapshot", "list", APP, "--json")
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout))

    def qcow2_tags(self, volume: str) -> set[str]:
        """Snapshot ids in the image's own table (qemu-img), checked against its sidecar."""
        from evesnap_qcow2 import sidecar

        image = self.image(volume)
        out = subprocess.run(
            ["qemu-img", "snapshot", "-U", "-l", str(image)], capture_output=True, text=True, check=True
        ).stdout
        table = {word.split("-snapshot-")[1] for word in out.split() if "-snapshot-" in word}
        state = sidecar.load(image)
        noted = {r.snapshot_id for r in state.tags.values()}
        assert noted == table, f"{image.name}: sidecar {noted} but image table {table}"
        for record in state.tags.values():  # the tree the sidecar keeps points at real snapshots
            assert record.parent is None or (record.parent in table and record.parent != record.snapshot_id)
        assert state.current is None or state.current in table, f"{image.name}: current {state.current}"
        return table

    def purgeable_store(self) -> set[str]:
        """Snapshot ids the purgeable store records, each with its retained file."""
        root = self.persist / "vault" / "snapshots" / "purgeable"
        ids: set[str] = set()
        for folder in root.glob(f"{OS}#*") if root.is_dir() else ():
            records = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
            data = {p.stem for p in folder.iterdir() if p.suffix in (".qcow2", ".raw")}
            assert set(records) == data, f"{folder.name}: records {sorted(records)} but data {sorted(data)}"
            assert records or not any(folder.iterdir()), f"{folder.name}: left without a record"
            ids |= {r["snapshot_id"] for r in records.values()}
        return ids

    def leftovers(self) -> list[str]:
        folder = self.persist / "vault" / "volumes"
        return sorted(
            p.name for p in folder.iterdir() if p.name.endswith((".partial", ".creating", ".evesnap-tmp"))
        )

    def check_consistent(self, expected: list[str]) -> None:
        """evesnap lists exactly `expected` (available, once each) and every backend
        holds exactly those."""
        listed = self.listed()
        assert [s["id"] for s in listed] == expected, listed
        assert all(s["state"] == "available" for s in listed), listed
        assert self.qcow2_tags(VOL) == self.qcow2_tags(VOL2) == set(expected)
        if self.mixed:
            assert self.purgeable_store() == set(expected)
        assert self.leftovers() == []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if RESULTS:
        recovered = sum(RESULTS.values())
        line = f"backend crash points: {len(RESULTS)} crash points, {recovered} recovered"
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            print(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)


def make_rig(tmp_path: Path, kind: str) -> Rig:
    backends = load_backends(tmp_path).backends
    missing = [n for n in ("qcow2", "purgeable") if n not in backends]
    if missing:
        pytest.skip(f"backends not installed: {', '.join(missing)} (run scripts/setup)")
    return Rig(tmp_path, mixed=kind == "mixed")


def crashed(out: subprocess.CompletedProcess[str], point: str) -> None:
    assert out.returncode == -9, (
        f"the process was to die at {point} but exited {out.returncode}: {out.stderr}"
    )


def converge(rig: Rig, **config: Any) -> dict[str, Any]:
    """A new process: recovery, then reconcile; the app's report, which must be clean."""
    out = rig.run(["apply", str(rig.config(**config)), "--json"])
    assert out.returncode == 0, out.stderr
    app = dict(json.loads(out.stdout)["apps"][0])
    assert not app.get("appErr"), app["appErr"]
    return app


def scenario(rig: Rig, operation: str, point: str) -> None:
    snap = str(uuid.uuid4())
    converge(rig)
    rig.guest_write(0xA1, rig.index(VOL))
    rig.guest_write(0xA2, rig.index(VOL2))
    if operation == "update":  # the OS volume's generation is retired into the snapshot
        crashed(rig.apply(point, snapshots=[snap], version="2", os_gen=1), point)
        assert converge(rig, snapshots=[snap], version="2", os_gen=1)["appVersion"] == "2"
        rig.check_consistent([snap])
        assert rig.bytes_of(OS, 1) == bytes([0x11]) * MIB  # the new generation is live
        assert not rig.image(OS, 0).exists()  # the old one belongs to the snapshot
    elif operation == "create":
        crashed(rig.run(["snapshot", "create", APP, "--id", snap], point), point)
        converge(rig)
        # the request outlives the crash: the next process takes it, once
        rig.check_consistent([snap])
    elif operation == "rollback":
        assert rig.run(["snapshot", "create", APP, "--id", snap]).returncode == 0
        rig.guest_write(0xB1, rig.index(VOL))
        rig.guest_write(0xB2, rig.index(VOL2))
        if rig.mixed:
            rig.guest_write(0xB0, 0)
        crashed(rig.run(["snapshot", "rollback", APP, snap], point), point)
        converge(rig)
        rig.check_consistent([snap])
        if rig.mixed:
            assert rig.bytes_of(OS) == bytes([0x10]) * MIB
        # applied exactly once: what the guest writes now survives a restart
        rig.guest_write(0xC1, rig.index(VOL))
        converge(rig)
        assert rig.bytes_of(VOL) == bytes([0xC1]) * MIB
        assert rig.bytes_of(VOL2) == bytes([0xA2]) * MIB
        return
    elif operation == "delete":
        assert rig.run(["snapshot", "create", APP, "--id", snap]).returncode == 0
        activate = not rig.mixed  # purgeable deletes offline only: stop the app first
        if not activate:
            converge(rig, activate=False)
        crashed(rig.run(["snapshot", "delete", APP, snap], point), point)
        converge(rig, activate=activate)
        rig.check_consistent([])
    assert rig.bytes_of(VOL) == bytes([0xA1]) * MIB
    assert rig.bytes_of(VOL2) == bytes([0xA2]) * MIB
    if rig.mixed and operation != "update":
        assert rig.bytes_of(OS) == bytes([0x10]) * MIB


def run_case(tmp_path: Path, operation: str, kind: str, point: str) -> None:
    rig = make_rig(tmp_path, kind)
    key = f"{operation}/{kind}/{point}"
    try:
        RESULTS[key] = False
        scenario(rig, operation, point)
        RESULTS[key] = True
    finally:
        rig.kill_vms()


@pytest.mark.parametrize(("operation", "kind", "point"), CASES, ids=[f"{o}-{p}" for o, _, p in CASES])
def test_kill_inside_backend(tmp_path: Path, operation: str, kind: str, point: str) -> None:
    run_case(tmp_path, operation, kind, point)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("operation", "kind", "point"), SLOW_CASES, ids=[f"{o}-{k}-{p}" for o, k, p in SLOW_CASES]
)
def test_kill_inside_backend_other_paths(tmp_path: Path, operation: str, kind: str, point: str) -> None:
    run_case(tmp_path, operation, kind, point)


def test_every_backend_point_is_exercised() -> None:
    from evesnap_purgeable.backend import CRASH_POINTS as PURGEABLE
    from evesnap_qcow2.backend import CRASH_POINTS as QCOW2

    covered = {p.partition(":")[0] for _, _, p in CASES + SLOW_CASES}
    assert covered == set(QCOW2) | set(PURGEABLE)
