"""The reader's fast path (pydantic-core on the bytes) and its detailed path (the
field walk) give the same value, the same warnings and the same error, for
files as evesnap writes them and for files that differ: a field dropped, an
unknown one added, a field under its Python name, a null, another schema
version. The fast path is only taken for a file exactly as evesnap writes it."""

from __future__ import annotations

import gc
import json
import logging
import shutil
import weakref
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from evesnap_core.errors import StateError
from evesnap_core.handler_types import ReadOnlyExport, SnapshotInfo, VolumeHandle, VolumeSpec
from evesnap_core.model.config import AppInstanceConfig, DeviceConfig, SnapshotType
from evesnap_core.records import AppRecord, Problem, SnapshotRecord, VolumeRecord, VolumeSnapshot
from evesnap_core.state import persist_store, stored
from evesnap_core.state.files import (
    APP_CONFIG,
    SNAPSHOT_STATUS,
    VOLUMES_STATUS,
    AppState,
    DeviceState,
    Intent,
    QuarantineNote,
    SnapshotFacts,
    SnapshotInstanceStatus,
    VolumeState,
)
from evesnap_core.state.persist_store import PersistStore, snapshot_files
from evesnap_core.state.stored import StoredFile, StoredModel, parse_stored

APP = UUID("6a0b3b4e-6a7e-4c3f-9d5a-1f2e3d4c5b6a")
VOLUME = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
WHEN = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def app_config() -> AppInstanceConfig:
    return AppInstanceConfig.model_validate(
        {
            "uuidandversion": {"uuid": str(APP), "version": "3"},
            "displayname": "db",
            "volumeRefList": [{"uuid": str(VOLUME), "generationCount": "1"}],
            "futureThing": {"kept": True, "n": 1.5},
        }
    )


def snapshot(sid: str = "s1") -> SnapshotRecord:
    handle = VolumeHandle(uuid=VOLUME, generation=1, backend="qcow2", format="qcow2", location="/v/x.qcow2")
    info = SnapshotInfo(snapshot_id=sid, name=f"tag-{sid}", volume=VOLUME, generation=1, created=WHEN)
    return SnapshotRecord.of_config(
        app_config(),
        id=sid,
        app=APP,
        type=SnapshotType.SNAPSHOT_TYPE_APP_UPDATE,
        state="available",
        requested=WHEN,
        created=WHEN,
        parent="s0",
        display_name="before upgrade",
        error=Problem(description="slow", time=WHEN, severity="warning"),
        exports={"e1": ReadOnlyExport(export_id="e1", kind="path", path=Path("/run/x"))},
        volume_keys=[f"{VOLUME}#1"],
        volumes={f"{VOLUME}#1": VolumeSnapshot(handle=handle, info=info)},
    )


class Item(StoredModel):
    name: str = Field(alias="Name")
    size: int = Field(0, alias="Size")
    tags: list[str] = Field(default_factory=list, alias="Tags")


class Listing(StoredFile):
    items: list[Item] = Field(alias="Items")
    by_name: dict[str, Item] = Field(default_factory=dict, alias="ByName")
    first: Item | None = Field(None, alias="First")


def documents() -> list[tuple[type[StoredFile], dict[str, Any]]]:
    """One file of each kind, as evesnap writes it."""
    files = snapshot_files(snapshot())
    record = AppRecord(
        uuid=APP, name="db", config=app_config(), last_rollback_counter=4, current_snapshot="s1"
    )
    volume = VolumeRecord(spec=VolumeSpec(uuid=VOLUME, generation=1, size_bytes=1 << 20), created=WHEN)
    values: list[StoredFile] = [
        files[SNAPSHOT_STATUS],
        files[VOLUMES_STATUS],
        files[APP_CONFIG],
        AppState(
            schema_version=AppState.SCHEMA,
            app_instance_id=APP,
            app=record,
            snapshots={
                "s1": SnapshotFacts(stamp=tuple(range(15)), digests=("a", "b", "c"), record=snapshot())
            },
        ),
        VolumeState(schema_version=1, volume=volume),
        DeviceState(schema_version=1, config=DeviceConfig()),
        Intent(schema_version=1, kind="snapshot", app_instance_id=APP, snapshot_id="s1", details={"a": "b"}),
        QuarantineNote(schema_version=1, reason="r", original="/o", app_instance_id=APP, time=WHEN),
        Listing(
            schema_version=1,
            items=[Item(name="a", size=1), Item(name="b", tags=["x"])],
            by_name={"a": Item(name="a")},
            first=Item(name="c"),
        ),
    ]
    return [(type(v), json.loads(v.dump())) for v in values]


DOCUMENTS = documents()


def nodes(doc: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every JSON object in `doc`, with its path."""
    found = []
    if isinstance(doc, dict):
        found.append((path, doc))
        for key, value in doc.items():
            found += nodes(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += nodes(value, (*path, i))
    return found


NOW_DEFAULTS = {"time", "created"}
"""Not dropped: their default is the time of reading, different on each path."""
PYTHON_NAMES = {"SchemaVersion": "schema_version", "Parent": "parent", "Name": "name", "Size": "size"}


@st.composite
def altered(draw: st.DrawFn) -> tuple[type[StoredFile], str]:
    """A document of one kind, possibly with a few changes a person or another version makes."""
    model, original = draw(st.sampled_from(DOCUMENTS))
    doc = json.loads(json.dumps(original))
    for _ in range(draw(st.integers(0, 3))):
        _, node = draw(st.sampled_from(nodes(doc)))
        change = draw(st.sampled_from(["drop", "add", "rename", "null", "version"]))
        if change == "add":
            node[draw(st.sampled_from(["Future", "Color", "x"]))] = draw(
                st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just({"k": [1]}))
            )
        elif change == "version":
            doc["SchemaVersion"] = draw(st.sampled_from([1, 2, 0, -1, True, 1.0, "1", None, 10**30]))
        elif node:
            key = draw(st.sampled_from(sorted(node)))
            if change == "drop" and key not in NOW_DEFAULTS:
                del node[key]
            elif change == "null":
                node[key] = None
            elif key in PYTHON_NAMES:
                node[PYTHON_NAMES[key]] = node.pop(key)
    return model, json.dumps(doc, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))


def outcome(model: type[StoredFile], raw: str, fast: bool) -> tuple[str, object, list[str]]:
    try:
        loaded = parse_stored(model, raw, "/persist/f.json", fast=fast)
    except StateError as exc:
        return "error", str(exc), []
    return "value", (loaded.value, loaded.value.dump()), loaded.warnings


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(altered())
def test_fast_and_detailed_paths_agree(case: tuple[type[StoredFile], str]) -> None:
    model, raw = case
    assert outcome(model, raw, fast=True) == outcome(model, raw, fast=False)
    assert outcome(model, raw.encode(), fast=True) == outcome(model, raw, fast=False)


@pytest.mark.parametrize(("model", "doc"), DOCUMENTS, ids=[m.__name__ for m, _ in DOCUMENTS])
def test_a_file_as_evesnap_writes_it_takes_the_fast_path(
    model: type[StoredFile], doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = model.model_validate(doc).dump()
    expected = parse_stored(model, raw, "f", fast=False)

    def refuse(*_: object) -> None:
        raise AssertionError("the detailed path was taken")

    monkeypatch.setattr(stored, "_parse_detailed", refuse)
    loaded = parse_stored(model, raw, "f")
    assert loaded.value == expected.value and loaded.warnings == expected.warnings == []


@pytest.mark.parametrize("depth", [stored.MAX_STATE_DEPTH, stored.MAX_STATE_DEPTH + 1, 100_000])
def test_a_deeply_nested_file_is_bounded_on_the_fast_path_too(depth: int) -> None:
    """The fast path does not count brackets itself: pydantic-core's parser refuses what
    is nested past MAX_STATE_DEPTH (an upgrade that raised its limit fails here), and
    the detailed path then names the depth; a file within the bound reads on both."""
    doc = json.loads(snapshot_files(snapshot())[SNAPSHOT_STATUS].dump())
    inner = depth - 1  # the document itself is the first level
    raw = json.dumps(doc | {"Future": "@"}).replace('"@"', "[" * inner + "]" * inner)
    assert stored.too_deep(raw) == (depth > stored.MAX_STATE_DEPTH)
    if depth > stored.MAX_STATE_DEPTH:
        with pytest.raises(ValueError, match="recursion limit"):
            SnapshotInstanceStatus.model_validate_json(raw)
        for fast in (True, False):
            with pytest.raises(StateError, match=f"nested more than {stored.MAX_STATE_DEPTH} levels deep"):
                parse_stored(SnapshotInstanceStatus, raw, "f", fast=fast)
    else:
        assert outcome(SnapshotInstanceStatus, raw, fast=True) == outcome(
            SnapshotInstanceStatus, raw, fast=False
        )
        assert outcome(SnapshotInstanceStatus, raw, fast=True)[0] == "value"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(Future=1),  # unknown field
        lambda d: d.pop("Parent"),  # missing optional
        lambda d: d["Snapshot"].pop("DisplayName"),  # nested missing optional
        lambda d: d["Snapshot"].update(Color="red"),  # nested unknown
        lambda d: d.pop("AppInstanceID"),  # missing mandatory
        lambda d: d.update(SchemaVersion=d["SchemaVersion"] + 1),  # newer schema
    ],
    ids=["unknown", "missing optional", "nested missing optional", "nested unknown", "mandatory", "newer"],
)
def test_any_difference_takes_the_detailed_path(change: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(snapshot_files(snapshot())[SNAPSHOT_STATUS].dump())
    change(doc)
    taken = []
    detailed = stored._parse_detailed

    def spy(*args: Any) -> Any:
        taken.append(True)
        return detailed(*args)

    monkeypatch.setattr(stored, "_parse_detailed", spy)
    if "AppInstanceID" in doc:
        parse_stored(SnapshotInstanceStatus, json.dumps(doc), "f")
    else:
        with pytest.raises(StateError, match="Critical field AppInstanceID missing"):
            parse_stored(SnapshotInstanceStatus, json.dumps(doc), "f")
    assert taken


def test_a_store_loads_the_same_records_and_warnings_on_either_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole persist folder, some files as evesnap wrote them and some changed by hand."""
    persist = tmp_path / "p"
    store = PersistStore(persist)
    store.load()
    record = AppRecord(uuid=APP, name="db", config=app_config(), last_rollback_counter=4)
    record.snapshots = {sid: snapshot(sid) for sid in ("s1", "s2", "s3", "s4")}
    store.save_app(record)
    store.save_volume(VolumeRecord(spec=VolumeSpec(uuid=VOLUME, generation=1), created=WHEN))
    store.save_device(DeviceConfig())
    edits = {
        f"snapshots/s2/{SNAPSHOT_STATUS}": lambda d: d.pop("Exports"),
        f"snapshots/s3/{VOLUMES_STATUS}": lambda d: d.update(Future={"x": 1}),
        f"snapshots/s4/{APP_CONFIG}": lambda d: d.pop("AppInstanceID"),  # set aside
        f"evesnap/apps/{APP}.json": lambda d: d["App"].pop("name"),
    }
    for name, edit in edits.items():
        path = persist / name
        doc = json.loads(path.read_bytes())
        edit(doc)
        path.write_text(json.dumps(doc))

    def load(fast: bool) -> tuple[Any, ...]:
        copy = tmp_path / f"copy-{fast}"
        _copy_tree(persist, copy)
        monkeypatch.setattr(persist_store, "parse_stored", partial(parse_stored, fast=fast))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            reader = PersistStore(copy)
            apps, volumes = reader.load()
            device = reader.load_device()
        where = str(copy)
        return (
            json.loads(json.dumps({str(k): v.model_dump(mode="json") for k, v in apps.items()})),
            {k: v.model_dump(mode="json") for k, v in volumes.items()},
            device,
            [w.replace(where, "P") for w in reader.warnings],
            [d.description.split("; moved to")[0].replace(where, "P") for d in reader.damaged()],
            sorted(r.getMessage().replace(where, "P") for r in caplog.records),
        )

    fast, detailed = load(True), load(False)
    assert fast == detailed
    apps, _, _, warnings, damaged, _ = fast
    assert set(apps[str(APP)]["snapshots"]) == {"s1", "s2", "s3"}
    assert any("optional field Exports missing" in w for w in warnings)
    assert any("unknown field Future" in w for w in warnings)
    assert damaged == [f"Critical field AppInstanceID missing in stored data in P/snapshots/s4/{APP_CONFIG}"]


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    target.chmod(0o700)


def _one_snapshot_store(persist: Path) -> None:
    store = PersistStore(persist)
    store.load()
    record = AppRecord(uuid=APP, name="db", config=app_config())
    record.snapshots = {"s1": snapshot("s1")}
    store.save_app(record)


def test_leftovers_inside_a_snapshot_folder_are_cleared_as_it_is_read(tmp_path: Path) -> None:
    _one_snapshot_store(tmp_path)
    temp = tmp_path / "snapshots" / "s1" / f".{SNAPSHOT_STATUS}.x1y2.tmp"
    temp.write_text("{")
    keep = tmp_path / "snapshots" / "s1" / ".tmp"  # not a name an atomic write leaves
    keep.write_text("")
    read_only = PersistStore(tmp_path, writable=False)
    read_only.load()
    assert temp.exists()
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert not temp.exists() and keep.exists()
    assert store.damaged() == [] and set(apps[APP].snapshots) == {"s1"}


def test_a_state_file_that_cannot_be_read_is_set_aside(tmp_path: Path) -> None:
    _one_snapshot_store(tmp_path)
    (tmp_path / "evesnap" / "volumes" / "odd.json").mkdir()
    store = PersistStore(tmp_path)
    store.load()
    (damaged,) = store.damaged()
    assert damaged.description.startswith(
        f"stored data is a directory, not a regular file in {tmp_path}/evesnap/volumes/odd.json"
    )


def test_a_restart_rewrites_nothing_that_did_not_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _one_snapshot_store(tmp_path)
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    written: list[Path] = []
    monkeypatch.setattr(persist_store, "atomic_write", lambda path, data: written.append(path))
    for record in apps.values():
        store.save_app(record)
        for snap in record.snapshots.values():
            store.save_snapshot(snap)
    assert written == []


@pytest.mark.parametrize("odd_key", [False, True], ids=["plain", "a config field named Snapshots"])
def test_a_restart_takes_each_app_record_as_its_file_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd_key: bool
) -> None:
    """An unchanged app after a restart is not dumped into a new file: the record's
    part of the file is what save_app compares with (not a dump made while loading).
    A controller's unknown field that looks like the file's own key cuts that part
    wrong: the file is then written once more, and still reads back the same."""
    config = app_config()
    if odd_key:
        config = AppInstanceConfig.model_validate(
            config.model_dump(by_alias=True) | {"x": {"a": 1, "Snapshots": {"s1": 2}}}
        )
    store = PersistStore(tmp_path)
    store.load()
    record = AppRecord(uuid=APP, name="db", config=config, deployed=config)
    record.snapshots = {"s1": snapshot("s1")}
    store.save_app(record)
    dumps: list[object] = []
    original_dump = AppRecord.model_dump_json

    def counted(self: AppRecord, **kwargs: Any) -> str:
        dumps.append(self)
        return original_dump(self, **kwargs)

    monkeypatch.setattr(AppRecord, "model_dump_json", counted)
    store = PersistStore(tmp_path)
    apps, _ = store.load()
    assert dumps == []
    built: list[object] = []

    class Counted(AppState):
        def __init__(self, **fields: Any) -> None:
            built.append(fields)
            super().__init__(**fields)

    monkeypatch.setattr(persist_store, "AppState", Counted)
    store.save_app(apps[APP])
    assert len(built) == (1 if odd_key else 0)
    monkeypatch.undo()
    again, _ = PersistStore(tmp_path).load()
    assert again[APP] == apps[APP] and again[APP].config == config


def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    """The collector is paused while reading, nothing is left frozen, and a cycle made
    before the load and dropped after it is still collected."""

    class Node:
        other: Node | None = None

    _one_snapshot_store(tmp_path)
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    assert gc.isenabled()
    PersistStore(tmp_path).load()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    del a, b
    gc.collect()
    assert gone() is None
    gc.disable()
    try:
        PersistStore(tmp_path).load()
        assert not gc.isenabled()
    finally:
        gc.enable()
