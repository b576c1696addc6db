"""The freeze around a live snapshot: bounded, and always thawed (fake agent socket).

The same against a real guest and qemu-ga: tests/guestvm.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.errors import EvesnapError
from evesnap_core.orchestrator.content import ContentResolver
from evesnap_core.orchestrator.ledger import Ledger
from evesnap_core.orchestrator.quiesce import PROBE_TIMEOUT, THAW_TRY, Quiescer, freeze_timeout
from evesnap_core.orchestrator.recovery import recover
from evesnap_core.orchestrator.store import MemoryStore
from evesnap_core.orchestrator.transactions import SnapshotTransactions
from evesnap_core.orchestrator.volumes import Volumes
from evesnap_core.orchestrator.wiring import Wiring
from evesnap_core.records import utcnow
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.testing.fake_agent import FakeGuestAgent
from evesnap_core.testing.memory import InstantRuntime

APP = uuid.UUID("11111111-1111-4111-8111-111111111111")


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="esqz-", dir="/tmp") as folder:
        yield Path(folder) / "qga.sock"


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(MemoryStore(), utcnow)


def test_frozen_for_the_block_then_thawed(sock: Path, ledger: Ledger) -> None:
    with FakeGuestAgent(sock) as fake:
        with Quiescer(ledger, bound=3).around(APP, "s1", sock) as result:
            assert fake.frozen
            assert [i["kind"] for i in ledger.unfinished()] == ["freeze"]
        assert not fake.frozen
    assert result.consistency == "filesystem-consistent"
    assert result.frozen_seconds is not None and result.frozen_seconds < 3
    assert "2 guest filesystem(s) frozen for" in result.detail
    assert ledger.unfinished() == []


def test_no_channel_or_no_answer_is_crash_consistent_within_the_probe(sock: Path, ledger: Ledger) -> None:
    with Quiescer(ledger, bound=3).around(APP, "s1", None) as result:
        pass
    assert result.consistency == "crash-consistent"
    with FakeGuestAgent(sock, mode="silent"):
        start = time.monotonic()
        with Quiescer(ledger, bound=3).around(APP, "s1", sock) as result:
            pass
        assert time.monotonic() - start < PROBE_TIMEOUT + 0.5
    assert result.consistency == "crash-consistent"
    assert "no guest agent answered" in result.detail
    assert ledger.unfinished() == []


def test_an_error_in_the_snapshot_still_thaws(sock: Path, ledger: Ledger) -> None:
    with FakeGuestAgent(sock) as fake:
        with (
            pytest.raises(EvesnapError, match="backend failed"),
            Quiescer(ledger, bound=3).around(APP, "s1", sock),
        ):
            assert fake.frozen
            raise EvesnapError("backend failed")
        assert not fake.frozen
    assert ledger.unfinished() == []


def test_a_hung_freeze_is_bounded_and_thawed(sock: Path, ledger: Ledger) -> None:
    with FakeGuestAgent(sock, mode="hang-freeze") as fake:
        start = time.monotonic()
        with Quiescer(ledger, bound=1).around(APP, "s1", sock) as result:
            pass
        assert time.monotonic() - start < 1 + THAW_TRY + 1
        assert not fake.frozen
    assert result.consistency == "crash-consistent"
    assert "did not freeze" in result.detail


def test_a_snapshot_longer_than_the_bound_is_not_called_consistent(sock: Path, ledger: Ledger) -> None:
    with FakeGuestAgent(sock), Quiescer(ledger, bound=0.5).around(APP, "s1", sock) as result:
        time.sleep(0.8)
    assert result.consistency == "crash-consistent"
    assert "longer than the freeze bound" in result.detail


CHILD = """
import sys, uuid
from pathlib import Path
from evesnap_core.orchestrator.ledger import Ledger
from evesnap_core.orchestrator.quiesce import Quiescer
from evesnap_core.orchestrator.recovery import recover
from evesnap_core.orchestrator.store import MemoryStore
from evesnap_core.orchestrator.transactions import SnapshotTransactions
from evesnap_core.orchestrator.volumes import Volumes
from evesnap_core.orchestrator.wiring import Wiring
from evesnap_core.records import utcnow
with Quiescer(Ledger(MemoryStore(), utcnow), bound=float(sys.argv[2])).around(
    uuid.uuid4(), "s1", Path(sys.argv[1])
):
    pass
"""


def test_evesnap_killed_while_frozen_the_watchdog_thaws(sock: Path) -> None:
    bound = 4.0
    with FakeGuestAgent(sock) as fake:
        env = {**os.environ, "EVESNAP_CRASH_AT": "freeze.frozen"}
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(sock), str(bound)], env=env, timeout=30, check=False
        )
        killed = time.monotonic()
        assert child.returncode == -9
        while fake.frozen and time.monotonic() - killed < bound:
            time.sleep(0.05)
        assert not fake.frozen, "the watchdog did not thaw the guest within the bound"
        thawed_after = time.monotonic() - killed
    assert thawed_after < 2.0  # EOF on its pipe: it does not wait for the bound


def test_recovery_thaws_a_guest_a_crash_left_frozen(sock: Path, ledger: Ledger, tmp_path: Path) -> None:
    with FakeGuestAgent(sock) as fake:
        fake.frozen = True  # what a crash between freeze and thaw leaves
        ledger.store.begin("freeze", APP, "s1", {"agent": str(sock)})
        registry = load_backends(tmp_path, environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,zfs,purgeable,reflink"})
        wiring = Wiring(ledger, registry, Runtime(InstantRuntime()), ContentResolver(), 5.0, None)
        volumes = Volumes(wiring)
        done = recover(wiring, volumes, SnapshotTransactions(wiring, volumes))
        assert not fake.frozen
    assert done == [f"thawed the guest of app {APP} (frozen for snapshot s1)"]
    assert ledger.unfinished() == []


def test_the_bound_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVESNAP_FREEZE_TIMEOUT", "2.5")
    assert freeze_timeout() == 2.5
    monkeypatch.setenv("EVESNAP_FREEZE_TIMEOUT", "forever")
    assert freeze_timeout() == 5.0
    monkeypatch.setenv("EVESNAP_FREEZE_TIMEOUT", "0")
    assert freeze_timeout() == 0.5
