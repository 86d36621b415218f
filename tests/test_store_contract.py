"""The store contract: what every backend must do, run against each one in `tests/backends.py`.

Bench semantics (through `llmfail.store.transitions`), probe leases, quotas,
alert claims, demotion, meta, the event log (filters, order, tally, pruning,
the change token) and many connections or processes at once. Each test gets
a fresh store of one backend (`store`, or `store_target` to open more
connections or hand it to a child process). Nothing is mocked: the properties
that matter (atomicity, visibility across connections) exist only in the real
thing. SQLite-only checks (PRAGMAs, WAL, migrations, fork) are in
`test_store_sqlite.py`; the rules themselves, as tables, in `test_transitions.py`.
"""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfail import events as ev
from llmfail import redact
from llmfail.events import DETAIL_MAX, Event
from llmfail.store import ModelState, Store, StoreTarget

T0 = 1_700_000_000.0
KEY = "openai/gpt-4o"
SECRET = "sk-test-CANARY123456789"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(store_target: StoreTarget) -> Iterator[Store]:
    s = store_target.open()
    yield s
    s.close()


@pytest.fixture
def other(store_target: StoreTarget) -> Iterator[Store]:
    """A second connection to the same store, as another process has."""
    s = store_target.open()
    yield s
    s.close()


def fail(
    store: Store,
    now: float,
    *,
    bench_for: float | None = 30.0,
    factor: float = 1.0,
    min_until: float | None = None,
    reason: str | None = None,
    began: float | None = None,
) -> ModelState:
    """A transient 503 on KEY, benching for 30 s unless told otherwise."""
    state, _ = store.record_failure(
        KEY,
        now=now,
        kind="transient",
        status=503,
        bench_for=bench_for,
        factor=factor,
        min_until=min_until,
        reason=reason,
        began=began,
    )
    return state


def child(target: StoreTarget, code: str, *args: str) -> subprocess.Popen[bytes]:
    """A Python process running `code` with `store` opened from `target` (and `args` in sys.argv[2:])."""
    prelude = "import pickle, sys\nstore = pickle.loads(bytes.fromhex(sys.argv[1])).open()\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code), pickle.dumps(target).hex(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def test_a_reopened_store_keeps_its_state_and_events(store_target: StoreTarget) -> None:
    first = store_target.open()
    fail(first, T0)
    (event_id,) = first.append([Event(type="request", ts=T0)])
    first.close()
    again = store_target.open()
    try:
        assert again.states([KEY])[KEY].failures == 1 and [e.id for e in again.events()] == [event_id]
    finally:
        again.close()


# -- record_failure / cooldown ---------------------------------------------------------------------------------------


def test_failure_without_bench_only_counts(store: Store) -> None:
    state, benched = store.record_failure(KEY, now=T0, kind="transient", status=503, bench_for=None)
    assert not benched and state.failures == 1 and state.bench_count == 0
    assert state.bench_until is None and not state.is_benched(T0)
    assert (state.last_error_kind, state.last_error_status, state.last_error_at) == ("transient", 503, T0)


def test_failure_with_bench_for_benches_for_the_cooldown(store: Store) -> None:
    state, benched = store.record_failure(KEY, now=T0, kind="transient", status=503, bench_for=30.0, reason="boom")
    assert benched and state.bench_until == T0 + 30 and state.benched_at == T0
    assert state.bench_count == 1 and state.failures == 1
    assert state.kind == "transient" and state.reason == "boom" and not state.manual
    assert store.states([KEY])[KEY] == state


def test_cooldown_stays_fixed_with_the_default_factor(store: Store) -> None:
    for n in range(4):
        now = T0 + n * 100
        assert fail(store, now).bench_until == now + 30


def test_cooldown_grows_with_bench_count_up_to_the_factor(store: Store) -> None:
    untils = []
    for n in range(5):
        now = T0 + n * 1000  # each bench has expired before the next failure
        untils.append((fail(store, now, factor=3.0).bench_until or 0) - now)
    assert untils == [30, 60, 90, 90, 90]


def test_success_resets_the_cooldown_growth(store: Store) -> None:
    fail(store, T0, factor=4.0)
    fail(store, T0 + 100, factor=4.0)
    before = store.record_success(KEY, now=T0 + 200)
    assert before is not None and before.bench_count == 2 and before.failures == 2
    after = store.states([KEY])[KEY]
    assert after.bench_count == 0 and after.failures == 0 and after.bench_until is None
    assert fail(store, T0 + 300, factor=4.0).bench_until == T0 + 330


def test_min_until_wins_when_later_than_the_cooldown(store: Store) -> None:
    assert fail(store, T0, min_until=T0 + 600).bench_until == T0 + 600
    assert fail(store, T0 + 1000, min_until=T0 + 1001).bench_until == T0 + 1030


def test_a_running_bench_is_never_shortened_by_a_failure(store: Store) -> None:
    fail(store, T0, min_until=T0 + 600)
    state = fail(store, T0 + 10)
    assert state.bench_until == T0 + 600 and state.benched_at == T0 and state.bench_count == 2


def test_a_failure_in_flight_when_the_bench_began_is_counted_but_benches_nothing(store: Store) -> None:
    fail(store, T0, reason="first")
    state, benched = store.record_failure(
        KEY, now=T0 + 2, kind="timeout", status=None, bench_for=30.0, reason="second", began=T0 - 1
    )
    assert not benched
    assert (state.bench_until, state.benched_at, state.bench_count, state.reason) == (T0 + 30, T0, 1, "first")
    assert (state.failures, state.last_error_kind, state.last_error_at) == (2, "timeout", T0 + 2)
    assert store.states([KEY])[KEY] == state
    state, benched = store.record_failure(
        KEY, now=T0 + 2, kind="timeout", status=None, bench_for=30.0, began=T0
    )  # the same instant is in flight too (a virtual clock)
    assert not benched and (state.failures, state.bench_count) == (3, 1)
    state, benched = store.record_failure(
        KEY, now=T0 + 3, kind="timeout", status=None, bench_for=30.0, began=T0 + 1
    )  # began after the bench: it counts
    assert benched and state.bench_until == T0 + 33 and state.bench_count == 2


def test_failure_releases_the_probe_lease(store: Store) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    state = fail(store, T0 + 32)
    assert state.probe_holder is None and state.probe_until is None
    assert state.bench_until == T0 + 62


def test_failure_reason_is_redacted_and_truncated(store: Store) -> None:
    redact.register_secret(SECRET)
    state = fail(store, T0, reason=f"bad key {SECRET} " + "x" * 2000)
    assert state.reason is not None and SECRET not in state.reason and len(state.reason) == DETAIL_MAX
    assert SECRET not in (store.states([KEY])[KEY].reason or "")


# -- manual benches ----------------------------------------------------------------------------------------------------


def test_manual_bench_sets_reason_kind_and_counts(store: Store) -> None:
    state = store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="provider incident", kind=None)
    assert state.manual and state.reason == "provider incident" and state.kind == "manual"
    assert state.bench_until == T0 + 600 and state.benched_at == T0 and state.bench_count == 1
    assert store.benches(T0) == [state]


def test_a_shorter_re_bench_keeps_the_running_bench_and_its_reason(store: Store) -> None:
    first = store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="bad deploy", kind="manual")
    kept = store.bench(KEY, now=T0 + 10, until=T0 + 310, manual=True, reason=None, kind="manual")
    assert kept == first == store.states([KEY])[KEY]


def test_a_longer_re_bench_extends_and_keeps_the_operators_reason(store: Store) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="bad deploy", kind="manual")
    longer = store.bench(KEY, now=T0 + 10, until=T0 + 1200, manual=True, reason=None, kind="manual")
    assert (longer.bench_until, longer.benched_at, longer.reason, longer.manual) == (T0 + 1200, T0, "bad deploy", True)
    assert store.states([KEY])[KEY] == longer


def test_an_operator_bench_shorter_than_a_running_automatic_one_keeps_it(store: Store) -> None:
    auto = fail(store, T0, min_until=T0 + 3600, reason="429 reset in 1h")
    assert store.bench(KEY, now=T0 + 1, until=T0 + 600, manual=True, reason="x", kind=None) == auto


def test_extending_takes_the_new_bench_but_never_loses_a_manual_flag(store: Store) -> None:
    fail(store, T0, reason="503 upstream")
    manual = store.bench(KEY, now=T0 + 1, until=T0 + 600, manual=True, reason=None, kind=None)
    assert (manual.manual, manual.kind, manual.reason, manual.benched_at) == (True, "manual", None, T0)
    auto = store.bench(KEY, now=T0 + 2, until=T0 + 900, manual=False, reason="x", kind="transient")
    assert (auto.manual, auto.kind, auto.bench_until, auto.bench_count) == (True, "manual", T0 + 900, 3)
    assert store.states([KEY])[KEY] == auto


def test_replace_sets_the_operators_bench_even_when_shorter(store: Store) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="bad deploy", kind="manual")
    state = store.bench(KEY, now=T0 + 10, until=T0 + 70, manual=True, reason="fixed", kind="manual", replace=True)
    assert (state.bench_until, state.benched_at, state.reason) == (T0 + 70, T0 + 10, "fixed")
    assert store.states([KEY])[KEY] == state and not state.is_benched(T0 + 70)


def test_manual_bench_survives_record_success(store: Store) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="incident", kind=None)
    fail(store, T0 + 1, bench_for=None)
    before = store.record_success(KEY, now=T0 + 2)
    assert before is not None and before.failures == 1
    state = store.states([KEY])[KEY]
    assert state.manual and state.reason == "incident" and state.bench_until == T0 + 600
    assert state.failures == 0 and state.is_benched(T0 + 2)


def test_expired_manual_bench_is_cleared_by_a_success(store: Store) -> None:
    store.bench(KEY, now=T0, until=T0 + 60, manual=True, reason="incident", kind=None)
    store.record_success(KEY, now=T0 + 61)
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and not state.manual and state.reason is None


def test_failure_on_a_manual_bench_keeps_flag_and_reason_and_only_extends(store: Store) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="incident", kind=None)
    shorter = fail(store, T0 + 1, reason="503 upstream")
    assert shorter.manual and shorter.reason == "incident" and shorter.kind == "manual"
    assert shorter.bench_until == T0 + 600
    longer = fail(store, T0 + 2, min_until=T0 + 900)
    assert longer.manual and longer.reason == "incident" and longer.bench_until == T0 + 900


def test_automatic_bench_is_cleared_by_record_success(store: Store) -> None:
    fail(store, T0)
    store.record_success(KEY, now=T0 + 5)
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and state.kind is None and state.reason is None
    assert state.last_error_kind == "transient"  # history is kept


def test_record_success_on_an_unknown_or_clean_key_writes_nothing(store: Store, other: Store) -> None:
    fail(store, T0, bench_for=None)
    store.record_success(KEY, now=T0 + 1)
    token = other.change_token()
    assert store.record_success("never/seen", now=T0) is None
    assert store.record_success(KEY, now=T0 + 2) == store.states([KEY])[KEY]
    assert [s.model for s in store.all_states()] == [KEY]
    assert other.change_token() == token


# -- unbench -------------------------------------------------------------------------------------------------


def test_unbench_one_key_clears_everything_and_reports_it(store: Store) -> None:
    store.bench(KEY, now=T0, until=T0 + 600, manual=True, reason="incident", kind=None)
    fail(store, T0 + 1)
    assert store.unbench([KEY], now=T0 + 2) == [KEY]
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and not state.manual and state.reason is None and state.kind is None
    assert state.bench_count == 0 and state.failures == 0 and state.probe_holder is None


def test_unbench_of_a_key_not_benched_reports_nothing(store: Store) -> None:
    fail(store, T0, bench_for=None)
    assert store.unbench([KEY, "unknown/model"], now=T0) == []


def test_unbench_all_lifts_every_current_bench(store: Store) -> None:
    store.bench("a/1", now=T0, until=T0 + 300, manual=True, reason="r", kind=None)
    store.record_failure("b/2", now=T0, kind="timeout", status=None, bench_for=100)
    store.record_failure("c/3", now=T0 - 500, kind="timeout", status=None, bench_for=10)  # half-open
    store.record_failure("d/4", now=T0, kind="timeout", status=None, bench_for=None)
    assert store.unbench(None, now=T0) == ["b/2", "a/1"]
    assert store.benches(T0) == []
    assert store.states(["c/3"])["c/3"].bench_until is None
    assert store.states(["d/4"])["d/4"].failures == 1  # not benched: left alone


# -- reads ---------------------------------------------------------------------------------------------------


def test_reads_never_write(store: Store, other: Store) -> None:
    fail(store, T0 - 100)  # an expired bench: reading it must not "tidy" it
    store.bench("m/manual", now=T0, until=T0 + 60, manual=True, reason="r", kind=None)
    store.take_quota(KEY, day="2024-01-01", limit=5)
    store.append([Event(type="request", ts=T0, model=KEY, data={"attempt_ttft_ms": 5.0})])
    store.prune(now=T0, retention=86400, force=True)
    token, rows = other.change_token(), store.all_states()
    for now in (T0, T0 + 1000, T0 + 10**6):
        store.states([KEY, "m/manual", "nope"])
        store.all_states()
        store.benches(now)
        store.quota_used(KEY, day="2024-01-01")
        store.events(since=0, types=["request"], limit=10, newest=True)
        store.tally(since=0, until=now)
        store.recent_ttfts(KEY, after=None, limit=5)
        store.max_event_id()
        store.change_token()
        store.prune(now=T0 + 10, retention=1)  # not due: must not write either
        store.record_success("never/seen", now=now)
    assert other.change_token() == token
    assert store.all_states() == rows and store.states([KEY])[KEY].bench_until == T0 - 70


def test_states_omits_unknown_keys_and_handles_many_keys(store: Store) -> None:
    fail(store, T0, bench_for=None)
    keys = [f"p/m{i}" for i in range(1200)] + [KEY]
    assert list(store.states(keys)) == [KEY]
    assert store.states([]) == {}


def test_states_follow_every_write_made_through_another_connection(store: Store, other: Store) -> None:
    """A backend may cache states between reads (SQLite does): never past another's write."""
    assert store.states([KEY]) == {}  # now remembered as absent
    fail(other, T0)
    assert store.states([KEY])[KEY].is_benched(T0 + 1)
    assert other.record_success(KEY, now=T0 + 1) is not None
    assert store.states([KEY])[KEY].bench_until is None
    store.bench(KEY, now=T0 + 2, until=T0 + 600, manual=True, reason="own write", kind=None)
    assert store.states([KEY])[KEY].manual and other.states([KEY])[KEY].manual
    other.unbench([KEY], now=T0 + 3)
    assert not store.states([KEY])[KEY].manual


def test_a_success_clears_a_bench_another_connection_set_after_it_last_read(store: Store, other: Store) -> None:
    fail(store, T0)
    store.record_success(KEY, now=T0 + 1)
    assert store.states([KEY])[KEY].bench_until is None  # clean, and remembered clean
    fail(other, T0 + 2)
    previous = store.record_success(KEY, now=T0 + 3)
    assert previous is not None and previous.bench_until == T0 + 32
    assert store.states([KEY])[KEY].bench_until is None


def test_a_bench_another_process_writes_is_seen_by_the_next_read(store: Store, store_target: StoreTarget) -> None:
    assert store.states([KEY]) == {}
    proc = child(store_target, f"store.bench({KEY!r}, now={T0}, until={T0 + 60}, manual=True, reason='ops', kind=None)")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert store.states([KEY])[KEY].reason == "ops"


def test_benches_lists_only_current_ones_soonest_first(store: Store) -> None:
    store.record_failure("late/1", now=T0, kind="timeout", status=None, bench_for=300)
    store.record_failure("soon/2", now=T0, kind="timeout", status=None, bench_for=60)
    store.record_failure("over/3", now=T0 - 1000, kind="timeout", status=None, bench_for=60)
    assert [s.model for s in store.benches(T0)] == ["soon/2", "late/1"]
    assert [s.model for s in store.benches(T0 + 100)] == ["late/1"]
    assert [s.model for s in store.all_states()] == ["late/1", "over/3", "soon/2"]


def test_benches_and_probes_follow_the_clock_step_rule(store: Store) -> None:
    """A bench set before the wall clock was stepped back an hour counts as ended; a manual one does not."""
    store.record_failure("auto/1", now=T0 + 3600, kind="timeout", status=None, bench_for=60)
    store.bench("manual/2", now=T0 + 3600, until=T0 + 3660, manual=True, reason="r", kind=None)
    assert [s.model for s in store.benches(T0)] == ["manual/2"]
    assert store.claim_probe("auto/1", now=T0, lease=10, holder="a")
    assert not store.claim_probe("manual/2", now=T0, lease=10, holder="a")


# -- probe leases --------------------------------------------------------------------------------------------


def test_probe_can_only_be_claimed_when_half_open(store: Store) -> None:
    assert not store.claim_probe(KEY, now=T0, lease=10, holder="a")  # unknown key
    fail(store, T0, bench_for=None)
    assert not store.claim_probe(KEY, now=T0, lease=10, holder="a")  # never benched
    fail(store, T0)
    assert not store.claim_probe(KEY, now=T0 + 29, lease=10, holder="a")  # still benched
    assert store.claim_probe(KEY, now=T0 + 30, lease=10, holder="a")  # bench_until <= now
    state = store.states([KEY])[KEY]
    assert state.probe_holder == "a" and state.probe_until == T0 + 40


def test_only_one_holder_wins_the_probe(store: Store) -> None:
    fail(store, T0)
    now = T0 + 31
    assert store.claim_probe(KEY, now=now, lease=10, holder="a")
    assert not store.claim_probe(KEY, now=now + 1, lease=10, holder="b")
    assert store.claim_probe(KEY, now=now + 1, lease=10, holder="a")  # renewal by the holder


def test_only_one_thread_wins_a_race_for_the_probe(store: Store, store_target: StoreTarget) -> None:
    fail(store, T0)
    stores = [store_target.open() for _ in range(8)]
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


def test_an_expired_lease_lets_another_holder_claim(store: Store) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    assert not store.claim_probe(KEY, now=T0 + 40, lease=10, holder="b")
    assert store.claim_probe(KEY, now=T0 + 41, lease=10, holder="b")
    assert store.states([KEY])[KEY].probe_holder == "b"


def test_release_probe_frees_the_lease_only_for_its_holder(store: Store) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    store.release_probe(KEY, holder="b")
    assert store.states([KEY])[KEY].probe_holder == "a"
    store.release_probe(KEY, holder="a")
    assert store.states([KEY])[KEY].probe_holder is None
    assert store.claim_probe(KEY, now=T0 + 32, lease=10, holder="b")


def test_success_closes_the_half_open_circuit_and_releases_the_lease(store: Store) -> None:
    fail(store, T0)
    assert store.claim_probe(KEY, now=T0 + 31, lease=10, holder="a")
    store.record_success(KEY, now=T0 + 32)
    state = store.states([KEY])[KEY]
    assert state.bench_until is None and state.probe_holder is None and not state.is_half_open(T0 + 32)
    assert not store.claim_probe(KEY, now=T0 + 33, lease=10, holder="b")


# -- quotas, alert claims, demotion, meta --------------------------------------------------------------------


def test_quota_counts_until_the_limit_then_refuses_without_counting(store: Store) -> None:
    day = "2024-05-01"
    assert store.quota_used(KEY, day=day) == 0
    assert [store.take_quota(KEY, day=day, limit=3) for _ in range(5)] == [True, True, True, False, False]
    assert store.quota_used(KEY, day=day) == 3


def test_quota_is_per_day_and_per_model(store: Store) -> None:
    assert store.take_quota(KEY, day="2024-05-01", limit=1)
    assert not store.take_quota(KEY, day="2024-05-01", limit=1)
    assert store.take_quota(KEY, day="2024-05-02", limit=1)
    assert store.take_quota("other/m", day="2024-05-01", limit=1)
    assert not store.take_quota("other/m", day="2024-05-03", limit=0)


def test_an_alert_is_claimed_once_per_window_per_key_and_type(store: Store, other: Store) -> None:
    assert store.claim_alert(KEY, "benched", now=T0, window=60)
    assert not other.claim_alert(KEY, "benched", now=T0 + 59, window=60)
    assert other.claim_alert(KEY, "exhausted", now=T0 + 1, window=60)
    assert other.claim_alert("b/m", "benched", now=T0 + 1, window=60)
    assert other.claim_alert(KEY, "benched", now=T0 + 60, window=60)
    assert not store.claim_alert(KEY, "benched", now=T0 + 61, window=60)


def test_demote_restore_and_recheck_are_claimed_once_and_bench_changes_leave_them(store: Store) -> None:
    assert store.demote(KEY, now=10.0, slow_ms=2000.0, recheck_at=40.0) is True
    assert store.demote(KEY, now=11.0, slow_ms=3000.0, recheck_at=41.0) is False
    state = store.states([KEY])[KEY]
    assert (state.slow_since, state.slow_ms, state.speed_at, state.recheck_at) == (10.0, 2000.0, 10.0, 40.0)
    assert store.claim_recheck(KEY, now=39.0, next_at=69.0) is False  # not due yet
    assert store.claim_recheck(KEY, now=40.0, next_at=70.0) is True
    assert store.claim_recheck(KEY, now=40.0, next_at=70.0) is False  # one request per turn
    store.record_failure(KEY, now=50.0, kind="timeout", status=None, bench_for=30.0)
    store.bench(KEY, now=50.0, until=500.0, manual=True, reason="r", kind=None)
    store.record_success(KEY, now=600.0)
    store.unbench([KEY], now=51.0)
    assert store.states([KEY])[KEY].is_demoted
    assert store.restore(KEY, now=60.0, fast_ms=150.0) is True
    assert store.restore(KEY, now=61.0, fast_ms=150.0) is False
    state = store.states([KEY])[KEY]
    assert (state.is_demoted, state.slow_ms, state.speed_at, state.recheck_at) == (False, 150.0, 60.0, None)
    assert not store.claim_recheck(KEY, now=1000.0, next_at=2000.0)  # not demoted: no turn to take


def test_swap_meta_returns_the_old_value_and_changes_once(store: Store, other: Store) -> None:
    assert store.swap_meta("config", "1") is None
    token = other.change_token()
    assert store.swap_meta("config", "1") == "1"
    assert other.change_token() == token  # unchanged: no write
    assert store.swap_meta("config", "2") == "1"
    assert other.swap_meta("config", "2") == "2"


# -- events --------------------------------------------------------------------------------------------------


def test_events_round_trip_with_ids_and_every_field(store: Store) -> None:
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
    assert store.events() == [event.with_id(ids[0]), Event(type="request", ts=T0 + 1, id=ids[1])]
    assert store.append([]) == []


def test_registered_secret_is_redacted_from_detail_and_data(store: Store) -> None:
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


def test_long_detail_is_truncated(store: Store) -> None:
    store.append([Event(type="attempt_failed", ts=T0, detail="y" * (DETAIL_MAX * 3))])
    assert len(store.events()[0].detail or "") == DETAIL_MAX


def test_events_filters_combine(store: Store) -> None:
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
    first = store.events()[0].id or 0
    assert [e.ts for e in store.events(after_id=first, model="b", limit=1)] == [T0 + 2]


def test_ids_give_the_order_not_timestamps_and_newest_gives_the_last_n_ascending(store: Store) -> None:
    store.append([Event(type="request", ts=T0 + 10 - i) for i in range(10)])  # ts going backwards
    got = store.events()
    assert [e.ts for e in got] == [T0 + 10 - i for i in range(10)]
    ids = [e.id or 0 for e in got]
    assert ids == sorted(set(ids))
    assert [e.ts for e in store.events(limit=3, newest=True)] == [T0 + 3, T0 + 2, T0 + 1]


def test_tailing_with_after_id_sees_each_new_event_once(store: Store, other: Store) -> None:
    last = store.max_event_id()
    assert last == 0
    token = store.change_token()
    other.append([Event(type="request", ts=T0), Event(type="retry", ts=T0)])
    assert store.change_token() != token
    first = store.events(after_id=last)
    assert [e.type for e in first] == ["request", "retry"]
    last = first[-1].id or 0
    assert store.events(after_id=last) == []
    other.append([Event(type="benched", ts=T0 + 1)])
    (benched,) = store.events(after_id=last)
    assert benched.type == "benched" and store.max_event_id() == benched.id


def test_the_change_token_moves_after_another_connection_writes_bench_state(store: Store, other: Store) -> None:
    token = store.change_token()
    assert store.change_token() == token  # nothing written: unchanged
    other.bench(KEY, now=T0, until=T0 + 60, manual=True, reason=None, kind=None)
    assert store.change_token() != token
    token = store.change_token()
    other.unbench([KEY], now=T0 + 1)
    assert store.change_token() != token


def test_a_follower_never_misses_an_event_while_writers_append(store_target: StoreTarget, store: Store) -> None:
    """Ids become visible in increasing order: reading `id > last` while two writers append loses nothing."""
    writers = [
        child(
            store_target,
            f"""
        from llmfail.events import Event
        for i in range(150):
            store.append([Event(type="request", ts=1.0, request_id="w{w}-" + str(i))])
            if i % 10 == 0:
                store.append([Event(type="retry", ts=1.0, request_id="w{w}-b" + str(i + j)) for j in range(3)])
        """,
        )
        for w in range(2)
    ]
    seen: list[int] = []
    last = 0
    while True:
        running = any(p.poll() is None for p in writers)
        for event in store.events(after_id=last):
            seen.append(event.id or 0)
            last = event.id or last
        if not running:
            break
    for proc in writers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    total = 2 * (150 + 15 * 3)
    assert len(seen) == total and seen == sorted(set(seen))
    assert [e.id for e in store.events()] == seen


# -- tally ---------------------------------------------------------------------------------------------------


def test_tally_counts_a_window_per_model_and_follows_the_chain_filter_for_traffic_only(store: Store) -> None:
    store.append(
        [
            Event(type=ev.REQUEST, ts=T0, model="a", chain="prod", latency_ms=100.0, data={"attempt_ttft_ms": 40.0}),
            Event(type=ev.REQUEST, ts=T0 + 1, model="a", chain="cheap", latency_ms=300.0),
            Event(type=ev.ATTEMPT_FAILED, ts=T0 + 2, model="a", chain="prod", kind="transient", status=503),
            Event(type=ev.ATTEMPT_FAILED, ts=T0 + 3, model="a", chain="prod", kind="timeout"),
            Event(type=ev.FAILOVER, ts=T0 + 4, model="a", chain="prod", kind="timeout", next_model="b"),
            Event(type=ev.BENCHED, ts=T0 + 5, model="a", chain="cheap", kind="timeout"),
            Event(type=ev.PROBE, ts=T0 + 6, model="a", data={"ok": True, "recovered": True}),
            Event(type=ev.REQUEST, ts=T0 + 7, model="b", chain="prod", latency_ms=50.0),
            Event(type=ev.REQUEST, ts=T0 - 100, model="old", chain="prod", latency_ms=1.0),  # outside the window
        ]
    )
    every = store.tally(since=T0, until=T0 + 10)
    assert set(every) == {"a", "b"}
    a = every["a"]
    assert (a.answered, a.errors, a.failovers, a.benched, a.recoveries) == (2, {"transient": 1, "timeout": 1}, 1, 1, 1)
    assert a.latencies_ms == (300.0, 100.0) and a.ttfts_ms == (40.0,) and a.last_seen == T0 + 6
    prod = store.tally(since=T0, until=T0 + 10, chain="prod")["a"]
    assert (prod.answered, prod.latencies_ms, prod.benched, prod.recoveries) == (1, (100.0,), 1, 1)
    assert store.tally(since=T0, until=T0 + 10, sample=1)["a"].latencies_ms == (300.0,)
    assert store.recent_ttfts("a", after=None, limit=5) == [40.0]
    assert store.recent_ttfts("a", after=T0, limit=5) == []


# -- pruning -------------------------------------------------------------------------------------------------


def test_forced_prune_deletes_old_events_and_keeps_ids_monotonic(store: Store) -> None:
    store.append([Event(type="request", ts=T0 - 10_000), Event(type="request", ts=T0 - 10)])
    top = store.max_event_id()
    assert store.prune(now=T0, retention=1000, force=True) == 1
    assert [e.ts for e in store.events()] == [T0 - 10]
    assert store.prune(now=T0 + 100, retention=1, force=True) == 1
    assert store.events() == [] and store.max_event_id() == top
    (new_id,) = store.append([Event(type="request", ts=T0 + 100)])
    assert new_id > top  # never reused: a follower at `top` sees it


def test_prune_runs_at_most_once_an_hour_across_connections_unless_forced(store: Store, other: Store) -> None:
    store.append([Event(type="request", ts=T0 - 5000)])
    assert store.prune(now=T0, retention=1000) == 1
    store.append([Event(type="request", ts=T0 - 5000)])
    assert other.prune(now=T0 + 60, retention=1000) == 0
    assert len(store.events()) == 1
    assert other.prune(now=T0 + 3600, retention=1000) == 1
    store.append([Event(type="request", ts=T0 - 5000)])
    assert store.prune(now=T0 + 3601, retention=1000, force=True) == 1


# -- many processes ----------------------------------------------------------------------------------------------------

WORKER = """
    import os, time
    from llmfail.events import Event
    worker, go = int(sys.argv[2]), sys.argv[3]
    open(f"{go}.ready{worker}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
    for i in range(300):
        store.append([Event(type="request", ts=1.0, request_id=f"w{worker}-{i}", data={"i": i})])
        if i % 5 < 2:
            store.record_failure("shared/key", now=2.0, kind="transient", status=503, bench_for=30.0)
    store.close()
"""


def test_four_processes_writing_at_once_lose_nothing(store_target: StoreTarget, store: Store, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [child(store_target, WORKER, str(w), str(go)) for w in range(4)]
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"go.ready{w}").exists() for w in range(4)):  # every worker connected...
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.005)
    go.touch()  # ...then all are released together
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert b"locked" not in err
    events = store.events()
    assert len(events) == 1200
    assert {e.request_id for e in events} == {f"w{w}-{i}" for w in range(4) for i in range(300)}
    assert [e.id for e in events] == sorted({e.id or 0 for e in events})
    writers = [(e.request_id or "").split("-")[0] for e in events]
    assert sum(a != b for a, b in itertools.pairwise(writers)) > 3, "the workers did not overlap"
    state = store.states(["shared/key"])["shared/key"]
    assert state.failures == 480 and state.bench_count == 480  # began unknown: each failure counts as a bench
