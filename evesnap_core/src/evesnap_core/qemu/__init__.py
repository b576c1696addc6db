"""QEMU for evesnap: a synchronous QMP client (and its errors) and the one qemu-system command line.

In the core because more than one backend and tool needs them: the qcow2
backend's live path uses the client (bounded waits, events kept); the QEMU app
runtime and the test launcher (`evesnap_core.testing.qemu_vm`, a real QEMU
holding real images for tests and benchmarks) build their command line with
`evesnap_core.qemu.command_line`.
"""

from evesnap_core.errors import QmpDisconnected, QmpError, QmpTimeout
from evesnap_core.qemu.qmp_client import QmpClient, QmpEvent, RunStatus

__all__ = [
    "QmpClient",
    "QmpDisconnected",
    "QmpError",
    "QmpEvent",
    "QmpTimeout",
    "RunStatus",
]
