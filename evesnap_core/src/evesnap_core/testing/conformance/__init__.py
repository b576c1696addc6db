"""The backend conformance suite (SQLAlchemy's dialect suite is the model).

- `Harness` (harness.py): what a backend author subclasses so the suite can
  load the backend and read and write volume bytes without the backend's hooks.
- plugin.py: the opt-in pytest plugin with the fixtures.
- suite.py: the cases; ``from evesnap_core.testing.conformance.suite import *``.
- runner.py: runs the suite against an installed backend for ``evesnap conformance``.
"""

from evesnap_core.backend import Backend
from evesnap_core.testing.conformance.harness import Harness, byte_runs, pattern, qemu_io_read, qemu_io_write

__all__ = ["Backend", "Harness", "byte_runs", "pattern", "qemu_io_read", "qemu_io_write"]
