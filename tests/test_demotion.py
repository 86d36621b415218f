"""Slow demotion (policy `on_slow`): a slow-but-healthy entry is tried after the fast ones of its
chain until it is fast again; `demoted` / `restored` events record both; benches stay for failures.

Latency is virtual: a handler advances the engine's clock before it answers, so "first token
after 2 s" costs no real waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail import events as ev
from llmfail.config import Chain
from llmfail.engine import Engine
from llmfail.health import SPEED_MIN_SAMPLES
from llmfail.probe import probe_chains
from llmfail.stats import model_stats
from llmfail.store.sqlite import SqliteStore

from .conftest import FakeClock, ok, openai_error

CHAIN = """
defaults:
  attempts: 1
  backoff: {base: 1ms, max: 1ms}
  cooldown: 30s
  slow_threshold: 1s
  %(extra)s
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
chains:
  main: [a/primary, b/secondary]
"""


class Model:
    """A loopback model whose first token comes after `seconds` of virtual time; it can fail too."""

    def __init__(self, server: HTTPServer, clock: FakeClock, name: str, seconds: float) -> None:
        self.clock, self.seconds, self.calls, self.fail = clock, seconds, 0, False
        server.expect_request(f"/{name}/v1/chat/completions", method="POST").respond_with_handler(self)

    def __call__(self, request: Request) -> Response:
        self.calls += 1
        if self.fail:
            return openai_error(503)
        self.clock.advance(self.seconds)
        return ok("hi")


@pytest.fixture
def models(server: HTTPServer, clock: FakeClock) -> tuple[Model, Model]:
    return Model(server, clock, "a", 2.0), Model(server, clock, "b", 0.1)


def ask(engine: Engine, n: int = 1) -> list[str]:
    """`n` requests one after another; the models that answered them."""

    async def go() -> list[str]:
        try:
            return [(await engine.complete("main", "hi")).model for _ in range(n)]
        finally:
            await engine.aclose()

    return asyncio.run(go())


def speed_events(store: SqliteStore) -> list[tuple[str, str | None]]:
    return [(e.type, e.model) for e in store.events(types=[ev.DEMOTED, ev.RESTORED])]


def test_a_slow_primary_is_demoted_after_the_secondary_and_restored_once_fast_again(
    make_engine: Callable[..., Engine], models: tuple[Model, Model], clock: FakeClock, store: SqliteStore
) -> None:
    a, b = models
    engine = make_engine(CHAIN % {"extra": ""})
    # Three slow answers (2 s to the first token, threshold 1 s): a majority of the rolling window.
    assert ask(engine, SPEED_MIN_SAMPLES) == ["a/primary"] * SPEED_MIN_SAMPLES
    (demoted,) = store.events(types=[ev.DEMOTED])
    assert (demoted.model, demoted.chain, demoted.latency_ms) == ("a/primary", "main", 2000.0)
    assert demoted.data == {"threshold_ms": 1000.0, "samples": 3, "source": "requests"}
    # Demoted: the secondary is tried first and the primary is not even called.
    assert ask(engine, 4) == ["b/secondary"] * 4 and a.calls == 3
    assert store.states(["a/primary"])["a/primary"].bench_until is None  # benching stays for failures
    assert model_stats(store, since=0, now=clock.now, chain=engine.config.chain("main"))["a/primary"].state == "slow"

    # The primary gets fast. Once per cooldown one request rechecks it in its own place;
    # three fast answers since the demotion restore it.
    a.seconds = 0.2
    for turn in range(SPEED_MIN_SAMPLES - 1):
        clock.advance(31)
        assert ask(engine, 2) == ["a/primary", "b/secondary"], turn  # the recheck, then the others
        assert speed_events(store) == [("demoted", "a/primary")]
    clock.advance(31)
    assert ask(engine) == ["a/primary"]  # the third fast answer since the demotion
    assert speed_events(store) == [("demoted", "a/primary"), ("restored", "a/primary")]
    restored = store.events(types=[ev.RESTORED])[0]
    assert restored.latency_ms == 200.0 and restored.data["samples"] == 3
    assert ask(engine, 3) == ["a/primary"] * 3  # first again, no recheck needed
    assert model_stats(store, since=0, now=clock.now)["a/primary"].state == "healthy"


def test_a_demoted_entry_still_answers_when_the_fast_ones_fail(
    make_engine: Callable[..., Engine], models: tuple[Model, Model], store: SqliteStore
) -> None:
    a, b = models
    engine = make_engine(CHAIN % {"extra": ""})
    ask(engine, SPEED_MIN_SAMPLES)
    b.fail = True
    assert ask(engine) == ["a/primary"]  # slow beats nothing: demotion reorders, never removes
    assert [e.model for e in store.events(types=[ev.FAILOVER])] == ["b/secondary"]


def test_one_slow_answer_never_demotes(
    make_engine: Callable[..., Engine], models: tuple[Model, Model], store: SqliteStore
) -> None:
    a, b = models
    engine = make_engine(CHAIN % {"extra": ""})
    a.seconds = 0.2
    ask(engine, 4)
    a.seconds = 5.0
    ask(engine)  # one outlier among four fast answers
    a.seconds = 0.2
    ask(engine, 2)
    assert speed_events(store) == [] and a.calls == 7


def test_on_slow_ignore_keeps_chain_order(
    make_engine: Callable[..., Engine], models: tuple[Model, Model], store: SqliteStore
) -> None:
    engine = make_engine(CHAIN % {"extra": "on_slow: ignore"})
    assert ask(engine, 6) == ["a/primary"] * 6
    assert speed_events(store) == []


def test_a_probe_decides_alone_both_ways(
    make_engine: Callable[..., Engine], models: tuple[Model, Model], store: SqliteStore
) -> None:
    a, b = models
    engine = make_engine(CHAIN % {"extra": ""})

    primary = Chain("primary", engine.config.chain("main").entries[:1])

    def probe() -> None:  # the primary alone: concurrent probes would share the virtual clock
        async def go() -> None:
            try:
                await probe_chains(engine, [primary])
            finally:
                await engine.aclose()

        asyncio.run(go())

    probe()  # one answer after 2 s: slow, and a probe needs no majority
    assert speed_events(store) == [("demoted", "a/primary")]
    assert store.events(types=[ev.DEMOTED])[0].data["source"] == "probe"
    assert ask(engine) == ["b/secondary"]
    a.seconds = 0.1
    probe()
    assert speed_events(store) == [("demoted", "a/primary"), ("restored", "a/primary")]
    assert ask(engine) == ["a/primary"]


def test_demote_restore_and_recheck_are_claimed_once(store: SqliteStore) -> None:
    assert store.demote("a/m", now=10.0, slow_ms=2000.0, recheck_at=40.0) is True
    assert store.demote("a/m", now=11.0, slow_ms=3000.0, recheck_at=41.0) is False  # another process lost
    state = store.states(["a/m"])["a/m"]
    assert (state.slow_since, state.slow_ms, state.speed_at, state.recheck_at) == (10.0, 2000.0, 10.0, 40.0)
    assert store.claim_recheck("a/m", now=39.0, next_at=69.0) is False  # not due yet
    assert store.claim_recheck("a/m", now=40.0, next_at=70.0) is True
    assert store.claim_recheck("a/m", now=40.0, next_at=70.0) is False  # one request per turn
    store.record_failure("a/m", now=50.0, kind="timeout", status=None, bench_for=30.0)
    store.unbench(["a/m"], now=51.0)
    assert store.states(["a/m"])["a/m"].is_demoted  # bench state changes never touch demotion
    assert store.restore("a/m", now=60.0, fast_ms=150.0) is True
    assert store.restore("a/m", now=61.0, fast_ms=150.0) is False
    state = store.states(["a/m"])["a/m"]
    assert (state.is_demoted, state.slow_ms, state.speed_at, state.recheck_at) == (False, 150.0, 60.0, None)


def test_a_fast_answer_from_a_fast_model_costs_no_extra_query(
    make_engine: Callable[..., Engine], models: tuple[Model, Model], store: SqliteStore
) -> None:
    a, b = models
    a.seconds = 0.1
    engine = make_engine(CHAIN % {"extra": ""})
    ask(engine)  # warm up: the first request opens connections
    seen: list[str] = []
    with store._read() as conn:
        conn.set_trace_callback(seen.append)
    try:
        ask(engine, 3)
    finally:
        with store._read() as conn:
            conn.set_trace_callback(None)
    assert not [sql for sql in seen if sql.startswith("SELECT") and "attempt_ttft_ms" in sql]  # no median read
    assert not [sql for sql in seen if "recheck_at = " in sql]  # and no claim


def events_section() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[1].joinpath("docs", "events.md").read_text(encoding="utf-8")


def test_the_new_event_types_are_stable_and_documented() -> None:
    assert {ev.DEMOTED, ev.RESTORED} <= set(ev.EVENT_TYPES)
    page = events_section()
    events = page[page.index("## Event types") :]
    events = events[: events.index("\n## ", 1)]
    assert "`demoted`" in events and "`restored`" in events
