"""The journal: the one path every event takes into the log (store append, observers, retention)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from llmfail import events as ev
from llmfail import journal as journal_module
from llmfail.config import parse_config
from llmfail.engine import Engine
from llmfail.errors import StateError
from llmfail.events import Event
from llmfail.journal import PRUNE_EVERY_S, Journal
from llmfail.store.sqlite import SqliteStore

from .conftest import FakeClock

DAY = 86400.0
LLMFAIL = Path(__file__).resolve().parents[1] / "llmfail"


def probe(ts: float, model: str = "a/m") -> Event:
    return Event(type=ev.PROBE, ts=ts, model=model)


def test_a_write_is_stored_and_every_observer_sees_the_stored_event_in_order(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)
    first: list[Event] = []
    second: list[Event] = []
    journal.subscribe(first.append)
    journal.subscribe(lambda e: second.append(e) if first[-1] is e else None)  # runs after the first
    stored = journal.write(probe(clock.now))
    assert stored.id is not None and stored.model == "a/m"
    assert [e.id for e in store.events()] == [stored.id]
    assert first == second == [stored]


def test_write_many_is_one_append_with_increasing_ids_and_observers_see_each(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)
    seen: list[Event] = []
    journal.subscribe(seen.append)
    stored = journal.write_many([probe(clock.now, "a/m"), probe(clock.now, "b/m")])
    ids = [e.id for e in stored]
    assert ids == sorted(ids) and None not in ids
    assert (
        [(e.id, e.model) for e in seen]
        == [(e.id, e.model) for e in store.events()]
        == [(ids[0], "a/m"), (ids[1], "b/m")]
    )
    assert journal.write_many([]) == []


def test_an_observer_that_raises_is_logged_and_neither_the_write_nor_the_others_notice(
    store: SqliteStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    journal = Journal(store, clock=clock)
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    journal.subscribe(broken)
    journal.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="llmfail"):
        stored = journal.write(probe(clock.now))
    assert seen == [stored] and len(store.events()) == 1
    assert "observer" in caplog.text and "observer bug" in caplog.text


def test_unsubscribe_stops_the_observer_and_is_harmless_twice(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)
    seen: list[Event] = []
    unsubscribe = journal.subscribe(seen.append)
    journal.write(probe(clock.now))
    unsubscribe()
    unsubscribe()
    journal.write(probe(clock.now))
    assert len(seen) == 1 and len(store.events()) == 2


def test_a_store_that_cannot_append_raises_and_no_observer_sees_the_unstored_event(tmp_path: Path, clock: FakeClock):
    store = SqliteStore(str(tmp_path / "state.db"))
    journal = Journal(store, clock=clock)
    seen: list[Event] = []
    journal.subscribe(seen.append)
    (tmp_path / "state.db").unlink()
    (tmp_path / "state.db").mkdir()  # what a reconnect will find: a directory, not a database
    store.close()
    with pytest.raises(StateError):
        journal.write(probe(clock.now))
    assert seen == []


# --------------------------------------------------------------------------- retention


def test_the_first_write_prunes_then_at_most_hourly(store: SqliteStore, clock: FakeClock):
    store.append([probe(clock.now - 2 * DAY, "old/m")])
    journal = Journal(store, clock=clock, retention=DAY)
    journal.write(probe(clock.now))
    assert "old/m" not in {e.model for e in store.events()}
    store.append([probe(clock.now - 2 * DAY, "old/m")])
    clock.advance(PRUNE_EVERY_S - 1)
    journal.write(probe(clock.now))
    assert "old/m" in {e.model for e in store.events()}  # within the hour: not offered again
    clock.advance(2)
    journal.write(probe(clock.now))
    assert "old/m" not in {e.model for e in store.events()}


def test_a_journal_without_retention_never_prunes(store: SqliteStore, clock: FakeClock):
    store.append([probe(clock.now - 400 * DAY, "old/m")])
    Journal(store, clock=clock).write(probe(clock.now))
    assert "old/m" in {e.model for e in store.events()}


def test_a_prune_that_fails_is_logged_and_the_write_still_succeeds(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    db = tmp_path / "state.db"
    store = SqliteStore(str(db), busy_timeout=0.1)
    store.append([probe(clock.now - 2 * DAY, "old/m")])
    journal = Journal(store, clock=clock, retention=DAY)
    other = sqlite3.connect(db, isolation_level=None)

    def take_the_write_lock(event: Event) -> None:  # runs after the append, before the prune
        other.execute("BEGIN IMMEDIATE")

    journal.subscribe(take_the_write_lock)
    try:
        with caplog.at_level(logging.WARNING, logger="llmfail"):
            stored = journal.write(probe(clock.now))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert stored.id is not None and "pruning old events failed" in caplog.text
    assert {"old/m", "a/m"} <= {e.model for e in store.events()}
    store.close()


# --------------------------------------------------------------------------- before the first write


def test_a_step_before_the_next_write_runs_once_and_may_write_itself(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)
    seen: list[str | None] = []
    journal.subscribe(lambda e: seen.append(e.model))
    journal.before_next_write(lambda: journal.write(probe(clock.now, "first/m")) and None)
    journal.write(probe(clock.now, "second/m"))
    journal.write(probe(clock.now, "third/m"))
    assert seen == [e.model for e in store.events()] == ["first/m", "second/m", "third/m"]


def test_a_step_that_raises_is_logged_and_the_write_goes_on(
    store: SqliteStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    journal = Journal(store, clock=clock)

    def broken() -> None:
        raise RuntimeError("step bug")

    journal.before_next_write(broken)
    with caplog.at_level(logging.ERROR, logger="llmfail"):
        stored = journal.write(probe(clock.now))
    assert stored.id is not None and "step bug" in caplog.text


# --------------------------------------------------------------------------- one path


def test_only_the_journal_appends_to_the_store():
    """Every event goes through `Journal.write`, so no writer can skip the observers again."""
    appenders = sorted(
        str(path.relative_to(LLMFAIL))
        for path in LLMFAIL.rglob("*.py")
        if "store" not in path.relative_to(LLMFAIL).parts[:-1]
        and re.search(r"\bstore\.append\(|\.append\(\[\s*(Event|event)", path.read_text(encoding="utf-8"))
    )
    assert appenders == ["journal.py"]


# ---------------------------------------------------------------- post: held until the poster waits (SQLite)


class CountingStore(SqliteStore):
    """A real SQLite store that also counts its appends (each is one transaction)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.appends: list[int] = []

    def append(self, events: Sequence[Event]) -> list[int]:
        self.appends.append(len(events))
        return super().append(events)


MOCK = """
providers:
  m: {type: mock}
chains:
  demo: [m/echo]
"""


async def loop_turns(count: int = 3) -> None:
    """Let the event loop run a few turns (a held write is due at the next one)."""
    for _ in range(count):
        await asyncio.sleep(0)


def test_outside_an_event_loop_a_post_is_a_write_in_the_callers_thread(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)
    threads: list[str] = []
    journal.subscribe(lambda e: threads.append(threading.current_thread().name))
    journal.post(probe(clock.now))
    assert [e.model for e in store.events()] == ["a/m"]  # stored when post returns
    assert threads == [threading.current_thread().name]


def test_posts_are_held_until_the_poster_waits_then_written_in_one_transaction(tmp_path: Path, clock: FakeClock):
    store = CountingStore(str(tmp_path / "state.db"))
    journal = Journal(store, clock=clock)
    seen: list[Event] = []
    journal.subscribe(seen.append)

    async def walk() -> tuple[list[Event], list[Event]]:
        for model in ("a/m", "b/m", "c/m"):
            journal.post(probe(clock.now, model))
        held = store.events()
        await loop_turns()
        return held, store.events()

    held, written = asyncio.run(walk())
    assert held == [] and store.appends == [3]
    assert [e.model for e in written] == ["a/m", "b/m", "c/m"]
    assert [(e.id, e.model) for e in seen] == [(e.id, e.model) for e in written]
    store.close()


def test_settled_writes_what_is_held_before_it_returns(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)

    async def walk() -> list[Event]:
        journal.post(probe(clock.now))
        await journal.settled()
        return store.events()

    assert [e.model for e in asyncio.run(walk())] == ["a/m"]


def test_a_write_made_while_events_are_held_writes_them_first_so_ids_keep_their_order(
    store: SqliteStore, clock: FakeClock
):
    journal = Journal(store, clock=clock)

    async def walk() -> None:
        journal.post(probe(clock.now, "held/m"))
        journal.write(probe(clock.now, "written/m"))  # an operator's bench, say
        await loop_turns()

    asyncio.run(walk())
    assert [e.model for e in store.events()] == ["held/m", "written/m"]


def test_observers_of_held_events_run_in_the_context_of_the_code_that_posted_each(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)
    poster: contextvars.ContextVar[str] = contextvars.ContextVar("poster", default="nobody")
    seen: list[tuple[str | None, str]] = []
    journal.subscribe(lambda e: seen.append((e.model, poster.get())))

    async def post_as(name: str, model: str) -> None:
        poster.set(name)
        journal.post(probe(clock.now, model))
        await loop_turns()

    async def both() -> None:
        await asyncio.gather(post_as("first", "a/m"), post_as("second", "b/m"))

    asyncio.run(both())
    assert seen == [("a/m", "first"), ("b/m", "second")]


def concurrent_walks(
    engine: Engine, stored: Callable[[], set[str | None]], count: int, *, answer_first: bool = False
) -> None:
    """`count` requests through `engine` at once (closed after); each must find its request row
    stored (`stored()` reads their ids) and observed when it has returned, or, inside
    `answer_first()`, once it has settled, as the gateway does after sending its answer."""
    observed: set[str | None] = set()
    engine.on_event(lambda e: observed.add(e.request_id) if e.type == ev.REQUEST else None)

    async def one(index: int) -> tuple[str, bool, bool]:
        if answer_first:
            with engine.journal.answer_first():
                result = await engine.complete("demo", f"ping {index}")
            await engine.journal.settled()
        else:
            result = await engine.complete("demo", f"ping {index}")
        return result.request_id, result.request_id in observed, result.request_id in stored()

    async def traffic() -> list[tuple[str, bool, bool]]:
        try:
            return await asyncio.gather(*(one(index) for index in range(count)))
        finally:
            await engine.aclose()

    outcomes = asyncio.run(traffic())
    assert all(was_observed and was_stored for _, was_observed, was_stored in outcomes)
    assert len({request_id for request_id, _, _ in outcomes}) == count


@pytest.mark.parametrize("answer_first", [False, True], ids=["settled-by-the-walk", "answer-first"])
def test_concurrent_requests_share_transactions_and_each_returns_with_its_events_written(
    tmp_path: Path, answer_first: bool
):
    store = CountingStore(str(tmp_path / "state.db"))
    engine = Engine(parse_config(MOCK, "test.yaml"), store)
    concurrent_walks(
        engine, lambda: {e.request_id for e in store.events(types=[ev.REQUEST])}, 32, answer_first=answer_first
    )
    written = sum(store.appends)
    assert written == len(store.events()) and len(store.appends) < written  # fewer commits than events
    store.close()


def test_inside_answer_first_a_walk_returns_before_its_events_are_written_and_settled_writes_them(
    store: SqliteStore,
):
    engine = Engine(parse_config(MOCK, "test.yaml"), store)

    async def answer() -> tuple[str, list[str | None], list[str | None], list[str | None]]:
        try:
            with engine.journal.answer_first():
                result = await engine.complete("demo", "ping")
            before = [e.request_id for e in store.events(types=[ev.REQUEST])]
            await engine.journal.settled()
            after = [e.request_id for e in store.events(types=[ev.REQUEST])]
            plain = await engine.complete("demo", "ping")  # outside it: written when the walk returns
            return result.request_id, before, after, [plain.request_id]
        finally:
            await engine.aclose()

    request_id, before, after, plain = asyncio.run(answer())
    assert before == [] and after == [request_id]
    assert [e.request_id for e in store.events(types=[ev.REQUEST])] == [request_id, *plain]


FAILOVER = """
defaults: {attempts: 1}
providers:
  flaky: {type: mock, fail: 503}
chains:
  demo: [flaky/gpt-4o, mock/echo]
"""


def test_inside_answer_first_a_failovers_events_wait_for_the_answer_and_are_one_transaction(tmp_path: Path):
    store = CountingStore(str(tmp_path / "state.db"))
    engine = Engine(parse_config(FAILOVER, "test.yaml"), store)

    async def answer() -> tuple[list[Event], list[str]]:
        try:
            with engine.journal.answer_first():
                result = await engine.complete("demo", "ping")
            await loop_turns()  # the answer goes out here; nothing is written yet
            before = store.events()
            await engine.journal.settled()
            assert result.model == "mock/echo" and result.failovers == 1
            return before, [e.type for e in store.events()]
        finally:
            await engine.aclose()

    before, types = asyncio.run(answer())
    assert before == []
    assert types[:1] == [ev.ATTEMPT_FAILED] and ev.FAILOVER in types and types[-1] == ev.REQUEST
    assert store.appends == [len(types)]  # the walk's events, all in one transaction
    store.close()


def test_inside_answer_first_a_walk_slower_than_the_hold_shows_its_events_while_it_runs(
    store: SqliteStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(journal_module, "ANSWER_FIRST_HOLD_S", 0.01)
    journal = Journal(store, clock=clock)

    async def long_walk() -> list[Event]:
        with journal.answer_first():
            journal.post(probe(clock.now, "failing/m"))
            for _ in range(500):  # the walk goes on waiting (a backoff, a slow provider)
                if written := store.events():
                    return written
                await asyncio.sleep(0.01)
        return []

    assert [e.model for e in asyncio.run(long_walk())] == ["failing/m"]


def test_a_plain_post_sharing_a_turn_with_an_answer_first_one_leaves_the_hold_timer_working(
    store: SqliteStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    """A stream (plain) and a whole answer (answer first) post in the same loop turn; a later
    long answer-first walk must still have its events written while it runs."""
    monkeypatch.setattr(journal_module, "ANSWER_FIRST_HOLD_S", 0.01)
    journal = Journal(store, clock=clock)

    async def walks() -> list[str | None]:
        journal.post(probe(clock.now, "plain/m"))
        with journal.answer_first():
            journal.post(probe(clock.now, "gateway/m"))
        await loop_turns()
        with journal.answer_first():
            journal.post(probe(clock.now, "long/m"))
            for _ in range(500):
                if any(e.model == "long/m" for e in store.events()):
                    break
                await asyncio.sleep(0.01)
        return [e.model for e in store.events()]

    assert asyncio.run(walks()) == ["plain/m", "gateway/m", "long/m"]


def test_settled_on_one_loop_waits_for_a_write_of_its_events_under_way_on_another(tmp_path: Path, clock: FakeClock):
    """Two threads, each with its loop, share a journal. A's timer takes B's held event into its
    write, and A's observer is slow; B's settled() must not return before B's event is observed."""
    store = SqliteStore(str(tmp_path / "state.db"))
    journal = Journal(store, clock=clock)
    seen: list[str | None] = []
    a_posted, b_posted, a_writing, b_returned = (threading.Event() for _ in range(4))
    outcome: dict[str, bool] = {}

    def slow_on_a(event: Event) -> None:
        if event.model == "a/m":
            a_writing.set()
            b_returned.wait(0.5)  # an exporter, say; B must be kept waiting all along
        seen.append(event.model)

    journal.subscribe(slow_on_a)

    async def on_a() -> None:
        journal.post(probe(clock.now, "a/m"))
        a_posted.set()
        b_posted.wait(5)  # blocking A's loop on purpose: its timer cannot run before B has posted
        await loop_turns()  # A's timer writes a/m and b/m

    async def on_b() -> None:
        await asyncio.to_thread(a_posted.wait, 5)
        journal.post(probe(clock.now, "b/m"))  # due on A's timer
        b_posted.set()
        await asyncio.to_thread(a_writing.wait, 5)
        await journal.settled()
        outcome["observed"] = "b/m" in seen
        b_returned.set()

    threads = [threading.Thread(target=asyncio.run, args=(walk(),)) for walk in (on_a, on_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcome == {"observed": True}
    assert [e.model for e in store.events()] == ["a/m", "b/m"]
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_drops_what_its_parent_held_so_nothing_is_written_twice(store: SqliteStore, clock: FakeClock):
    journal = Journal(store, clock=clock)

    async def post_then_fork() -> None:
        journal.post(probe(clock.now))
        child = os.fork()
        if child == 0:  # the child closes its engine: nothing of the parent's to write
            try:
                journal.flush()
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        await journal.settled()

    asyncio.run(post_then_fork())
    assert [e.model for e in store.events()] == ["a/m"]
