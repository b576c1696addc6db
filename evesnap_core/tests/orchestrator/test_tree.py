"""The snapshot tree's reading rules: parents first, orphans as roots, cycles cut,
descendants deepest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from evesnap_core.model.config import AppInstanceConfig, SnapshotType
from evesnap_core.orchestrator.tree import children, descendants, walk
from evesnap_core.records import AppRecord, SnapshotRecord

APP = UUID("6a0b3b4e-6a7e-4c3f-9d5a-1f2e3d4c5b6a")
T0 = datetime(2026, 12, 1, tzinfo=UTC)
CONFIG = AppInstanceConfig.model_validate({"uuidandversion": {"uuid": str(APP), "version": "1"}})


def app(*edges: tuple[str, str | None], current: str | None = None) -> AppRecord:
    """Snapshots in creation order, each (id, parent)."""
    record = AppRecord(uuid=APP, current_snapshot=current)
    for n, (sid, parent) in enumerate(edges):
        record.snapshots[sid] = SnapshotRecord.of_config(
            CONFIG,
            id=sid,
            app=APP,
            type=SnapshotType.SNAPSHOT_TYPE_IMMEDIATE,
            state="available",
            created=T0 + timedelta(minutes=n),
            parent=parent,
        )
    return record


def test_parents_first_siblings_oldest_first() -> None:
    record = app(("a", None), ("b", "a"), ("c", "b"), ("d", "a"), ("e", None), current="d")
    assert [(n.snapshot.id, n.depth, n.current) for n in walk(record)] == [
        ("a", 0, False),
        ("b", 1, False),
        ("c", 2, False),
        ("d", 1, True),
        ("e", 0, False),
    ]


def test_a_snapshot_whose_parent_is_gone_is_a_root_not_hidden() -> None:
    record = app(("b", "gone"), ("c", "b"))
    assert [n.snapshot.id for n in walk(record)] == ["b", "c"]
    assert [c.id for c in children(record, None)] == ["b"]


def test_a_cycle_in_damaged_records_neither_loops_nor_hides() -> None:
    record = app(("a", "b"), ("b", "a"), ("c", None))
    assert sorted(n.snapshot.id for n in walk(record)) == ["a", "b", "c"]
    assert {d.id for d in descendants(record, "a")} == {"b"}


def test_descendants_deepest_first() -> None:
    record = app(("a", None), ("b", "a"), ("c", "b"), ("d", "a"), ("e", "c"))
    assert [d.id for d in descendants(record, "a")] == ["e", "c", "b", "d"]
    assert descendants(record, "e") == []
