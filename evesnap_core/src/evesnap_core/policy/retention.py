"""Tiered retention: which schedule snapshots to keep, and why each of the others goes.

Why on its own: it is the one rule that deletes data, so it is pure, ordered
only by (creation time, id) and explains every decision. The model is sanoid's
(and restic's ``--keep-hourly``): for each tier (hourly, daily, weekly, monthly,
yearly) the snapshots fall into calendar periods in the policy's timezone; the
newest snapshot of each of the N most recent periods that hold a snapshot is
kept. ``latest=N`` keeps the N newest. A snapshot kept by any rule is kept; the
others are pruned, and the reason names every rule in force and what it kept
instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from evesnap_core.policy.model import Retention


@dataclass(frozen=True)
class Candidate:
    """A snapshot retention may keep or prune."""

    id: str
    created: datetime


@dataclass(frozen=True)
class Decision:
    id: str
    created: datetime
    kept_by: tuple[str, ...]
    """The rules that keep it, e.g. ('hourly=24: newest of 2026-12-01 04h',); empty = pruned."""
    reason: str
    """Why it is kept, or why it is pruned (naming every rule in force)."""

    @property
    def kept(self) -> bool:
        return bool(self.kept_by)


def period(tier: str, at: datetime) -> tuple[tuple[int, ...], str]:
    """The calendar period of `at` (already in the policy's zone) for `tier`: (key, label)."""
    if tier == "hourly":
        return (
            at.year,
            at.month,
            at.day,
            at.hour,
        ), f"{at.year:04d}-{at.month:02d}-{at.day:02d} {at.hour:02d}h"
    if tier == "daily":
        return (at.year, at.month, at.day), f"{at.year:04d}-{at.month:02d}-{at.day:02d}"
    if tier == "weekly":
        year, week, _ = at.isocalendar()
        return (year, week), f"{year}-W{week:02d}"
    if tier == "monthly":
        return (at.year, at.month), f"{at.year:04d}-{at.month:02d}"
    if tier == "yearly":
        return (at.year,), f"{at.year:04d}"
    raise ValueError(f"unknown retention tier {tier!r}")


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def decide(rules: Retention, candidates: Iterable[Candidate], zone: tzinfo) -> list[Decision]:
    """Keep or prune every candidate; the result is newest first and does not depend
    on the order of `candidates` (ties in time are broken by id)."""
    ordered = sorted(candidates, key=lambda c: (c.created, c.id), reverse=True)
    if not ordered:
        return []
    local = [c.created.astimezone(zone) for c in ordered]
    kept: list[list[str]] = [[] for _ in ordered]
    why_not: list[list[str]] = [[] for _ in ordered]
    for name, count in rules.rules():
        if name == "latest":
            last = ordered[min(count, len(ordered)) - 1]
            beyond = (
                f"latest={count}: not among the {count} newest "
                f"(the oldest of those is {last.id} at {_stamp(last.created)})"
            )
            for i in range(len(ordered)):
                if i < count:
                    kept[i].append(f"latest={count}: #{i + 1} newest")
                else:
                    why_not[i].append(beyond)
            continue
        periods = [period(name, at) for at in local]
        representative: dict[tuple[int, ...], int] = {}
        labels: dict[tuple[int, ...], str] = {}
        for i, (key, label) in enumerate(periods):  # newest first: the first of a period is its newest
            if key not in representative:
                representative[key] = i
                labels[key] = label
        newest_periods = sorted(representative, reverse=True)[:count]
        kept_periods = set(newest_periods)
        too_old = f"is older than the {count} newest periods kept (oldest kept: {labels[newest_periods[-1]]})"
        for i, (key, label) in enumerate(periods):
            rep = representative[key]
            if key in kept_periods and rep == i:
                kept[i].append(f"{name}={count}: newest of {label}")
            elif key in kept_periods:
                newest = ordered[rep]
                why_not[i].append(
                    f"{name}={count}: {label} keeps its newest, {newest.id} at {_stamp(newest.created)}"
                )
            else:
                why_not[i].append(f"{name}={count}: {label} {too_old}")
    described = rules.describe()
    decisions = []
    for i, c in enumerate(ordered):
        if kept[i]:
            decisions.append(Decision(c.id, c.created, tuple(kept[i]), "kept by " + "; ".join(kept[i])))
        else:
            decisions.append(
                Decision(c.id, c.created, (), f"not kept by {described}: " + "; ".join(why_not[i]))
            )
    return decisions
