"""The executor: carry out a plan through the orchestrator, commands around each snapshot.

Why separate from the planner: this is the only part with side effects, and it
re-checks what it touches instead of trusting a plan that may be stale. Rules:

- each app is independent: any failure is recorded on that app and the next
  app is processed;
- a snapshot is taken with ``Orchestrator.snapshot_now(app, origin="schedule")``
  between the pre-snapshot command (a non-zero exit or a timeout vetoes it,
  reported with its stderr) and the post-snapshot command (run after every
  attempted snapshot);
- when an app's scheduled snapshot was not taken (veto, failure), none of its
  snapshots are pruned in that run: the plan counted the new snapshot as taken,
  and a failing schedule must never thin out the snapshots it failed to replace;
- a snapshot is deleted only if it still exists, is available and has origin
  "schedule" (a controller or local snapshot is never deleted, whatever the plan).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from evesnap_core.errors import EvesnapError
from evesnap_core.policy.commands import CommandResult, run_command
from evesnap_core.policy.planner import AppFacts, AppPlan, Plan, SnapshotFact
from evesnap_core.records import AppRecord, SnapshotOrigin

log = logging.getLogger(__name__)

CommandRunner = Callable[[Sequence[str], float, Mapping[str, str]], CommandResult]


class Target(Protocol):
    """What the executor needs of the orchestrator."""

    apps: dict[UUID, AppRecord]

    def snapshot_now(
        self, app: UUID, snapshot_id: str | None = None, origin: SnapshotOrigin = "local"
    ) -> str: ...

    def delete_now(self, app: UUID, snapshot_id: str) -> object: ...


def app_facts(target: Target) -> list[AppFacts]:
    """The planner's view of the orchestrator's apps (those with a config)."""
    return [
        AppFacts(
            uuid=record.uuid,
            name=record.name,
            snapshots=tuple(
                SnapshotFact(id=s.id, origin=s.origin, created=s.created or s.requested, state=s.state)
                for s in record.snapshots.values()
            ),
        )
        for record in target.apps.values()
        if record.config is not None
    ]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CommandOutcome(Frozen):
    argv: tuple[str, ...]
    ok: bool
    returncode: int | None
    timed_out: bool
    seconds: float
    detail: str

    @classmethod
    def of(cls, result: CommandResult) -> CommandOutcome:
        return cls(
            argv=result.argv,
            ok=result.ok,
            returncode=result.returncode,
            timed_out=result.timed_out,
            seconds=round(result.seconds, 3),
            detail=result.describe(),
        )


class PruneOutcome(Frozen):
    snapshot: str
    result: Literal["deleted", "pending", "failed", "skipped", "gone"]
    detail: str = ""


class AppOutcome(Frozen):
    app: UUID
    name: str
    created: str | None = None
    vetoed: bool = False
    refused: str | None = None
    error: str | None = None
    pre_hook: CommandOutcome | None = None
    post_hook: CommandOutcome | None = None
    prunes: tuple[PruneOutcome, ...] = ()

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.refused is None
            and (self.post_hook is None or self.post_hook.ok)
            and all(p.result != "failed" for p in self.prunes)
        )


class Execution(Frozen):
    apps: tuple[AppOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.apps)


def execute(plan: Plan, target: Target, run: CommandRunner = run_command) -> Execution:
    """Carry out `plan`; never raises for one app's failure."""
    outcomes = []
    for app_plan in plan.apps:
        if not app_plan.enabled:
            continue
        try:
            outcomes.append(_run_app(app_plan, target, run))
        except Exception as exc:  # one app's failure never stops the others
            log.exception("policy: app %s", app_plan.app)
            outcomes.append(
                AppOutcome(
                    app=app_plan.app, name=app_plan.name, error=f"internal error: {type(exc).__name__}: {exc}"
                )
            )
    return Execution(apps=tuple(outcomes))


def _run_app(app_plan: AppPlan, target: Target, run: CommandRunner) -> AppOutcome:
    created: str | None = None
    error: str | None = None
    vetoed = False
    pre: CommandOutcome | None = None
    post: CommandOutcome | None = None
    env = {
        "EVESNAP_APP": str(app_plan.app),
        "EVESNAP_APP_NAME": app_plan.name,
        "EVESNAP_SCHEDULES": ",".join(f.schedule for f in app_plan.fired),
    }
    hooks = app_plan.hooks
    if app_plan.create:
        if hooks.pre:
            pre = CommandOutcome.of(run(hooks.pre, hooks.timeout, {**env, "EVESNAP_HOOK": "pre"}))
            if not pre.ok:
                vetoed = True
                error = f"pre-hook vetoed the snapshot: {pre.detail}"
        if not vetoed:
            known = set(target.apps[app_plan.app].snapshots) if app_plan.app in target.apps else set()
            try:
                created = target.snapshot_now(app_plan.app, origin="schedule")
            except (EvesnapError, ValueError) as exc:
                error = f"snapshot failed: {exc}" + _withdraw(target, app_plan.app, known)
            if hooks.post:
                post_env = {
                    **env,
                    "EVESNAP_HOOK": "post",
                    "EVESNAP_SNAPSHOT": created or "",
                    "EVESNAP_SNAPSHOT_RESULT": "ok" if created else "failed",
                }
                post = CommandOutcome.of(run(hooks.post, hooks.timeout, post_env))
    if app_plan.create and created is None:
        prunes = tuple(
            PruneOutcome(
                snapshot=p.snapshot,
                result="skipped",
                detail="the scheduled snapshot was not taken, so nothing older is pruned this time",
            )
            for p in app_plan.prune
        )
    else:
        prunes = tuple(_prune(target, app_plan.app, p.snapshot) for p in app_plan.prune)
    return AppOutcome(
        app=app_plan.app,
        name=app_plan.name,
        created=created,
        vetoed=vetoed,
        refused=app_plan.refused,
        error=error,
        pre_hook=pre,
        post_hook=post,
        prunes=prunes,
    )


def _withdraw(target: Target, app: UUID, known: set[str]) -> str:
    """Withdraw the request a failed snapshot_now leaves behind: the engine would retry
    it at the app's every later step, at times no schedule asked for."""
    record = target.apps.get(app)
    left = [s.id for s in record.snapshots.values() if s.id not in known] if record is not None else []
    for sid in left:
        try:
            target.delete_now(app, sid)
        except EvesnapError as exc:
            return f" (its request {sid} could not be withdrawn: {exc})"
    return " (the request was withdrawn; the next run tries again)" if left else ""


def _prune(target: Target, app: UUID, snapshot_id: str) -> PruneOutcome:
    record = target.apps.get(app)
    snap = record.snapshots.get(snapshot_id) if record is not None else None
    if snap is None:
        return PruneOutcome(snapshot=snapshot_id, result="gone", detail="no longer exists")
    if snap.origin != "schedule":
        return PruneOutcome(
            snapshot=snapshot_id,
            result="skipped",
            detail=f"origin {snap.origin}: the policy never deletes it",
        )
    if snap.state != "available":
        return PruneOutcome(snapshot=snapshot_id, result="skipped", detail=f"state {snap.state}")
    try:
        target.delete_now(app, snapshot_id)
    except EvesnapError as exc:
        return PruneOutcome(snapshot=snapshot_id, result="failed", detail=str(exc))
    after = target.apps[app].snapshots.get(snapshot_id) if app in target.apps else None
    if after is None:
        return PruneOutcome(snapshot=snapshot_id, result="deleted")
    if after.error is not None:
        return PruneOutcome(snapshot=snapshot_id, result="failed", detail=after.error.description)
    return PruneOutcome(snapshot=snapshot_id, result="pending", detail="deletion pending until the app stops")
