"""QEMU for evesnap: a synchronous QMP client (and its errors) and a qemu-system launcher.

In the core because more than one backend and tool needs them: the qcow2
backend's live path uses the client (bounded waits, events kept), and tests,
benchmarks and conformance harnesses use the launcher to have a real QEMU
hold real images and to prove from a second monitor that a guest never paused.
"""

from evesnap_core.errors import QmpDisconnected, QmpError, QmpTimeout
from evesnap_core.qemu.qmp_client import QmpClient, QmpEvent, RunStatus
from evesnap_core.qemu.vm import Disk, QemuProcess

__all__ = [
    "Disk",
    "QemuProcess",
    "QmpClient",
    "QmpDisconnected",
    "QmpError",
    "QmpEvent",
    "QmpTimeout",
    "RunStatus",
]
