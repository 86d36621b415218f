"""SQLite-only checks: the file, its PRAGMAs, WAL, migrations, locking, fork and the states cache.

Behaviour every backend shares is in `test_store_contract.py`; this file is
about how the SQLite backend keeps it: a real file under tmp_path, inspected
byte for byte and through a second raw connection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfail import events as ev
from llmfail import redact
from llmfail.errors import StateError
from llmfail.events import Event
from llmfail.store import ModelState
from llmfail.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore

T0 = 1_700_000_000.0
KEY = "openai/gpt-4o"
SECRET = "sk-test-CANARY123456789"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(db))
    yield s
    s.close()


def fail(store: SqliteStore, now: float, *, bench_for: float | None = 30.0) -> ModelState:
    """A transient 503 on KEY, benching for 30 s unless told otherwise."""
    state, _ = store.record_failure(KEY, now=now, kind="transient", status=503, bench_for=bench_for)
    return state


def snapshot(db: Path) -> dict[str, bytes]:
    """Bytes of the DB and its WAL: a pure read must leave both untouched."""
    return {p.name: p.read_bytes() for p in db.parent.iterdir() if not p.name.endswith("-shm")}


def test_opening_creates_parent_dirs_and_uses_wal(db: Path, store: SqliteStore) -> None:
    assert db.is_file()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()
    assert {"meta", "models", "events", "quotas"} <= tables
    assert {"events_ts", "events_model_ts", "events_type_ts", "events_chain_ts"} <= indexes


def test_connection_has_busy_timeout_and_normal_sync(store: SqliteStore) -> None:
    with store._read() as conn:
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.isolation_level is None


def test_migrations_are_recorded_in_meta(db: Path, store: SqliteStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    finally:
        conn.close()


def test_a_schema_newer_than_the_code_is_refused_with_an_upgrade_hint(db: Path, store: SqliteStore) -> None:
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StateError) as err:
        SqliteStore(str(db))
    assert "99" in err.value.message and str(db) in err.value.message
    assert err.value.hint and "upgrade" in err.value.hint


def test_a_garbage_file_is_a_state_error_naming_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a sqlite database at all\n" * 100)
    with pytest.raises(StateError) as err:
        SqliteStore(str(junk))
    assert str(junk) in err.value.message
    assert "not" in err.value.message and "SQLite" in err.value.message
    assert err.value.__cause__ is None or not isinstance(err.value.__cause__, sqlite3.Error)


def test_a_directory_as_db_path_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError) as err:
        SqliteStore(str(tmp_path))
    assert str(tmp_path) in err.value.message


def test_reads_never_mutate_the_file_or_commit(db: Path, tmp_path: Path, store: SqliteStore) -> None:
    fail(store, T0 - 100)  # an expired bench: reading it must not "tidy" it
    store.bench("m/manual", now=T0, until=T0 + 60, manual=True, reason="r", kind=None)
    store.take_quota(KEY, day="2024-01-01", limit=5)
    store.append([Event(type="request", ts=T0, model=KEY)])
    store.prune(now=T0, retention=86400, force=True)
    watcher = SqliteStore(str(db))
    try:
        version = watcher.change_token()
        before = snapshot(db)
        with store._read() as conn:
            changes = conn.total_changes
        for now in (T0, T0 + 1000, T0 + 10**6):
            store.states([KEY, "m/manual", "nope"])
            store.all_states()
            store.benches(now)
            store.quota_used(KEY, day="2024-01-01")
            store.events(since=0, types=["request"], limit=10, newest=True)
            store.max_event_id()
            store.change_token()
            store.prune(now=T0 + 10, retention=1)  # not due: must not write either
            store.record_success("never/seen", now=now)
        with store._read() as conn:
            assert conn.total_changes == changes
        assert snapshot(db) == before
        assert watcher.change_token() == version
        assert store.states([KEY])[KEY].bench_until == T0 - 70
    finally:
        watcher.close()


def test_record_success_on_an_unknown_key_leaves_the_file_untouched(db: Path, store: SqliteStore) -> None:
    before = snapshot(db)
    assert store.record_success("never/seen", now=T0) is None
    assert store.all_states() == []
    assert snapshot(db) == before


def test_no_registered_secret_reaches_the_file(db: Path, store: SqliteStore) -> None:
    redact.register_secret(SECRET)
    store.append(
        [
            Event(
                type="attempt_failed",
                ts=T0,
                detail=f"401 invalid key {SECRET}",
                data={"headers": [f"Authorization: {SECRET}"], "nested": {"msg": SECRET}, SECRET: 1},
            )
        ]
    )
    (event,) = store.events()
    assert SECRET not in (event.detail or "") and "***" in (event.detail or "")
    assert SECRET not in repr(event.data)
    assert event.data["nested"] == {"msg": "***"}
    store.close()
    raw = b"".join(snapshot(db).values())
    assert SECRET.encode() not in raw


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_reconnects_instead_of_reusing_the_parents_connection(store: SqliteStore) -> None:
    fail(store, T0, bench_for=None)
    with store._read() as conn:
        inherited = conn
    pid = os.fork()
    if pid == 0:  # child: any exception must end in os._exit, never back into pytest
        code = 1
        try:
            fail(store, T0 + 1, bench_for=None)
            store.append([Event(type="request", ts=T0, detail="from the child")])
            code = 0 if store._conn is not None and store._conn is not inherited else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.states([KEY])[KEY].failures == 2
    assert [e.detail for e in store.events()] == ["from the child"]
    with store._read() as conn:
        assert conn is inherited  # the parent keeps its own connection


def test_a_writer_waits_only_its_busy_timeout_then_names_the_lock(db: Path, store: SqliteStore) -> None:
    """The engine's guard opens its store with ~0.1 s: a held lock must cost that, not 10 s."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    quick = SqliteStore(str(db), busy_timeout=0.1)
    try:
        started = time.monotonic()
        with pytest.raises(StateError) as err:
            fail(quick, T0)
        assert time.monotonic() - started < 2.0
        assert "locked" in err.value.message and "0.1 s" in err.value.message and str(db) in err.value.message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        quick.close()
    assert fail(store, T0).failures == 1  # nothing half-written


def test_states_are_read_once_until_another_connection_commits(db: Path, store: SqliteStore) -> None:
    """The `PRAGMA data_version` cache: a healthy request's states cost one PRAGMA, not a query."""
    fail(store, T0)
    seen: list[str] = []
    with store._read() as conn:
        conn.set_trace_callback(seen.append)
    try:
        store.states([KEY, "never/seen"])
        store.states([KEY, "never/seen"])
        assert sum("FROM models" in sql for sql in seen) == 1
        other = SqliteStore(str(db))
        try:
            other.bench(KEY, now=T0 + 1, until=T0 + 600, manual=True, reason="ops", kind=None)
        finally:
            other.close()
        assert store.states([KEY])[KEY].reason == "ops"
        assert sum("FROM models" in sql for sql in seen) == 2
    finally:
        with store._read() as conn:
            conn.set_trace_callback(None)


def test_appending_events_keeps_the_cached_states_and_a_state_write_drops_them(store: SqliteStore) -> None:
    """A walk's events (one transaction for several) change no model state: the next
    request's states still cost one PRAGMA. This connection's own state write is re-read."""
    fail(store, T0)
    seen: list[str] = []
    with store._read() as conn:
        conn.set_trace_callback(seen.append)
    try:
        store.states([KEY])
        store.append([Event(type=ev.ATTEMPT_FAILED, ts=T0, model=KEY), Event(type=ev.FAILOVER, ts=T0, model=KEY)])
        store.append([Event(type=ev.REQUEST, ts=T0, model=KEY)])
        assert store.states([KEY])[KEY].failures == 1
        assert sum("FROM models" in sql for sql in seen) == 1
        fail(store, T0 + 1)
        after_write = len(seen)
        assert store.states([KEY])[KEY].failures == 2
        assert sum("FROM models" in sql for sql in seen[after_write:]) == 1
    finally:
        with store._read() as conn:
            conn.set_trace_callback(None)


def test_the_change_token_is_sqlites_data_version(db: Path, store: SqliteStore) -> None:
    token = store.change_token()
    fail(store, T0)  # this connection's own commit does not move it
    assert store.change_token() == token
    raw = sqlite3.connect(db)
    try:
        raw.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
        raw.commit()
    finally:
        raw.close()
    assert store.change_token() != token
