"""One app's failure, or one write of state that fails, never stops another app.

`reconcile` runs every step for one app or one volume inside a `Guard`: an
error is reported on that app (a Problem, written through if the disk allows)
or logged for that volume, and a failure to write state (a full disk:
`NoSpace`, any other `OSError`) is also one line in `problems`, which `apply`
prints and the agent logs and retries; never a traceback, never a skipped app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

from evesnap_core.errors import EvesnapError, NoSpace
from evesnap_core.orchestrator.ledger import Ledger
from evesnap_core.records import AppRecord, Problem

log = logging.getLogger("evesnap_core.orchestrator.engine")


def one_line_error(exc: BaseException) -> str:
    """An error as one line: an OSError as its reason and file, never its repr."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


class Guard:
    """Runs the steps of one reconcile; collects what could not be written."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.problems: list[str] = []

    def device(self, what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except (EvesnapError, OSError) as exc:
            self._problem(f"{what}: {one_line_error(exc)}")

    def app(self, record: AppRecord, step: Callable[[], None]) -> None:
        try:
            step()
        except (EvesnapError, OSError) as exc:  # OSError: the store, e.g. a folder made read-only
            text = one_line_error(exc)
            log.warning("app %s: %s", record.uuid, text)
            if isinstance(exc, NoSpace | OSError):
                self.problems.append(f"app {record.name or record.uuid}: {text}")
            record.problems.append(Problem(description=text, time=self.ledger.clock()))
            self._save_reported(record)
        except Exception as exc:  # one app's bad data never takes the agent down
            log.exception("app %s: unexpected failure", record.uuid)
            record.problems.append(
                Problem(description=f"internal error: {type(exc).__name__}: {exc}", time=self.ledger.clock())
            )
            self._save_reported(record)

    def volume(self, volume_uuid: UUID, step: Callable[[], None]) -> None:
        try:
            step()
        except (EvesnapError, OSError) as exc:
            log.warning("volume %s: %s", volume_uuid, one_line_error(exc))
            if isinstance(exc, NoSpace | OSError):
                self.problems.append(f"volume {volume_uuid}: {one_line_error(exc)}")

    def _save_reported(self, record: AppRecord) -> None:
        """Write the app's problem through; on a full disk it stays in memory, reported."""
        try:
            self.ledger.save_app(record)
        except (EvesnapError, OSError) as exc:
            self._problem(f"app {record.name or record.uuid}: cannot record its state: {one_line_error(exc)}")

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        self.problems.append(text)
