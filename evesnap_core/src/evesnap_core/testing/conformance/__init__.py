"""The backend conformance suite (SQLAlchemy's dialect suite is the model).

- `Harness` (harness.py): what a backend author subclasses so the suite can
  load the backend and read and write volume bytes without the backend's hooks.
- requirements.py: what a case needs from the harness (``@requires``) and what a
  harness provides (``Harness.requirements``); unprovided means skipped, named.
- memory.py: the harness of the in-memory backend (evesnap_core.testing.memory).
- plugin.py: the opt-in pytest plugin with the fixtures.
- suite.py: the cases; ``from evesnap_core.testing.conformance.suite import *``.
- runner.py: runs the suite against an installed backend for ``evesnap conformance``.
"""

from evesnap_core.backend import Backend
from evesnap_core.discovery import load_backends
from evesnap_core.errors import BackendBug
from evesnap_core.testing.conformance.harness import Harness, byte_runs, pattern, qemu_io_read, qemu_io_write
from evesnap_core.testing.conformance.requirements import REQUIREMENTS, Requirements, requires
from evesnap_core.testing.qemu_vm import Disk, QemuProcess

__all__ = [
    "REQUIREMENTS",
    "Backend",
    "BackendBug",
    "Disk",
    "Harness",
    "QemuProcess",
    "Requirements",
    "byte_runs",
    "load_backends",
    "pattern",
    "qemu_io_read",
    "qemu_io_write",
    "requires",
]
