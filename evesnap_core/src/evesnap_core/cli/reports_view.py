"""Showing apps, volumes and snapshots to a person, or as JSON to a program."""

from __future__ import annotations

from typing import Any

import click

from evesnap_core.cli.output import print_json, print_table
from evesnap_core.orchestrator.engine import Orchestrator, Reports


def status_json(orch: Orchestrator, reports: Reports) -> dict[str, Any]:
    """The ZInfo reports in proto3 JSON; each volume also carries backend and location."""
    out = reports.to_json_dict()
    by_key = {f"{v.spec.uuid}#{v.spec.generation}": v for v in orch.volumes.values()}
    for vol in out["volumes"]:
        record = by_key.get(f"{vol['uuid']}#{vol.get('generationCount', '0')}")
        if record is not None and record.handle is not None:
            vol["backend"] = record.handle.backend
            vol["location"] = record.handle.location
            vol["format"] = record.handle.format
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
        ["UUID", "GEN", "BACKEND", "STATE", "MAX SIZE", "LOCATION"],
        [
            [
                v["uuid"],
                v.get("generationCount", "0"),
                v.get("backend", "?"),
                v.get("state", ""),
                v.get("resources", {}).get("maxSizeBytes", ""),
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
