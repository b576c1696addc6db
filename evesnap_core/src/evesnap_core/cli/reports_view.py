"""Showing apps, volumes and snapshots to a person, or as JSON to a program."""

from __future__ import annotations

from typing import Any

import click

from evesnap_core.cli.output import print_json, print_table
from evesnap_core.errors import EvesnapError
from evesnap_core.handler_types import LiveAttachment
from evesnap_core.model.info import VolumeResources, ZInfoVolume
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.orchestrator.reports import Reports


def measured(
    orch: Orchestrator, reports: Reports, sizes: bool = True
) -> tuple[Reports, list[dict[str, Any]]]:
    """The reports with each volume's `curSizeBytes` (its allocated size, asked of
    its backend when `sizes`), and evesnap's own facts per volume, in the same
    order: uuid, generationCount, backend, location, format, virtualSizeBytes
    (or detailsError). Those facts are not eve-api's: never inside a ZInfoVolume."""
    by_key = {f"{v.spec.uuid}#{v.spec.generation}": v for v in orch.volumes.values()}
    held: dict[str, LiveAttachment] = {}
    if sizes:  # a volume a running VM holds is asked about through its attachment
        for app in orch.runtime.running_apps():
            held.update(orch.runtime.attachments(app))
    volumes: list[ZInfoVolume] = []
    extras: list[dict[str, Any]] = []
    for vol in reports.volumes:
        extra: dict[str, Any] = {"uuid": vol.uuid, "generationCount": str(vol.generation_count)}
        record = by_key.get(f"{vol.uuid}#{vol.generation_count}")
        if record is not None and record.handle is not None:
            extra.update(
                backend=record.handle.backend, location=record.handle.location, format=record.handle.format
            )
            if sizes:
                try:
                    handle = record.handle.attached(held.get(record.key))
                    details = orch.registry.get(handle.backend).volume_details(handle)
                except EvesnapError as exc:
                    extra["detailsError"] = str(exc)
                else:
                    resources = (vol.resources or VolumeResources()).model_copy(
                        update={"cur_size_bytes": details.actual_size}
                    )
                    vol = vol.model_copy(update={"resources": resources})
                    extra["virtualSizeBytes"] = str(details.virtual_size)
        volumes.append(vol)
        extras.append(extra)
    return Reports(apps=reports.apps, volumes=volumes), extras


def status_json(orch: Orchestrator, reports: Reports, sizes: bool = True) -> dict[str, Any]:
    """The operator's view: ``apps`` and ``volumes`` are eve-api's ZInfoApp and
    ZInfoVolume in proto3 JSON; ``evesnap.volumes`` holds evesnap's own facts of
    each volume (backend, location, format, virtual size), in the same order."""
    shown, extras = measured(orch, reports, sizes)
    out: dict[str, Any] = shown.to_json_dict()
    out["evesnap"] = {"volumes": extras}
    return out


def volume_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each volume of a `status_json` document with evesnap's facts merged in (for reading)."""
    extras = data.get("evesnap", {}).get("volumes", [])
    return [{**extra, **vol} for vol, extra in zip(data["volumes"], extras, strict=True)]


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
            for v in volume_rows(data)
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
