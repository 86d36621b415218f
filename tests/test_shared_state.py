"""Several OS processes walking chains against one shared store at once, on every backend."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from llmfail import events as ev
from llmfail.store import StoreTarget, sqlite_file

from .conftest import Calls, ok, openai_error

WORKER = textwrap.dedent(
    """
    import asyncio, pickle, sys
    from llmfail.config import parse_config
    from llmfail.engine import Engine
    from llmfail.errors import ChainExhausted

    url, target, worker, n = sys.argv[1], pickle.loads(bytes.fromhex(sys.argv[2])), sys.argv[3], int(sys.argv[4])
    config = parse_config(f'''
    defaults: {{attempts: 2, backoff: {{base: 1ms, max: 5ms}}, cooldown: 50ms, timeout: 5s}}
    providers:
      a: {{type: openai, base_url: "{url}/a/v1"}}
      b: {{type: openai, base_url: "{url}/b/v1"}}
    chains:
      main: [a/m1, b/m2]
    ''', "worker.yaml")

    async def main():
        engine = Engine(config, target.open())
        answered = 0
        for i in range(n):
            try:
                result = await engine.complete("main", f"{worker}-{i}")
                answered += result.model == "b/m2"
            except ChainExhausted:
                pass
        await engine.aclose()
        print(answered)

    asyncio.run(main())
    """
)


def test_four_processes_failing_over_at_once_lose_no_request_event_and_keep_the_store_intact(
    server, store_target: StoreTarget
):
    a = Calls(openai_error(400, "context_length_exceeded"), openai_error(503))
    server.expect_request("/a/v1/chat/completions").respond_with_handler(a)
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("b")))
    store_target.open().close()  # created once, as an operator's first command would
    url = server.url_for("").rstrip("/")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, pickle.dumps(store_target).hex(), str(w), "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outputs]
    assert sum(int(out) for out, _ in outputs) == 40  # every request failed over to b and was answered

    store = store_target.open()
    requests = store.events(types=[ev.REQUEST])
    assert len(requests) == 40 and all(r.data["ok"] for r in requests)
    assert len({r.request_id for r in requests}) == 40
    failovers = store.events(types=[ev.FAILOVER])
    assert len(failovers) >= 4  # at least each process's first request walked past a
    ids = [e.id for e in store.events()]
    assert ids == sorted(set(ids))
    store.close()
    db = sqlite_file(store_target.url)
    if db is not None:
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("attempts", [1, 3])
def test_requests_in_flight_when_a_model_is_benched_do_not_bench_it_again(
    server, store_target: StoreTarget, attempts: int
):
    """Issue 18 item 13: four requests already walking when their failing primary is benched bench it
    once, not once each (which would also multiply its progressive cooldown) — also when they are
    still retrying it after the bench began, since a walk reads the bench state only when it starts."""
    import asyncio
    import threading

    from llmfail.config import parse_config
    from llmfail.engine import Engine

    all_in = threading.Barrier(4, timeout=10)
    calls = iter(range(10**6))
    lock = threading.Lock()

    def fails_once_all_four_are_waiting(request):
        with lock:
            call = next(calls)
        if call < 4:
            all_in.wait()  # every request's walk began before any of them failed
        return openai_error(503)

    server.expect_request("/a/v1/chat/completions").respond_with_handler(fails_once_all_four_are_waiting)
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("b")))
    url = server.url_for("").rstrip("/")
    config = parse_config(
        f"""
defaults: {{attempts: {attempts}, backoff: {{base: 1ms, max: 5ms}}, cooldown: 30s, max_cooldown_factor: 4,
           timeout: 10s}}
providers:
  a: {{type: openai, base_url: "{url}/a/v1"}}
  b: {{type: openai, base_url: "{url}/b/v1"}}
chains:
  main: [a/m1, b/m2]
""",
        "inflight.yaml",
    )
    store = store_target.open()
    engine = Engine(config, store)

    async def four_at_once() -> list[str]:
        try:
            results = await asyncio.gather(*(engine.complete("main", f"q{i}") for i in range(4)))
        finally:
            await engine.aclose()
        return [r.model for r in results]

    try:
        assert asyncio.run(four_at_once()) == ["b/m2"] * 4
        state = store.states(["a/m1"])["a/m1"]
        assert (state.failures, state.bench_count) == (4 * attempts, 1)
        assert state.bench_until is not None and state.benched_at is not None
        assert state.bench_until - state.benched_at == 30.0  # not 4 x 30 s
        benched = store.events(types=[ev.BENCHED], model="a/m1")
        assert len(benched) == 1 and len(store.events(types=[ev.ATTEMPT_FAILED], model="a/m1")) == 4 * attempts
    finally:
        store.close()
