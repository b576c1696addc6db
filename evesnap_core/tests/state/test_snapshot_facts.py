"""The facts of each snapshot folder in its app's file (`files.SnapshotFacts`): a
restart takes a folder's record from there, reading none of its files, only when
the folder is exactly as it was when evesnap wrote (or last read) it; any change
to it (a file rewritten, even in place and to the same size, a temporary file
left, the folder replaced) has it read in full, as before; the records are the
same either way."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.records import AppRecord
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.state import persist_store
from evesnap_core.state.persist_store import PersistStore
from evesnap_core.testing.memory import InstantRuntime, MemoryBackend

from .test_persist_store import APP, OTHER, filled, snapshot


class Reads:
    """Which snapshot files the load read (the full path), by folder name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folders: set[str] = set()
        original = persist_store._slurp_stored

        def counted(path: str) -> bytes:
            self.folders.add(Path(path).parent.name)
            return original(path)

        monkeypatch.setattr(persist_store, "_slurp_stored", counted)


def test_unchanged_folders_are_not_read_and_restore_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled(tmp_path)
    facts = json.loads((tmp_path / "evesnap" / "apps" / f"{APP}.json").read_text())["Snapshots"]
    assert sorted(facts) == ["s1", "s2"] and len(facts["s1"]["Stamp"]) == 15
    reads = Reads(monkeypatch)
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert reads.folders == set()
    assert apps[APP].snapshots["s1"] == snapshot("s1")
    assert apps[APP].snapshots["s2"] == snapshot("s2", parent="s1", state="deleting")
    assert set(apps[OTHER].snapshots) == {"o1"}
    assert store.damaged() == [] and store.warnings == []
    # an unchanged record is not written again after the restart either
    before = {p: p.stat().st_ino for p in (tmp_path / "snapshots").rglob("*.json")}
    store.save_snapshot(apps[APP].snapshots["s1"])
    assert {p: p.stat().st_ino for p in (tmp_path / "snapshots").rglob("*.json")} == before


def test_a_file_changed_in_place_to_the_same_size_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled(tmp_path)
    path = tmp_path / "snapshots" / "s1" / "snapshotInstanceStatus.json"
    raw = path.read_bytes()
    changed = raw.replace(b'"State":"available"', b'"State":"requested"')
    assert changed != raw and len(changed) == len(raw)
    with path.open("r+b") as f:  # the same inode, the same size: only its times say
        f.write(changed)
    reads = Reads(monkeypatch)
    apps, _ = PersistStore(tmp_path).load()
    assert reads.folders == {"s1"}
    assert apps[APP].snapshots["s1"].state == "requested"


def test_a_damaged_file_behind_unchanged_facts_is_still_quarantined(tmp_path: Path) -> None:
    filled(tmp_path)
    (tmp_path / "snapshots" / "s1" / "volumesSnapshotStatus.json").write_text('{"SchemaVersion": 2, "Snap')
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert set(apps[APP].snapshots) == {"s2"}
    [damaged] = store.damaged()
    assert (damaged.app, damaged.snapshot) == (APP, "s1") and "not JSON" in damaged.description


def test_a_temporary_file_left_in_a_folder_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled(tmp_path)
    leftover = tmp_path / "snapshots" / "o1" / ".snapshotInstanceStatus.json.x1y2.tmp"
    leftover.write_bytes(b"half")
    reads = Reads(monkeypatch)
    apps, _ = PersistStore(tmp_path).load()
    assert reads.folders == {"o1"} and not leftover.exists()
    assert set(apps[OTHER].snapshots) == {"o1"}


def test_a_folder_made_again_under_the_same_id_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = filled(tmp_path)
    remade = snapshot("o1", app=OTHER, state="deleting")
    store.remove_snapshot(OTHER, "o1")
    fresh = PersistStore(tmp_path)  # another writer (the app's file keeps the old facts)
    fresh.load()
    fresh.save_snapshot(remade)
    reads = Reads(monkeypatch)
    apps, _ = PersistStore(tmp_path).load()
    assert "o1" in reads.folders and apps[OTHER].snapshots["o1"].state == "deleting"


def test_two_apps_claiming_one_folder_have_it_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filled(tmp_path)
    mine, theirs = (tmp_path / "evesnap" / "apps" / f"{a}.json" for a in (APP, OTHER))
    doc = json.loads(theirs.read_text())
    doc["Snapshots"]["s1"] = json.loads(mine.read_text())["Snapshots"]["s1"]
    doc["Snapshots"]["s1"]["Record"]["app"] = str(OTHER)
    theirs.write_text(json.dumps(doc))
    reads = Reads(monkeypatch)
    apps, _ = PersistStore(tmp_path).load()
    assert "s1" in reads.folders
    assert "s1" in apps[APP].snapshots and "s1" not in apps[OTHER].snapshots


def test_an_app_file_of_schema_1_loads_and_gets_its_facts_at_the_next_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled(tmp_path)
    path = tmp_path / "evesnap" / "apps" / f"{APP}.json"
    doc = json.loads(path.read_text())
    del doc["Snapshots"]
    doc["SchemaVersion"] = 1
    path.write_text(json.dumps(doc))  # as evesnap before schema 2 wrote it
    reads = Reads(monkeypatch)
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert reads.folders == {"s1", "s2"} and store.warnings == [] and store.damaged() == []
    assert apps[APP].last_rollback_counter == 4 and apps[APP].snapshots["s1"] == snapshot("s1")
    store.save_app(apps[APP])
    assert json.loads(path.read_text())["SchemaVersion"] == 2
    reads.folders.clear()
    PersistStore(tmp_path).load()
    assert reads.folders == set()


def test_facts_kept_over_a_restart_are_written_again_with_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled(tmp_path)
    store = PersistStore(tmp_path)
    apps, _ = store.load()  # every folder from its facts
    record = apps[APP]
    record.last_rollback_counter = 9
    store.save_app(record)  # the app's file again: the facts as loaded go with it
    reads = Reads(monkeypatch)
    again, _ = PersistStore(tmp_path).load()
    assert reads.folders == set() and again[APP].last_rollback_counter == 9
    assert again[APP].snapshots == apps[APP].snapshots


def device(apps: int, snapshots: list[list[str]]) -> DeviceConfig:
    data: dict[str, Any] = {"apps": [], "volumes": []}
    for a in range(apps):
        vols = [str(uuid.UUID(int=a * 4 + v + 1)) for v in (0, 1)]
        data["volumes"] += [
            {"uuid": v, "maxsizebytes": 1 << 20, "origin": {"type": "VCOT_BLANK"}} for v in vols
        ]
        data["apps"].append(
            {
                "uuidandversion": {"uuid": str(UUID(int=(1 << 64) + a)), "version": "1"},
                "displayname": f"app{a}",
                "activate": True,
                "volumeRefList": [{"uuid": v} for v in vols],
                "snapshot": {
                    "maxSnapshots": 3,
                    "snapshots": [{"id": sid, "type": "SNAPSHOT_TYPE_IMMEDIATE"} for sid in snapshots[a]],
                },
            }
        )
    return parse_model(DeviceConfig, data)


def full_read(persist: Path, monkeypatch: pytest.MonkeyPatch) -> dict[UUID, AppRecord]:
    with monkeypatch.context() as m:
        m.setattr(PersistStore, "_unchanged_snapshot", lambda *_: None)
        apps, _ = PersistStore(persist, writable=False).load()
    return apps


def test_after_real_work_the_facts_give_what_reading_every_folder_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = MemoryBackend()
    registry = load_backends(
        tmp_path,
        extra=[("memory", lambda _ctx: backend)],
        environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,purgeable,zfs,reflink"},
    )
    sid = [str(UUID(int=(2 << 64) + n)) for n in range(8)]
    rounds = [
        [[sid[0], sid[1]], [sid[2]], []],
        [[sid[1], sid[3]], [sid[2], sid[4]], [sid[5]]],  # s0 deleted, others taken
        [[sid[3], sid[6], sid[7]], [], [sid[5]]],  # a second app loses all of its
    ]
    for config in rounds:
        orchestrator = Orchestrator(registry, Runtime(InstantRuntime()), store=PersistStore(tmp_path))
        orchestrator.reconcile(device(3, config))
        local = orchestrator.snapshot_now(UUID(int=(1 << 64)))
        orchestrator.rename_snapshot(UUID(int=(1 << 64)), local, "renamed after its app's save")
        reads = Reads(monkeypatch)
        restored, _ = PersistStore(tmp_path).load()
        assert reads.folders == {local}  # renamed without its app saved since: read in full
        monkeypatch.undo()
        assert restored == full_read(tmp_path, monkeypatch) == orchestrator.apps


def test_an_unchanged_app_is_not_written_again_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled(tmp_path)
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    written: list[Path] = []
    monkeypatch.setattr(persist_store, "atomic_write", lambda path, *_a, **_k: written.append(path))
    store.save_app(apps[APP])  # as a no-op reconcile does, for every app
    assert written == []
    apps[APP].snapshots["s1"].display_name = "renamed"
    store.save_snapshot(apps[APP].snapshots["s1"])
    store.save_app(apps[APP])
    assert sorted(p.name for p in written) == [f"{APP}.json", "snapshotInstanceStatus.json"]
