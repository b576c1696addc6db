"""What every part of the orchestrator works with, in one shared object.

The façade (`engine.Orchestrator`) builds one `Wiring` and hands it to each part
(converging, snapshot transactions, volumes, recovery, reports); a part swapped
on the façade (a test's runtime, the policy's clock) is swapped for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from evesnap_core.backend import Backend
from evesnap_core.discovery import Registry
from evesnap_core.handler_types import ProgressCallback, VolumeHandle
from evesnap_core.orchestrator.content import ContentResolver
from evesnap_core.orchestrator.ledger import Ledger
from evesnap_core.runtimes.runtime import Runtime


@dataclass
class Wiring:
    ledger: Ledger
    registry: Registry
    runtime: Runtime
    resolver: ContentResolver
    stop_timeout: float
    progress: ProgressCallback | None
    """Told about long copies (building a volume, a whole-volume snapshot)."""
    persist: Path | None = None
    """The persist folder, which no volume may reach out of (`boundaries`)."""
    freeze_timeout: float | None = None
    """The bound of a quiesced snapshot's guest freeze (None: ``$EVESNAP_FREEZE_TIMEOUT`` or 5 s)."""

    def backend_of(self, handle: VolumeHandle) -> Backend:
        """The backend that made `handle` (the one it names)."""
        return self.registry.get(handle.backend)

    def now(self) -> datetime:
        return self.ledger.clock()
