"""The SQLite store: bench semantics, leases, quotas, the event log, and many processes at once.

Every test uses a real SQLite file under tmp_path; nothing is mocked, because
the properties that matter (atomicity, WAL, locking) only exist in a real file.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfail import redact
from llmfail.errors import StateError
from llmfail.events import DETAIL_MAX, Event
from llmfail.store import ModelState, open_store
from llmfail.store.sqlite import MIGRATIONS, PRUNE_INTERVAL_S, SCHEMA_VERSION, SqliteStore

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


def fail(
    store: SqliteStore,
    now: float,
    *,
    bench_for: float | None = 30.0,
    factor: float = 1.0,
    min_until: float | None = None,
    reason: str | None = None,
) -> ModelState:
    """A transient 503 on KEY, benching for 30 s unless told otherwise."""
    state, _ = store.record_failure(
        KEY, now=now, kind="transient", status=503, bench_for=bench_for, factor=factor, min_until=min_until, reason=reason
    )
    return state


def snapshot(db: Path) -> dict[str, bytes]:
    """Bytes of the DB and its WAL: a pure read must leave both untouched."""
    return {p.name: p.read_bytes() for p in db.parent.iterdir() if not p.name.endswith("-shm")}


# -- opening, schema, migrations ------------------------------------------------


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


def test_reopening_a_migrated_db_keeps_its_data(db: Path, store: SqliteStore) -> None:
    fail(store, T0)
    store.close()
    again = SqliteStore(str(db))
    try:
        assert again.states([KEY])[KEY].failures == 1
        assert again.schema_version() == SCHEMA_VERSION
    finally:
        again.close()


def test_open_store_returns_the_sqlite_backend(db: Path) -> None:
    s = open_store(str(db))
    try:
        assert isinstance(s, SqliteStore)
    finally:
        s.close()


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


# -- record_failure / cooldown ----------------------------------------------------


def test_failure_without_bench_only_counts(store: SqliteStore) -> None:
    state = fail(store, T0, bench_for=None)
    assert state.failures == 1 and state.bench_count == 0
    assert state.bench_until is None and not state.is_benched(T0)
    assert (state.last_error_kind, state.last_error_status, state.last_error_at) == ("transient", 503, T0)


def test_failure_with_bench_for_benches_for_the_cooldown(store: SqliteStore) -> None:
    state = fail(store, T0, reason="boom")
    assert state.bench_until == T0 + 30 and state.benched_at == T0
    assert state.bench_count == 1 and state.failures == 1
    assert state.kind == "transient" and state.reason == "boom" and not state.manual
    assert store.states([KEY])[KEY] == state


def test_cooldown_stays_fixed_with_the_default_factor(store: SqliteStore) -> None:
    for n in range(4):
        now = T0 + n * 100
        assert fail(store, now).bench_until == now + 30


def test_cooldown_grows_with_bench_count_up_to_the_factor(store: SqliteStore) -> None:
    untils = []
    for n in range(5):
        now = T0 + n * 1000  # each bench has expired before the next failure
        untils.append(fail(store, now, factor=3.0).bench_until - now)  # type: ignore[operator]
    assert untils == [30, 60, 90, 90, 90]


def test_success_resets_the_cooldown_growth(store: SqliteStore) -> None:
    fail(store, T0, factor=4.0)
    fail(store, T0 + 100, factor=4.0)
    before = store.record_success(KEY, now=T0 + 200)
    assert before is not None and before.bench_count == 2 and before.failures == 2
    after = store.states([KEY])[KEY]
    assert after.bench_count == 0 and after.failures == 0 and after.bench_until is None
    assert fail(store, T0 + 300, factor=4.0).bench_until == T0 + 330


def test_min_until_wins_when_later_than_the_cooldown(store: SqliteStore) -> None:
    assert fail(store, T0, min_until=T0 + 600).bench_until == T0 + 600
    assert fail(store, T0 + 1000, min_until=T0 + 1001).bench_until == T0 + 1030


def test_a_running_bench_is_never_shortened(store: SqliteStore) -> None:
    fail(store, T0, min_until=T0 + 600)
    state = fail(store, T0 + 10)
    assert state.bench_until == T0 + 600 and state.benched_at == T0 and state.bench_count == 2


def test_failure_releases_the_probe_lease(store: SqliteStore) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    state = fail(store, T0 + 32)
    assert state.probe_holder is None and state.probe_until is None
    assert state.bench_until == T0 + 62


def test_failure_reason_is_redacted_and_truncated(store: SqliteStore) -> None:
    redact.register_secret(SECRET)
    state = fail(store, T0, reason=f"bad key {SECRET} " + "x" * 2000)
    assert state.reason is not None and SECRET not in state.reason and len(state.reason) == DETAIL_MAX
    assert SECRET not in (store.states([KEY])[KEY].reason or "")


# -- manual benches -----------------------------------------------------------------


def test_manual_bench_sets_reason_kind_and_counts(store: SqliteStore) -> None:
    state = store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="provider incident", kind=None)
    assert state.manual and state.reason == "provider incident" and state.kind == "manual"
    assert state.bench_until == T0 + 600 and state.benched_at == T0 and state.bench_count == 1
    assert store.benches(T0) == [state]


def test_manual_bench_survives_record_success(store: SqliteStore) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="incident", kind=None)
    fail(store, T0 + 1, bench_for=None)
    before = store.record_success(KEY, now=T0 + 2)
    assert before is not None and before.failures == 1
    state = store.states([KEY])[KEY]
    assert state.manual and state.reason == "incident" and state.bench_until == T0 + 600
    assert state.failures == 0 and state.is_benched(T0 + 2)


def test_expired_manual_bench_is_cleared_by_a_success(store: SqliteStore) -> None:
    store.bench(KEY, now=T0, until=T0 + 60, manual=True, reason="incident", kind=None)
    store.record_success(KEY, now=T0 + 61)
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and not state.manual and state.reason is None


def test_failure_on_a_manual_bench_keeps_flag_and_reason_and_only_extends(store: SqliteStore) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="incident", kind=None)
    shorter = fail(store, T0 + 1, reason="503 upstream")
    assert shorter.manual and shorter.reason == "incident" and shorter.kind == "manual"
    assert shorter.bench_until == T0 + 600
    longer = fail(store, T0 + 2, min_until=T0 + 900)
    assert longer.manual and longer.reason == "incident" and longer.bench_until == T0 + 900


def test_automatic_bench_is_cleared_by_record_success(store: SqliteStore) -> None:
    fail(store, T0)
    store.record_success(KEY, now=T0 + 5)
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and state.kind is None and state.reason is None
    assert state.last_error_kind == "transient"  # history is kept


def test_record_success_on_an_unknown_key_returns_none_and_writes_nothing(db: Path, store: SqliteStore) -> None:
    before = snapshot(db)
    assert store.record_success("never/seen", now=T0) is None
    assert store.all_states() == []
    assert snapshot(db) == before


# -- unbench --------------------------------------------------------------------------


def test_unbench_one_key_clears_everything_and_reports_it(store: SqliteStore) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="incident", kind=None)
    fail(store, T0 + 1)
    assert store.unbench([KEY], now=T0 + 2) == [KEY]
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and not state.manual and state.reason is None and state.kind is None
    assert state.bench_count == 0 and state.failures == 0 and state.probe_holder is None


def test_unbench_of_a_key_not_benched_reports_nothing(store: SqliteStore) -> None:
    fail(store, T0, bench_for=None)
    assert store.unbench([KEY, "unknown/model"], now=T0) == []


def test_unbench_all_lifts_every_current_bench(store: SqliteStore) -> None:
    store.bench("a/1", now=T0, until=T0 + 300, manual=True, reason="r", kind=None)
    store.record_failure("b/2", now=T0, kind="timeout", status=None, bench_for=100)
    store.record_failure("c/3", now=T0 - 500, kind="timeout", status=None, bench_for=10)  # half-open
    store.record_failure("d/4", now=T0, kind="timeout", status=None, bench_for=None)
    assert store.unbench(None, now=T0) == ["b/2", "a/1"]
    assert store.benches(T0) == []
    assert store.states(["c/3"])["c/3"].bench_until is None


# -- pure reads -------------------------------------------------------------------------


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


def test_states_omits_unknown_keys_and_handles_many_keys(store: SqliteStore) -> None:
    fail(store, T0, bench_for=None)
    keys = [f"p/m{i}" for i in range(1200)] + [KEY]
    assert list(store.states(keys)) == [KEY]
    assert store.states([]) == {}


def test_states_follow_every_write_made_through_another_connection(db: Path, store: SqliteStore) -> None:
    """`states()` remembers rows between writes (`_known_states`): never past one."""
    other = SqliteStore(str(db))  # a second connection, as another process has
    try:
        assert store.states([KEY]) == {}  # now remembered as absent
        fail(other, T0)
        assert store.states([KEY])[KEY].is_benched(T0 + 1)
        assert other.record_success(KEY, now=T0 + 1) is not None
        assert store.states([KEY])[KEY].bench_until is None
        store.bench(KEY, now=T0 + 2, until=T0 + 600, manual=True, reason="own write", kind=None)
        assert store.states([KEY])[KEY].manual and other.states([KEY])[KEY].manual
        other.unbench([KEY], now=T0 + 3)
        assert not store.states([KEY])[KEY].manual
    finally:
        other.close()


def test_a_success_clears_a_bench_another_connection_set_after_it_last_read(db: Path, store: SqliteStore) -> None:
    fail(store, T0)
    store.record_success(KEY, now=T0 + 1)
    assert store.states([KEY])[KEY].bench_until is None  # clean, and remembered clean
    other = SqliteStore(str(db))
    try:
        fail(other, T0 + 2)
    finally:
        other.close()
    previous = store.record_success(KEY, now=T0 + 3)
    assert previous is not None and previous.bench_until == T0 + 32
    assert store.states([KEY])[KEY].bench_until is None


def test_a_bench_another_process_writes_is_seen_by_the_next_read(db: Path, store: SqliteStore) -> None:
    assert store.states([KEY]) == {}
    code = (f"from llmfail.store.sqlite import SqliteStore; SqliteStore({str(db)!r}).bench({KEY!r}, now={T0}, "
            f"until={T0 + 600}, manual=True, reason='ops', kind=None)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
    assert store.states([KEY])[KEY].reason == "ops"


def test_benches_lists_only_current_ones_soonest_first(store: SqliteStore) -> None:
    store.record_failure("late/1", now=T0, kind="timeout", status=None, bench_for=300)
    store.record_failure("soon/2", now=T0, kind="timeout", status=None, bench_for=60)
    store.record_failure("over/3", now=T0 - 1000, kind="timeout", status=None, bench_for=60)
    assert [s.model for s in store.benches(T0)] == ["soon/2", "late/1"]
    assert [s.model for s in store.benches(T0 + 100)] == ["late/1"]
    assert [s.model for s in store.all_states()] == ["late/1", "over/3", "soon/2"]


# -- probe leases ---------------------------------------------------------------------------


def test_probe_can_only_be_claimed_when_half_open(store: SqliteStore) -> None:
    assert not store.claim_probe(KEY, now=T0, lease=10, holder="a")  # unknown key
    fail(store, T0, bench_for=None)
    assert not store.claim_probe(KEY, now=T0, lease=10, holder="a")  # never benched
    fail(store, T0)
    assert not store.claim_probe(KEY, now=T0 + 29, lease=10, holder="a")  # still benched
    assert store.claim_probe(KEY, now=T0 + 30, lease=10, holder="a")  # bench_until <= now
    state = store.states([KEY])[KEY]
    assert state.probe_holder == "a" and state.probe_until == T0 + 40


def test_only_one_holder_wins_the_probe(store: SqliteStore) -> None:
    fail(store, T0)
    now = T0 + 31
    assert store.claim_probe(KEY, now=now, lease=10, holder="a")
    assert not store.claim_probe(KEY, now=now + 1, lease=10, holder="b")
    assert store.claim_probe(KEY, now=now + 1, lease=10, holder="a")  # renewal by the holder


def test_only_one_thread_wins_a_race_for_the_probe(db: Path, store: SqliteStore) -> None:
    fail(store, T0)
    stores = [SqliteStore(str(db)) for _ in range(8)]
    results: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def claim(i: int) -> None:
        barrier.wait()
        results.append(stores[i].claim_probe(KEY, now=T0 + 31, lease=10, holder=f"h{i}"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert sorted(results) == [False] * 7 + [True]


def test_an_expired_lease_lets_another_holder_claim(store: SqliteStore) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    assert not store.claim_probe(KEY, now=T0 + 40, lease=10, holder="b")
    assert store.claim_probe(KEY, now=T0 + 41, lease=10, holder="b")
    assert store.states([KEY])[KEY].probe_holder == "b"


def test_release_probe_frees_the_lease_only_for_its_holder(store: SqliteStore) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    store.release_probe(KEY, holder="b")
    assert store.states([KEY])[KEY].probe_holder == "a"
    store.release_probe(KEY, holder="a")
    assert store.states([KEY])[KEY].probe_holder is None
    assert store.claim_probe(KEY, now=T0 + 32, lease=10, holder="b")


def test_success_closes_the_half_open_circuit_and_releases_the_lease(store: SqliteStore) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    store.record_success(KEY, now=T0 + 32)
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and state.probe_holder is None and not state.is_half_open(T0 + 32)
    assert not store.claim_probe(KEY, now=T0 + 33, lease=10, holder="b")


# -- quotas ------------------------------------------------------------------------------------


def test_quota_counts_until_the_limit_then_refuses_without_counting(store: SqliteStore) -> None:
    day = "2024-05-01"
    assert store.quota_used(KEY, day=day) == 0
    assert [store.take_quota(KEY, day=day, limit=3) for _ in range(5)] == [True, True, True, False, False]
    assert store.quota_used(KEY, day=day) == 3


def test_quota_is_per_day_and_per_model(store: SqliteStore) -> None:
    assert store.take_quota(KEY, day="2024-05-01", limit=1)
    assert not store.take_quota(KEY, day="2024-05-01", limit=1)
    assert store.take_quota(KEY, day="2024-05-02", limit=1)
    assert store.take_quota("other/m", day="2024-05-01", limit=1)
    assert not store.take_quota("other/m", day="2024-05-03", limit=0)


# -- events ---------------------------------------------------------------------------------------


def test_events_round_trip_with_ids_and_every_field(store: SqliteStore) -> None:
    event = Event(
        type="attempt_failed",
        ts=T0,
        request_id="r1",
        chain="prod",
        model=KEY,
        kind="rate_limited",
        status=429,
        attempt=2,
        benched_until=T0 + 30,
        next_model="anthropic/claude",
        latency_ms=12.5,
        detail="slow down",
        data={"usage": {"input_tokens": 3}, "ok": False},
    )
    ids = store.append([event, Event(type="request", ts=T0 + 1)])
    assert len(ids) == 2 and ids[0] < ids[1]
    got = store.events()
    assert got == [event.with_id(ids[0]), Event(type="request", ts=T0 + 1, id=ids[1])]
    assert store.append([]) == []


def test_registered_secret_is_redacted_from_detail_and_data(db: Path, store: SqliteStore) -> None:
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


def test_long_detail_is_truncated(store: SqliteStore) -> None:
    store.append([Event(type="attempt_failed", ts=T0, detail="y" * (DETAIL_MAX * 3))])
    assert len(store.events()[0].detail or "") == DETAIL_MAX


def test_events_filters_combine(store: SqliteStore) -> None:
    store.append(
        [
            Event(type="attempt_failed", ts=T0, model="a", chain="prod"),
            Event(type="benched", ts=T0 + 1, model="a", chain="prod"),
            Event(type="request", ts=T0 + 2, model="b", chain="cheap"),
            Event(type="failover", ts=T0 + 3, model="b", chain="prod"),
        ]
    )
    assert [e.ts for e in store.events(model="a")] == [T0, T0 + 1]
    assert [e.ts for e in store.events(chain="prod", since=T0 + 1)] == [T0 + 1, T0 + 3]
    assert [e.type for e in store.events(types=["request", "benched"])] == ["benched", "request"]
    assert len(store.events(types=[])) == 4  # an empty filter filters nothing
    assert [e.ts for e in store.events(limit=2)] == [T0, T0 + 1]


def test_newest_gives_the_last_n_in_ascending_order(store: SqliteStore) -> None:
    store.append([Event(type="request", ts=T0 + i) for i in range(10)])
    got = store.events(limit=3, newest=True)
    assert [e.ts for e in got] == [T0 + 7, T0 + 8, T0 + 9]
    assert [e.id for e in got] == sorted(e.id for e in got)  # type: ignore[type-var]


def test_tailing_with_after_id_sees_each_new_event_once(db: Path, store: SqliteStore) -> None:
    writer = SqliteStore(str(db))
    try:
        last = store.max_event_id()
        assert last == 0
        version = store.change_token()
        writer.append([Event(type="request", ts=T0), Event(type="retry", ts=T0)])
        assert store.change_token() != version
        first = store.events(after_id=last)
        assert [e.type for e in first] == ["request", "retry"]
        last = first[-1].id or 0
        assert store.events(after_id=last) == []
        writer.append([Event(type="benched", ts=T0 + 1)])
        assert [e.type for e in store.events(after_id=last)] == ["benched"]
        assert store.max_event_id() == last + 1
    finally:
        writer.close()


# -- pruning -------------------------------------------------------------------------------------


def test_forced_prune_deletes_old_events_and_keeps_ids_monotonic(store: SqliteStore) -> None:
    store.append([Event(type="request", ts=T0 - 10_000), Event(type="request", ts=T0 - 10)])
    top = store.max_event_id()
    assert store.prune(now=T0, retention=1000, force=True) == 1
    assert [e.ts for e in store.events()] == [T0 - 10]
    assert store.prune(now=T0 + 100, retention=1, force=True) == 1
    assert store.events() == [] and store.max_event_id() == top
    (new_id,) = store.append([Event(type="request", ts=T0 + 100)])
    assert new_id == top + 1  # AUTOINCREMENT: a follower at `top` sees it


def test_prune_runs_at_most_once_an_hour_unless_forced(store: SqliteStore) -> None:
    store.append([Event(type="request", ts=T0 - 5000)])
    assert store.prune(now=T0, retention=1000) == 1
    store.append([Event(type="request", ts=T0 - 5000)])
    assert store.prune(now=T0 + 60, retention=1000) == 0
    assert len(store.events()) == 1
    assert store.prune(now=T0 + PRUNE_INTERVAL_S, retention=1000) == 1
    store.append([Event(type="request", ts=T0 - 5000)])
    assert store.prune(now=T0 + PRUNE_INTERVAL_S + 1, retention=1000, force=True) == 1


# -- fork and many processes ---------------------------------------------------------------------------------

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


WORKER = textwrap.dedent(
    """
    import os, sys, time
    from llmfail.events import Event
    from llmfail.store.sqlite import SqliteStore

    path, worker, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = SqliteStore(path)
    open(f"{go}.ready{worker}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
    for i in range(500):
        store.append([Event(type="request", ts=1.0, request_id=f"w{worker}-{i}", data={"i": i})])
        if i % 5 < 2:
            store.record_failure("shared/key", now=2.0, kind="transient", status=503, bench_for=30.0)
    store.close()
    """
)


def test_four_processes_writing_at_once_lose_nothing(db: Path, tmp_path: Path) -> None:
    SqliteStore(str(db)).close()  # create the schema once, as the first CLI call would
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(w), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for w in range(4)
    ]
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"go.ready{w}").exists() for w in range(4)):  # every worker connected...
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.005)
    go.touch()  # ...then all are released together
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert b"locked" not in err
    store = SqliteStore(str(db))
    try:
        events = store.events()
        request_ids = [e.request_id for e in events]
        assert len(request_ids) == 2000
        assert set(request_ids) == {f"w{w}-{i}" for w in range(4) for i in range(500)}
        assert [e.id for e in events] == sorted({e.id for e in events})  # type: ignore[type-var]
        writers = [(e.request_id or "").split("-")[0] for e in events]
        switches = sum(a != b for a, b in zip(writers, writers[1:], strict=False))
        assert switches > 3, "the workers did not actually overlap"
        state = store.states(["shared/key"])["shared/key"]
        assert state.failures == 800 and state.bench_count == 800
        with store._read() as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()
