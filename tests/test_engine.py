"""The walk of a request (docs/concepts.md) against real loopback servers, a real SQLite file and virtual time."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug import Request, Response

from llmfail import events as ev
from llmfail.errors import AllBenched, ChainExhausted, FailFast, Kind
from llmfail.store.sqlite import SqliteStore

from .conftest import Calls, FakeClock, ok, openai_chunk, openai_error, sse

CHAIN = """
defaults:
  attempts: 3
  backoff: {base: 100ms, max: 1s}
  cooldown: 30s
  max_retry_wait: 5s
  timeout: 2s
  first_token_timeout: 2s
  idle_timeout: 2s
  deadline: 5m
  %(extra)s
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
  c: {type: openai, base_url: "{url}/c/v1"}
chains:
  main: [a/m1, b/m2, c/m3]
"""


def chain(extra: str = "") -> str:
    return CHAIN % {"extra": extra}


def route(server: Any, name: str, handler: Calls) -> Calls:
    server.expect_request(f"/{name}/v1/chat/completions", method="POST").respond_with_handler(handler)
    return handler


def types(store: SqliteStore) -> list[str]:
    return [e.type for e in store.events()]


def run(engine: Any, **kwargs: Any) -> Any:
    return asyncio.run(_complete(engine, **kwargs))


async def _complete(engine: Any, **kwargs: Any) -> Any:
    try:
        return await engine.complete("main", "hi", **kwargs)
    finally:
        await engine.aclose()


# ---------------------------------------------------------------- transient and rate limits


def test_transient_errors_are_retried_then_the_entry_is_benched_and_the_next_answers(server, make_engine, store, clock):
    a = route(server, "a", Calls(openai_error(503)))
    b = route(server, "b", Calls(ok("from b")))
    result = run(make_engine(chain()))
    assert result.text == "from b" and result.model == "b/m2"
    assert a.count == 3 and b.count == 1
    assert result.failovers == 1
    assert [x.kind for x in result.attempts] == ["transient", "transient", "transient", None]
    bench = store.states(["a/m1"])["a/m1"]
    assert bench.bench_until == pytest.approx(clock.now + 30, abs=1)
    assert len(clock.sleeps) == 2 and all(0 <= s <= 1 for s in clock.sleeps)
    assert types(store).count(ev.RETRY) == 2
    assert ev.BENCHED in types(store) and ev.FAILOVER in types(store)


def test_a_short_retry_after_is_slept_on_the_virtual_clock_and_the_same_entry_retried(server, make_engine, clock):
    a = route(
        server, "a", Calls(openai_error(429, "rate_limit_exceeded", "requests", headers={"retry-after": "2"}), ok("a"))
    )
    result = run(make_engine(chain()))
    assert result.model == "a/m1" and a.count == 2
    assert clock.sleeps == [2.0]


def test_retry_after_ms_is_preferred_to_retry_after(server, make_engine, clock):
    route(server, "a", Calls(openai_error(429, headers={"retry-after-ms": "644", "retry-after": "1"}), ok("a")))
    run(make_engine(chain()))
    assert clock.sleeps == [pytest.approx(0.644)]


@pytest.mark.parametrize("status, wait", [(429, 120), (503, 300)], ids=["429", "5xx"])
def test_a_retry_after_longer_than_max_retry_wait_benches_until_it_and_moves_on_at_once(
    server, make_engine, store, clock, status, wait
):
    """A 503/529 with Retry-After is honoured like a 429's (docs/concepts.md: the rules behind the table)."""
    a = route(server, "a", Calls(openai_error(status, headers={"retry-after": str(wait)})))
    route(server, "b", Calls(ok("b")))
    start = clock.now
    result = run(make_engine(chain()))
    assert result.model == "b/m2" and a.count == 1 and clock.sleeps == []
    assert store.states(["a/m1"])["a/m1"].bench_until >= start + wait


def test_a_429_without_retry_after_backs_off_like_a_transient_error(server, make_engine, clock):
    a = route(server, "a", Calls(openai_error(429, "rate_limit_exceeded"), ok("a")))
    result = run(make_engine(chain()))
    assert result.model == "a/m1" and a.count == 2 and len(clock.sleeps) == 1 and clock.sleeps[0] <= 0.1


def test_x_should_retry_false_stops_same_entry_retries(server, make_engine):
    a = route(server, "a", Calls(openai_error(503, headers={"x-should-retry": "false"})))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2" and a.count == 1


# ---------------------------------------------------------------- timeouts


def test_a_provider_that_never_answers_costs_one_timeout_then_the_walk_moves_on(server, make_engine, store):
    release = threading.Event()

    def never(request: Request) -> Response:
        release.wait(5)
        return ok("late")

    a = route(server, "a", Calls(never))
    route(server, "b", Calls(ok("b")))
    try:
        result = run(make_engine(chain().replace("timeout: 2s", "timeout: 300ms", 1)))
    finally:
        release.set()
    assert result.model == "b/m2" and a.count == 1
    assert result.attempts[0].kind == "timeout"
    assert store.states(["a/m1"])["a/m1"].is_benched(store_now(store))


def store_now(store: SqliteStore) -> float:
    return max(e.ts for e in store.events())


def test_x_should_retry_true_allows_one_retry_of_a_408(server, make_engine):
    a = route(server, "a", Calls(openai_error(408, headers={"x-should-retry": "true"})))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2" and a.count == 2


def test_408_is_a_timeout_benched_without_retry(server, make_engine):
    a = route(server, "a", Calls(openai_error(408)))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2" and a.count == 1


# ---------------------------------------------------------------- auth, quota, request kinds


CREDS = """
defaults: {attempts: 3, backoff: {base: 100ms, max: 1s}, auth_cooldown: 10m}
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
chains:
  main:
    - model: a/m1
      credentials: [{api_key_env: KEY_ONE}, {api_key_env: KEY_TWO}]
    - b/m2
"""


def test_auth_failure_benches_only_that_credential_and_the_next_credential_answers(
    server, make_engine, store, clock, monkeypatch
):
    monkeypatch.setenv("KEY_ONE", "sk-one-aaaaaaaaaaaa")
    monkeypatch.setenv("KEY_TWO", "sk-two-bbbbbbbbbbbb")

    def by_key(request: Request) -> Response:
        if request.headers.get("authorization") == "Bearer sk-one-aaaaaaaaaaaa":
            return openai_error(401, "invalid_api_key", "invalid_request_error")
        return ok("second key")

    a = route(server, "a", Calls(by_key))
    result = run(make_engine(CREDS))
    assert result.text == "second key" and a.count == 2
    states = store.states(["a/m1", "a/m1#0", "a/m1#1"])
    assert states["a/m1#0"].bench_until == pytest.approx(clock.now + 600, abs=1)
    assert "a/m1" not in states or not states["a/m1"].is_benched(clock.now)
    # the next request skips the dead credential entirely
    a.requests.clear()
    run(make_engine(CREDS))
    assert [r.headers["authorization"] for r in a.requests] == ["Bearer sk-two-bbbbbbbbbbbb"]


def test_insufficient_quota_is_auth_and_makes_exactly_one_http_call(server, make_engine, store, clock):
    a = route(
        server,
        "a",
        Calls(openai_error(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota")),
    )
    route(server, "b", Calls(ok("b")))
    result = run(make_engine(chain("auth_cooldown: 10m")))
    assert result.model == "b/m2" and a.count == 1
    assert store.states(["a/m1"])["a/m1"].bench_until == pytest.approx(clock.now + 600, abs=1)


def test_context_length_goes_to_the_next_entry_without_bench_or_retry(server, make_engine, store, clock):
    a = route(server, "a", Calls(openai_error(400, "context_length_exceeded", "invalid_request_error")))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2" and a.count == 1
    assert "a/m1" not in store.states(["a/m1"]) or not store.states(["a/m1"])["a/m1"].is_benched(clock.now)
    assert ev.BENCHED not in types(store)


def test_invalid_request_moves_on_by_default_and_fails_fast_when_told(server, make_engine, store):
    a = route(server, "a", Calls(openai_error(400, "unsupported_parameter", "invalid_request_error")))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2"
    with pytest.raises(FailFast) as caught:
        run(make_engine(chain("on_invalid_request: fail")))
    assert caught.value.kind == Kind.INVALID_REQUEST and caught.value.status == 400
    assert a.count == 2 and ev.BENCHED not in types(store)


def test_content_filter_fails_fast_with_the_original_error_by_default(server, make_engine, store):
    route(
        server, "a", Calls(openai_error(400, "content_policy_violation", "invalid_request_error", "rejected by safety"))
    )
    b = route(server, "b", Calls(ok("b")))
    with pytest.raises(FailFast) as caught:
        run(make_engine(chain()))
    assert caught.value.kind == Kind.CONTENT_FILTER and "rejected by safety" in caught.value.message
    assert b.count == 0 and ev.FAIL_FAST in types(store)


def test_content_filter_moves_on_when_the_policy_says_next(server, make_engine):
    route(
        server,
        "a",
        Calls(
            Response(
                json.dumps({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}),
                content_type="application/json",
            )
        ),
    )
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain("on_content_filter: next"))).model == "b/m2"


def test_a_daily_quota_is_counted_in_the_state_db_and_skips_the_entry_when_reached(server, make_engine, store):
    text = chain().replace("main: [a/m1, b/m2, c/m3]", "main:\n    - {model: a/m1, daily_quota: 1}\n    - b/m2")
    a = route(server, "a", Calls(ok("a")))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(text)).model == "a/m1"
    assert run(make_engine(text)).model == "b/m2"
    assert a.count == 1 and ev.QUOTA_SKIP in types(store)


def failovers(store: SqliteStore) -> list[tuple[str | None, str | None]]:
    return [(e.model, e.next_model) for e in store.events(types=[ev.FAILOVER])]


def use_up_quota(store: SqliteStore, model: str, clock: FakeClock) -> None:
    """Today's (virtual clock's UTC day) whole quota of 1 request for `model`, spent."""
    assert store.take_quota(model, day=datetime.fromtimestamp(clock.now, UTC).date().isoformat(), limit=1)


ONE_QUOTA = "main:\n    - a/m1\n    - {model: b/m2, daily_quota: 1}\n    - c/m3"


def test_a_failover_names_the_entry_tried_next_not_one_skipped_for_its_quota(server, make_engine, store, clock):
    use_up_quota(store, "b/m2", clock)
    route(server, "a", Calls(openai_error(400, "context_length_exceeded", "invalid_request_error")))
    b = route(server, "b", Calls(ok("b")))
    route(server, "c", Calls(ok("c")))
    result = run(make_engine(chain().replace("main: [a/m1, b/m2, c/m3]", ONE_QUOTA)))
    assert result.model == "c/m3" and b.count == 0
    assert failovers(store) == [("a/m1", "c/m3")] and result.failovers == 1
    (skip,) = store.events(types=[ev.QUOTA_SKIP])
    assert skip.model == "b/m2"


def test_a_failover_never_names_an_entry_skipped_because_another_request_took_its_probe(
    server, make_engine, store, clock
):
    """b/m2 is half-open when the walk begins; another process takes its probe lease while
    a/m1 is being tried, so this request skips b/m2 and the failover names c/m3."""
    store.record_failure("b/m2", now=clock.now - 40, kind="transient", status=503, bench_for=30)
    claimed: list[bool] = []

    def other_process_probes_then_401(request: Any) -> Response:
        claimed.append(store.claim_probe("b/m2", now=clock.now, lease=30, holder="other-host:1"))
        return openai_error(401)

    route(server, "a", Calls(other_process_probes_then_401))
    b = route(server, "b", Calls(ok("b")))
    route(server, "c", Calls(ok("c")))
    result = run(make_engine(chain()))
    assert claimed == [True]
    assert result.model == "c/m3" and b.count == 0
    assert failovers(store) == [("a/m1", "c/m3")] and result.failovers == 1


def test_no_failover_is_written_when_every_entry_after_a_failure_is_skipped(server, make_engine, store, clock):
    use_up_quota(store, "b/m2", clock)
    text = (
        chain()
        .replace("attempts: 3", "attempts: 1")
        .replace("main: [a/m1, b/m2, c/m3]", "main:\n    - a/m1\n    - {model: b/m2, daily_quota: 1}")
    )
    route(server, "a", Calls(openai_error(500)))
    with pytest.raises(ChainExhausted) as caught:
        run(make_engine(text))
    assert [c.kind for c in caught.value.causes] == [Kind.TRANSIENT, Kind.QUOTA]
    assert failovers(store) == []


def test_an_unparseable_200_body_is_transient(server, make_engine):
    a = route(server, "a", Calls(Response("{not json", content_type="application/json")))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2" and a.count == 3


# ---------------------------------------------------------------- exhaustion, deadline, cancel


def test_exhaustion_raises_one_error_carrying_every_cause_in_order(server, make_engine, store):
    route(server, "a", Calls(openai_error(500)))
    route(server, "b", Calls(openai_error(401)))
    route(server, "c", Calls(openai_error(400, "context_length_exceeded")))
    with pytest.raises(ChainExhausted) as caught:
        run(make_engine(chain().replace("attempts: 3", "attempts: 1")))
    assert [c.kind for c in caught.value.causes] == [Kind.TRANSIENT, Kind.AUTH, Kind.CONTEXT_LENGTH]
    assert [c.model for c in caught.value.causes] == ["a/m1", "b/m2", "c/m3"]
    rows = store.events(types=[ev.REQUEST])
    assert len(rows) == 1 and rows[0].data["ok"] is False
    assert ev.EXHAUSTED in types(store)


def test_a_retry_that_cannot_happen_before_the_deadline_moves_on_to_the_next_entry(server, make_engine, clock):
    a = route(server, "a", Calls(openai_error(429, headers={"retry-after": "4"})))
    route(server, "b", Calls(ok("b")))
    start = clock.now
    result = run(make_engine(chain().replace("deadline: 5m", "deadline: 6s").replace("attempts: 3", "attempts: 10")))
    assert result.model == "b/m2" and a.count == 2 and clock.sleeps == [4.0]
    assert clock.now - start <= 6.0 + 1e-6


def test_the_deadline_bounds_the_whole_walk_including_backoff(server, make_engine, clock):
    calls = [route(server, name, Calls(openai_error(503))) for name in "abc"]
    start = clock.now
    with pytest.raises(ChainExhausted):
        run(
            make_engine(
                chain()
                .replace("deadline: 5m", "deadline: 1s")
                .replace("attempts: 3", "attempts: 50")
                .replace("backoff: {base: 100ms, max: 1s}", "backoff: {base: 300ms, max: 300ms}")
            )
        )
    assert clock.now - start <= 1.0 + 1e-6  # every backoff sleep fitted in the deadline
    assert sum(c.count for c in calls) < 3 * 50


def test_a_401_caused_by_a_key_variable_missing_here_benches_nothing_for_other_processes(server, make_engine, store):
    text = chain().replace(
        'a: {type: openai, base_url: "{url}/a/v1"}',
        'a: {type: openai, base_url: "{url}/a/v1", api_key_env: LLMFAIL_TEST_UNSET_KEY}',
    )
    a = route(server, "a", Calls(openai_error(401, "invalid_api_key")))
    route(server, "b", Calls(ok("b")))
    result = run(make_engine(text))
    assert result.model == "b/m2" and a.count == 1
    assert "authorization" not in {k.lower() for k, _ in a.requests[0].headers}
    assert store.benches(0) == [] and ev.BENCHED not in types(store)


def test_concurrent_requests_of_one_process_send_a_single_probe(server, make_engine, store, clock):
    release = threading.Event()

    def slow_ok(request: Request) -> Response:
        release.wait(5)
        return ok("a back")

    store.record_failure("a/m1", now=clock.now - 40, kind="transient", status=503, bench_for=30)
    a = route(server, "a", Calls(slow_ok))
    route(server, "b", Calls(ok("b")))
    engine = make_engine(chain())

    async def burst() -> list[Any]:
        tasks = [asyncio.create_task(engine.complete("main", "hi")) for _ in range(5)]
        while a.count < 1:
            await asyncio.sleep(0.01)
        others = await asyncio.gather(*tasks[1:])  # the four that did not get the probe lease
        release.set()
        first = await tasks[0]
        await engine.aclose()
        return [first, *others]

    try:
        results = asyncio.run(burst())
    finally:
        release.set()
    assert a.count == 1
    assert sorted(r.model for r in results) == ["a/m1"] + ["b/m2"] * 4


def test_two_requests_that_both_saw_the_entry_half_open_still_send_one_probe(server, make_engine, store, clock):
    """The race the lease exists for: both walks read b/m2 as half-open (unleased) before
    either claims it, because a/m1 holds them both until both have arrived."""
    both_read = threading.Barrier(2, timeout=5)
    release = threading.Event()

    def gate(request: Request) -> Response:
        both_read.wait()
        return openai_error(400, "context_length_exceeded", "invalid_request_error")  # next entry, no bench

    def slow_ok(request: Request) -> Response:
        release.wait(5)
        return ok("b back")

    store.record_failure("b/m2", now=clock.now - 40, kind="transient", status=503, bench_for=30)
    a = route(server, "a", Calls(gate))
    b = route(server, "b", Calls(slow_ok))
    route(server, "c", Calls(ok("c")))
    engine = make_engine(chain())

    async def pair() -> list[Any]:
        first, second = (asyncio.create_task(engine.complete("main", "hi")) for _ in range(2))
        await asyncio.wait([first, second], return_when=asyncio.FIRST_COMPLETED)
        release.set()  # the request that lost the lease has gone on to c/m3; let the probe answer
        results = [await first, await second]
        await engine.aclose()
        return results

    try:
        results = asyncio.run(pair())
    finally:
        release.set()
    assert a.count == 2 and b.count == 1
    assert sorted(r.model for r in results) == ["b/m2", "c/m3"]
    assert [e.data["ok"] for e in store.events(types=[ev.PROBE])] == [True]


def test_cancellation_benches_nothing(server, make_engine, store):
    started = threading.Event()
    release = threading.Event()

    def slow(request: Request) -> Response:
        started.set()
        release.wait(5)
        return openai_error(503)

    route(server, "a", Calls(slow))
    engine = make_engine(chain())

    async def go() -> None:
        task = asyncio.create_task(engine.complete("main", "hi"))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await engine.aclose()

    try:
        asyncio.run(go())
    finally:
        release.set()
    assert store.benches(0) == [] and ev.BENCHED not in types(store)
    (request_row,) = store.events(types=[ev.REQUEST])
    assert request_row.kind == "cancelled"


# ---------------------------------------------------------------- a store that fails mid-walk


def refuse(db_path: Any, name: str, table: str, when: str) -> None:
    """Make the real SQLite file refuse some writes from now on (a failing disk, seen by one table)."""
    conn = sqlite3.connect(db_path)
    with conn:
        for op in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER {name}_{op.lower()} BEFORE {op} ON {table} WHEN {when} "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
    conn.close()


def lift(db_path: Any) -> None:
    """The disk is fine again: drop every trigger `refuse` made."""
    conn = sqlite3.connect(db_path)
    with conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
    conn.close()


def test_a_store_error_in_the_middle_of_a_walk_answers_and_the_outcome_row_arrives_when_the_store_is_back(
    server, make_engine, store, db_path, clock
):
    refuse(db_path, "no_a", "models", "NEW.model = 'a/m1'")  # a/m1's failure cannot be recorded
    route(server, "a", Calls(openai_error(503)))
    route(server, "b", Calls(ok("b")))
    engine = make_engine(chain().replace("attempts: 3", "attempts: 1"))
    first = run(engine)
    assert first.text == "b" and [a.kind for a in first.attempts] == ["transient", None]
    assert any("shared state unavailable" in w and "disk I/O error" in w for w in first.warnings)
    assert store.events(types=[ev.REQUEST]) == []  # spooled, not lost
    lift(db_path)
    clock.advance(60)  # past the breaker's pause: the next request tries the store again
    second = run(engine)
    rows = {row.request_id: row for row in store.events(types=[ev.REQUEST])}
    assert set(rows) == {first.request_id, second.request_id}
    assert rows[first.request_id].data["ok"] is True and rows[first.request_id].ts < rows[second.request_id].ts


def test_a_walk_that_fails_while_the_store_is_broken_keeps_its_outcome_row_for_later(
    server, make_engine, store, db_path, clock
):
    refuse(db_path, "no_a", "models", "NEW.model = 'a/m1'")
    route(server, "a", Calls(openai_error(503), ok("a")))  # b and c are not routed: they answer 500
    engine = make_engine(chain().replace("attempts: 3", "attempts: 1"))
    with pytest.raises(ChainExhausted) as caught:
        run(engine)
    assert store.events(types=[ev.REQUEST]) == []
    lift(db_path)
    clock.advance(60)
    assert run(engine).text == "a"
    (row,) = [r for r in store.events(types=[ev.REQUEST]) if r.request_id == caught.value.request_id]
    assert row.data["ok"] is False


def test_an_answer_is_returned_even_when_its_outcome_row_cannot_be_written(server, make_engine, store, db_path):
    refuse(db_path, "no_outcome", "events", "NEW.type = 'request'")
    route(server, "a", Calls(ok("a")))
    result = run(make_engine(chain()))
    assert result.text == "a" and store.events(types=[ev.REQUEST]) == []
    assert any("shared state unavailable" in w for w in result.warnings)


# ---------------------------------------------------------------- benches, probes, panic


def test_a_benched_entry_is_skipped_without_any_http_call(server, make_engine, store, clock):
    store.bench("a/m1", now=clock.now, until=clock.now + 60, manual=True, reason="deploy", kind=None)
    a = route(server, "a", Calls(ok("a")))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2" and a.count == 0


def test_after_the_bench_one_probe_attempt_closes_the_circuit_on_success(server, make_engine, store, clock):
    a = route(server, "a", Calls(openai_error(503), openai_error(503), openai_error(503), ok("a back")))
    route(server, "b", Calls(ok("b")))
    engine = make_engine(chain())
    assert run(engine).model == "b/m2"
    clock.advance(31)
    result = run(engine)
    assert result.model == "a/m1" and a.count == 4
    state = store.states(["a/m1"])["a/m1"]
    assert state.bench_until is None and state.bench_count == 0 and state.failures == 0
    probes = store.events(types=[ev.PROBE])
    assert probes[-1].data["ok"] is True


def test_a_failed_probe_is_one_attempt_and_benches_again_at_once(server, make_engine, store, clock):
    a = route(server, "a", Calls(openai_error(503)))
    route(server, "b", Calls(ok("b")))
    engine = make_engine(chain())
    run(engine)
    clock.advance(31)
    run(engine)
    assert a.count == 4  # 3 attempts, then a single probe
    assert store.states(["a/m1"])["a/m1"].is_benched(clock.now)
    assert store.events(types=[ev.PROBE])[-1].data["ok"] is False


def test_a_probe_held_by_another_process_makes_this_request_skip_the_entry(server, make_engine, store, clock):
    store.record_failure("a/m1", now=clock.now - 40, kind="transient", status=503, bench_for=30)
    assert store.claim_probe("a/m1", now=clock.now, lease=30, holder="other-host:1")
    a = route(server, "a", Calls(ok("a")))
    route(server, "b", Calls(ok("b")))
    assert run(make_engine(chain())).model == "b/m2" and a.count == 0


def test_a_half_open_entry_skipped_for_its_quota_does_not_keep_the_probe_lease(server, make_engine, store, clock):
    store.record_failure("b/m2", now=clock.now - 40, kind="transient", status=503, bench_for=30)
    use_up_quota(store, "b/m2", clock)
    route(server, "a", Calls(openai_error(400, "context_length_exceeded", "invalid_request_error")))
    route(server, "c", Calls(ok("c")))
    assert run(make_engine(chain().replace("main: [a/m1, b/m2, c/m3]", ONE_QUOTA))).model == "c/m3"
    assert not store.states(["b/m2"])["b/m2"].probe_leased(clock.now), "the next UTC day's probe must not wait"


def test_cooldown_grows_with_the_factor_and_resets_after_a_success(server, make_engine, store, clock):
    a = route(server, "a", Calls(openai_error(503)))
    route(server, "b", Calls(ok("b")))
    engine = make_engine(chain("max_cooldown_factor: 4").replace("attempts: 3", "attempts: 1"))
    lengths = []
    for _ in range(3):
        run(engine)
        state = store.states(["a/m1"])["a/m1"]
        lengths.append(round(state.bench_until - clock.now))
        clock.advance(state.bench_until - clock.now + 0.5)
    assert lengths == [30, 60, 90]
    a.responses = [ok("a")]
    assert run(engine).model == "a/m1"
    assert store.states(["a/m1"])["a/m1"].bench_count == 0


def test_panic_mode_tries_every_entry_when_all_are_benched(server, make_engine, store, clock):
    for model in ("a/m1", "b/m2", "c/m3"):
        store.record_failure(model, now=clock.now, kind="transient", status=503, bench_for=30)
    route(server, "a", Calls(ok("a")))
    result = run(make_engine(chain()))
    assert result.model == "a/m1" and result.panic
    assert ev.PANIC in types(store)


def test_a_manual_bench_survives_a_success_in_panic_mode(server, make_engine, store, clock):
    store.bench("a/m1", now=clock.now, until=clock.now + 600, manual=True, reason="incident 42", kind=None)
    for model in ("b/m2", "c/m3"):
        store.record_failure(model, now=clock.now, kind="transient", status=503, bench_for=30)
    route(server, "a", Calls(ok("a")))
    assert run(make_engine(chain())).model == "a/m1"
    state = store.states(["a/m1"])["a/m1"]
    assert state.manual and state.is_benched(clock.now) and state.reason == "incident 42"


def test_on_all_benched_fail_raises_at_once_saying_when_the_first_bench_ends(server, make_engine, store, clock):
    for i, model in enumerate(("a/m1", "b/m2", "c/m3")):
        store.record_failure(model, now=clock.now, kind="transient", status=503, bench_for=30 + i)
    a = route(server, "a", Calls(ok("a")))
    with pytest.raises(AllBenched) as caught:
        run(make_engine(chain("on_all_benched: fail")))
    assert caught.value.first_model == "a/m1" and "ends at" in caught.value.message and a.count == 0


def test_reading_state_never_changes_it(server, make_engine, store, clock, db_path):
    store.record_failure("a/m1", now=clock.now, kind="transient", status=503, bench_for=30)
    before = (db_path.read_bytes(), store.change_token())
    store.states(["a/m1"]), store.benches(clock.now + 100), store.events(), store.all_states()
    assert (db_path.read_bytes(), store.change_token()) == before


# ---------------------------------------------------------------- streaming through the engine


def test_a_stream_cut_before_its_completion_signal_fails_over_and_is_never_a_success(server, make_engine):
    cut = Response(sse(openai_chunk("Half an "), openai_chunk("ans"), done=False), content_type="text/event-stream")
    a = route(server, "a", Calls(cut))
    route(
        server,
        "b",
        Calls(Response(sse(openai_chunk("whole"), openai_chunk(None, "stop")), content_type="text/event-stream")),
    )
    result = run(make_engine(chain()), stream=True)
    assert result.text == "whole" and result.model == "b/m2" and a.count == 3


def test_a_missing_done_after_finish_reason_is_a_success(server, make_engine):
    route(
        server,
        "a",
        Calls(
            Response(
                sse(openai_chunk("all "), openai_chunk("here", "stop"), done=False), content_type="text/event-stream"
            )
        ),
    )
    assert run(make_engine(chain()), stream=True).text == "all here"


def test_observers_see_every_event_the_store_gets(server, make_engine, store):
    route(server, "a", Calls(openai_error(503)))
    route(server, "b", Calls(ok("b")))
    engine = make_engine(chain())
    seen: list[Any] = []
    engine.on_event(seen.append)
    run(engine)
    assert [e.id for e in seen] == [e.id for e in store.events()]


def test_the_sync_convenience_works_without_an_event_loop(server, make_engine):
    route(server, "a", Calls(ok("sync")))
    assert make_engine(chain()).complete_sync("main", "hi").text == "sync"


def test_fake_clock_is_used_for_event_times(server, make_engine, store, clock: FakeClock):
    route(server, "a", Calls(ok("a")))
    run(make_engine(chain()))
    assert {e.ts for e in store.events()} == {clock.now}
