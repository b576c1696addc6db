"""The reports file a controller reads: eve-api info messages and nothing else.

The agent writes it after every reconcile. Its content is a JSON array of
``ZInfoMsg`` in the proto3 JSON mapping, one per app (``ztype`` ``ZiApp``,
body ``ainfo``) and one per volume (``ZiVolume``, ``vinfo``), each with the
device id (``devId``) and the time of the report (``atTimeStamp``), so that a
controller's own parser (Google's, strict) reads every one. evesnap's own
facts (backend, location, format, virtual size) are the operator's, in
``evesnap status --json``, never here. Written atomically (durable.atomic_write);
as binary length-delimited ZInfoMsg instead when asked (model.binary).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from evesnap_core.cli.reports_view import measured
from evesnap_core.durable import atomic_write, ensure_dir
from evesnap_core.errors import EvesnapError
from evesnap_core.model.binary import info_messages_to_binary
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.info import ZInfoMsg, ZInfoTypes
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.orchestrator.reports import Reports
from evesnap_core.records import utcnow

DEVICE_ID_FILE = "device-id"
"""Under <persist>/evesnap/: the device id evesnap made for itself when the
controller's config does not name one (EdgeDevConfig.id)."""

log = logging.getLogger(__name__)


def device_id(persist: Path, device: DeviceConfig) -> str:
    """The controller's id for this device (the config's ``id.uuid``), else a
    UUID made once and kept in the persist folder."""
    given = (device.model_extra or {}).get("id")
    if isinstance(given, dict) and isinstance(given.get("uuid"), str):
        try:
            return str(uuid.UUID(given["uuid"]))
        except ValueError:
            pass
    global _made
    path = persist / "evesnap" / DEVICE_ID_FILE
    try:
        return str(uuid.UUID(path.read_text().strip()))
    except (OSError, ValueError):
        pass
    _made = _made or str(uuid.uuid4())
    try:  # kept for the next process; a full disk only delays that, never the reports
        ensure_dir(path.parent)
        atomic_write(path, (_made + "\n").encode())
    except (EvesnapError, OSError) as exc:
        log.warning("cannot keep the device id in %s yet: %s", path, exc)
    return _made


_made = ""
"""The id made by this process while it could not be kept (a full disk)."""


def info_messages(reports: Reports, dev_id: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """One ZInfoMsg per app and per volume, in proto3 JSON."""
    at = now or utcnow()
    out = [
        ZInfoMsg(ztype=ZInfoTypes.ZiApp, dev_id=dev_id, ainfo=app, at_time_stamp=at).to_json_dict()
        for app in reports.apps
    ]
    out.extend(
        ZInfoMsg(ztype=ZInfoTypes.ZiVolume, dev_id=dev_id, vinfo=vol, at_time_stamp=at).to_json_dict()
        for vol in reports.volumes
    )
    return out


def write_reports(orch: Orchestrator, path: Path, dev_id: str, binary: bool = False) -> None:
    """The controller's reports (with each volume's allocated size) to `path`,
    atomically: JSON, or with `binary` length-delimited binary ZInfoMsg."""
    reports, _ = measured(orch, orch.reports(for_controller=True))
    messages = info_messages(reports, dev_id)
    data = info_messages_to_binary(messages) if binary else json.dumps(messages, indent=2).encode()
    atomic_write(path, data)
