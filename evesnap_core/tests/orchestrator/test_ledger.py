"""The ledger's intents: committed on success, undone on an error, left for recovery on a crash."""

from __future__ import annotations

from uuid import UUID

import pytest

from evesnap_core.errors import EvesnapError
from evesnap_core.orchestrator.ledger import Ledger
from evesnap_core.orchestrator.store import MemoryStore
from evesnap_core.records import utcnow

APP = UUID("6a0b3b4e-6a7e-4c3f-9d5a-1f2e3d4c5b6a")


def ledger() -> Ledger:
    return Ledger(MemoryStore(), utcnow)


def test_an_intent_is_journalled_during_its_block_and_committed_after_it() -> None:
    book = ledger()
    with book.intent("snapshot", APP, "s1", {"volumes": "a#0"}) as intent:
        assert [i["intent"] for i in book.unfinished()] == [intent.token]
        assert book.unfinished()[0]["kind"] == "snapshot"
    assert book.unfinished() == []


def test_an_error_runs_the_undos_last_first_commits_and_goes_on() -> None:
    book = ledger()
    undone: list[str] = []
    with pytest.raises(EvesnapError, match="backend said no"), book.intent("clone", APP, "s1") as intent:
        intent.on_error(lambda exc: undone.append(f"first: {exc}"))
        intent.on_error(lambda exc: undone.append("second"))
        raise EvesnapError("backend said no")
    assert undone == ["second", "first: backend said no"]
    assert book.unfinished() == []


def test_an_error_after_keep_is_not_undone_and_leaves_the_intent() -> None:
    book = ledger()
    undone: list[str] = []
    with pytest.raises(EvesnapError), book.intent("rollback", APP, "s1") as intent:
        intent.on_error(lambda exc: undone.append("undo"))
        intent.keep()
        raise EvesnapError("the store is full")
    assert undone == []
    assert [i["kind"] for i in book.unfinished()] == ["rollback"]


def test_anything_but_an_evesnap_error_leaves_the_intent_for_recovery() -> None:
    book = ledger()
    undone: list[str] = []
    with pytest.raises(KeyError), book.intent("snapshot", APP, "s1") as intent:
        intent.on_error(lambda exc: undone.append("undo"))
        raise KeyError("a bug")
    assert undone == []
    assert [i["snapshot"] for i in book.unfinished()] == ["s1"]


def test_an_undo_that_fails_leaves_the_intent_for_recovery() -> None:
    book = ledger()

    def broken(exc: EvesnapError) -> None:
        raise EvesnapError("undo failed too")

    with pytest.raises(EvesnapError, match="undo failed too"), book.intent("snapshot", APP, "s1") as intent:
        intent.on_error(broken)
        raise EvesnapError("first failure")
    assert len(book.unfinished()) == 1


def test_a_return_inside_the_block_commits() -> None:
    book = ledger()

    def operation() -> str:
        with book.intent("delete", APP, "s1"):
            return "done"

    assert operation() == "done"
    assert book.unfinished() == []
