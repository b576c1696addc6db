"""Reports print in the proto3 JSON mapping and parse back."""

from __future__ import annotations

from datetime import UTC, datetime

from evesnap_core.model.config import SnapshotType
from evesnap_core.model.info import (
    ErrorInfo,
    Severity,
    VolumeResources,
    ZInfoApp,
    ZInfoSnapshot,
    ZInfoVolume,
    ZSwState,
)
from evesnap_core.model.validation import parse_model


def test_zinfo_app_prints_json_names_enum_names_and_timestamps() -> None:
    app = ZInfoApp(
        app_id="6ba7b810-9dad-41d1-80b4-00c04fd430c8",
        app_version="2",
        state=ZSwState.RUNNING,
        snapshots=[
            ZInfoSnapshot(
                id="s1",
                config_version="1",
                create_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                type=SnapshotType.SNAPSHOT_TYPE_IMMEDIATE,
                snap_err=ErrorInfo(description="rollback failed", severity=Severity.SEVERITY_ERROR),
            )
        ],
    )
    out = app.to_json_dict()
    assert out["AppID"] == app.app_id and out["state"] == "RUNNING"
    snap = out["snapshots"][0]
    assert snap["createTime"] == "2026-01-02T03:04:05Z"
    assert snap["type"] == "SNAPSHOT_TYPE_IMMEDIATE"
    assert snap["snapErr"]["severity"] == "SEVERITY_ERROR"
    assert parse_model(ZInfoApp, out) == app


def test_zinfo_volume_prints_int64_as_strings() -> None:
    vol = ZInfoVolume(
        uuid="u", generation_count=3, resources=VolumeResources(max_size_bytes=5, cur_size_bytes=2)
    )
    out = vol.to_json_dict()
    assert out["generationCount"] == "3"
    assert out["resources"] == {"maxSizeBytes": "5", "curSizeBytes": "2"}
    assert parse_model(ZInfoVolume, out) == vol
