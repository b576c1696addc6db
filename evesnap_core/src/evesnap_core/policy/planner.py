"""The planner: from a policy, a time and what the device has, what to create and prune.

Why pure: a policy run must be explainable before it is carried out
(``evesnap policy run --dry-run``) and testable over months in milliseconds.
Nothing here reads a clock, a file or the orchestrator; `now` is an argument.

A schedule has *fired* when its latest fire time at or before `now` is later
than the app's newest schedule snapshot (missed fire times while the device was
off are made up once, not once each). All schedules that fired take ONE
snapshot per app. Below the app's free-space floor no snapshot is planned; the
refusal is in the plan. Retention then counts the planned snapshot as taken
(so that the steady state is exactly what the rules say) and considers only
snapshots whose origin is "schedule": controller and local snapshots are listed
as kept and never pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from evesnap_core.policy.cron import parse_cron
from evesnap_core.policy.model import Effective, Hooks, Policy
from evesnap_core.policy.retention import Candidate, decide

NEW = "(new)"
"""The id under which a planned snapshot appears in the keep list."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SnapshotFact(Frozen):
    """One snapshot the device has, as the planner needs it."""

    id: str
    origin: str
    created: datetime
    state: str = "available"


class AppFacts(Frozen):
    uuid: UUID
    name: str = ""
    snapshots: tuple[SnapshotFact, ...] = ()


class FreeSpace(Frozen):
    """The persist filesystem: bytes available to evesnap, and its size."""

    free_bytes: int
    total_bytes: int


class Fired(Frozen):
    schedule: str
    cron: str
    at: datetime
    """The fire time that is not yet covered by a schedule snapshot."""


class Keep(Frozen):
    snapshot: str
    created: datetime
    origin: str
    rules: tuple[str, ...]
    reason: str


class Prune(Frozen):
    snapshot: str
    created: datetime
    rule: str
    """The retention rules in force, e.g. 'hourly=24, daily=7'."""
    reason: str
    """Why no rule keeps it, naming each rule and what it kept instead."""


class AppPlan(Frozen):
    app: UUID
    name: str
    section: str
    enabled: bool
    fired: tuple[Fired, ...] = ()
    create: bool = False
    refused: str | None = None
    """Why a snapshot that fired is not taken (the free-space floor)."""
    hooks: Hooks = Hooks()
    keep: tuple[Keep, ...] = ()
    prune: tuple[Prune, ...] = ()
    next_fire: datetime | None = None
    next_schedules: tuple[str, ...] = ()


class Plan(Frozen):
    now: datetime
    timezone: str
    apps: tuple[AppPlan, ...]
    warnings: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, object]:
        data: dict[str, object] = self.model_dump(mode="json")
        return data


def wall_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in `zone` as UTC. A time a DST change repeats is its first
    occurrence and a time it skips is the instant of the change, so that each
    wall-clock fire time is covered once and never lies after the `now` it came from."""
    return min(wall.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))


def _human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _sections(policy: Policy, apps: Sequence[AppFacts]) -> tuple[dict[UUID, str | None], list[str]]:
    """Which section of the policy each app uses (None: the default alone), and warnings."""
    warnings: list[str] = []
    by_uuid: dict[UUID, str] = {}
    by_name: dict[str, str] = {}
    for section in policy.apps:
        try:
            by_uuid[UUID(section)] = section
        except ValueError:
            by_name[section] = section
    named: dict[str, list[UUID]] = {}
    for app in apps:
        named.setdefault(app.name, []).append(app.uuid)
    chosen: dict[UUID, str | None] = {}
    used: set[str] = set()
    for app in apps:
        key: str | None = by_uuid.get(app.uuid)
        name_key = by_name.get(app.name) if app.name else None
        if key is None and name_key is not None:
            if len(named[app.name]) > 1:
                warnings.append(
                    f"apps.{name_key}: {len(named[app.name])} apps are named {app.name!r}; "
                    f"app {app.uuid} is left alone (name it by UUID)"
                )
                used.add(name_key)
                continue
            key = name_key
        elif key is not None and name_key is not None:
            warnings.append(
                f"apps.{name_key} and apps.{key} both name app {app.uuid}; the UUID's section wins"
            )
            used.add(name_key)
        if key is not None:
            used.add(key)
        chosen[app.uuid] = key
    for section in policy.apps:
        if section not in used:
            warnings.append(f"apps.{section}: no app on this device has this UUID or display name")
    return chosen, warnings


def plan(policy: Policy, now: datetime, apps: Sequence[AppFacts], free: FreeSpace | None) -> Plan:
    """What the policy asks at `now` (timezone-aware) of `apps`, given `free` space."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("plan: `now` must be timezone-aware")
    ordered = sorted(apps, key=lambda a: str(a.uuid))
    chosen, warnings = _sections(policy, ordered)
    plans = [
        _plan_app(policy, policy.effective(chosen[app.uuid]), now, app, free)
        for app in ordered
        if app.uuid in chosen
    ]
    return Plan(now=now, timezone=policy.timezone, apps=tuple(plans), warnings=tuple(warnings))


def _plan_app(
    policy: Policy, settings: Effective, now: datetime, app: AppFacts, free: FreeSpace | None
) -> AppPlan:
    if not settings.enabled:
        return AppPlan(app=app.uuid, name=app.name, section=settings.section, enabled=False)
    zone = policy.zone
    local_now = now.astimezone(zone).replace(tzinfo=None)
    available = [s for s in app.snapshots if s.state == "available"]
    scheduled = [s for s in available if s.origin == "schedule"]
    newest = max((s.created for s in scheduled), default=None)

    fired: list[Fired] = []
    next_fire: datetime | None = None
    next_names: list[str] = []
    for name in sorted(settings.schedules):
        cron = parse_cron(settings.schedules[name])
        last = cron.previous(local_now)
        if last is not None:
            at = wall_to_utc(last, zone)
            if newest is None or newest < at:
                fired.append(Fired(schedule=name, cron=cron.text, at=at))
        upcoming = cron.next(local_now)
        if upcoming is not None:
            when = wall_to_utc(upcoming, zone)
            if next_fire is None or when < next_fire:
                next_fire, next_names = when, [name]
            elif when == next_fire:
                next_names.append(name)

    create = bool(fired)
    refused = None
    if create and settings.min_free is not None:
        if free is None:
            refused = f"free space of the persist filesystem is unknown; min_free={settings.min_free.text}"
        else:
            floor = settings.min_free.floor_bytes(free.total_bytes)
            if free.free_bytes < floor:
                refused = (
                    f"free space {_human_bytes(free.free_bytes)} of {_human_bytes(free.total_bytes)} "
                    f"is below the floor min_free={settings.min_free.text} ({_human_bytes(floor)}): "
                    "no snapshot taken"
                )
        create = refused is None

    keep: list[Keep] = []
    prune: list[Prune] = []
    candidates = [Candidate(s.id, s.created) for s in scheduled]
    if create:
        candidates.append(Candidate(NEW, now))
    if settings.retention is None:
        keep.extend(
            Keep(
                snapshot=c.id,
                created=c.created,
                origin="schedule",
                rules=("no retention",),
                reason="kept: the policy has no retention for this app",
            )
            for c in sorted(candidates, key=lambda c: (c.created, c.id), reverse=True)
        )
    else:
        described = settings.retention.describe()
        for d in decide(settings.retention, candidates, zone):
            if d.kept:
                keep.append(
                    Keep(
                        snapshot=d.id, created=d.created, origin="schedule", rules=d.kept_by, reason=d.reason
                    )
                )
            else:
                prune.append(Prune(snapshot=d.id, created=d.created, rule=described, reason=d.reason))
    for s in sorted(available, key=lambda s: (s.created, s.id), reverse=True):
        if s.origin != "schedule":
            keep.append(
                Keep(
                    snapshot=s.id,
                    created=s.created,
                    origin=s.origin,
                    rules=(f"origin={s.origin}",),
                    reason=f"origin {s.origin}: the policy never prunes it",
                )
            )
    return AppPlan(
        app=app.uuid,
        name=app.name,
        section=settings.section,
        enabled=True,
        fired=tuple(fired),
        create=create,
        refused=refused,
        hooks=settings.hooks,
        keep=tuple(keep),
        prune=tuple(prune),
        next_fire=next_fire,
        next_schedules=tuple(next_names),
    )
