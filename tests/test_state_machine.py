"""The bench state machine under any sequence of events (issue 8, item 5).

Hypothesis drives the real engine over a real store (each backend of
`tests/backends.py`) on a virtual clock: requests whose providers answer
with any kind of failure or success, the clock moving on, other processes
taking and giving back the probe lease,
and an operator benching and unbenching by hand. After every step it checks
the invariants the rest of llmfail relies on:

- at most one probe holder per model: another process's claim wins only when
  the model is half-open and nobody else holds an unexpired lease, and the
  engine never calls a model someone else is probing (outside panic mode);
- request-specific kinds (context_length, invalid_request, content_filter)
  never change a model's counters, bench or lease;
- a manual bench is cleared only by unbench or expiry;
- a bench never outlasts its computed length (cooldown * min(factor,
  bench_count), auth_cooldown, or the server's reset time) and never ends early;
- a benched model is never called (outside panic), a half-open one gets one
  single-attempt probe, and a walk panics exactly when no entry is live;
- reads (states, benches, ls-benched, chains, events) never commit (another
  connection's change token stays put) and, on SQLite, never touch the
  database or its WAL;
- the operator's re-bench never shortens a running bench: the later deadline
  wins, and a bench kept as it was is not changed at all.

The HTTP side is an `httpx.MockTransport` (the engine's documented seam), so a
step costs microseconds of "network" and the search can take many steps.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from llmfail import events as ev
from llmfail.actions import bench_model, chains_view, list_benches, unbench_models
from llmfail.config import parse_config
from llmfail.engine import Engine
from llmfail.errors import LlmfailError
from llmfail.store import ModelState, StoreTarget, sqlite_file

from .conftest import FakeClock

MODELS = ("a/m1", "b/m2", "c/m3")
ATTEMPTS = 2
COOLDOWN, FACTOR, AUTH_COOLDOWN, LONG_RETRY_AFTER = 30.0, 3.0, 600.0, 120.0
CONFIG = f"""
defaults:
  attempts: {ATTEMPTS}
  backoff: {{base: 10ms, max: 50ms}}
  cooldown: {COOLDOWN:g}s
  max_cooldown_factor: {FACTOR:g}
  auth_cooldown: {AUTH_COOLDOWN:g}s
  max_retry_wait: 5s
  timeout: 5s
  deadline: 1h
providers:
  a: {{type: openai, base_url: "http://a.test/v1"}}
  b: {{type: openai, base_url: "http://b.test/v1"}}
  c: {{type: openai, base_url: "http://c.test/v1"}}
chains:
  main: [a/m1, b/m2, c/m3]
"""
OTHERS = ("other-process-1", "other-process-2")


def _error(status: int, code: str | None, err_type: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": f"{status} {code or err_type}", "type": err_type, "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


#: What a provider may answer, by name: each builds one HTTP response.
OUTCOMES: dict[str, Any] = {
    "ok": lambda: httpx.Response(
        200,
        json={
            "id": "x",
            "object": "chat.completion",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        },
    ),
    "503": lambda: _error(503, None, "server_error"),
    "429-short": lambda: _error(429, "rate_limit_exceeded", "requests", {"retry-after": "1"}),
    "429-long": lambda: _error(429, "rate_limit_exceeded", "requests", {"retry-after": f"{LONG_RETRY_AFTER:g}"}),
    "401": lambda: _error(401, "invalid_api_key", "invalid_request_error"),
    "408": lambda: _error(408, None, "timeout"),
    "context": lambda: _error(400, "context_length_exceeded", "invalid_request_error"),
    "invalid": lambda: _error(400, None, "invalid_request_error"),
    "filter": lambda: _error(400, "content_policy_violation", "invalid_request_error"),
}
REQUEST_KIND_OUTCOMES = {"context", "invalid", "filter"}


def health(state: ModelState) -> tuple[Any, ...]:
    """Everything but the probe lease: the bench, its counters and the last error."""
    return (
        state.bench_until,
        state.benched_at,
        state.manual,
        state.reason,
        state.kind,
        state.bench_count,
        state.failures,
        state.last_error_kind,
        state.last_error_status,
        state.last_error_at,
    )


class BenchMachine(RuleBasedStateMachine):
    #: Makes the fresh store of each example: the tests set it to `new_store_target`, so the
    #: machine runs once per backend in `tests/backends.py`.
    make_target: Callable[[Path], StoreTarget]

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="llmfail-sm-"))
        target = type(self).make_target(self.dir)
        self.store = target.open()
        self.observer = target.open()  # another connection: its change token moves on every commit of the store
        self.db = sqlite_file(target.url)  # None on a backend without a file
        self.clock = FakeClock()
        self.config = parse_config(CONFIG, "machine.yaml")
        self.answers: dict[str, str] = dict.fromkeys(MODELS, "ok")
        self.calls: Counter[str] = Counter()
        self.engine = Engine(
            self.config,
            self.store,
            clock=self.clock,
            sleep=self.clock.sleep,
            rng=Random(0),
            transport=httpx.MockTransport(self._answer),
        )
        self.manual: dict[str, float] = {}  # model -> until, for manual benches not lifted since
        self.last_event = 0

    def _answer(self, request: httpx.Request) -> httpx.Response:
        model = next(m for m in MODELS if request.url.host == f"{m[0]}.test")
        self.calls[model] += 1
        return OUTCOMES[self.answers[model]]()

    def teardown(self) -> None:
        self.observer.close()
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def states(self) -> dict[str, ModelState]:
        found = self.store.states(MODELS)
        return {m: found.get(m, ModelState(model=m)) for m in MODELS}

    def new_events(self) -> list[ev.Event]:
        events = self.store.events(after_id=self.last_event)
        if events:
            self.last_event = events[-1].id or self.last_event
        return events

    def leased_by_other(self, state: ModelState, now: float) -> bool:
        return state.probe_leased(now) and state.probe_holder in OTHERS

    # ------------------------------------------------------------------ rules

    @initialize()
    def start(self) -> None:
        self.new_events()

    @rule(a=st.sampled_from(sorted(OUTCOMES)), b=st.sampled_from(sorted(OUTCOMES)), c=st.sampled_from(["ok", "503"]))
    def request(self, a: str, b: str, c: str) -> None:
        self.answers = {"a/m1": a, "b/m2": b, "c/m3": c}
        now = self.clock()
        before = self.states()
        live = {
            m
            for m, s in before.items()
            if not s.is_benched(now) and not (s.is_half_open(now) and self.leased_by_other(s, now))
        }
        self.calls.clear()

        async def walk() -> None:
            try:
                await self.engine.complete("main", "hi")
            except LlmfailError:
                pass
            finally:
                await self.engine.aclose()

        asyncio.run(walk())
        after = self.states()
        events = self.new_events()
        panic = any(e.type == ev.PANIC for e in events)
        assert panic is (not live), f"panic={panic} with live entries {live}"
        for model in MODELS:
            calls, was, now_state = self.calls[model], before[model], after[model]
            assert calls <= ATTEMPTS
            if not panic and model not in live:
                assert calls == 0, f"{model} was called while benched or probed by another process"
            if not panic and was.is_half_open(now):
                assert calls <= 1, f"{model} half-open got {calls} calls, not one probe"
            if calls and self.answers[model] in REQUEST_KIND_OUTCOMES:
                assert health(now_state) == health(was), f"a request-specific failure changed {model}"
                if not self.leased_by_other(was, now):  # its own probe lease (if any) was given back
                    assert now_state.probe_holder in (None, was.probe_holder) and not now_state.probe_leased(now)
            if calls and self.answers[model] == "ok" and not now_state.manual:
                assert (now_state.failures, now_state.bench_count, now_state.bench_until) == (0, 0, None)
            assert now_state.probe_holder is None or now_state.probe_holder in OTHERS, "the engine kept a lease"
        for event in events:
            if event.type == ev.BENCHED and event.request_id is not None:  # the walk's, not the operator's
                self.check_bench_length(event, before[event.model or ""], now)

    def check_bench_length(self, event: ev.Event, before: ModelState, walk_start: float) -> None:
        """A new bench lasts exactly its computed length (or to a later running end)."""
        count = event.data["bench_count"]
        assert count == before.bench_count + 1
        if event.kind == "auth":
            length = AUTH_COOLDOWN
        elif event.kind == "rate_limited" and self.answers[event.model or ""] == "429-long":
            length = max(COOLDOWN * min(FACTOR, count), LONG_RETRY_AFTER)
        else:
            length = COOLDOWN * min(FACTOR, count)
        until = event.benched_until or 0.0
        running_end = before.bench_until if before.is_benched(walk_start) else None
        expected = max(event.ts + length, running_end or 0.0)
        assert until == pytest.approx(expected), f"{event.model} benched for {until - event.ts}s, expected {length}s"

    @rule(seconds=st.sampled_from([0.5, 1.0, 10.0, 29.9, 30.0, 31.0, 61.0, 91.0, 121.0, 600.0, 601.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(model=st.sampled_from(MODELS), holder=st.sampled_from(OTHERS), lease=st.sampled_from([5.0, 35.0]))
    def another_process_claims_the_probe(self, model: str, holder: str, lease: float) -> None:
        now = self.clock()
        state = self.states()[model]
        free = not state.probe_leased(now) or state.probe_holder == holder
        got = self.store.claim_probe(model, now=now, lease=lease, holder=holder)
        assert got is (state.is_half_open(now) and free), f"claim by {holder} of {state} at {now}: {got}"

    @rule(model=st.sampled_from(MODELS), lease=st.sampled_from([5.0, 35.0]))
    def two_processes_race_for_the_probe(self, model: str, lease: float) -> None:
        now = self.clock()
        state = self.states()[model]
        won = [self.store.claim_probe(model, now=now, lease=lease, holder=h) for h in OTHERS]
        assert sum(won) <= 1, f"two processes hold the probe of {state}"
        if state.is_half_open(now) and not state.probe_leased(now):
            assert won == [True, False], "the free lease went to the first claim, and only to it"

    @rule(model=st.sampled_from(MODELS), holder=st.sampled_from(OTHERS))
    def another_process_releases_the_probe(self, model: str, holder: str) -> None:
        before = self.states()[model]
        self.store.release_probe(model, holder=holder)
        after = self.states()[model]
        assert (after.probe_holder is None) if before.probe_holder == holder else (after == before)

    @rule(model=st.sampled_from(MODELS), seconds=st.sampled_from([10.0, 45.0, 900.0]))
    def operator_benches(self, model: str, seconds: float) -> None:
        now = self.clock()
        before, asked = self.states()[model], now + seconds
        bench_model(self.store, self.config, model, seconds, "maintenance", now)
        after = self.states()[model]
        # A running bench is never shortened: the later deadline wins; a longer one is kept as it was.
        running_end = before.bench_until if before.is_benched(now) and before.bench_until is not None else 0.0
        assert after.bench_until == max(asked, running_end), (before, after)
        if asked > running_end:
            assert after.manual and after.reason == "maintenance"
        elif before != after:
            raise AssertionError(f"a bench kept as it was changed: {before} -> {after}")
        if after.manual:
            self.manual[model] = max(asked, self.manual.get(model, asked))
        else:
            self.manual.pop(model, None)

    @rule(model=st.sampled_from(MODELS))
    def operator_unbenches(self, model: str) -> None:
        unbench_models(self.store, [model], self.clock())
        self.manual.pop(model, None)
        assert not self.states()[model].is_benched(self.clock())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def a_manual_bench_is_cleared_only_by_unbench_or_expiry(self) -> None:
        now = self.clock()
        states = self.states()
        for model, until in self.manual.items():
            if now < until:
                state = states[model]
                assert state.manual and state.is_benched(now) and (state.bench_until or 0) >= until, state

    @invariant()
    def no_bench_outlasts_the_longest_computed_length(self) -> None:
        now = self.clock()
        longest = max(AUTH_COOLDOWN, LONG_RETRY_AFTER, COOLDOWN * FACTOR, 900.0)
        for state in self.states().values():
            if state.is_benched(now):
                assert (state.bench_until or 0) - now <= longest

    @invariant()
    def reads_never_write(self) -> None:
        """No commit (another connection's change token) and no file touched (size, mtime in ns)."""

        def written() -> tuple[Any, ...]:
            db = self.db
            files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()] if db is not None else []
            stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            return (self.observer.change_token(), stats)

        before = written()
        now = self.clock()
        self.store.states(MODELS)
        self.store.all_states()
        self.store.benches(now)
        list_benches(self.store, now)
        chains_view(self.config, self.store, now)
        self.store.events(newest=True, limit=50)
        self.store.max_event_id()
        self.store.change_token()
        assert written() == before


@pytest.mark.parametrize(
    "examples", [pytest.param(60, id="60-runs"), pytest.param(1500, id="1500-runs", marks=pytest.mark.slow)]
)
def test_no_sequence_of_failures_probes_benches_and_clock_moves_breaks_a_bench_invariant(
    examples: int, new_store_target: Callable[[Path], StoreTarget], request: pytest.FixtureRequest
) -> None:
    if "redis" in request.node.callspec.id and examples > 400:
        # Redis runs the same Lua as the short run checks against SQLite's transitions, at a few
        # times the cost per step: 400 long runs keep CI's slow suite within its minutes.
        examples = 400
    machine = type("BenchMachineOnBackend", (BenchMachine,), {"make_target": staticmethod(new_store_target)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_the_machine_reaches_every_kind_of_bench_panic_and_probe(
    new_store_target: Callable[[Path], StoreTarget],
) -> None:
    """Guards the search itself: a scripted run through the states the invariants are about."""
    machine = type("BenchMachineOnBackend", (BenchMachine,), {"make_target": staticmethod(new_store_target)})()
    try:
        machine.start()
        machine.request("503", "401", "429-long")  # a benched (transient), b benched (auth), c retried then ok
        machine.advance(1.0)
        machine.operator_benches("c/m3", 900.0)
        machine.request("ok", "ok", "ok")  # every entry benched: panic, a answers and closes
        machine.advance(601.0)
        machine.another_process_claims_the_probe("b/m2", OTHERS[0], 35.0)
        machine.request("context", "ok", "ok")  # b is being probed elsewhere, c is manual: a's context error
        machine.advance(61.0)
        machine.two_processes_race_for_the_probe("b/m2", 35.0)  # the lease expired: exactly one of two wins
        machine.a_manual_bench_is_cleared_only_by_unbench_or_expiry()
        machine.reads_never_write()
        types = Counter(e.type for e in machine.store.events())
        assert types[ev.PANIC] == 1 and types[ev.BENCHED] >= 3 and types[ev.PROBE] >= 1
        assert json.dumps(machine.states()["c/m3"].manual) == "true"
    finally:
        machine.teardown()
