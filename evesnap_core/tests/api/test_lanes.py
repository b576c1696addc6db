"""The agent's lanes: one app's requests in order, different apps side by side,
the whole device alone and never overtaken (threads, no fakes needed)."""

from __future__ import annotations

import threading
import time
import uuid

from evesnap_core.api.lanes import DEVICE, Lanes, Scope, conflict

A, B = uuid.uuid4(), uuid.uuid4()


def _run(lanes: Lanes, scope: Scope, name: str, log: list[str], release: threading.Event) -> threading.Thread:
    def work() -> None:
        with lanes.hold(scope):
            log.append(f"start {name}")
            release.wait(10)
            log.append(f"end {name}")

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.05)  # it has queued (or started) before the next one comes
    return thread


def test_conflicts() -> None:
    assert conflict(DEVICE, frozenset({A}))
    assert conflict(frozenset({A}), frozenset({A, B}))
    assert not conflict(frozenset({A}), frozenset({B}))


def test_different_apps_run_side_by_side() -> None:
    lanes, go = Lanes(), threading.Event()
    log: list[str] = []
    threads = [_run(lanes, frozenset({A}), "a", log, go), _run(lanes, frozenset({B}), "b", log, go)]
    assert log == ["start a", "start b"] and lanes.running() == 2
    go.set()
    for t in threads:
        t.join()


def test_one_apps_requests_keep_their_order_and_the_device_waits_its_turn() -> None:
    lanes = Lanes()
    log: list[str] = []
    first, second, device, other = (threading.Event() for _ in range(4))
    threads = [
        _run(lanes, frozenset({A}), "a1", log, first),
        _run(lanes, frozenset({A}), "a2", log, second),
        _run(lanes, DEVICE, "device", log, device),
        _run(lanes, frozenset({B}), "b", log, other),  # behind the device, which came first
    ]
    assert log == ["start a1"]
    second.set()
    device.set()
    other.set()
    time.sleep(0.1)
    assert log == ["start a1"], "a2 overtook a1, or the device or b overtook a2"
    first.set()
    for t in threads:
        t.join()
    assert log == [
        "start a1",
        "end a1",
        "start a2",
        "end a2",
        "start device",
        "end device",
        "start b",
        "end b",
    ]


def test_a_later_request_of_a_free_app_does_not_wait_for_a_busy_one() -> None:
    lanes, busy, free = Lanes(), threading.Event(), threading.Event()
    log: list[str] = []
    free.set()
    held = _run(lanes, frozenset({A}), "a1", log, busy)
    queued = _run(lanes, frozenset({A}), "a2", log, free)
    _run(lanes, frozenset({B}), "b", log, free).join()
    assert log == ["start a1", "start b", "end b"]
    busy.set()
    held.join()
    queued.join()
    assert log[-2:] == ["start a2", "end a2"]
