"""``evesnap policy``: check a local policy file, run it once (or dry), and the agent's tick.

Why here and not in ops_cmds: the policy is an optional layer over the
orchestrator; the agent only needs `agent_policy_tick`, one call per loop.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from evesnap_core.cli.common import session_or_fail
from evesnap_core.cli.exit_codes import EXIT_FAILED, EXIT_INVALID
from evesnap_core.cli.output import fail, print_json, print_table
from evesnap_core.cli.session import Session
from evesnap_core.errors import ConfigError
from evesnap_core.policy.executor import Execution, app_facts, execute
from evesnap_core.policy.model import Policy, load_policy
from evesnap_core.policy.planner import NEW, FreeSpace, Plan, plan


def _load(path: Path) -> Policy:
    try:
        return load_policy(path)
    except ConfigError as exc:
        fail(str(exc), "fix the policy file (docs/policies.md) and run again", EXIT_INVALID)
        raise  # unreachable


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--now: {text!r} is not an ISO 8601 time", "e.g. 2026-12-01T04:00:00Z", EXIT_INVALID)
        raise
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _runnable(program: str) -> bool:
    if "/" in program:
        return Path(program).is_file() and os.access(program, os.X_OK)
    return shutil.which(program) is not None


def free_space(persist: Path) -> FreeSpace | None:
    """The persist filesystem's space available to evesnap (statvfs), None if unknown."""
    try:
        st = os.statvfs(persist)
    except OSError:
        return None
    return FreeSpace(free_bytes=st.f_bavail * st.f_frsize, total_bytes=st.f_blocks * st.f_frsize)


def run_policy(
    policy: Policy, session: Session, now: datetime, dry_run: bool
) -> tuple[Plan, Execution | None]:
    """Plan at `now` for the session's apps and, unless `dry_run`, carry the plan out."""
    made = plan(policy, now, app_facts(session.orchestrator), free_space(session.persist))
    if dry_run:
        return made, None
    return made, execute(made, session.orchestrator)


# ------------------------------------------------------------------ commands


@click.group()
def policy() -> None:
    """Local schedules and retention from a policy file (see docs/policies.md)."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--now", "now_text", default=None, help="Show next fire times after this ISO 8601 time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def policy_check(file: Path, now_text: str | None, as_json: bool) -> None:
    """Validate FILE and print its schedules, retention, hooks and floors."""
    from evesnap_core.policy.cron import parse_cron

    pol = _load(file)
    now = _parse_now(now_text)
    local = now.astimezone(pol.zone).replace(tzinfo=None)
    sections = [("default", pol.effective(None))] + [(f"apps.{k}", pol.effective(k)) for k in pol.apps]
    rows: list[dict[str, Any]] = []
    for name, eff in sections:
        nexts = {}
        for sched, expr in sorted(eff.schedules.items()):
            upcoming = parse_cron(expr).next(local)
            nexts[sched] = upcoming.replace(tzinfo=pol.zone).isoformat() if upcoming else None
        rows.append(
            {
                "section": name,
                "enabled": eff.enabled,
                "schedules": {s: {"cron": e, "next": nexts[s]} for s, e in sorted(eff.schedules.items())},
                "retention": eff.retention.describe() if eff.retention else None,
                "hooks": eff.hooks.model_dump(),
                "minFree": eff.min_free.text if eff.min_free else None,
            }
        )
    for r in rows:
        for which in ("pre", "post"):
            argv = r["hooks"][which]
            if argv and not _runnable(argv[0]):
                click.echo(
                    f"warning: {r['section']}.hooks.{which}: {argv[0]!r} is not an executable", err=True
                )
    if as_json:
        print_json({"file": str(file), "timezone": pol.timezone, "sections": rows})
        return
    click.echo(f"{file}: valid; timezone {pol.timezone}")
    print_table(
        ["SECTION", "SCHEDULE", "CRON", "NEXT"],
        [[r["section"], s, v["cron"], v["next"] or "never"] for r in rows for s, v in r["schedules"].items()],
    )
    for r in rows:
        extras = [f"retention: {r['retention'] or 'none (schedule snapshots are never pruned)'}"]
        if r["minFree"]:
            extras.append(f"min_free: {r['minFree']}")
        for which in ("pre", "post"):
            if r["hooks"][which]:
                extras.append(f"{which}-hook: {r['hooks'][which]} (timeout {r['hooks']['timeout']:g} s)")
        if not r["enabled"]:
            extras.append("disabled")
        click.echo(f"{r['section']}: " + "; ".join(extras))


@policy.command("run")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--dry-run", is_flag=True, help="Print what would be created and pruned, and why; change nothing."
)
@click.option(
    "--now",
    "now_text",
    default=None,
    help="Plan at this ISO 8601 time instead of the clock (a naive time is UTC); snapshots taken get it too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def policy_run(obj: Any, file: Path, dry_run: bool, now_text: str | None, as_json: bool) -> None:
    """Run the policy in FILE once: take the snapshots whose schedule fired, prune by retention.

    Exit code 0 when all went to plan, 1 when a snapshot was vetoed, refused
    (free-space floor) or failed, or a prune or post-hook failed; 2 for an
    invalid FILE or argument.
    """
    pol = _load(file)
    now = _parse_now(now_text)
    session = session_or_fail(
        obj, as_json=as_json, write=not dry_run, locked_hint="stop it, or use --dry-run"
    )
    clock = session.orchestrator.clock
    if now_text is not None and not dry_run:
        session.orchestrator.clock = lambda: now  # snapshots are stamped with the planned time
    try:
        made, execution = run_policy(pol, session, now, dry_run)
    finally:
        session.orchestrator.clock = clock  # the agent's session, when it runs this for a client
    if as_json:
        print_json(
            {
                "file": str(file),
                "dryRun": dry_run,
                "plan": made.to_json_dict(),
                "execution": execution.model_dump(mode="json") if execution else None,
                "ok": execution.ok if execution else True,
            }
        )
    else:
        _show(made, execution)
    raise SystemExit(0 if execution is None or execution.ok else EXIT_FAILED)


def _short(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _show(made: Plan, execution: Execution | None) -> None:
    mode = "dry run: nothing was changed" if execution is None else "carried out"
    click.echo(f"policy at {_short(made.now)} (timezone {made.timezone}), {mode}")
    outcomes = {o.app: o for o in execution.apps} if execution else {}
    for ap in made.apps:
        click.echo(f"{ap.name or ap.app} ({ap.app}) [{ap.section}]")
        if not ap.enabled:
            click.echo("  disabled")
            continue
        out = outcomes.get(ap.app)
        fired = ", ".join(f"{f.schedule} ({f.cron}, due {_short(f.at)})" for f in ap.fired)
        if ap.refused:
            click.echo(f"  refused  {fired}: {ap.refused}")
        elif ap.create and out is None:
            click.echo(f"  create   would take a snapshot: {fired}")
        elif ap.create and out is not None:
            if out.created:
                click.echo(f"  created  {out.created}: {fired}")
            else:
                click.echo(f"  {'vetoed ' if out.vetoed else 'failed '}  {out.error}")
        if out is not None and out.error and out.created:
            click.echo(f"  error    {out.error}")
        if out is not None and out.post_hook is not None and not out.post_hook.ok:
            click.echo(f"  post-hook failed: {out.post_hook.detail}")
        for k in ap.keep:
            name = "(the new snapshot)" if k.snapshot == NEW else k.snapshot
            click.echo(f"  keep     {name}  {_short(k.created)}  {'; '.join(k.rules)}")
        results = {p.snapshot: p for p in out.prunes} if out is not None else {}
        for p in ap.prune:
            verb = "prune   "
            if p.snapshot in results:
                r = results[p.snapshot]
                verb = {"deleted": "pruned  ", "pending": "pending ", "gone": "gone    "}.get(
                    r.result, r.result
                )
                if r.detail and r.result != "deleted":
                    verb += f" ({r.detail})"
            click.echo(f"  {verb} {p.snapshot}  {_short(p.created)}  {p.reason}")
        if ap.next_fire is not None:
            click.echo(f"  next     {_short(ap.next_fire)} ({', '.join(ap.next_schedules)})")
    if execution is not None:
        for o in execution.apps:
            if o.error and o.app not in {ap.app for ap in made.apps if ap.create}:
                click.echo(f"{o.name or o.app}: {o.error}")
    for w in made.warnings:
        click.echo(f"warning: {w}", err=True)


# ------------------------------------------------------------------ the agent


def agent_policy_tick(path: Path, session: Session) -> Callable[[], bool]:
    """A function for the agent's loop: run the policy in `path` at most once a
    minute (cron's resolution), re-reading the file when it changes (an invalid
    file is reported and the previous one stays in force). Returns True when it
    ran, so that the agent rewrites its reports."""
    loaded: Policy | None = None
    seen: tuple[int, int] | None = None
    last_minute: datetime | None = None

    def tick() -> bool:
        nonlocal loaded, seen, last_minute
        try:
            stat = path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp is not None and stamp != seen:
            seen = stamp
            try:
                loaded = load_policy(path)
            except ConfigError as exc:
                click.echo(f"evesnap agent: ignoring invalid policy {exc}", err=True)
        now = datetime.now(UTC)
        minute = now.replace(second=0, microsecond=0)
        if loaded is None or minute == last_minute:
            return False
        last_minute = minute
        try:
            made, execution = run_policy(loaded, session, now, dry_run=False)
        except Exception as exc:  # the policy must never take the agent down
            click.echo(f"evesnap agent: policy run failed: {type(exc).__name__}: {exc}", err=True)
            return False
        for o in execution.apps if execution else ():
            if o.created:
                click.echo(f"evesnap agent: policy: {o.name or o.app}: created {o.created}", err=True)
            if o.error or o.refused:
                click.echo(f"evesnap agent: policy: {o.name or o.app}: {o.error or o.refused}", err=True)
            for p in o.prunes:
                click.echo(f"evesnap agent: policy: {o.name or o.app}: {p.result} {p.snapshot}", err=True)
        return any(ap.create or ap.prune for ap in made.apps)

    return tick
