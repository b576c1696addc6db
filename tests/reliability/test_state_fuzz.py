"""The state loader under hostile files (hypothesis): one state file truncated,
overwritten with garbage, or with a field removed, retyped or replaced; loading
never raises, what could not be read is reported naming its file (and the field
when one is wrong), and the other app's snapshots always load.

``.venv/bin/pytest -q tests/reliability/test_state_fuzz.py`` (1,000 cases by
default, 10,000 with ``-m slow``)."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evesnap_core.handler_types import SnapshotInfo, VolumeHandle
from evesnap_core.model.config import AppInstanceConfig, SnapshotType
from evesnap_core.records import AppRecord, SnapshotRecord, VolumeSnapshot
from evesnap_core.state.persist_store import PersistStore

APP = UUID("6a0b3b4e-6a7e-4c3f-9d5a-1f2e3d4c5b6a")
OTHER = UUID("7b1c4c5f-7b8f-4d40-8e6b-2a3f4e5d6c7b")
VOLUME = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")


def record(app: UUID, sids: list[str]) -> AppRecord:
    config = AppInstanceConfig.model_validate({"uuidandversion": {"uuid": str(app), "version": "1"}})
    handle = VolumeHandle(uuid=VOLUME, generation=1, backend="qcow2", format="qcow2", location="/v/x.qcow2")
    made = AppRecord(uuid=app, name=str(app)[:4], config=config, last_rollback_counter=3)
    for sid in sids:
        info = SnapshotInfo(
            snapshot_id=sid,
            name=f"t-{sid}",
            volume=VOLUME,
            generation=1,
            created=datetime(2026, 1, 1, tzinfo=UTC),
        )
        made.snapshots[sid] = SnapshotRecord.of_config(
            config,
            id=sid,
            app=app,
            type=SnapshotType.SNAPSHOT_TYPE_APP_UPDATE,
            state="available",
            volume_keys=[f"{VOLUME}#1"],
            volumes={f"{VOLUME}#1": VolumeSnapshot(handle=handle, info=info)},
        )
    return made


def fill(persist: Path) -> list[Path]:
    store = PersistStore(persist)
    store.load()
    store.save_app(record(APP, ["a1", "a2"]))
    store.save_app(record(OTHER, ["o1"]))
    return sorted(p for p in persist.rglob("*.json") if "o1" not in p.parts and f"{OTHER}" not in p.name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out += paths(v, (*prefix, i))
    return out


@st.composite
def damage(draw: st.DrawFn, raw: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "garbage", "drop", "replace"]))
    if kind == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    doc = json.loads(raw)
    where = draw(st.sampled_from(paths(doc)))
    node = doc
    for key in where[:-1]:
        node = node[key]
    if kind == "drop":
        del node[where[-1]]
    else:
        node[where[-1]] = draw(json_values)
    return json.dumps(doc).encode()


def check_damage(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix="evesnap-fuzz-") as tmp:
        persist = Path(tmp)
        files = fill(persist)
        victim = data.draw(st.sampled_from(files))
        original = victim.read_bytes()
        victim.write_bytes(data.draw(damage(original)))

        store = PersistStore(persist)
        apps, _ = store.load()  # never raises

        assert set(apps[OTHER].snapshots) == {"o1"}  # the other app is untouched
        damaged = store.damaged()
        for entry in damaged:
            assert victim.name in entry.description or victim.parent.name in entry.description, entry
        if not damaged:  # it loaded: then it said what it tolerated, or the change was harmless
            assert APP in apps
        again, _ = PersistStore(persist).load()  # and the next start is as calm
        assert set(again[OTHER].snapshots) == {"o1"}


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_state_file_never_stops_the_load(data: st.DataObject) -> None:
    check_damage(data)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_state_file_never_stops_the_load_10000(data: st.DataObject) -> None:
    check_damage(data)
