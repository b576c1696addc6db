"""Reports: the controller's ZInfo messages and the operator's views, from the ledger.

The end of the orchestrator's flow, and pure reads: nothing here changes a
record. `reports` gives every app and volume (for the controller, without the
device's own clones); `describe_snapshot` adds what each backend sees of one
snapshot now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from evesnap_core.errors import EvesnapError
from evesnap_core.model.info import (
    UsageInfo,
    VolumeResources,
    ZInfoApp,
    ZInfoSnapshot,
    ZInfoVolume,
    ZSwState,
)
from evesnap_core.orchestrator.tree import children, descendants
from evesnap_core.orchestrator.wiring import Wiring
from evesnap_core.records import AppRecord, Problem, SnapshotRecord, VolumeRecord


@dataclass
class Reports:
    apps: list[ZInfoApp] = field(default_factory=list)
    volumes: list[ZInfoVolume] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "apps": [a.to_json_dict() for a in self.apps],
            "volumes": [v.to_json_dict() for v in self.volumes],
        }


def reports(wiring: Wiring, for_controller: bool = False) -> Reports:
    """Apps and volumes; the controller's view leaves out clones, which are the device's own."""
    ledger = wiring.ledger
    with ledger.guard:  # other apps' requests may be adding or removing records meanwhile
        apps, volumes = list(ledger.apps.values()), list(ledger.volumes.values())
    return Reports(
        apps=[
            app_report(wiring, r)
            for r in apps
            if r.config is not None and not (for_controller and r.origin == "clone")
        ],
        volumes=[volume_report(v) for v in volumes if not (for_controller and v.origin == "clone")],
    )


def app_report(wiring: Wiring, record: AppRecord) -> ZInfoApp:
    running = wiring.runtime.state(record.uuid) == "running"
    errors = [p for p in record.problems if p.severity == "error"]
    state = ZSwState.ERROR if errors and not running else (ZSwState.RUNNING if running else ZSwState.HALTED)
    shown = [
        s
        for s in list(record.snapshots.values())
        if s.state == "available"
        or (s.error is not None and s.state != "deleting")
        or (s.state == "deleting" and s.error is not None)
    ]
    shown.sort(key=lambda s: s.created or s.requested)
    deployed = record.deployed or record.config
    damaged = [d for d in wiring.ledger.damaged if d.app == record.uuid]
    return ZInfoApp(
        app_id=str(record.uuid),
        app_version=deployed.version if deployed else "",
        app_name=record.name,
        app_err=[p.to_error_info() for p in record.problems]
        + [Problem(description=d.description).to_error_info() for d in damaged if d.snapshot is None],
        state=state,
        volume_refs=[str(r.uuid) for r in deployed.volume_ref_list] if deployed else [],
        snapshots=[snapshot_report(s) for s in shown]
        + [
            ZInfoSnapshot(id=d.snapshot, snap_err=Problem(description=d.description).to_error_info())
            for d in damaged
            if d.snapshot is not None
        ],
    )


# An error is given only when there is one: a None given would be dropped again
# by the message's null rule (ProtoMessage), a copy of the fields each time.


def snapshot_report(snap: SnapshotRecord) -> ZInfoSnapshot:
    fields: dict[str, Any] = {
        "id": snap.id,
        "config_id": str(snap.config_id),
        "config_version": snap.config_version,
        "create_time": snap.created,
        "type": snap.type,
    }
    if snap.error:
        fields["snap_err"] = snap.error.to_error_info()
    return ZInfoSnapshot(**fields)


def volume_report(volume: VolumeRecord) -> ZInfoVolume:
    fields: dict[str, Any] = {
        "uuid": str(volume.spec.uuid),
        "display_name": volume.spec.display_name,
        "usage": UsageInfo(create_time=volume.created),
        "resources": VolumeResources(max_size_bytes=volume.spec.size_bytes),
        "state": ZSwState.CREATED_VOLUME if volume.state == "ready" else ZSwState.ERROR,
        "generation_count": volume.spec.generation,
    }
    if volume.error:
        fields["volume_err"] = volume.error.to_error_info()
    return ZInfoVolume(**fields)


def describe_snapshot(wiring: Wiring, record: AppRecord, snap: SnapshotRecord) -> dict[str, Any]:
    """Everything known about a snapshot: its record, its place in the tree, and
    each volume's snapshot as its backend sees it now (or why it cannot say)."""
    data: dict[str, Any] = json.loads(snap.model_dump_json(exclude={"config_json"}))
    data.update(
        appName=record.name,
        current=record.current_snapshot == snap.id,
        children=[c.id for c in children(record, snap.id)],
        descendants=[d.id for d in descendants(record, snap.id)],
        config=json.loads(snap.config_json),
    )
    seen: dict[str, Any] = {}
    for key, part in snap.volumes.items():
        try:
            infos = wiring.backend_of(part.handle).list_snapshots(part.handle)
            found = next((i for i in infos if i.snapshot_id == snap.id), None)
            seen[key] = json.loads(found.model_dump_json()) if found else {"error": "missing in the backend"}
        except EvesnapError as exc:
            seen[key] = {"error": str(exc)}
    data["backendView"] = seen
    return data
