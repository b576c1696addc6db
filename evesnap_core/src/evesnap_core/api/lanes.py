"""Who may run now, inside the agent: one app's requests in order, different
apps' requests side by side, and whatever touches the whole device (the
controller's config loop, `apply`, `status`, a policy run) alone.

A request holds a *scope* for the length of its run: a set of app UUIDs, or
`DEVICE` (every app). Two scopes conflict when either is the device or they
share an app. A request starts once no running request conflicts with it and
no earlier waiting one does either: requests of one app keep the order they
came in, a reconcile is not overtaken by the requests that came after it, and
nothing is ever refused as "locked"; it waits its turn.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

Scope = frozenset[UUID] | None
DEVICE: Scope = None
"""The scope of a request that may touch every app."""


def conflict(a: Scope, b: Scope) -> bool:
    return a is None or b is None or bool(a & b)


class Lanes:
    """First come, first served, per app; the device alone."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._tickets = itertools.count()
        self._waiting: list[tuple[int, Scope]] = []
        self._running: list[Scope] = []

    @contextmanager
    def hold(self, scope: Scope) -> Iterator[None]:
        """Wait for `scope`'s turn and hold it for the block."""
        with self._changed:
            entry = (next(self._tickets), scope)
            self._waiting.append(entry)
            try:
                while not self._may_start(entry):
                    self._changed.wait()
            finally:
                self._waiting.remove(entry)
                self._changed.notify_all()  # a waiter behind this one may go now
            self._running.append(scope)
        try:
            yield
        finally:
            with self._changed:
                self._running.remove(scope)
                self._changed.notify_all()

    def running(self) -> int:
        with self._changed:
            return len(self._running)

    def _may_start(self, entry: tuple[int, Scope]) -> bool:
        ticket, scope = entry
        if any(conflict(scope, other) for other in self._running):
            return False
        return not any(t < ticket and conflict(scope, s) for t, s in self._waiting)
