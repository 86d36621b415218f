"""The library API: lazy exports, the examples of docs/library.md, a bench shared with the CLI across processes, retention."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from pathlib import Path
from random import Random
from typing import Any

import pytest

import llmfail
from llmfail import events as ev
from llmfail.events import Event
from llmfail.store.sqlite import SqliteStore

from .conftest import Calls, FakeClock, make_config, ok, openai_error

LIBRARY_PAGE = Path(__file__).resolve().parents[1] / "docs" / "library.md"

CHAIN = """
defaults: {attempts: 2, backoff: {base: 1ms, max: 2ms}, cooldown: 30s, timeout: 5s, retention: %(retention)s}
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
chains:
  main: [a/m1, b/m2]
"""

DAY = 86400.0


def chain(retention: str = "30d") -> str:
    return CHAIN % {"retention": retention}


def route(server: Any, name: str, handler: Calls) -> Calls:
    server.expect_request(f"/{name}/v1/chat/completions", method="POST").respond_with_handler(handler)
    return handler


# --------------------------------------------------------------------------- exports


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("load_config", "llmfail.config"),
        ("parse_config", "llmfail.config"),
        ("Engine", "llmfail.engine"),
        ("Result", "llmfail.result"),
        ("Attempt", "llmfail.result"),
        ("Token", "llmfail.result"),
        ("Restart", "llmfail.result"),
        ("LlmfailError", "llmfail.errors"),
        ("ChainExhausted", "llmfail.errors"),
        ("AllBenched", "llmfail.errors"),
        ("FailFast", "llmfail.errors"),
        ("ProviderError", "llmfail.errors"),
        ("StreamInterrupted", "llmfail.errors"),
        ("ConfigError", "llmfail.errors"),
        ("Kind", "llmfail.errors"),
        ("ExitCode", "llmfail.errors"),
        ("Event", "llmfail.events"),
        ("open_store", "llmfail.store"),
        ("Journal", "llmfail.journal"),
        ("BenchRow", "llmfail.actions"),
    ],
)
def test_each_public_name_is_the_object_its_module_defines(name: str, module: str):
    assert getattr(llmfail, name) is getattr(importlib.import_module(module), name)
    assert name in llmfail.__all__ and name in dir(llmfail)


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import():
    with pytest.raises(AttributeError, match="no attribute 'Engin'"):
        llmfail.Engin  # noqa: B018
    from llmfail import durations

    assert durations.parse_duration("1m") == 60


def test_the_library_page_example_runs_as_written(tmp_path: Path):
    text = LIBRARY_PAGE.read_text(encoding="utf-8")
    section = text[text.index("## Requests, streams and errors") :]
    code = section[section.index("```python\n") + 10 :]
    code = code[: code.index("```")]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "mock/echo 'hello' 1 {'input_tokens': 1, 'output_tokens': 1}" in lines
    assert "event: failover flaky/gpt-4o transient" in lines
    assert "stream me" in lines and "answered by mock/echo" in lines
    assert any(line.startswith("exhausted: ['flaky/gpt-4o: transient 503'") for line in lines)


def test_the_library_page_operator_example_runs_as_written(tmp_path: Path):
    text = LIBRARY_PAGE.read_text(encoding="utf-8")
    section = text[text.index("## Operator actions from code") :]
    code = section[section.index("```python\n") + 10 :]
    code = "import llmfail\n" + code[: code.index("```")]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "benched mock/echo vendor incident",
        "mock/echo 10m True vendor incident",
        "True ['mock/echo']",
        "unbenched mock/echo vendor says fixed",
        "['mock/echo']",
    ]


# --------------------------------------------------------------------------- shared bench


async def test_a_bench_from_another_process_makes_a_running_engine_skip_the_model_at_once(server, tmp_path: Path):
    """The operator's `llmfail bench` and an app's engine share one state DB."""
    a = route(server, "a", Calls(ok("from a")))
    b = route(server, "b", Calls(ok("from b")))
    db = tmp_path / "shared.db"
    engine = llmfail.Engine(make_config(chain(), server), SqliteStore(str(db)))
    answered: list[str] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            answered.append((await engine.complete("main", "hi")).model)

    task = asyncio.create_task(traffic())
    try:
        while len(answered) < 5:
            await asyncio.sleep(0.01)
        bench = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "llmfail.cli",
            "--db",
            str(db),
            "bench",
            "a/m1",
            "--for",
            "10m",
            "--reason",
            "incident",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(bench.communicate(), timeout=60)
        assert bench.returncode == 0, err
        benched_during = len(answered)
    finally:
        stop.set()
        await task
    assert set(answered[:5]) == {"a/m1"} and len(answered) >= benched_during  # traffic ran throughout
    calls_to_a = a.count
    after = [(await engine.complete("main", "hi")).model for _ in range(3)]
    await engine.aclose()
    assert after == ["b/m2"] * 3
    assert a.count == calls_to_a  # not one more HTTP request to the benched model
    assert b.count >= 3


async def test_an_unbench_from_another_process_brings_the_model_back_on_the_next_request(server, tmp_path: Path):
    a = route(server, "a", Calls(ok("from a")))
    route(server, "b", Calls(ok("from b")))
    db = tmp_path / "shared.db"
    store = SqliteStore(str(db))
    engine = llmfail.Engine(make_config(chain(), server), store)
    store.bench("a/m1", now=engine.clock(), until=engine.clock() + 600, manual=True, reason="x", kind=None)
    assert (await engine.complete("main", "hi")).model == "b/m2" and a.count == 0
    unbench = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", "--db", str(db), "unbench", "a/m1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unbench.returncode == 0, unbench.stderr
    assert (await engine.complete("main", "hi")).model == "a/m1"
    await engine.aclose()


# --------------------------------------------------------------------------- operator API

OPERATOR_CHAIN = """
defaults: {attempts: 1, backoff: {base: 1ms, max: 2ms}, cooldown: 30s, timeout: 5s}
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
  c: {type: openai, base_url: "{url}/c/v1"}
chains:
  main: [a/m1, b/m2]
  slow: [{model: b/m2, cooldown: 5m}]
  keys: [{model: c/m3, credentials: [{api_key_env: C_KEY_A}, {api_key_env: C_KEY_B}]}]
"""


def operator_engine(server: Any, store: SqliteStore, clock: FakeClock | None = None) -> llmfail.Engine:
    if clock is None:
        return llmfail.Engine(make_config(OPERATOR_CHAIN, server), store)
    return llmfail.Engine(make_config(OPERATOR_CHAIN, server), store, clock=clock, sleep=clock.sleep)


def test_a_bench_from_the_library_is_honoured_by_the_next_request_and_shown_by_ls_benched(server, tmp_path: Path):
    a = route(server, "a", Calls(ok("from a")))
    route(server, "b", Calls(ok("from b")))
    db = tmp_path / "shared.db"
    engine = operator_engine(server, SqliteStore(str(db)))
    row = engine.bench("a/m1", "10m", reason="vendor incident")
    assert (row.model, row.manual, row.reason, row.kind) == ("a/m1", True, "vendor incident", "manual")
    assert 599 < row.until - engine.clock() <= 600
    assert engine.complete_sync("main", "hi").model == "b/m2" and a.count == 0
    listed = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", "--db", str(db), "ls-benched", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert {k: shown[k] for k in ("model", "manual", "reason", "kind")} == {
        "model": "a/m1",
        "manual": True,
        "reason": "vendor incident",
        "kind": "manual",
    }


@pytest.mark.parametrize(("for_", "seconds"), [(90, 90.0), (2.5, 2.5), ("1h30m", 5400.0), ("250ms", 0.25)])
def test_bench_for_takes_seconds_or_a_duration(
    server, store: SqliteStore, clock: FakeClock, for_: float | str, seconds: float
):
    row = operator_engine(server, store, clock).bench("a/m1", for_)
    assert row.until == clock.now + seconds and store.states(["a/m1"])["a/m1"].bench_until == row.until


@pytest.mark.parametrize(
    ("model", "seconds"),
    [
        ("a/m1", 30.0),  # the defaults' cooldown
        ("b/m2", 300.0),  # the longest of its entries' cooldowns: chain `slow` sets 5m
        ("c/m3#1", 30.0),  # a credential of an entry: that entry's cooldown
        ("vendor/next", 30.0),  # no chain has it (benched ahead of a deploy): the defaults'
    ],
)
def test_a_bench_without_a_length_lasts_the_models_cooldown(
    server, store: SqliteStore, clock: FakeClock, model: str, seconds: float
):
    assert operator_engine(server, store, clock).bench(model).until == clock.now + seconds


@pytest.mark.parametrize(
    ("model", "for_", "message"),
    [
        ("a/m1", "soon", "expected a duration like"),
        ("a/m1", "-5m", "cannot be negative"),
        ("a/m1", 0, "longer than 0s"),
        ("gpt-4o", "1m", "not a model name"),
    ],
)
def test_a_bad_bench_is_a_usage_error_and_benches_nothing(
    server, store: SqliteStore, clock: FakeClock, model: str, for_: float | str, message: str
):
    engine = operator_engine(server, store, clock)
    with pytest.raises(llmfail.UsageError, match=message) as caught:
        engine.bench(model, for_)
    assert caught.value.exit_code == llmfail.ExitCode.USAGE
    assert engine.benches() == [] and store.events() == []


async def test_unbench_returns_what_it_lifted_and_the_model_is_back_on_the_next_request(
    server, store: SqliteStore, clock: FakeClock
):
    a = route(server, "a", Calls(ok("from a")))
    engine = operator_engine(server, store, clock)
    engine.bench("a/m1", "1h")
    assert engine.unbench("a/m1", "b/m2") == ["a/m1"]  # b/m2 had no bench: not in the answer
    assert engine.unbench("a/m1") == []
    assert (await engine.complete("main", "hi")).model == "a/m1" and a.count == 1
    await engine.aclose()


def test_unbench_of_a_model_lifts_its_credential_benches_too(server, store: SqliteStore, clock: FakeClock):
    engine = operator_engine(server, store, clock)
    engine.bench("c/m3#0", "1h")
    engine.bench("c/m3#1", "1h")
    assert sorted(engine.unbench("c/m3")) == ["c/m3#0", "c/m3#1"] and engine.benches() == []


def test_unbench_with_no_model_is_a_usage_error_and_lifts_nothing(server, store: SqliteStore, clock: FakeClock):
    engine = operator_engine(server, store, clock)
    engine.bench("a/m1", "1h")
    with pytest.raises(llmfail.UsageError, match="name at least one model"):
        engine.unbench()
    assert [b.model for b in engine.benches()] == ["a/m1"]


def test_benches_and_is_benched_read_the_shared_state(server, store: SqliteStore, clock: FakeClock):
    engine = operator_engine(server, store, clock)
    store.record_failure("b/m2", now=clock.now, kind="transient", status=503, bench_for=60.0, reason="boom")
    engine.bench("a/m1", "10m", reason="maintenance")
    assert [(b.model, b.manual, b.reason, b.until) for b in engine.benches()] == [
        ("b/m2", False, "boom", clock.now + 60),
        ("a/m1", True, "maintenance", clock.now + 600),
    ]  # soonest first
    assert engine.is_benched("a/m1") and engine.is_benched("b/m2") and not engine.is_benched("c/m3")
    clock.advance(61)
    assert not engine.is_benched("b/m2")  # past its bench: half-open, tried by the next request
    assert [b.model for b in engine.benches()] == ["a/m1"]
    engine.bench("c/m3#0", "1h")
    assert engine.is_benched("c/m3#0") and not engine.is_benched("c/m3")  # one key left to try
    engine.bench("c/m3#1", "1h")
    assert engine.is_benched("c/m3")  # every credential benched: requests skip the entry


def test_a_running_bench_is_never_shortened_unless_replaced(server, store: SqliteStore, clock: FakeClock):
    engine = operator_engine(server, store, clock)
    seen: list[Event] = []
    engine.on_event(seen.append)
    engine.bench("a/m1", "1h", reason="long incident")
    kept = engine.bench("a/m1", "10m", reason="short")  # the running hour is kept: nothing happens
    assert (kept.until, kept.reason) == (clock.now + 3600, "long incident")
    longer = engine.bench("a/m1", "2h")  # a later deadline extends it, keeping the operator's reason
    assert (longer.until, longer.reason) == (clock.now + 7200, "long incident")
    replaced = engine.bench("a/m1", "10m", reason="mostly fixed", replace=True)
    assert (replaced.until, replaced.reason) == (clock.now + 600, "mostly fixed")
    assert [b.until for b in engine.benches()] == [clock.now + 600]
    assert [(e.type, e.benched_until) for e in seen] == [
        (ev.BENCHED, clock.now + 3600),
        (ev.BENCHED, clock.now + 7200),
        (ev.BENCHED, clock.now + 600),
    ]


def test_observers_see_manual_benches_and_unbenches_with_who_and_why(server, store: SqliteStore, clock: FakeClock):
    engine = operator_engine(server, store, clock)
    seen: list[Event] = []
    engine.on_event(seen.append)
    engine.bench("a/m1", "10m", reason="incident #7")
    engine.unbench("a/m1", reason="fixed")
    assert [(e.type, e.model, e.data.get("reason"), e.data.get("manual")) for e in seen] == [
        (ev.BENCHED, "a/m1", "incident #7", True),
        (ev.UNBENCHED, "a/m1", "fixed", True),
    ]
    assert all(e.data["user"] and e.data["host"] for e in seen)
    assert [e.id for e in seen] == [e.id for e in store.events()]


# --------------------------------------------------------------------------- observers and typed errors


async def test_observers_see_every_stored_event_until_unsubscribed(server, store: SqliteStore, clock: FakeClock):
    route(server, "a", Calls(openai_error(503)))
    route(server, "b", Calls(ok()))
    engine = llmfail.Engine(make_config(chain(), server), store, clock=clock, sleep=clock.sleep, rng=Random(1))
    seen: list[Event] = []
    unsubscribe = engine.on_event(seen.append)
    await engine.complete("main", "hi")
    assert [e.type for e in seen] == [e.type for e in store.events()]
    assert all(e.id is not None for e in seen)
    unsubscribe()
    await engine.complete("main", "hi")
    await engine.aclose()
    assert len(store.events()) > len(seen)


async def test_an_exhausted_chain_raises_chain_exhausted_with_every_cause(server, store: SqliteStore, clock: FakeClock):
    route(server, "a", Calls(openai_error(503)))
    route(server, "b", Calls(openai_error(401, err_type="invalid_request_error", code="invalid_api_key")))
    engine = llmfail.Engine(make_config(chain(), server), store, clock=clock, sleep=clock.sleep, rng=Random(1))
    with pytest.raises(llmfail.ChainExhausted) as caught:
        await engine.complete("main", "hi")
    await engine.aclose()
    assert [(c.model, c.kind, c.status) for c in caught.value.causes] == [
        ("a/m1", llmfail.Kind.TRANSIENT, 503),
        ("a/m1", llmfail.Kind.TRANSIENT, 503),
        ("b/m2", llmfail.Kind.AUTH, 401),
    ]
    assert isinstance(caught.value, llmfail.LlmfailError) and caught.value.exit_code == llmfail.ExitCode.FAILED


# --------------------------------------------------------------------------- retention


def old_and_recent(store: SqliteStore, now: float, *, age: float) -> None:
    store.append(
        [
            Event(type=ev.PROBE, ts=now - age, model="old/m"),
            Event(type=ev.PROBE, ts=now - 60, model="recent/m"),
        ]
    )


def models_logged(store: SqliteStore) -> set[str | None]:
    return {e.model for e in store.events()}


async def test_an_engine_prunes_events_older_than_retention_when_it_first_writes(
    server, store: SqliteStore, clock: FakeClock
):
    route(server, "a", Calls(ok()))
    old_and_recent(store, clock.now, age=31 * DAY)
    engine = llmfail.Engine(make_config(chain(), server), store, clock=clock, sleep=clock.sleep)
    await engine.complete("main", "hi")
    await engine.aclose()
    assert "old/m" not in models_logged(store) and {"recent/m", "a/m1"} <= models_logged(store)


async def test_retention_comes_from_the_config(server, store: SqliteStore, clock: FakeClock):
    route(server, "a", Calls(ok()))
    old_and_recent(store, clock.now, age=3 * 3600)
    engine = llmfail.Engine(make_config(chain("2h"), server), store, clock=clock, sleep=clock.sleep)
    await engine.complete("main", "hi")
    await engine.aclose()
    assert "old/m" not in models_logged(store) and "recent/m" in models_logged(store)


async def test_a_long_lived_engine_prunes_again_each_hour_and_not_more_often(
    server, store: SqliteStore, clock: FakeClock
):
    route(server, "a", Calls(ok()))
    engine = llmfail.Engine(make_config(chain("1d"), server), store, clock=clock, sleep=clock.sleep)
    await engine.complete("main", "hi")  # the first write prunes (nothing to prune yet)
    old_and_recent(store, clock.now, age=2 * DAY)
    clock.advance(1800)
    await engine.complete("main", "hi")
    assert "old/m" in models_logged(store)  # within the hour: no second prune
    clock.advance(1801)
    await engine.complete("main", "hi")
    await engine.aclose()
    assert "old/m" not in models_logged(store) and "recent/m" in models_logged(store)


async def test_a_second_process_does_not_prune_within_the_hour_of_the_first(
    server, store: SqliteStore, clock: FakeClock, db_path: Path
):
    route(server, "a", Calls(ok()))
    first = llmfail.Engine(make_config(chain("1d"), server), store, clock=clock, sleep=clock.sleep)
    await first.complete("main", "hi")
    await first.aclose()
    old_and_recent(store, clock.now, age=2 * DAY)
    clock.advance(600)
    second = llmfail.Engine(make_config(chain("1d"), server), SqliteStore(str(db_path)), clock=clock, sleep=clock.sleep)
    await second.complete("main", "hi")  # its first write: it offers, the store's hourly guard declines
    await second.aclose()
    assert "old/m" in models_logged(store)


def test_operator_reads_raise_when_the_shared_state_cannot_be_reached(tmp_path: Path):
    """A request may go on without the store; an operator's question never gets a guess."""
    directory = tmp_path / "not-a-db"
    directory.mkdir()
    engine = llmfail.Engine(make_config("chains:\n  demo: [mock/echo]\n"), db_path=str(directory))
    assert engine.complete_sync("demo", "hi").warnings  # the request is answered, with a warning
    for ask in (lambda: engine.is_benched("mock/echo"), engine.benches):
        with pytest.raises(llmfail.StateError):
            ask()
