"""The library API: lazy exports, the README example, a bench shared with the CLI across processes, retention."""

from __future__ import annotations

import asyncio
import importlib
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

README = Path(__file__).resolve().parents[1] / "README.md"

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
        ("load_config", "llmfail.config"), ("parse_config", "llmfail.config"), ("Engine", "llmfail.engine"),
        ("Result", "llmfail.result"), ("Attempt", "llmfail.result"), ("Token", "llmfail.result"),
        ("Restart", "llmfail.result"), ("LlmfailError", "llmfail.errors"), ("ChainExhausted", "llmfail.errors"),
        ("AllBenched", "llmfail.errors"), ("FailFast", "llmfail.errors"), ("ProviderError", "llmfail.errors"),
        ("StreamInterrupted", "llmfail.errors"), ("ConfigError", "llmfail.errors"), ("Kind", "llmfail.errors"),
        ("ExitCode", "llmfail.errors"), ("Event", "llmfail.events"), ("open_store", "llmfail.store"),
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


def test_the_readme_library_example_runs_as_written(tmp_path: Path):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Library API"):]
    code = section[section.index("```python\n") + 10:]
    code = code[: code.index("```")]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "mock/echo 'hello' 1 {'input_tokens': 1, 'output_tokens': 1}" in lines
    assert "event: failover flaky/gpt-4o transient" in lines
    assert "stream me" in lines and "answered by mock/echo" in lines
    assert any(line.startswith("exhausted: ['flaky/gpt-4o: transient 503'") for line in lines)


# --------------------------------------------------------------------------- shared bench


async def test_a_bench_from_another_process_makes_a_running_engine_skip_the_model_at_once(server, tmp_path: Path):
    """SPEC §1/§3.9: the operator's `llmfail bench` and an app's engine share one state DB."""
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
            sys.executable, "-m", "llmfail.cli", "--db", str(db), "bench", "a/m1", "--for", "10m",
            "--reason", "incident", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
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
    unbench = subprocess.run([sys.executable, "-m", "llmfail.cli", "--db", str(db), "unbench", "a/m1"],
                             capture_output=True, text=True, timeout=60)
    assert unbench.returncode == 0, unbench.stderr
    assert (await engine.complete("main", "hi")).model == "a/m1"
    await engine.aclose()


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
        ("a/m1", llmfail.Kind.TRANSIENT, 503), ("a/m1", llmfail.Kind.TRANSIENT, 503),
        ("b/m2", llmfail.Kind.AUTH, 401),
    ]
    assert isinstance(caught.value, llmfail.LlmfailError) and caught.value.exit_code == llmfail.ExitCode.FAILED


# --------------------------------------------------------------------------- retention


def old_and_recent(store: SqliteStore, now: float, *, age: float) -> None:
    store.append([
        Event(type=ev.PROBE, ts=now - age, model="old/m"),
        Event(type=ev.PROBE, ts=now - 60, model="recent/m"),
    ])


def models_logged(store: SqliteStore) -> set[str | None]:
    return {e.model for e in store.events()}


async def test_an_engine_prunes_events_older_than_retention_when_it_first_writes(
        server, store: SqliteStore, clock: FakeClock):
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
        server, store: SqliteStore, clock: FakeClock):
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
        server, store: SqliteStore, clock: FakeClock, db_path: Path):
    route(server, "a", Calls(ok()))
    first = llmfail.Engine(make_config(chain("1d"), server), store, clock=clock, sleep=clock.sleep)
    await first.complete("main", "hi")
    await first.aclose()
    old_and_recent(store, clock.now, age=2 * DAY)
    clock.advance(600)
    second = llmfail.Engine(make_config(chain("1d"), server), SqliteStore(str(db_path)), clock=clock,
                            sleep=clock.sleep)
    await second.complete("main", "hi")  # its first write: it offers, the store's hourly guard declines
    await second.aclose()
    assert "old/m" in models_logged(store)
