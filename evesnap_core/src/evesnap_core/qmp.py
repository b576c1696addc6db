"""The error of every QMP exchange. The client is `evesnap_core.qemu.QmpClient`:
one short synchronous session with a running QEMU, every wait bounded."""

from __future__ import annotations

from evesnap_core.errors import EvesnapError


class QmpError(EvesnapError):
    """QEMU refused a QMP command, or could not be reached."""

    def __init__(self, where: str, command: str, detail: str) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"QMP {command} on {where} failed: {detail}")
