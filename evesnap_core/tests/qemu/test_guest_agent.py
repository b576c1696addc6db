"""The guest agent client's framing and time limits, against a fake agent socket.

The real ``qemu-ga`` in a real guest is tested by the guest VM harness
(tests/guestvm); here the cases a real agent cannot be made to show on demand.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.errors import GuestAgentError, GuestAgentTimeout
from evesnap_core.qemu.guest_agent import GuestAgent, thaw
from evesnap_core.testing.fake_agent import FakeGuestAgent


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="esga-", dir="/tmp") as folder:
        yield Path(folder) / "qga.sock"


def test_sync_drops_what_an_earlier_client_left(sock: Path) -> None:
    with FakeGuestAgent(sock, mode="stale") as fake, GuestAgent(sock, timeout=2) as agent:
        agent.ping()
        assert agent.freeze_status() == "thawed"
        assert fake.commands == ["guest-sync-delimited", "guest-ping", "guest-fsfreeze-status"]


def test_freeze_thaw_status(sock: Path) -> None:
    with FakeGuestAgent(sock) as fake, GuestAgent(sock, timeout=2) as agent:
        assert agent.freeze() == 2
        assert fake.frozen
        assert agent.freeze_status() == "frozen"
        assert agent.thaw() == 2
        assert agent.freeze_status() == "thawed"
        assert agent.thaw() == 0


def test_an_agent_error_keeps_its_class_and_text(sock: Path) -> None:
    with FakeGuestAgent(sock), GuestAgent(sock, timeout=2) as agent:
        agent.freeze()
        with pytest.raises(GuestAgentError, match="GenericError: already frozen"):
            agent.freeze()
        assert agent.connected  # a refusal leaves the stream in step
        with pytest.raises(GuestAgentError, match="CommandNotFound"):
            agent.execute("guest-no-such-thing")
        assert agent.thaw() == 2


def test_a_silent_agent_times_out_on_time(sock: Path) -> None:
    with FakeGuestAgent(sock, mode="silent"):
        agent = GuestAgent(sock, timeout=0.5)
        start = time.monotonic()
        with pytest.raises(GuestAgentTimeout, match=r"no answer within 0\.5 s"):
            agent.connect()
        assert time.monotonic() - start < 1.5
        assert not agent.connected


def test_a_hung_freeze_times_out_and_the_next_call_resyncs(sock: Path) -> None:
    with FakeGuestAgent(sock, mode="hang-freeze") as fake, GuestAgent(sock, timeout=2) as agent:
        start = time.monotonic()
        with pytest.raises(GuestAgentTimeout):
            agent.freeze(timeout=0.5)
        assert time.monotonic() - start < 1.5
        assert not agent.connected  # out of step: closed
        assert agent.thaw() == 2  # reconnects and syncs first
        assert not fake.frozen


def test_no_socket_is_a_clear_error(sock: Path) -> None:
    with pytest.raises(GuestAgentError, match="FileNotFoundError"):
        GuestAgent(sock, timeout=1).connect()


def test_thaw_helper(sock: Path) -> None:
    with FakeGuestAgent(sock) as fake:
        fake.frozen = True
        assert thaw(sock, timeout=2) == 2
        assert not fake.frozen
