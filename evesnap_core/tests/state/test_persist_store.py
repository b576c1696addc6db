"""The durable store: the reference's layout, restore at start, quarantine, single
writer, permissions, the 0.1 layout carried over."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pluggy
import pytest

from evesnap_core.discovery import Registry
from evesnap_core.errors import LockHeld, StateError
from evesnap_core.handler_types import SnapshotInfo, VolumeHandle, VolumeSpec
from evesnap_core.model.config import AppInstanceConfig, DeviceConfig, SnapshotType
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.records import AppRecord, SnapshotRecord, VolumeRecord, VolumeSnapshot
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.state.lock import writer_lock
from evesnap_core.state.persist_store import PersistStore
from evesnap_core.testing.memory import InstantRuntime

APP = UUID("6a0b3b4e-6a7e-4c3f-9d5a-1f2e3d4c5b6a")
OTHER = UUID("7b1c4c5f-7b8f-4d40-8e6b-2a3f4e5d6c7b")
VOLUME = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
WHEN = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def app_config(app: UUID = APP, version: str = "1") -> AppInstanceConfig:
    return AppInstanceConfig.model_validate(
        {
            "uuidandversion": {"uuid": str(app), "version": version},
            "displayname": "db",
            "volumeRefList": [{"uuid": str(VOLUME), "generationCount": "1"}],
            "futureThing": {"kept": True},
        }
    )


def snapshot(
    sid: str, app: UUID = APP, parent: str | None = None, state: str = "available"
) -> SnapshotRecord:
    handle = VolumeHandle(uuid=VOLUME, generation=1, backend="qcow2", format="qcow2", location="/v/x.qcow2")
    info = SnapshotInfo(snapshot_id=sid, name=f"tag-{sid}", volume=VOLUME, generation=1, created=WHEN)
    return SnapshotRecord.of_config(
        app_config(app),
        id=sid,
        app=app,
        type=SnapshotType.SNAPSHOT_TYPE_APP_UPDATE,
        state=state,
        requested=WHEN,
        created=WHEN,
        parent=parent,
        volume_keys=[f"{VOLUME}#1"],
        volumes={f"{VOLUME}#1": VolumeSnapshot(handle=handle, info=info)},
    )


def filled(persist: Path) -> PersistStore:
    store = PersistStore(persist)
    store.load()
    record = AppRecord(
        uuid=APP, name="db", config=app_config(), last_rollback_counter=4, current_snapshot="s2"
    )
    record.snapshots = {"s1": snapshot("s1"), "s2": snapshot("s2", parent="s1", state="deleting")}
    store.save_app(record)
    store.save_app(AppRecord(uuid=OTHER, name="web", snapshots={"o1": snapshot("o1", app=OTHER)}))
    store.save_volume(
        VolumeRecord(spec=VolumeSpec(uuid=VOLUME, generation=1, size_bytes=1 << 20, format="qcow2"))
    )
    store.save_device(DeviceConfig())
    return store


def tree(path: Path) -> dict[str, str]:
    """Every file under `path` with a hash of its bytes: to show nothing changed."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_the_reference_layout_round_trips(tmp_path: Path) -> None:
    filled(tmp_path)
    folder = tmp_path / "snapshots" / "s1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "appInstanceConfig.json",
        "snapshotInstanceStatus.json",
        "volumesSnapshotStatus.json",
    ]
    status = json.loads((folder / "snapshotInstanceStatus.json").read_text())
    assert status["Snapshot"]["SnapshotID"] == "s1" and status["AppInstanceID"] == str(APP)
    assert status["ConfigVersion"]["Version"] == "1" and status["SchemaVersion"] == 3
    UUID(status["ConfigVersion"]["UUID"])  # EVE's UUIDandVersion
    volumes = json.loads((folder / "volumesSnapshotStatus.json").read_text())
    assert volumes["AppUUID"] == str(APP) and f"{VOLUME}#1" in volumes["EvesnapVolumes"]
    assert list(volumes["VolumeSnapshotMeta"]) == [str(VOLUME)]  # EVE's: by volume UUID

    apps, volumes_loaded = PersistStore(tmp_path).load()
    record = apps[APP]
    assert record.last_rollback_counter == 4 and record.current_snapshot == "s2"
    assert record.snapshots["s2"].state == "deleting"  # a pending deletion survives a reboot
    assert record.snapshots["s2"].parent == "s1"
    assert record.snapshots["s1"] == snapshot("s1")
    assert record.snapshots["s1"].app_config().model_extra == {"futureThing": {"kept": True}}
    assert set(apps[OTHER].snapshots) == {"o1"}
    assert list(volumes_loaded) == [f"{VOLUME}#1"]


def test_folders_are_0700_and_files_0600(tmp_path: Path) -> None:
    persist = tmp_path / "persist"
    filled(persist)
    for path in [persist, *persist.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:04o}"


def test_a_corrupt_snapshot_is_quarantined_and_reported_on_that_snapshot_only(tmp_path: Path) -> None:
    filled(tmp_path)
    (tmp_path / "snapshots" / "s1" / "volumesSnapshotStatus.json").write_text('{"SchemaVersion": 1, "Snap')
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert set(apps[APP].snapshots) == {"s2"} and set(apps[OTHER].snapshots) == {"o1"}
    [damaged] = store.damaged()
    assert (damaged.app, damaged.snapshot) == (APP, "s1")
    assert (
        "stored data is not JSON" in damaged.description
        and "volumesSnapshotStatus.json" in damaged.description
    )
    assert not (tmp_path / "snapshots" / "s1").exists()
    [aside] = (tmp_path / "evesnap" / "quarantine").iterdir()
    assert (aside / "s1" / "volumesSnapshotStatus.json").exists()

    # still reported after another restart, until an operator removes it; the agent reports it
    orchestrator = Orchestrator(_no_backends(), Runtime(InstantRuntime()), store=PersistStore(tmp_path))
    orchestrator.apps[APP].config = app_config()
    [report] = [a for a in orchestrator.reports().apps if a.app_id == str(APP)]
    [bad] = [s for s in report.snapshots if s.id == "s1"]
    assert bad.snap_err is not None and "not JSON" in bad.snap_err.description


def _no_backends() -> Registry:
    return Registry(pluggy.PluginManager("evesnap"))


def test_a_snapshot_folder_missing_a_file_is_quarantined(tmp_path: Path) -> None:
    filled(tmp_path)
    (tmp_path / "snapshots" / "o1" / "appInstanceConfig.json").unlink()
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert apps[OTHER].snapshots == {} and set(apps[APP].snapshots) == {"s1", "s2"}
    [damaged] = store.damaged()
    assert (damaged.app, damaged.snapshot) == (OTHER, "o1")
    assert "stored data missing in" in damaged.description and "appInstanceConfig.json" in damaged.description


def test_a_missing_mandatory_field_names_field_and_file(tmp_path: Path) -> None:
    filled(tmp_path)
    path = tmp_path / "snapshots" / "s1" / "snapshotInstanceStatus.json"
    doc = json.loads(path.read_text())
    del doc["ConfigVersion"]
    path.write_text(json.dumps(doc))
    store = PersistStore(tmp_path)
    store.load()
    [damaged] = store.damaged()
    assert damaged.description.startswith(f"Critical field ConfigVersion missing in stored data in {path}")


def test_files_that_disagree_are_quarantined(tmp_path: Path) -> None:
    filled(tmp_path)
    path = tmp_path / "snapshots" / "s1" / "volumesSnapshotStatus.json"
    doc = json.loads(path.read_text())
    doc["AppUUID"] = str(OTHER)
    path.write_text(json.dumps(doc))
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert "s1" not in apps[APP].snapshots
    assert "the files name different apps" in store.damaged()[0].description


def test_an_unreadable_app_state_keeps_its_snapshots(tmp_path: Path) -> None:
    filled(tmp_path)
    (tmp_path / "evesnap" / "apps" / f"{APP}.json").write_text("garbage")
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert set(apps[APP].snapshots) == {"s1", "s2"}  # matched by the app UUID in the folders
    [damaged] = store.damaged()
    assert damaged.app == APP and damaged.snapshot is None


def test_crash_leftovers_are_cleared_at_start(tmp_path: Path) -> None:
    filled(tmp_path)
    half_built = tmp_path / "snapshots" / ".new-s9.abcd1234"
    half_built.mkdir()
    (half_built / "snapshotInstanceStatus.json").write_text("{}")
    half_removed = tmp_path / "snapshots" / ".old-s0.abcd1234"
    half_removed.mkdir()
    temp = tmp_path / "evesnap" / "apps" / f".{APP}.json.x1y2.tmp"
    temp.write_text("{")
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert not half_built.exists() and not half_removed.exists() and not temp.exists()
    assert store.damaged() == [] and set(apps[APP].snapshots) == {"s1", "s2"}


def test_a_read_only_view_changes_nothing_and_still_reports(tmp_path: Path) -> None:
    filled(tmp_path)
    (tmp_path / "snapshots" / "s1" / "volumesSnapshotStatus.json").write_text("[")
    (tmp_path / "snapshots" / ".new-s9.abcd1234").mkdir()
    before = tree(tmp_path)
    store = PersistStore(tmp_path, writable=False)
    apps, _ = store.load()
    assert tree(tmp_path) == before and (tmp_path / "snapshots" / ".new-s9.abcd1234").exists()
    assert "s1" not in apps[APP].snapshots and store.damaged()[0].snapshot == "s1"


def test_removal_takes_the_whole_folder_and_uninstall_takes_every_snapshot(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.remove_snapshot(APP, "s1")
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["o1", "s2"]
    store.remove_app(OTHER)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["s2"]
    assert not (tmp_path / "evesnap" / "apps" / f"{OTHER}.json").exists()
    apps, _ = PersistStore(tmp_path).load()
    assert set(apps) == {APP} and set(apps[APP].snapshots) == {"s2"}


def test_saving_an_app_writes_new_snapshots_and_drops_gone_ones(tmp_path: Path) -> None:
    store = filled(tmp_path)
    apps, _ = (reborn := PersistStore(tmp_path)).load()
    record = apps[APP]
    del record.snapshots["s1"]
    record.snapshots["s3"] = snapshot("s3", parent="s2")
    reborn.save_app(record)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["o1", "s2", "s3"]
    assert store.damaged() == []


@pytest.mark.parametrize("bad", ["../evil", "a/b", ".hidden", "..", "x" * 129, "", "-rf", "a\x00b", "ü"])
def test_a_snapshot_id_that_cannot_name_a_folder_is_refused(tmp_path: Path, bad: str) -> None:
    store = filled(tmp_path)
    with pytest.raises(StateError, match="a snapshot id must be"):
        store.save_snapshot(snapshot("s1").model_copy(update={"id": bad}))
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["o1", "s1", "s2"]


def test_the_journal_survives_and_a_bad_entry_is_set_aside(tmp_path: Path) -> None:
    store = filled(tmp_path)
    intent = store.begin("snapshot", APP, "s3", {"volumes": "1"})
    (tmp_path / "evesnap" / "journal" / "bad.json").write_text('{"SchemaVersion": 1}')
    reborn = PersistStore(tmp_path)
    reborn.load()
    [left] = reborn.unfinished()
    assert left == {
        "intent": intent,
        "kind": "snapshot",
        "app": str(APP),
        "snapshot": "s3",
        "details": {"volumes": "1"},
    }
    assert "Critical field Kind missing" in reborn.damaged()[0].description
    reborn.commit(intent)
    assert PersistStore(tmp_path).unfinished() == []


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from evesnap_core.state.lock import writer_lock;"
            "writer_lock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as info:
            writer_lock(tmp_path)
        assert info.value.pid == holder.pid and str(holder.pid) in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    os.close(writer_lock(tmp_path))  # free again once the holder is gone, even killed


def test_state_of_evesnap_0_1_is_carried_over(tmp_path: Path) -> None:
    """0.1 kept state/apps/<uuid>.json with the snapshots inside."""
    old = tmp_path / "state"
    for sub in ("apps", "volumes", "journal"):
        (old / sub).mkdir(parents=True)
    record = AppRecord(uuid=APP, name="db", config=app_config(), last_rollback_counter=2)
    record.snapshots = {"s1": snapshot("s1"), "s2": snapshot("s2", parent="s1")}
    (old / "apps" / f"{APP}.json").write_text(record.model_dump_json())
    volume = VolumeRecord(spec=VolumeSpec(uuid=VOLUME, generation=1, size_bytes=1 << 20, format="qcow2"))
    (old / "volumes" / "abc.json").write_text(volume.model_dump_json())
    (old / "journal" / "i1.json").write_text(
        json.dumps({"kind": "delete", "app": str(APP), "snapshot": "s2"})
    )

    view = PersistStore(tmp_path, writable=False)  # a read-only look uses it as it is
    apps, _ = view.load()
    assert set(apps[APP].snapshots) == {"s1", "s2"} and old.exists()

    store = PersistStore(tmp_path)
    apps, volumes = store.load()
    assert apps[APP].last_rollback_counter == 2 and set(apps[APP].snapshots) == {"s1", "s2"}
    assert apps[APP].snapshots["s1"] == snapshot("s1") and list(volumes) == [volume.key]
    assert [i["snapshot"] for i in store.unfinished()] == ["s2"]
    assert not old.exists() and len(list(tmp_path.glob("state.migrated-*"))) == 1
    assert (tmp_path / "snapshots" / "s2" / "snapshotInstanceStatus.json").exists()
    apps_again, _ = PersistStore(tmp_path).load()
    assert apps_again[APP].snapshots == apps[APP].snapshots
