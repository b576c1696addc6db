"""Snapshot lineage: who descends from whom, and what a delete changes.

Every snapshot records the snapshot its volume's content descended from when it
was taken (its parent), and the volume records its head: the snapshot the
current content descends from (after a rollback, its target). Deleting a
snapshot gives its children and the head its parent, so no parent ever names a
deleted snapshot; a listing is in creation order with parents before children.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def after_delete(
    parents: Mapping[str, str | None], head: str | None, deleted: str
) -> tuple[dict[str, str | None], str | None]:
    """The parents of the snapshots left and the head once `deleted` is gone:
    its children (and the head, if it was the head) take its parent."""
    grand = parents.get(deleted)
    kept = {
        sid: (grand if parent == deleted else parent) for sid, parent in parents.items() if sid != deleted
    }
    return kept, (grand if head == deleted else head)


def reparented(parents: Mapping[str, str | None], deleted: str) -> dict[str, str | None]:
    """Only the snapshots whose parent changes when `deleted` goes, and their new
    parent (for backends that write each one back, e.g. a ZFS property)."""
    grand = parents.get(deleted)
    return {sid: grand for sid, parent in parents.items() if parent == deleted and sid != deleted}


def parents_first(items: Sequence[T], key: Callable[[T], str], parent: Callable[[T], str | None]) -> list[T]:
    """`items` in their given (creation) order, except that a parent always comes
    before its children; a parent not among `items` is ignored."""
    by_id = {key(i): i for i in items}
    done: set[str] = set()
    out: list[T] = []

    def visit(item: T, trail: frozenset[str]) -> None:
        ident = key(item)
        if ident in done or ident in trail:  # a cycle is broken, never followed forever
            return
        up = parent(item)
        if up is not None and up in by_id:
            visit(by_id[up], trail | {ident})
        if ident not in done:
            done.add(ident)
            out.append(item)

    for item in items:
        visit(item, frozenset())
    return out
