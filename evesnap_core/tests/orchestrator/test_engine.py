"""The orchestrator's logic with in-memory backends and an instant runtime: the
reference's semantics and its gaps fixed. (Real qcow2 + QEMU: tests/e2e.)

Two configured in-memory backends (evesnap_core.testing.memory), each on its own
disk the tests read and change: the data volumes' (copy-on-write snapshots) and
the purgeable OS volumes' (whole copies, a retiring generation kept whole)."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.handler_types import Capability
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model
from evesnap_core.orchestrator.content import ContentResolver, file_url
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.testing.fake_agent import FakeGuestAgent
from evesnap_core.testing.memory import InstantRuntime, MemoryBackend, MemoryConfig
from evesnap_core.testing.memory_disk import MemoryDisk

APP = uuid.UUID("11111111-1111-4111-8111-111111111111")
APP2 = uuid.UUID("22222222-2222-4222-8222-222222222222")
OS = "33333333-3333-4333-8333-333333333333"
DATA = "44444444-4444-4444-8444-444444444444"
DATA2 = "55555555-5555-4555-8555-555555555555"
T1 = "66666666-6666-4666-8666-666666666666"
T2 = "77777777-7777-4777-8777-777777777777"
S1 = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
S2 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
S3 = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"


OFFLINE = frozenset(
    {Capability.CREATE_VOLUME, Capability.POPULATE_VOLUME, Capability.SNAPSHOT, Capability.ROLLBACK_ANY}
)
COW = MemoryConfig(name="memcow", formats=("qcow2",), capabilities=OFFLINE, purgeable=False)
"""Data volumes: copy-on-write snapshots, offline only."""
LIVE = MemoryConfig(
    name="memlive",
    formats=("qcow2",),
    capabilities=OFFLINE | {Capability.LIVE_SNAPSHOT, Capability.LIVE_DELETE},
    purgeable=False,
)
"""Data volumes snapshotted while the app runs."""
WHOLE = MemoryConfig(
    name="memwhole", formats=("raw", "qcow2"), capabilities=OFFLINE, purgeable=True, retain_after_destroy=True
)
"""Purgeable volumes: a retiring snapshot keeps the old generation whole."""


class World:
    def __init__(self, tmp_path: Path, data_backend: MemoryConfig = COW) -> None:
        self.data = MemoryDisk()  # the data volumes and their snapshots
        self.os = MemoryDisk()  # the purgeable OS volumes and the generations kept whole
        self.tmp = tmp_path
        (tmp_path / "os-v1.img").write_bytes(b"OS-v1")
        (tmp_path / "os-v2.img").write_bytes(b"OS-v2")
        self.registry = load_backends(
            tmp_path,
            extra=[
                (data_backend.name, MemoryBackend.factory(data_backend, self.data)),
                (WHOLE.name, MemoryBackend.factory(WHOLE, self.os)),
            ],
            environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,zfs,purgeable,reflink"},
        )
        self.rt = InstantRuntime()
        self.orch = Orchestrator(self.registry, Runtime(self.rt), ContentResolver(base_dir=tmp_path))

    def config(
        self,
        version: str = "1",
        os_gen: int = 0,
        snapshots: Sequence[tuple[str, int]] = (),
        max_snapshots: int = 5,
        counter: int = 0,
        active: str = "",
        activate: bool = True,
        apps: int = 1,
        with_os: bool = True,
    ) -> DeviceConfig:
        tree = T1 if os_gen == 0 else T2
        app_list: list[dict[str, Any]] = [
            {
                "uuidandversion": {"uuid": str(APP), "version": version},
                "displayname": "app",
                "activate": activate,
                "volumeRefList": ([{"uuid": OS, "generationCount": os_gen}] if with_os else [])
                + [{"uuid": DATA}],
                "snapshot": {
                    "snapshots": [{"id": i, "type": t} for i, t in snapshots],
                    "maxSnapshots": max_snapshots,
                    "rollbackCmd": {"counter": counter},
                    "activeSnapshot": active,
                },
            }
        ]
        if apps > 1:
            app_list.append(
                {
                    "uuidandversion": {"uuid": str(APP2), "version": "1"},
                    "activate": True,
                    "volumeRefList": [{"uuid": DATA2}],
                }
            )
        return parse_model(
            DeviceConfig,
            {
                "apps": app_list,
                "volumes": [
                    {
                        "uuid": OS,
                        "generationCount": os_gen,
                        "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": tree},
                    },
                    {"uuid": DATA, "maxsizebytes": 16, "origin": {"type": "VCOT_BLANK"}},
                    {"uuid": DATA2, "maxsizebytes": 16, "origin": {"type": "VCOT_BLANK"}},
                ],
                "contentInfo": [
                    {"uuid": T1, "URL": file_url(self.tmp / "os-v1.img"), "iformat": "RAW"},
                    {"uuid": T2, "URL": file_url(self.tmp / "os-v2.img"), "iformat": "RAW"},
                ],
            },
        )

    def app_report(self, app: UUID = APP) -> dict[str, Any]:
        reports = self.orch.reports().to_json_dict()
        return next(a for a in reports["apps"] if a["AppID"] == str(app))


UPDATE, IMMEDIATE = 1, 2


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def deploy_and_update(world: World) -> None:
    world.orch.reconcile(world.config())
    assert world.rt.running[APP].version == "1"
    world.data.volumes[f"{DATA}#0"] = b"data-v1"
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[(S1, UPDATE)]))


def test_snapshot_on_update_captures_the_pre_update_config_and_retires_the_old_generation(
    world: World,
) -> None:
    deploy_and_update(world)
    report = world.app_report()
    assert report["appVersion"] == "2" and report["state"] == "RUNNING"
    [snap] = report["snapshots"]
    assert snap["id"] == S1 and snap["configVersion"] == "1" and snap["type"] == "SNAPSHOT_TYPE_APP_UPDATE"
    assert world.os.snapshots[(f"{OS}#0", S1)] == b"OS-v1"  # kept whole, by the purgeable backend
    assert f"{OS}#0" not in world.os.volumes and world.os.volumes[f"{OS}#1"] == b"OS-v2"
    assert world.data.snapshots[(f"{DATA}#0", S1)] == b"data-v1"
    assert [h.key for h in world.rt.running[APP].volumes] == [f"{OS}#1", f"{DATA}#0"]


def test_rollback_restores_volumes_and_reports_the_snapshot_version(world: World) -> None:
    deploy_and_update(world)
    world.data.volumes[f"{DATA}#0"] = b"broken"
    cfg = world.config(version="2", os_gen=1, snapshots=[(S1, UPDATE)], counter=1, active=S1)
    world.orch.reconcile(cfg)
    assert world.data.volumes[f"{DATA}#0"] == b"data-v1"
    assert world.os.volumes[f"{OS}#0"] == b"OS-v1"
    report = world.app_report()
    assert report["appVersion"] == "1" and [s["id"] for s in report["snapshots"]] == [S1]
    assert [h.key for h in world.rt.running[APP].volumes] == [f"{OS}#0", f"{DATA}#0"]
    # the controller's unchanged config does not re-apply the update it rolled back from
    world.orch.reconcile(cfg)
    assert world.app_report()["appVersion"] == "1"
    # a second rollback to the same snapshot works (a reference gap)
    world.data.volumes[f"{DATA}#0"] = b"broken again"
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[(S1, UPDATE)], counter=2, active=S1))
    assert world.data.volumes[f"{DATA}#0"] == b"data-v1"
    # the controller follows the rollback: the generation nothing names any more is freed
    world.orch.reconcile(world.config(version="1", os_gen=0, snapshots=[(S1, UPDATE)], counter=2, active=S1))
    assert world.app_report()["appVersion"] == "1"
    assert f"{OS}#1" not in world.os.volumes and world.os.volumes[f"{OS}#0"] == b"OS-v1"


def test_rollback_fires_only_when_the_counter_grows(world: World) -> None:
    deploy_and_update(world)
    world.data.volumes[f"{DATA}#0"] = b"changed"
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[(S1, UPDATE)], counter=0, active=S1))
    assert world.data.volumes[f"{DATA}#0"] == b"changed"


def test_rollback_to_unknown_snapshot_is_an_app_error_and_stops_that_config(world: World) -> None:
    deploy_and_update(world)
    world.orch.reconcile(
        world.config(version="3", os_gen=1, snapshots=[(S1, UPDATE), (S2, IMMEDIATE)], counter=1, active=S3)
    )
    report = world.app_report()
    assert any(S3 in e["description"] for e in report["appErr"])
    assert report["appVersion"] == "2"  # nothing else of that config was processed
    assert [s["id"] for s in report["snapshots"]] == [S1]


def test_deletion_is_reported_at_once_and_done_at_the_next_stop(world: World) -> None:
    deploy_and_update(world)
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[]))
    assert world.app_report()["snapshots"] == []
    assert (f"{DATA}#0", S1) in world.data.snapshots  # the app runs: not yet deleted
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[], activate=False))
    assert (f"{DATA}#0", S1) not in world.data.snapshots
    assert (f"{OS}#0", S1) not in world.os.snapshots


def test_deletion_error_is_reported_and_retried(world: World) -> None:
    deploy_and_update(world)
    world.data.fail("delete_snapshot", f"{DATA}#0")
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[], activate=False))
    [snap] = world.app_report()["snapshots"]
    assert snap["id"] == S1 and "deletion failed" in snap["snapErr"]["description"]
    world.data.heal()
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[], activate=False))
    assert world.app_report()["snapshots"] == []


def test_immediate_snapshot_restarts_an_app_whose_volumes_cannot_snapshot_live(world: World) -> None:
    world.orch.reconcile(world.config())
    stops = world.rt.stops
    world.orch.reconcile(world.config(snapshots=[(S1, IMMEDIATE)]))
    assert world.rt.stops == stops + 1 and APP in world.rt.running
    assert [s["id"] for s in world.app_report()["snapshots"]] == [S1]


def test_immediate_snapshot_without_downtime_when_every_volume_is_live(tmp_path: Path) -> None:
    world = World(tmp_path, data_backend=LIVE)
    world.orch.reconcile(world.config(with_os=False))  # only the data volume, on a live backend
    stops = world.rt.stops
    world.orch.reconcile(world.config(with_os=False, snapshots=[(S1, IMMEDIATE)]))
    assert world.rt.stops == stops
    assert [s["id"] for s in world.app_report()["snapshots"]] == [S1]


def test_live_snapshot_with_a_guest_agent_is_filesystem_consistent(tmp_path: Path) -> None:
    world = World(tmp_path, data_backend=LIVE)
    world.orch.reconcile(world.config(with_os=False))
    with tempfile.TemporaryDirectory(prefix="esqe-", dir="/tmp") as folder:
        sock = Path(folder) / "qga.sock"
        with FakeGuestAgent(sock) as fake:
            world.rt.agents[APP] = sock
            world.orch.reconcile(world.config(with_os=False, snapshots=[(S1, IMMEDIATE)]))
            assert not fake.frozen
            assert [c for c in fake.commands if "fsfreeze-" in c and "status" not in c] == [
                "guest-fsfreeze-freeze",
                "guest-fsfreeze-thaw",
            ]
    snap = world.orch.apps[APP].snapshots[S1]
    assert snap.consistency == "filesystem-consistent"
    assert "frozen for" in snap.consistency_detail
    assert world.orch.ledger.unfinished() == []


def test_live_snapshot_without_a_guest_agent_says_crash_consistent(tmp_path: Path) -> None:
    world = World(tmp_path, data_backend=LIVE)
    world.orch.reconcile(world.config(with_os=False, snapshots=[(S1, IMMEDIATE)]))
    world.orch.reconcile(world.config(with_os=False, snapshots=[(S1, IMMEDIATE), (S2, IMMEDIATE)]))
    first, second = world.orch.apps[APP].snapshots[S1], world.orch.apps[APP].snapshots[S2]
    assert first.consistency == "crash-consistent" and "not running" in first.consistency_detail
    assert second.consistency == "crash-consistent"
    assert second.consistency_detail == "the app has no guest-agent channel"


def test_a_live_snapshot_slower_than_the_bound_is_a_warning_on_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(tmp_path, data_backend=LIVE)
    world.orch.reconcile(world.config(with_os=False))
    check = world.data.check

    def slow(operation: str, volume_key: str) -> None:
        if operation.startswith("snapshot"):
            time.sleep(0.03)
        check(operation, volume_key)

    monkeypatch.setattr(world.data, "check", slow)
    monkeypatch.setenv("EVESNAP_LIVE_STALL_WARN_MS", "10")
    world.orch.reconcile(world.config(with_os=False, snapshots=[(S1, IMMEDIATE)]))
    snap = world.orch.apps[APP].snapshots[S1]
    assert snap.live_snapshot_ms is not None and snap.live_snapshot_ms >= 30
    warnings = [e["description"] for e in world.app_report()["appErr"]]
    assert any(f"live snapshot {S1} held the guest's disk I/O for about" in w for w in warnings), warnings
    monkeypatch.setenv("EVESNAP_LIVE_STALL_WARN_MS", "1000")
    world.orch.reconcile(world.config(with_os=False, snapshots=[(S1, IMMEDIATE), (S2, IMMEDIATE)]))
    assert not any("held the guest's disk I/O" in e["description"] for e in world.app_report()["appErr"])


def test_max_snapshots_evicts_the_oldest(world: World) -> None:
    world.orch.reconcile(world.config(snapshots=[(S1, IMMEDIATE)], max_snapshots=2))
    world.orch.reconcile(world.config(snapshots=[(S1, IMMEDIATE), (S2, IMMEDIATE)], max_snapshots=2))
    world.orch.reconcile(
        world.config(snapshots=[(S1, IMMEDIATE), (S2, IMMEDIATE), (S3, IMMEDIATE)], max_snapshots=2)
    )
    report = world.app_report()
    assert [s["id"] for s in report["snapshots"]] == [S2, S3]
    assert any("Too many snapshots requested. Max allowed: 2" in e["description"] for e in report["appErr"])


def test_an_evicted_snapshot_still_listed_is_not_taken_again(world: World) -> None:
    """No churn: the same config again (the controller still lists S1) changes nothing."""
    three = world.config(snapshots=[(S1, IMMEDIATE), (S2, IMMEDIATE), (S3, IMMEDIATE)], max_snapshots=2)
    world.orch.reconcile(world.config(snapshots=[(S1, IMMEDIATE), (S2, IMMEDIATE)], max_snapshots=2))
    world.orch.reconcile(three)
    for _ in range(3):
        world.orch.reconcile(three)
        report = world.app_report()
        assert [s["id"] for s in report["snapshots"]] == [S2, S3]
        said = [e["description"] for e in report["appErr"]]
        assert any(f"snapshot {S1} was evicted by max_snapshots" in d for d in said)
    world.orch.reconcile(world.config(snapshots=[(S2, IMMEDIATE), (S3, IMMEDIATE)], max_snapshots=2))
    world.orch.reconcile(
        world.config(snapshots=[(S1, IMMEDIATE), (S2, IMMEDIATE), (S3, IMMEDIATE)], max_snapshots=3)
    )
    assert [s["id"] for s in world.app_report()["snapshots"]] == [S2, S3, S1]  # dropped, then listed: new


def test_existing_id_is_idempotent(world: World) -> None:
    world.orch.reconcile(world.config(snapshots=[(S1, IMMEDIATE)]))
    stops = world.rt.stops
    world.orch.reconcile(world.config(snapshots=[(S1, IMMEDIATE)]))
    assert world.rt.stops == stops and len(world.app_report()["snapshots"]) == 1


def test_request_removed_before_it_ran_is_cancelled(world: World) -> None:
    world.orch.reconcile(world.config())
    world.orch.reconcile(world.config(snapshots=[(S1, UPDATE)]))  # waits for the next update
    world.orch.reconcile(world.config(snapshots=[]))
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[]))
    assert world.app_report()["snapshots"] == [] and not world.os.snapshots


def test_partial_snapshot_failure_leaves_nothing_behind(world: World) -> None:
    world.orch.reconcile(world.config())
    world.os.volumes[f"{OS}#0"] = b"os-data"
    world.data.fail("snapshot", f"{DATA}#0")
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[(S1, UPDATE)]))
    assert not world.os.snapshots and not world.data.snapshots
    snaps = world.app_report()["snapshots"]
    assert [s["id"] for s in snaps] == [S1] and "snapshot failed" in snaps[0]["snapErr"]["description"]


def test_one_apps_failure_does_not_stop_another(world: World) -> None:
    world.orch.reconcile(world.config(apps=2))
    cfg = world.config(apps=2, snapshots=[(S1, IMMEDIATE)])
    world.data.fail("snapshot", f"{DATA}#0")
    world.orch.reconcile(cfg)
    assert world.app_report(APP2)["state"] == "RUNNING"


def test_embedded_runtime_waits_for_the_embedder_to_stop_the_app(tmp_path: Path) -> None:
    """Something else runs the apps: evesnap asks for a stop, and the update with
    its snapshot happens once the embedder says the app stopped."""
    from evesnap_core.runtimes.embedded import EmbeddedRuntime

    world = World(tmp_path)
    embedded = EmbeddedRuntime()  # no stopper: evesnap cannot stop apps itself
    world.orch.runtime = Runtime(embedded)
    world.orch.reconcile(world.config())
    assert APP in embedded.start_requested
    embedded.set_running(APP)
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[(S1, UPDATE)]))
    report = world.app_report()
    assert APP in embedded.stop_requested and report["appVersion"] == "1"
    assert any("did not stop" in e["description"] for e in report["appErr"])
    assert not world.os.snapshots  # nothing touched while the app runs
    embedded.set_stopped(APP)  # the embedder stopped it
    world.orch.reconcile(world.config(version="2", os_gen=1, snapshots=[(S1, UPDATE)]))
    report = world.app_report()
    assert report["appVersion"] == "2" and [s["id"] for s in report["snapshots"]] == [S1]
    assert world.os.snapshots[(f"{OS}#0", S1)] == b"OS-v1"
    assert APP in embedded.start_requested  # and it is asked to start again


def test_embedded_runtime_with_a_stopper_stops_at_once(tmp_path: Path) -> None:
    from evesnap_core.runtimes.embedded import EmbeddedRuntime

    world = World(tmp_path)
    stopped: list[UUID] = []
    embedded = EmbeddedRuntime(stopper=lambda app: stopped.append(app) or True)
    world.orch.runtime = Runtime(embedded)
    world.orch.reconcile(world.config())
    embedded.set_running(APP)
    world.orch.reconcile(world.config(snapshots=[(S1, IMMEDIATE)]))
    assert stopped == [APP] and [s["id"] for s in world.app_report()["snapshots"]] == [S1]
