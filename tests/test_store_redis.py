"""The Redis store on a real `redis-server`, beyond the contract suite (which runs on Redis too):
it leaves the same state and figures as SQLite after random operations, its scripts stay atomic
under sixteen processes, its cache costs no round trip yet honours another host's bench within a
second, its clock-skew correction keeps a host 90 s off from probing a running bench, and an
unreachable, hung, restarted or read-only server is one clear error, fast."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from llmfail.errors import StateError, StoreUnavailable, UsageError
from llmfail.events import DETAIL_MAX, Event
from llmfail.redact import register_secret
from llmfail.store import ModelState
from llmfail.store.sqlite import SqliteStore
from tests.redis_server import (
    RedisServer,
    private_redis,
    redis_namespace,
    redis_server,
    redis_store,
    redis_url,
)

# fixtures, imported to be found
__all__ = ["private_redis", "redis_namespace", "redis_server", "redis_store", "redis_url"]

pytest.importorskip("redis")
from llmfail.store.redis import RedisStore, display_url

T0 = 1_760_000_000.0
KEY = "openai/gpt-4o"
ROOT = Path(__file__).resolve().parent.parent


def fail(store: Any, now: float, bench_for: float | None = 60.0, **kw: Any) -> tuple[ModelState, bool]:
    result: tuple[ModelState, bool] = store.record_failure(
        KEY, now=now, kind="transient", status=503, bench_for=bench_for, **kw
    )
    return result


# -- the bench rules (the contract suite holds Redis to each; this compares it with SQLite) ----


def test_random_operations_leave_the_same_state_as_sqlite(redis_store: RedisStore, tmp_path: Path) -> None:
    """A differential check: the same 400 random operations on both backends, states compared after each."""
    sqlite = SqliteStore(str(tmp_path / "diff.db"))
    rng = random.Random(7)
    keys = ["p/a", "p/b"]
    now = T0
    try:
        for step in range(600):
            now += rng.choice([0.0, 1.0, 5.0, 30.0, 90.0, -70.0])
            key = rng.choice(keys)
            op = rng.randrange(7)
            if op == 0:
                kw = {
                    "now": now,
                    "kind": "timeout",
                    "status": None,
                    "bench_for": rng.choice([None, 10.0, 60.0]),
                    "factor": rng.choice([1.0, 3.0]),
                    "min_until": rng.choice([None, now + 120]),
                    "reason": "x",
                    "began": rng.choice([None, now - 40, now - 1]),
                }
                got = redis_store.record_failure(key, **kw)  # type: ignore[arg-type]
                want = sqlite.record_failure(key, **kw)  # type: ignore[arg-type]
            elif op == 1:
                got, want = redis_store.record_success(key, now=now), sqlite.record_success(key, now=now)
            elif op == 2:
                bench = {
                    "now": now,
                    "until": now + rng.choice([-10.0, 50.0, 100.0, 400.0]),
                    "manual": rng.random() < 0.7,
                    "reason": rng.choice([None, "r"]),
                    "kind": rng.choice([None, "transient"]),
                    "replace": rng.random() < 0.3,
                }
                got = redis_store.bench(key, **bench)  # type: ignore[arg-type]
                want = sqlite.bench(key, **bench)  # type: ignore[arg-type]
            elif op == 3:
                got, want = redis_store.unbench([key], now=now), sqlite.unbench([key], now=now)
            elif op == 4:
                holder = rng.choice(["h1", "h2"])
                got = redis_store.claim_probe(key, now=now, lease=20, holder=holder)
                want = sqlite.claim_probe(key, now=now, lease=20, holder=holder)
            elif op == 5:
                redis_store.release_probe(key, holder="h1")
                sqlite.release_probe(key, holder="h1")
            else:
                got = redis_store.demote(key, now=now, slow_ms=9.0, recheck_at=now + 30)
                want = sqlite.demote(key, now=now, slow_ms=9.0, recheck_at=now + 30)
            if op in (0, 1, 2, 3, 4, 6):
                assert got == want, (step, op)
            assert redis_store.all_states() == sqlite.all_states(), (step, op)
            assert redis_store.benches(now) == sqlite.benches(now), step
    finally:
        sqlite.close()


# -- events ----------------------------------------------------------------------------------


def random_events(rng: random.Random, count: int, start: float, steps: Sequence[float]) -> list[Event]:
    models = ["m/a", "m/b", "m/c", None]
    types = ["request", "attempt_failed", "failover", "benched", "probe", "retry"]
    out = []
    ts = start
    for i in range(count):
        ts += rng.choice(steps)
        type_ = rng.choice(types)
        kind = None if type_ in ("request", "probe") and rng.random() < 0.7 else rng.choice(["timeout", "auth"])
        data: dict[str, Any] = {}
        if type_ == "request":
            data = {"attempt_ms": rng.choice([None, 12.5, 300.0]), "ttft_ms": rng.choice([None, 40.0, 80.25])}
        if type_ == "probe":
            data = {"recovered": rng.choice([True, False, 1])}
        out.append(
            Event(
                type=type_,
                ts=ts,
                model=rng.choice(models),
                chain=rng.choice(["c1", "c2", None]),
                kind=kind,
                latency_ms=rng.choice([None, 20.0]),
                request_id=f"r{i}",
                data=data,
            )
        )
    return out


IN_ORDER = (0.0, 0.5, 7.0, 45.0, 61.0)
OUT_OF_ORDER = (0.0, 0.5, 7.0, 45.0, 61.0, -30.0, -95.0)  # writers whose clocks (or batches) disagree


@pytest.mark.parametrize("steps", [IN_ORDER, OUT_OF_ORDER], ids=["ts-in-order", "ts-out-of-order"])
def test_events_and_tally_agree_with_sqlite(redis_store: RedisStore, tmp_path: Path, steps: Sequence[float]) -> None:
    """Counters per minute plus exact edges: every window, chain filter and page gives SQLite's answer,
    also when timestamps do not follow ids."""
    sqlite = SqliteStore(str(tmp_path / "tally.db"))
    rng = random.Random(3)
    events = random_events(rng, 700, T0, steps)
    try:
        for start in range(0, len(events), 50):
            assert redis_store.append(events[start : start + 50]) == sqlite.append(events[start : start + 50])
        end = max(e.ts for e in events)
        for _ in range(25):
            since = rng.uniform(T0 - 100, end)
            until = rng.uniform(since, end + 100)
            chain = rng.choice([None, "c1"])
            sample = rng.choice([2000, 5])
            assert redis_store.tally(since=since, until=until, chain=chain, sample=sample) == sqlite.tally(
                since=since, until=until, chain=chain, sample=sample
            ), (since, until, chain)
            model, types = rng.choice(["m/a", None]), rng.choice([None, ["request", "probe"], []])
            limit, newest = rng.choice([None, 3, 600]), rng.choice([False, True])
            assert redis_store.events(
                since=since, model=model, types=types, limit=limit, newest=newest
            ) == sqlite.events(since=since, model=model, types=types, limit=limit, newest=newest)
            after = rng.randrange(0, 700)
            assert redis_store.events(after_id=after, chain="c2") == sqlite.events(after_id=after, chain="c2")
            ts_after = rng.choice([None, since])
            assert redis_store.recent_ttfts("m/b", after=ts_after, limit=7) == sqlite.recent_ttfts(
                "m/b", after=ts_after, limit=7
            )
        assert redis_store.max_event_id() == sqlite.max_event_id() == 700
        if steps is OUT_OF_ORDER:
            return  # pruning cuts the stream at an id, so it is exact only while ts follow ids (docs/redis.md)
        cut = events[350].ts + 0.25
        assert redis_store.prune(now=cut + 10, retention=10, force=True) == sqlite.prune(
            now=cut + 10, retention=10, force=True
        )
        assert redis_store.events() == sqlite.events()
        assert redis_store.max_event_id() == 700
        assert redis_store.prune(now=cut + 20, retention=10) == 0  # not due again within the hour
    finally:
        sqlite.close()


def test_event_details_are_redacted_truncated_and_round_trip(redis_store: RedisStore) -> None:
    secret = "sk-redis-" + "q" * 30
    register_secret(secret)
    event = Event(
        type="attempt_failed",
        ts=T0,
        request_id="r",
        chain="c",
        model=KEY,
        kind="auth",
        status=401,
        attempt=2,
        benched_until=T0 + 60.5,
        next_model="x/y",
        latency_ms=12.25,
        detail=f"bad key {secret} " + "x" * 2000,
        data={"key": secret, "n": 1, "nested": {"s": secret}},
    )
    [event_id] = redis_store.append([event])
    [stored] = redis_store.events()
    assert stored.id == event_id == 1
    assert secret not in json.dumps(stored.to_json()) and len(stored.detail or "") == DETAIL_MAX
    assert (stored.ts, stored.status, stored.attempt, stored.benched_until, stored.latency_ms) == (
        T0,
        401,
        2,
        T0 + 60.5,
        12.25,
    )
    assert stored.data["n"] == 1 and stored.next_model == "x/y"
    client = redis_store._client
    for key in client.scan_iter(match=redis_store.prefix + "*"):
        dump = client.dump(key) or b""
        assert secret.encode() not in dump, key


def test_event_text_of_any_kind_round_trips_through_the_packed_argument(redis_store: RedisStore) -> None:
    odd = 'q"uo\\te \x00nul \x1fsep \x1e é 中文 🚀 \n\t|'
    event = Event(
        type="request",
        ts=T0 + 0.123456789,
        request_id="r" + odd,
        chain="c" + odd,
        model="m/" + odd,
        next_model="n" + odd,
        detail="d" + odd,
        latency_ms=1.5,
        data={"attempt_ms": 2.25, "s": odd},
    )
    bare = Event(type="note", ts=T0 + 1)  # no model, no optional field
    assert redis_store.append([event, bare]) == [1, 2]
    stored, stored_bare = redis_store.events()
    assert (stored.request_id, stored.chain, stored.model, stored.next_model, stored.data["s"]) == (
        "r" + odd,
        "c" + odd,
        "m/" + odd,
        "n" + odd,
        odd,
    )
    assert stored.detail is not None and stored.detail.startswith("d") and stored.ts == T0 + 0.123456789
    assert (stored_bare.model, stored_bare.chain, stored_bare.data, stored_bare.ts) == (None, None, {}, T0 + 1)
    [tally] = redis_store.tally(since=T0, until=T0 + 2).values()
    assert (tally.model, tally.answered, tally.latencies_ms) == ("m/" + odd, 1, (2.25,))


def test_a_chunk_of_events_goes_to_the_server_as_one_argument(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py encodes every argument on its own; one packed argument per script keeps a request's
    event write cheap for the client whatever the event holds."""
    sent = sent_commands(monkeypatch)
    events = [
        Event(
            type="attempt_failed",
            ts=T0 + i,
            request_id="r",
            chain="c",
            model=KEY,
            kind="transient",
            status=503,
            attempt=1,
            detail="boom",
            data={"n": i},
        )
        for i in range(3)
    ]
    assert redis_store.append(events) == [1, 2, 3]
    scripts = [args for args in sent if args[0] == "EVALSHA"]  # (the clock-offset check sends TIME first)
    assert [len(args) for args in scripts] == [6]  # EVALSHA, sha, 1, the version key, the prefix, the events


def test_scripts_the_server_forgot_are_loaded_again(redis_store: RedisStore) -> None:
    redis_store._client.script_flush()  # what a restart or a failover to a fresh replica does
    assert redis_store.append([Event(type="request", ts=T0, model=KEY)]) == [1]
    assert fail(redis_store, T0)[0].failures == 1
    assert redis_store.states([KEY])[KEY].failures == 1


def test_wait_for_events_returns_a_row_another_store_writes(
    redis_store: RedisStore, redis_url: str, redis_namespace: str
) -> None:
    other = RedisStore.from_url(redis_url, namespace=redis_namespace)
    try:
        last = redis_store.max_event_id()
        assert redis_store.wait_for_events(last, timeout=0.05) == []
        timer = threading.Timer(0.2, lambda: other.append([Event(type="request", ts=T0, detail="hello")]))
        started = time.monotonic()
        timer.start()
        rows = redis_store.wait_for_events(last, timeout=5)
        assert [e.detail for e in rows] == ["hello"] and time.monotonic() - started < 1.5
        timer.join()
    finally:
        other.close()


# -- the hot path -----------------------------------------------------------------------------


def sent_commands(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The commands this thread sends from now on, whoever sends them (the cache's background
    thread is not counted): seen where every command leaves, a connection's `send_command`."""
    from redis.connection import AbstractConnection

    sent: list[tuple[Any, ...]] = []
    original = AbstractConnection.send_command
    me = threading.get_ident()

    def recording(self: AbstractConnection, *args: Any, **kw: Any) -> None:
        if threading.get_ident() == me:
            sent.append(args)
        original(self, *args, **kw)

    monkeypatch.setattr(AbstractConnection, "send_command", recording)
    return sent


def test_a_healthy_request_costs_one_round_trip(redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [KEY, "anthropic/claude"]
    redis_store.states(keys)
    deadline = time.monotonic() + 2
    while not redis_store._cache().listener.healthy:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    redis_store.states(keys)
    sent = sent_commands(monkeypatch)
    for i in range(20):
        redis_store.states(keys)
        assert redis_store.record_success(KEY, now=T0 + i) is None
        redis_store.append([Event(type="request", ts=T0 + i, model=KEY)])
        time.sleep(0.03)  # longer than a cache entry lives: kept fresh by the background thread
    assert len(sent) == 20, sent


def test_a_write_through_a_store_that_never_read_reaches_the_cache_of_its_process_at_once(
    redis_store: RedisStore, redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmfail.store import redis as backend

    forget = backend._StateCache.forget
    monkeypatch.setattr(
        backend._StateCache,
        "forget",  # pub/sub messages lost: only our own writes count
        lambda cache, model: forget(cache, None) if model is None else None,
    )
    assert redis_store.states([KEY]) == {}
    deadline = time.monotonic() + 2
    while not redis_store._cache().listener.healthy:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert redis_store.states([KEY]) == {}  # now cached as absent
    writer = RedisStore.from_url(redis_url, namespace=redis_namespace)  # has never read: no cache of its own
    try:
        fail(writer, T0)
        assert redis_store.states([KEY])[KEY].failures == 1
    finally:
        writer.close()


#: The other host, a process of its own (the benchmark runs the same reader).
READER = str(Path(__file__).with_name("redis_bench_reader.py"))


@pytest.mark.parametrize("messages", ["delivered", "lose"])
def test_a_bench_on_one_host_is_honoured_by_another_within_a_second(
    redis_url: str, redis_namespace: str, messages: str
) -> None:
    reader = subprocess.Popen(
        [sys.executable, READER, redis_url, redis_namespace, messages],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    writer = RedisStore.from_url(redis_url, namespace=redis_namespace)
    delays: list[float] = []
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
        trials = 20 if messages == "delivered" else 10
        for trial in range(trials):
            writer.unbench(None, now=time.time())
            if trial:
                assert reader.stdout.readline().split()[0] == "None"
            time.sleep(0.02 + random.random() * 0.05)
            benched_at = time.time()
            writer.bench(
                "shared/model", now=benched_at, until=benched_at + 60, manual=True, reason=f"t{trial}", kind=None
            )
            reason, seen_at = reader.stdout.readline().split()
            assert reason == f"t{trial}"
            delays.append(float(seen_at) - benched_at)
        now = time.time()
        writer.bench("shared/model", now=now, until=now + 60, manual=True, reason="stop", kind=None, replace=True)
        _, err = reader.communicate(timeout=10)
        assert reader.returncode == 0, err
    finally:
        writer.close()
        if reader.poll() is None:
            reader.kill()
        reader.communicate()
    print(
        f"\nbench propagation over {len(delays)} trials ({messages} pub/sub): "
        f"median {statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms"
    )
    assert delays[-1] < 1.0


def test_llmfail_bench_in_one_process_is_honoured_by_an_engine_in_another(redis_url: str, tmp_path: Path) -> None:
    """End to end: the real CLI benches the primary; a running engine's next requests skip it.
    (The CLI has no namespace option here, so this test uses the default one and empties it.)"""
    import asyncio
    import os

    from llmfail.config import parse_config
    from llmfail.engine import Engine

    text = "providers:\n  mock: {type: mock}\nchains:\n  main: [mock/primary, mock/backup]\n"
    (tmp_path / "chains.yaml").write_text(text)
    store = RedisStore.from_url(redis_url)
    for key in store._client.scan_iter(match=store.prefix + "*"):
        store._client.delete(key)
    engine = Engine(parse_config(text, "chains.yaml"), store)
    env = {**os.environ, "LLMFAIL_DB": redis_url}

    async def scenario() -> float:
        assert (await engine.complete("main", [{"role": "user", "content": "hi"}])).model == "mock/primary"
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from llmfail.cli import main; main()",
            "--config",
            str(tmp_path / "chains.yaml"),
            "bench",
            "mock/primary",
            "--for",
            "10m",
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while (await engine.complete("main", [{"role": "user", "content": "hi"}])).model == "mock/primary":
            assert time.monotonic() < deadline and cli.returncode in (None, 0), await cli.communicate()
            await asyncio.sleep(0.002)
        honoured = time.time()
        _, err = await cli.communicate()
        assert cli.returncode == 0, err.decode()
        [bench] = store.events(types=["benched"])
        return honoured - bench.ts

    try:
        delay = asyncio.run(scenario())
    finally:
        asyncio.run(engine.aclose())
        for key in store._client.scan_iter(match=store.prefix + "*"):
            store._client.delete(key)
        store.close()
    print(f"\nllmfail bench honoured by another process's engine after {delay * 1000:.1f} ms")
    assert delay < 1.0


# -- clock skew -------------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-90.0, 90.0])
def test_a_host_with_a_skewed_clock_never_probes_a_running_bench(
    redis_url: str, redis_namespace: str, skew: float
) -> None:
    true = RedisStore.from_url(redis_url, namespace=redis_namespace)
    skewed = RedisStore.from_url(redis_url, namespace=redis_namespace, clock=lambda: time.time() + skew)
    try:
        assert skewed.measure_skew() == -skew and true.measure_skew() == 0
        now = time.time()
        true.record_failure(KEY, now=now, kind="timeout", status=None, bench_for=30.0)
        local = now + skew  # what the skewed host's clock says
        assert not skewed.claim_probe(KEY, now=local, lease=10, holder="skewed")
        state = skewed.states([KEY])[KEY]
        assert state.is_benched(local) and not state.clock_stepped_back(local)
        assert state.bench_until == pytest.approx(local + 30, abs=1.5)
        assert [s.model for s in skewed.benches(local)] == [KEY]
        skewed.record_failure("other/model", now=local, kind="timeout", status=None, bench_for=30.0)
        assert true.states(["other/model"])["other/model"].benched_at == pytest.approx(now, abs=1.5)
        # without the correction, the same host would probe the running bench
        skewed._offset = 0.0
        assert skewed.claim_probe(KEY, now=local, lease=10, holder="uncorrected") == (skew > 0 or skew < -60)
    finally:
        true.close()
        skewed.close()


# -- many processes ---------------------------------------------------------------------------

RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from llmfail.events import Event
    from llmfail.store.redis import RedisStore

    url, namespace, worker, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    T0 = 1_760_000_000.0
    store = RedisStore.from_url(url, namespace=namespace)
    store.max_event_id()
    open(f"{go}.ready{worker}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    out = {"probes": 0, "quota": 0, "alerts": [], "ids": [], "benched": 0}
    for i in range(200):
        if i < 50:
            out["probes"] += store.claim_probe("half/open", now=T0 + 100 + i * 0.01, lease=60, holder=f"w{worker}-{i}")
        out["quota"] += store.take_quota("quota/model", day="2026-12-04", limit=1000)
        if i < 100:
            _, benched = store.record_failure("fail/model", now=T0 + i * 0.001, kind="transient", status=503,
                                              bench_for=30.0)
            out["benched"] += benched
        if i < 30:
            window = i // 10
            if store.claim_alert(f"m{i % 2}", "benched", now=T0 + window * 10 + i * 0.01, window=10):
                out["alerts"].append([i % 2, window])
        if i % 4 == 0:
            batch = [Event(type="request", ts=T0 + i, request_id=f"w{worker}-{i}-{k}") for k in range(1 + i % 3)]
            out["ids"] += list(zip([e.request_id for e in batch], store.append(batch)))
    store.close()
    print(json.dumps(out))
    """
)


def test_sixteen_processes_racing_on_one_redis(redis_url: str, redis_namespace: str, tmp_path: Path) -> None:
    setup = RedisStore.from_url(redis_url, namespace=redis_namespace)
    setup.bench("half/open", now=T0, until=T0 + 50, manual=False, reason=None, kind="transient")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, redis_url, redis_namespace, str(w), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for w in range(16)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"go.ready{w}").exists() for w in range(16)):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.01)
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    try:
        assert sum(r["probes"] for r in results) == 1  # 800 claims, one half-open period, one winner
        assert sum(r["quota"] for r in results) == 1000  # 3,200 takes against a limit of 1,000
        assert setup.quota_used("quota/model", day="2026-12-04") == 1000
        state = setup.states(["fail/model"])["fail/model"]
        assert state.failures == 1600 and state.bench_count == 1600
        assert sum(r["benched"] for r in results) >= 1
        alerts = sorted(tuple(a) for r in results for a in r["alerts"])
        assert alerts == [(m, w) for m in (0, 1) for w in (0, 1, 2)]  # one per (model, type, window)
        acked = dict(pair for r in results for pair in r["ids"])
        events = setup.events()
        assert len(acked) == len(events) == 16 * sum(1 + i % 3 for i in range(0, 200, 4))
        assert {e.request_id: e.id for e in events} == acked
        ids = [e.id for e in events]
        assert ids == sorted(set(ids))  # type: ignore[type-var]
    finally:
        setup.close()


# -- when Redis is down or hangs ---------------------------------------------------------------


def test_an_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    from tests.redis_server import free_port

    port = free_port()
    store = RedisStore.from_url(f"valkey://127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            store.states([KEY])
        assert time.monotonic() - started < 1.0
        message = caught.value.message
        assert message == f"cannot reach shared state valkey://127.0.0.1:{port}/0 (connection refused)"
        assert "\n" not in message and caught.value.hint
        assert isinstance(caught.value, StateError)
    finally:
        store.close()


@pytest.mark.parametrize(
    "raised",
    [
        "Error while reading from 10.1.2.3:6379 : (104, 'Connection reset by peer')",
        "Connection closed by server.",
        "Error UNKNOWN while writing to socket. Connection lost.",
    ],
)
def test_a_connection_broken_under_a_command_reads_connection_lost(raised: str) -> None:
    """redis-py words a broken read or write with the socket's address and errno; the user reads
    one phrase, and the URL they gave (the dashboard's banner shows this line)."""
    import redis

    store = RedisStore.from_url("redis://cache.internal:6379/0")
    try:
        error = store._error(redis.ConnectionError(raised))
        assert isinstance(error, StoreUnavailable)
        assert error.message == "cannot reach shared state redis://cache.internal:6379/0 (connection lost)"
    finally:
        store.close()


def test_a_hung_server_costs_one_timeout_and_no_retry(private_redis: Callable[..., RedisServer]) -> None:
    server = private_redis()
    store = RedisStore.from_url(server.url, namespace="hang")
    try:
        store.states([KEY])
        server.pause()
        for call in (
            lambda: fail(store, T0),
            lambda: store.append([Event(type="request", ts=T0)]),
            lambda: store.events(limit=5),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"no answer within 0.25 s"):
                call()
            assert time.monotonic() - started < 0.6  # one socket timeout: no client-side retry
        server.resume()
        time.sleep(0.05)
        # the write that timed out reached the server exactly once (it was never sent again)
        before = store.states([KEY]).get(KEY)
        counted = before.failures if before is not None else 0
        assert counted in (0, 1)
        assert fail(store, T0 + 1)[0].failures == counted + 1
    finally:
        store.close()


def test_a_restarted_server_is_used_again_and_the_cache_resumes(private_redis: Callable[..., RedisServer]) -> None:
    server = private_redis()
    store = RedisStore.from_url(server.url, namespace="restart")
    try:
        fail(store, T0)
        server.stop()  # SIGKILL: with --appendonly no, everything is lost
        with pytest.raises(StoreUnavailable):
            store.states([KEY, "other/key"])
        deadline = time.monotonic() + 10
        while True:  # the same port again (the kernel may hold it for a moment)
            try:
                server = private_redis(port=server.port)
                break
            except RuntimeError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert store.states([KEY]) == {}  # reconnected; the old state is gone
        fail(store, T0 + 1)
        deadline = time.monotonic() + 5
        while not store._cache().listener.healthy:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the cache listener did not come back"
            time.sleep(0.05)
        assert store.states([KEY])[KEY].failures == 1
    finally:
        store.close()


def test_a_read_only_server_is_unavailable_not_a_crash(private_redis: Callable[..., RedisServer]) -> None:
    from tests.redis_server import free_port

    server = private_redis()
    store = RedisStore.from_url(server.url, namespace="replica")
    try:
        store._client.replicaof("127.0.0.1", free_port())  # a replica of nobody: read-only
        assert store.states([KEY]) == {}  # reads still work
        with pytest.raises(StoreUnavailable, match=r"cannot reach shared state .*\(READONLY: You can't write") as e:
            fail(store, T0)
        assert "script" not in e.value.message
        with pytest.raises(StoreUnavailable):
            store.append([Event(type="request", ts=T0)])
    finally:
        store.close()


def test_the_clock_offset_is_measured_again_after_a_minute(
    redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmfail.store import redis as backend

    skew = [0.0]
    store = RedisStore.from_url(redis_url, namespace=redis_namespace, clock=lambda: time.time() + skew[0])
    try:
        store.states([KEY])
        assert store.clock_offset == 0
        skew[0] = 120.0  # the host's clock is stepped forward two minutes
        store.states([KEY])
        assert store.clock_offset == 0  # measured less than a minute ago
        monkeypatch.setattr(backend, "SKEW_REFRESH_S", 0.0)
        store.states([KEY])
        assert store.clock_offset == -120
    finally:
        store.close()


@pytest.fixture
def password_server(private_redis: Callable[..., RedisServer]) -> RedisServer:
    return private_redis("--requirepass", "s3cret-redis-pass")


def test_the_password_comes_from_the_environment_and_is_never_shown(
    password_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = password_server.url
    with pytest.raises(UsageError, match="contains a password") as caught:
        RedisStore.from_url(url.replace("//", "//:s3cret-redis-pass@"))
    assert "s3cret" not in str(caught.value) + str(caught.value.hint)
    assert display_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    with pytest.raises(UsageError, match="MY_REDIS_PW"):
        RedisStore.from_url(url, password_env="MY_REDIS_PW")
    denied = RedisStore.from_url(url)
    with pytest.raises(StateError, match="refused access") as refused:
        denied.states([KEY])
    denied.close()
    assert "s3cret" not in refused.value.message
    monkeypatch.setenv("MY_REDIS_PW", "s3cret-redis-pass")
    store = RedisStore.from_url(url, password_env="MY_REDIS_PW", namespace="pw")
    try:
        fail(store, T0)
        store.append([Event(type="request", ts=T0, model=KEY, data={"ttft_ms": 1.0})])
        assert store.states([KEY])[KEY].failures == 1
        assert "s3cret" not in repr(store) and "***" in repr(store)
        for key in store._client.scan_iter(match="*"):  # the password never reaches the store
            assert b"s3cret" not in (store._client.dump(key) or b"") and "s3cret" not in key
    finally:
        store.close()


def test_a_unix_socket_url_works_for_requests_and_the_cache(
    tmp_path: Path, private_redis: Callable[..., RedisServer]
) -> None:
    sock = tmp_path / "redis.sock"
    private_redis("--unixsocket", str(sock), "--unixsocketperm", "700")
    store = RedisStore.from_url(f"unix://{sock}?db=0", namespace="unix")
    try:
        fail(store, T0)
        deadline = time.monotonic() + 2
        while not store._cache().listener.healthy:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the cache listener could not connect over the socket"
            time.sleep(0.01)
        assert store.states([KEY])[KEY].failures == 1
        assert repr(store) == f"RedisStore('unix://{sock}?db=0', namespace='unix')"
    finally:
        store.close()


def test_bad_urls_and_namespaces_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="not a Redis URL"):
        RedisStore.from_url("memcached://x")
    with pytest.raises(UsageError, match="namespace"):
        RedisStore.from_url("redis://127.0.0.1:1/0", namespace="a}b")


def test_every_key_of_a_namespace_shares_one_hash_tag(redis_store: RedisStore) -> None:
    fail(redis_store, T0)
    redis_store.take_quota(KEY, day="d", limit=5)
    redis_store.claim_alert(KEY, "t", now=T0, window=5)
    redis_store.swap_meta("k", "v")
    redis_store.append([Event(type="request", ts=T0, model=KEY, data={"ttft_ms": 1.0})])
    keys = list(redis_store._client.scan_iter(match="*" + redis_store.namespace + "*"))
    assert len(keys) >= 8
    assert all(k.startswith("{llmfail:" + redis_store.namespace + "}:") for k in keys)


def test_server_problems_name_settings_that_lose_state(redis_store: RedisStore) -> None:
    problems = redis_store.server_problems()  # the test server runs with --save '' --appendonly no
    assert any("keeps nothing on disk" in p for p in problems)
    client = redis_store._client
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        assert any("allkeys-lru" in p for p in redis_store.server_problems())
    finally:
        client.config_set("maxmemory-policy", policy)
