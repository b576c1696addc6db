"""Showing apps, volumes and snapshots to a person, or as JSON to a program."""

from __future__ import annotations

from typing import Any

import click

from evesnap_core.cli.output import print_json, print_table
from evesnap_core.errors import EvesnapError
from evesnap_core.handler_types import LiveAttachment
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.orchestrator.reports import Reports


def status_json(orch: Orchestrator, reports: Reports, sizes: bool = True) -> dict[str, Any]:
    """The ZInfo reports in proto3 JSON; each volume also carries backend, location
    and (asked of its backend when `sizes`) virtual and actual size."""
    out: dict[str, Any] = reports.to_json_dict()
    by_key = {f"{v.spec.uuid}#{v.spec.generation}": v for v in orch.volumes.values()}
    held: dict[str, LiveAttachment] = {}
    if sizes:  # a volume a running VM holds is asked about through its attachment
        for app in orch.runtime.running_apps():
            held.update(orch.runtime.attachments(app))
    for vol in out["volumes"]:
        record = by_key.get(f"{vol['uuid']}#{vol.get('generationCount', '0')}")
        if record is None or record.handle is None:
            continue
        vol["backend"] = record.handle.backend
        vol["location"] = record.handle.location
        vol["format"] = record.handle.format
        if sizes:
            try:
                handle = record.handle.attached(held.get(record.key))
                details = orch.registry.get(handle.backend).volume_details(handle)
            except EvesnapError as exc:
                vol["detailsError"] = str(exc)
            else:
                vol.setdefault("resources", {})["curSizeBytes"] = str(details.actual_size)
                vol["virtualSizeBytes"] = str(details.virtual_size)
    return out


def show(orch: Orchestrator, reports: Reports, as_json: bool) -> None:
    data = status_json(orch, reports)
    if as_json:
        print_json(data)
        return
    click.echo("APPS")
    print_table(
        ["NAME", "UUID", "VERSION", "STATE", "SNAPSHOTS", "ERRORS"],
        [
            [
                a.get("AppName", ""),
                a["AppID"],
                a.get("appVersion", ""),
                a.get("state", ""),
                len(a.get("snapshots", [])),
                "; ".join(e["description"] for e in a.get("appErr", [])),
            ]
            for a in data["apps"]
        ],
    )
    click.echo("\nVOLUMES")
    print_table(
        ["UUID", "GEN", "BACKEND", "STATE", "SIZE", "ON DISK", "LOCATION"],
        [
            [
                v["uuid"],
                v.get("generationCount", "0"),
                v.get("backend", "?"),
                v.get("state", ""),
                _human(v.get("virtualSizeBytes")),
                _human(v.get("resources", {}).get("curSizeBytes")),
                v.get("location", ""),
            ]
            for v in data["volumes"]
        ],
    )
    click.echo("\nSNAPSHOTS")
    rows = []
    for a in data["apps"]:
        for s in a.get("snapshots", []):
            rows.append(
                [
                    a.get("AppName") or a["AppID"],
                    s["id"],
                    s.get("type", ""),
                    s.get("configVersion", ""),
                    s.get("createTime", ""),
                    (s.get("snapErr") or {}).get("description", ""),
                ]
            )
    print_table(["APP", "ID", "TYPE", "CONFIG VERSION", "CREATED", "ERROR"], rows)


def _human(value: object) -> str:
    if value in (None, ""):
        return ""
    size = float(str(value))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)
