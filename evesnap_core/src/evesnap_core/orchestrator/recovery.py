"""Recovery at start: resolve what a crash left half done, from the journal.

Runs once when the orchestrator is opened (not for a read-only look). Each
unfinished intent of the ledger is resolved from the records: a snapshot that
never became available is undone on every volume (no backend snapshot without a
record); a clone whose app was never recorded has its recorded volumes
destroyed; a rollback or a deletion is simply carried out again by the next
converge, since its target is recorded and both are idempotent; a guest left
frozen by a quiesced snapshot (a ``freeze`` intent) is thawed through its agent
(nothing to do if its VM is gone: a stopped guest holds no frozen filesystem).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from uuid import UUID

from evesnap_core.errors import EvesnapError
from evesnap_core.orchestrator.quiesce import thaw
from evesnap_core.orchestrator.transactions import SnapshotTransactions
from evesnap_core.orchestrator.volumes import Volumes
from evesnap_core.orchestrator.wiring import Wiring

log = logging.getLogger(__name__)


def recover(wiring: Wiring, volumes: Volumes, transactions: SnapshotTransactions) -> list[str]:
    """Resolve every unfinished intent; say what was done, one line each."""
    ledger = wiring.ledger
    done = []
    for intent in ledger.unfinished():
        app = ledger.apps.get(UUID(str(intent["app"])))
        sid = str(intent["snapshot"])
        snap = app.snapshots.get(sid) if app else None
        if intent["kind"] == "clone":
            details = intent.get("details")
            target = str(details.get("target", "")) if isinstance(details, dict) else ""
            if not any(str(a) == target for a in ledger.apps):
                for made in transactions.recorded_clones(target):
                    with contextlib.suppress(EvesnapError):
                        volumes.destroy(made)
                done.append(f"undid unfinished clone of snapshot {sid} of app {intent['app']}")
        elif intent["kind"] == "freeze":
            details = intent.get("details")
            agent = str(details.get("agent", "")) if isinstance(details, dict) else ""
            if agent and Path(agent).exists() and thaw(Path(agent), within=5.0):
                done.append(f"thawed the guest of app {intent['app']} (frozen for snapshot {sid})")
            else:
                done.append(f"guest of app {intent['app']} not reachable to thaw (its VM is gone)")
        elif intent["kind"] == "snapshot" and (snap is None or snap.state != "available"):
            keys = snap.volume_keys if snap else []
            for key in keys:
                volume = ledger.volumes.get(key)
                if volume is not None and volume.handle is not None:
                    with contextlib.suppress(EvesnapError):
                        transactions.undo_orphan(volume.handle, sid)
            done.append(f"undid unfinished snapshot {sid} of app {intent['app']}")
        else:
            done.append(f"{intent['kind']} of snapshot {sid} of app {intent['app']} resumes from its record")
        ledger.resolve(str(intent["intent"]))
    for line in done:
        log.warning("recovery: %s", line)
    return done
