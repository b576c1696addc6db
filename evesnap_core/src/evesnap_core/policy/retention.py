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
        return (at.year, at.month, at.day, at.hour), f"{at:%Y-%m-%d %H}h"
    if tier == "daily":
        return (at.year, at.month, at.day), f"{at:%Y-%m-%d}"
    if tier == "weekly":
        year, week, _ = at.isocalendar()
        return (year, week), f"{year}-W{week:02d}"
    if tier == "monthly":
        return (at.year, at.month), f"{at:%Y-%m}"
    if tier == "yearly":
        return (at.year,), f"{at:%Y}"
    raise ValueError(f"unknown retention tier {tier!r}")


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def decide(rules: Retention, candidates: Iterable[Candidate], zone: tzinfo) -> list[Decision]:
    """Keep or prune every candidate; the result is newest first and does not depend
    on the order of `candidates` (ties in time are broken by id)."""
    ordered = sorted(candidates, key=lambda c: (c.created, c.id), reverse=True)
    if not ordered:
        return []
    kept: dict[str, list[str]] = {c.id: [] for c in ordered}
    why_not: dict[str, list[str]] = {c.id: [] for c in ordered}
    for name, count in rules.rules():
        if name == "latest":
            for i, c in enumerate(ordered):
                if i < count:
                    kept[c.id].append(f"latest={count}: #{i + 1} newest")
                else:
                    newest = ordered[count - 1]
                    why_not[c.id].append(
                        f"latest={count}: not among the {count} newest "
                        f"(the {count}th newest is {newest.id} at {_stamp(newest.created)})"
                    )
            continue
        representative: dict[tuple[int, ...], Candidate] = {}
        labels: dict[tuple[int, ...], str] = {}
        for c in ordered:  # newest first: the first seen of a period is its newest
            key, label = period(name, c.created.astimezone(zone))
            if key not in representative:
                representative[key] = c
                labels[key] = label
        newest_periods = sorted(representative, reverse=True)[:count]
        kept_periods = set(newest_periods)
        oldest_kept = labels[newest_periods[-1]]
        for c in ordered:
            key, label = period(name, c.created.astimezone(zone))
            rep = representative[key]
            if key in kept_periods and rep.id == c.id:
                kept[c.id].append(f"{name}={count}: newest of {label}")
            elif key in kept_periods:
                why_not[c.id].append(
                    f"{name}={count}: {label} keeps its newest, {rep.id} at {_stamp(rep.created)}"
                )
            else:
                why_not[c.id].append(
                    f"{name}={count}: {label} is older than the {count} newest periods kept "
                    f"(oldest kept: {oldest_kept})"
                )
    decisions = []
    for c in ordered:
        if kept[c.id]:
            decisions.append(Decision(c.id, c.created, tuple(kept[c.id]), "kept by " + "; ".join(kept[c.id])))
        else:
            decisions.append(
                Decision(c.id, c.created, (), f"not kept by {rules.describe()}: " + "; ".join(why_not[c.id]))
            )
    return decisions
