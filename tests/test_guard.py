"""A broken store never fails a request: the breaker in front of the store (`llmfail.store.guard`).

Real parts only: a real SQLite file whose write lock another connection holds
(`BEGIN IMMEDIATE` left open), a directory where the DB should be, the real CLI,
and the engine on a loopback server with an injected clock.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

import pytest
from typer.testing import CliRunner

from llmfail import events as ev
from llmfail.cli import app
from llmfail.engine import Engine
from llmfail.errors import StateError
from llmfail.store.guard import GuardedStore, guard_store
from llmfail.store.select import select_store
from llmfail.store.sqlite import SqliteStore

from .conftest import Calls, FakeClock, make_config, ok, openai_error

runner = CliRunner()

CONFIG = """
defaults: {attempts: 1, timeout: 5s, cooldown: 30s}
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
chains:
  main: [a/m1, b/m2]
"""

MOCK_CONFIG = """
providers:
  m: {type: mock}
chains:
  demo: [m/echo]
"""


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the DB's write lock until it is closed (an open `BEGIN IMMEDIATE`)."""
    SqliteStore(str(path)).close()  # the file exists with its schema
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "locked.db"
    conn = _hold_write_lock(path)
    yield path
    conn.execute("ROLLBACK")
    conn.close()


def _short_store(path: Path) -> SqliteStore:
    """The store as the engine opens it itself: the short busy timeout of the request path."""
    store = select_store(str(path)).open(busy_timeout=0.1)
    assert isinstance(store, SqliteStore)
    return store


def _engine(config_text: str, server, guard: GuardedStore, clock: FakeClock) -> Engine:
    return Engine(make_config(config_text, server), guard, clock=clock, sleep=clock.sleep, rng=Random(7))


# --------------------------------------------------------------------------- issue 13's two reproductions, through the CLI


def _run_cli(db: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    config = tmp_path / "chains.yaml"
    config.write_text(MOCK_CONFIG)
    env = {**os.environ, "LLMFAIL_DB": str(db), "LLMFAIL_CONFIG": str(config)}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", "run", "hello there", "--chain", "demo", "--no-stream"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - began


def test_run_answers_promptly_with_a_warning_while_another_process_holds_the_write_lock(locked_db, tmp_path):
    done, took = _run_cli(locked_db, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello there\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert lines[0].startswith("llmfail: warning: shared state unavailable (the state DB")
    assert "locked" in lines[0] and lines[0].endswith("answered without it")
    # still locked when run exits: its events are not silently dropped
    assert "of this request could not be written to the state store" in lines[1] and lines[1].endswith("lost")
    assert took < 2.0  # not the 10 s busy timeout


def test_run_answers_with_a_warning_when_llmfail_db_is_a_directory(tmp_path):
    directory = tmp_path / "a-directory"
    directory.mkdir()
    done, took = _run_cli(directory, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello there\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert lines[0].startswith("llmfail: warning: shared state unavailable (") and str(directory) in lines[0]
    assert "could not be written to the state store" in lines[1]
    assert took < 5.0


@pytest.mark.parametrize(
    "args",
    [
        ["ls-benched"],
        ["ls-benched", "--json"],
        ["bench", "m/echo", "--for", "1m"],
        ["unbench", "--all"],
        ["events"],
        ["stats"],
    ],
    ids=" ".join,
)
def test_operator_commands_exit_1_with_one_line_when_the_db_is_a_directory(tmp_path, monkeypatch, args):
    directory = tmp_path / "a-directory"
    directory.mkdir()
    monkeypatch.setenv("LLMFAIL_DB", str(directory))
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"llmfail: error: cannot open the state DB {directory}: unable to open database file"
    assert lines[1].startswith("  hint: ") and len(lines) == 2


@pytest.mark.parametrize("args", [["bench", "m/echo", "--for", "1m"], ["unbench", "m/echo"]], ids=" ".join)
def test_operator_writes_exit_1_with_the_locked_message_and_never_pretend(locked_db, monkeypatch, args):
    monkeypatch.setattr("llmfail.store.sqlite.BUSY_TIMEOUT_S", 0.2)  # the operator's 10 s wait, shortened
    monkeypatch.setenv("LLMFAIL_DB", str(locked_db))
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"llmfail: error: the state DB {locked_db} is locked by another process (waited up to 0.2 s)"
    assert lines[1].startswith("  hint: ") and len(lines) == 2


def test_ls_benched_still_reads_a_write_locked_db(locked_db, monkeypatch):
    """A held write lock blocks no reader (WAL): listing benches tells the truth, so it answers."""
    monkeypatch.setenv("LLMFAIL_DB", str(locked_db))
    result = runner.invoke(app, ["ls-benched", "--json"])
    assert result.exit_code == 0 and result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the engine behind the breaker


class Counting:
    """A real store that counts the calls reaching it."""

    def __init__(self, store: SqliteStore) -> None:
        self.store, self.calls = store, 0

    def __getattr__(self, name: str) -> Any:
        self.calls += 1
        return getattr(self.store, name)


def test_a_locked_store_costs_one_budget_then_requests_skip_it(server, tmp_path, clock, locked_db):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(*[ok("fine")] * 5))
    counting = Counting(_short_store(locked_db))
    guard = GuardedStore(lambda: counting, clock=clock)  # type: ignore[arg-type, return-value]
    engine = _engine(CONFIG, server, guard, clock)
    reached = []
    for _ in range(5):
        result = engine.complete_sync("main", "hi")
        reached.append(counting.calls)
        assert result.text == "fine" and result.model == "a/m1"
        assert result.warnings == [f"shared state unavailable ({guard.degraded}): answered without it"]
    assert "locked" in (guard.degraded or "")
    assert reached[1:] == [reached[0]] * 4  # after the first timed-out write, nothing waits on the lock again


def test_events_spooled_during_an_outage_arrive_with_their_original_timestamps(server, tmp_path, clock):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(openai_error(503), ok("later")))
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("from b")))
    path = tmp_path / "state.db"
    holder = _hold_write_lock(path)
    guard = GuardedStore(lambda: _short_store(path), clock=clock, reopen_after_s=5.0)
    engine = _engine(CONFIG, server, guard, clock)
    outage_ts = clock.now
    result = engine.complete_sync("main", "hi")
    assert result.model == "b/m2" and result.warnings and guard.spooled >= 4
    holder.execute("ROLLBACK")
    holder.close()

    clock.advance(2.0)  # still open: nothing reaches the store, and the spool stays
    assert guard.states(["a/m1"])["a/m1"].is_benched(clock.now)  # the local bench, from the overlay
    assert guard.degraded is not None and SqliteStore(str(path)).events() == []

    clock.advance(60.0)  # past the bench and the breaker's wait: the next request closes it
    later = engine.complete_sync("main", "hi")
    assert later.warnings == [] and guard.degraded is None and guard.spooled == 0
    stored = SqliteStore(str(path)).events()
    spooled = [e for e in stored if e.request_id == result.request_id]
    assert [e.type for e in spooled] == [ev.ATTEMPT_FAILED, ev.BENCHED, ev.FAILOVER, ev.REQUEST]
    assert all(e.ts == outage_ts for e in spooled)  # written with the times they happened
    assert [e.id for e in stored] == sorted(e.id for e in stored)
    assert stored[-1].request_id == later.request_id  # replayed before anything newer


def test_the_breaker_retries_after_a_few_seconds_and_logs_each_transition_once(tmp_path, clock, caplog):
    directory = tmp_path / "not-yet-a-db"
    directory.mkdir()
    target = {"path": directory}
    opened: list[Path] = []

    def opener() -> SqliteStore:
        opened.append(target["path"])
        return _short_store(target["path"])

    guard = GuardedStore(opener, clock=clock, reopen_after_s=5.0)
    with caplog.at_level(logging.INFO, logger="llmfail.store"):
        assert guard.states(["x/y"]) == {}
        assert guard.degraded is not None and str(directory) in guard.degraded
        for _ in range(3):
            guard.states(["x/y"])
        assert len(opened) == 1  # open: nothing tried until the wait is over
        target["path"] = tmp_path / "state.db"
        clock.advance(4.9)
        guard.states(["x/y"])
        assert len(opened) == 1 and guard.degraded is not None
        clock.advance(0.2)
        guard.states(["x/y"])  # half-open: one trial, which works
        assert len(opened) == 2 and guard.degraded is None
    lines = [r.getMessage() for r in caplog.records if r.name == "llmfail.store"]
    assert len(lines) == 2
    assert lines[0].startswith("llmfail: shared state unavailable (cannot open the state DB")
    assert lines[1] == "llmfail: shared state is back: 0 spooled event(s) written"


def test_a_failed_trial_keeps_the_breaker_open_for_another_wait(tmp_path, clock, caplog):
    directory = tmp_path / "dir"
    directory.mkdir()
    attempts: list[float] = []

    def opener() -> SqliteStore:
        attempts.append(clock.now)
        return _short_store(directory)

    guard = GuardedStore(opener, clock=clock, reopen_after_s=5.0)
    with caplog.at_level(logging.INFO, logger="llmfail.store"):
        for _ in range(12):
            guard.append([ev.Event(type=ev.REQUEST, ts=clock.now)])
            clock.advance(1.0)
    assert [a - attempts[0] for a in attempts] == [0.0, 5.0, 10.0]
    assert guard.spooled == 12
    assert len([r for r in caplog.records if r.name == "llmfail.store"]) == 1  # one line per transition


def test_daily_quotas_fail_closed_while_shared_state_is_unreachable(server, tmp_path, clock):
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("from b")))
    directory = tmp_path / "dir"
    directory.mkdir()
    text = CONFIG.replace("main: [a/m1, b/m2]", "main: [{model: a/m1, daily_quota: 1000}, b/m2]")
    engine = Engine(make_config(text, server), db_path=str(directory), clock=clock, sleep=clock.sleep)
    skipped: list[ev.Event] = []
    engine.on_event(lambda e: skipped.append(e) if e.type == ev.QUOTA_SKIP else None)
    result = engine.complete_sync("main", "hi")
    assert result.model == "b/m2"  # a/m1 was never sent a request: its quota cannot be counted
    assert result.warnings and result.warnings[0].startswith("shared state unavailable (")
    assert [e.detail for e in skipped] == ["daily quota unknown while shared state is unavailable"]


def test_operator_calls_through_a_degraded_guard_raise_instead_of_pretending(tmp_path, clock):
    directory = tmp_path / "dir"
    directory.mkdir()
    guard = guard_store(None, str(directory), None, clock=clock)
    guard.states(["a/m1"])  # opens the breaker
    for call in (
        lambda: guard.benches(clock.now),
        lambda: guard.events(),
        lambda: guard.all_states(),
        lambda: guard.bench("a/m1", now=clock.now, until=clock.now + 60, manual=True, reason="x", kind=None),
        lambda: guard.unbench(None, now=clock.now),
        lambda: guard.tally(since=0, until=clock.now),
    ):
        with pytest.raises(StateError, match="cannot open the state DB"):
            call()


def test_the_spool_is_bounded_and_says_how_many_events_it_dropped(tmp_path, clock, caplog):
    path = tmp_path / "state.db"
    holder = _hold_write_lock(path)
    guard = GuardedStore(lambda: _short_store(path), clock=clock, spool_max=3)
    for n in range(5):
        guard.append([ev.Event(type=ev.REQUEST, ts=clock.now + n, detail=str(n))])
    assert guard.spooled == 3
    holder.execute("ROLLBACK")
    holder.close()
    clock.advance(10)
    with caplog.at_level(logging.INFO, logger="llmfail.store"):
        guard.states([])
    assert [e.detail for e in SqliteStore(str(path)).events()] == ["2", "3", "4"]  # the newest kept
    assert (
        caplog.records[-1]
        .getMessage()
        .endswith("3 spooled event(s) written; 2 older event(s) were dropped (spool full)")
    )


def test_a_healthy_store_is_used_directly_and_requests_carry_no_warning(make_engine, server, store):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(ok("fine")))
    engine = make_engine(CONFIG)
    assert isinstance(engine.store, GuardedStore) and engine.store.degraded is None
    result = engine.complete_sync("main", "hi")
    assert result.warnings == []
    assert [e.type for e in store.events()] == [ev.REQUEST]
    assert Engine(engine.config, engine.store).store is engine.store  # never wrapped twice


def test_local_benches_continue_from_the_shared_counts(tmp_path, clock):
    """The overlay starts from the last snapshot, so a third failure while degraded is a third bench
    (progressive cooldown x3), not a first one."""
    path = tmp_path / "state.db"
    shared = SqliteStore(str(path))
    t0 = clock.now
    shared.record_failure("a/m1", now=t0, kind="transient", status=503, bench_for=10.0, factor=3.0)
    shared.record_failure("a/m1", now=t0 + 20, kind="transient", status=503, bench_for=10.0, factor=3.0)
    guard = GuardedStore(lambda: _short_store(path), clock=clock)
    assert guard.states(["a/m1"])["a/m1"].bench_count == 2  # the snapshot
    holder = _hold_write_lock(path)
    try:
        state, benched = guard.record_failure(
            "a/m1", now=t0 + 100, kind="transient", status=503, bench_for=10.0, factor=3.0
        )
        assert guard.degraded is not None and benched
        assert (state.bench_count, state.bench_until) == (3, t0 + 130)
        assert guard.states(["a/m1"])["a/m1"].bench_until == t0 + 130
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert shared.states(["a/m1"])["a/m1"].bench_count == 2  # the shared state was never touched
