"""A fake device for planner tests: apps' snapshots as data, a clock stepped by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

from evesnap_core.policy.model import Policy, parse_policy
from evesnap_core.policy.planner import AppFacts, FreeSpace, Plan, SnapshotFact, plan

APP = UUID("11111111-1111-4111-8111-111111111111")
APP2 = UUID("22222222-2222-4222-8222-222222222222")
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday
PLENTY = FreeSpace(free_bytes=900 << 30, total_bytes=1000 << 30)


def policy(text: str) -> Policy:
    return parse_policy(text.encode(), "test.toml")


class FakeDevice:
    """Snapshots per app; `step` plans at a time and applies the plan as the executor would."""

    def __init__(self, apps: dict[UUID, str] | None = None) -> None:
        self.names = apps or {APP: "shop"}
        self.snapshots: dict[UUID, dict[str, SnapshotFact]] = {a: {} for a in self.names}
        self.counter = 0

    def facts(self) -> list[AppFacts]:
        return [
            AppFacts(uuid=a, name=n, snapshots=tuple(self.snapshots[a].values()))
            for a, n in self.names.items()
        ]

    def add(self, app: UUID, created: datetime, origin: str = "schedule") -> str:
        self.counter += 1
        sid = str(uuid.UUID(int=self.counter))
        self.snapshots[app][sid] = SnapshotFact(id=sid, origin=origin, created=created)
        return sid

    def step(self, pol: Policy, now: datetime, free: FreeSpace = PLENTY) -> Plan:
        made = plan(pol, now, self.facts(), free)
        for ap in made.apps:
            if ap.create:
                self.add(ap.app, now)
            for p in ap.prune:
                assert self.snapshots[ap.app][p.snapshot].origin == "schedule"
                del self.snapshots[ap.app][p.snapshot]
        return made

    def ids(self, app: UUID = APP) -> set[str]:
        return set(self.snapshots[app])

    def times(self, app: UUID = APP) -> list[datetime]:
        return sorted(s.created for s in self.snapshots[app].values() if s.origin == "schedule")
