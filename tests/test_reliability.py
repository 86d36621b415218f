"""The promises made to an on-call engineer, each with a figure (issue 8).

llmfail never loses an event, never corrupts the shared state, never hammers a
failing provider and never hangs past its deadline. Every test here runs the
real SQLite store, real OS processes where processes matter (`kill -9` is a
real SIGKILL), real loopback servers, and a virtual clock where time matters.
The figures quoted in docs/reliability.md come from these tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from random import Random

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail.actions import list_benches
from llmfail.engine import Engine
from llmfail.errors import AllBenched, ChainExhausted, Kind, LlmfailError
from llmfail.events import Event
from llmfail.result import Result
from llmfail.store.sqlite import SqliteStore

from .conftest import Calls, FakeClock, make_config, ok, openai_chunk, openai_error, sse
from .reliability_helpers import QUOTA_DAY, SHARED_KEY, StartLine, finish, integrity, spawn

# ------------------------------------------------------------------ 1. concurrent writers


def test_eight_writers_and_a_tailer_lose_no_event_and_never_see_a_locked_database(tmp_path: Path) -> None:
    writers, per_writer = 8, 2000
    db = tmp_path / "state.db"
    SqliteStore(str(db)).close()
    line = StartLine(tmp_path)
    procs = [spawn("append", db, w, per_writer, line.go) for w in range(writers)]
    tailer = spawn("tail", db, writers * per_writer, line.go, writers, 120)
    line.wait_ready(writers + 1)
    started = time.monotonic()
    line.release()
    reports = finish(procs, timeout=180)
    elapsed = time.monotonic() - started
    (tail,) = finish([tailer], timeout=180)

    assert sum(r["busy"] for r in reports) == 0, "a writer got 'database is locked'"
    store = SqliteStore(str(db))
    try:
        rows = [(e.id, e.request_id) for e in store.events()]
    finally:
        store.close()
    expected = {f"w{w}-{seq}" for w in range(writers) for seq in range(per_writer)}
    assert len(rows) == writers * per_writer
    assert Counter(request_id for _, request_id in rows) == Counter(expected)  # each (process, seq) exactly once
    assert integrity(db) == "ok"
    order = [request_id.split("-")[0] for _, request_id in rows if request_id]
    assert sum(a != b for a, b in zip(order, order[1:], strict=False)) > writers, "the writers never overlapped"
    seen = [tuple(row) for row in tail["rows"]]
    assert seen == rows, "the tailer missed, repeated or reordered a row"
    assert [row_id for row_id, _ in seen] == list(range(1, writers * per_writer + 1))  # no gap at all
    print(f"\n{writers * per_writer} events from {writers} processes in {elapsed:.1f}s, tailer saw all of them")


# ------------------------------------------------------------------ 2. kill -9 mid-write

CRASH_WRITERS = 4


def crash_trial(directory: Path, rng: Random) -> int:
    """Four writers killed with SIGKILL at random moments; returns how many writes they had acknowledged.

    Every write a worker acknowledged (it prints only after the commit returned)
    must be in the file, the file must pass `integrity_check`, and every bench
    row must be one whole write: the fields of a bench all come from one `seq`.
    """
    directory.mkdir()
    db = directory / "state.db"
    SqliteStore(str(db)).close()
    line = StartLine(directory)
    procs = [spawn("crash-writer", db, w, line.go) for w in range(CRASH_WRITERS)]
    line.wait_ready(CRASH_WRITERS)
    line.release()
    released = time.monotonic()
    for delay, proc in sorted(zip((rng.uniform(0.05, 0.6) for _ in procs), procs, strict=True), key=lambda p: p[0]):
        time.sleep(max(0.0, released + delay - time.monotonic()))
        os.kill(proc.pid, signal.SIGKILL)
    acked_events: dict[int, set[int]] = {}
    acked_benches: dict[int, list[int]] = {}
    for worker, proc in enumerate(procs):
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, f"worker {worker} died on its own: {err[-2000:]}"
        lines = [line.split() for line in out.splitlines() if line.count(" ") == 1]  # a cut last line is not an ack
        acked_events[worker] = {int(seq) for what, seq in lines if what == "e"}
        acked_benches[worker] = [int(seq) for what, seq in lines if what == "b"]

    assert integrity(db) == "ok"
    store = SqliteStore(str(db))  # opening recovers the WAL the killed writers left behind
    try:
        present = Counter(e.request_id for e in store.events())
        for worker, acked in acked_events.items():
            mine = {int(rid.split("-")[1]) for rid in present if rid and rid.startswith(f"w{worker}-")}
            assert acked <= mine, f"worker {worker} lost acknowledged events {sorted(acked - mine)[:5]}"
            assert not mine - set(range(1, max(acked, default=0) + 2)), "an event appeared that was never written"
        assert set(present.values()) <= {1}, "an event was stored twice"
        states = store.states([f"crash/m{w}" for w in range(CRASH_WRITERS)] + [SHARED_KEY])
        for worker, benches in acked_benches.items():
            state = states.get(f"crash/m{worker}")
            if not benches:
                continue
            assert state is not None, f"worker {worker}'s acknowledged bench is gone"
            seq = int(state.bench_until or 0) - 1000
            assert seq in (benches[-1], benches[-1] + 3), f"bench row of worker {worker} is not its last write"
            assert (state.benched_at, state.reason, state.bench_count) == (seq, f"w{worker}:{seq}", seq // 3), (
                f"torn bench row: {state}"
            )
        shared = states.get(SHARED_KEY)
        if shared is not None:
            assert shared.failures == shared.bench_count, f"torn counters: {shared}"
        store.append([Event(type="request", ts=1.0, request_id="after-the-crash")])
    finally:
        store.close()
    return sum(len(a) for a in acked_events.values())


@pytest.mark.parametrize(
    "trials", [pytest.param(3, id="3-trials"), pytest.param(20, id="20-trials", marks=pytest.mark.slow)]
)
def test_writers_killed_mid_write_never_corrupt_the_db_nor_lose_an_acknowledged_write(
    tmp_path: Path, trials: int
) -> None:
    rng = Random(2)
    acked = [crash_trial(tmp_path / f"trial{t}", rng) for t in range(trials)]
    assert sum(acked) > 0
    print(
        f"\n{trials} trials, {CRASH_WRITERS} writers each killed at a random moment, "
        f"{sum(acked)} acknowledged writes, none lost, 0 corrupt files"
    )


# ------------------------------------------------------------------ 3. read-modify-write under contention


def test_eight_processes_updating_one_bench_keep_exact_counters_and_never_get_busy(tmp_path: Path) -> None:
    workers, updates, quota = 8, 1000, 5000
    db = tmp_path / "state.db"
    SqliteStore(str(db)).close()
    line = StartLine(tmp_path)
    procs = [spawn("rmw", db, w, updates, quota, line.go) for w in range(workers)]
    line.wait_ready(workers)
    started = time.monotonic()
    line.release()
    reports = finish(procs, timeout=180)
    elapsed = time.monotonic() - started

    assert sum(r["busy"] for r in reports) == 0, "a read-modify-write got 'database is locked'"
    store = SqliteStore(str(db))
    try:
        state = store.states([SHARED_KEY])[SHARED_KEY]
        assert (state.failures, state.bench_count) == (workers * updates, workers * updates)
        assert store.quota_used(SHARED_KEY, day=QUOTA_DAY) == quota
    finally:
        store.close()
    assert sum(r["took"] for r in reports) == quota  # exactly `quota` takes were granted, across all processes
    assert integrity(db) == "ok"
    print(f"\n{workers} x {updates} read-modify-writes of one key in {elapsed:.1f}s: counters exact, 0 busy")


# ------------------------------------------------------------------ 4. half-open contention


def slow(answer: Response, seconds: float) -> Callable[[Request], Response]:
    def handler(_: Request) -> Response:
        time.sleep(seconds)
        return answer

    return handler


@pytest.mark.parametrize(
    ("probe_answer", "answered_by_a"),
    [
        pytest.param(ok("a"), 1, id="probe-succeeds"),
        pytest.param(openai_error(503), 0, id="probe-fails", marks=pytest.mark.slow),  # 4-10 s: 8 engines start
    ],
)
def test_eight_processes_hitting_a_model_the_instant_its_bench_ends_send_it_exactly_one_probe(
    server: HTTPServer, tmp_path: Path, probe_answer: Response, answered_by_a: int
) -> None:
    workers = 8
    a = Calls(slow(probe_answer, 1.5))  # the probe is still in flight while every other process decides
    server.expect_request("/a/v1/chat/completions").respond_with_handler(a)
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("b")))
    db = tmp_path / "state.db"
    store = SqliteStore(str(db))
    line = StartLine(tmp_path)
    procs = [spawn("probe", db, server.url_for("").rstrip("/"), w, line.go) for w in range(workers)]
    line.wait_ready(workers)
    bench_ends = time.time() + 0.5
    store.bench("a/m1", now=bench_ends - 30, until=bench_ends, manual=False, reason="503", kind="transient")
    line.release(at=bench_ends)
    reports = finish(procs, timeout=60)

    assert a.count == 1, f"{a.count} probes reached the provider"
    models = Counter(r["model"] for r in reports)
    assert models == Counter({"a/m1": answered_by_a, "b/m2": workers - answered_by_a}) - Counter()
    spread = max(r["late_ms"] for r in reports)
    assert spread < 1000, "the workers did not fire together"
    state = store.states(["a/m1"])["a/m1"]
    assert state.probe_holder is None
    assert state.is_benched(time.time()) is (answered_by_a == 0)  # a failed probe benches again at once
    store.close()
    print(f"\n{workers} processes within {spread:.0f} ms of the bench's end: 1 probe reached the provider")


# ------------------------------------------------------------------ 8. amplification bound

OUTAGE_CHAIN = """
defaults:
  attempts: 3
  backoff: {base: 100ms, max: 1s}
  cooldown: 30s
  timeout: 2s
  deadline: 5m
  on_all_benched: %s
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
  c: {type: openai, base_url: "{url}/c/v1"}
chains:
  main: [a/m1, b/m2, c/m3]
"""
OUTAGE_MODELS = ("a/m1", "b/m2", "c/m3")


@dataclass
class Walked:
    """One request of an outage: which models were benched when it began and whom it called."""

    benched: set[str]
    calls: Counter[str]


def outage(
    server: HTTPServer, engine: Engine, store: SqliteStore, clock: FakeClock, requests: int, gap: float
) -> list[Walked]:
    """`requests` requests `gap` virtual seconds apart while every provider answers 503."""
    routes = {m: Calls(openai_error(503)) for m in OUTAGE_MODELS}
    for model, calls in routes.items():
        server.expect_request(f"/{model[0]}/v1/chat/completions").respond_with_handler(calls)

    async def walk() -> list[Walked]:
        walked = []
        try:
            for _ in range(requests):
                now = clock()
                benched = {m for m, s in store.states(OUTAGE_MODELS).items() if s.is_benched(now)}
                before = Counter({m: c.count for m, c in routes.items()})
                with pytest.raises((ChainExhausted, AllBenched)):
                    await engine.complete("main", "hi")
                walked.append(Walked(benched, Counter({m: c.count for m, c in routes.items()}) - before))
                clock.advance(gap)
        finally:
            await engine.aclose()
        return walked

    return asyncio.run(walk())


@pytest.mark.parametrize("on_all_benched", ["try_all", "fail"])
def test_a_chain_whose_every_model_answers_503_makes_at_most_three_times_attempts_calls_per_request(
    server: HTTPServer, make_engine: Callable[..., Engine], store: SqliteStore, clock: FakeClock, on_all_benched: str
) -> None:
    walked = outage(server, make_engine(OUTAGE_CHAIN % on_all_benched), store, clock, requests=100, gap=0.5)
    per_request = [sum(w.calls.values()) for w in walked]
    assert walked[0].calls == Counter({m: 3 for m in OUTAGE_MODELS})  # the first request: 3 entries x 3 attempts
    assert max(per_request) <= 3 * 3
    # after the first request, a panic walk (try_all) or the probes when the benches end (fail)
    # are one attempt per entry, never retries
    assert max(per_request[1:]) == 3
    print(
        f"\non_all_benched={on_all_benched}: {sum(per_request)} HTTP calls for 100 requests in 50 s of outage "
        f"(at most {max(per_request)} per request)"
    )


def test_across_a_hundred_requests_a_benched_model_is_not_called_again_until_its_bench_ends(
    server: HTTPServer, make_engine: Callable[..., Engine], store: SqliteStore, clock: FakeClock
) -> None:
    walked = outage(server, make_engine(OUTAGE_CHAIN % "fail"), store, clock, requests=100, gap=0.5)
    for number, request in enumerate(walked):
        called_while_benched = request.benched & set(request.calls)
        assert not called_while_benched, f"request {number} called benched {called_while_benched}"
    probes = [w.calls for w in walked[1:] if w.calls]
    assert probes == [Counter({m: 1 for m in OUTAGE_MODELS})]  # 30 s later: one single-attempt probe each
    total = sum(sum(w.calls.values()) for w in walked)
    assert total == 9 + 3
    print(f"\n100 requests over 50 s of a full outage: {total} HTTP calls (naive retrying: 900)")


# ------------------------------------------------------------------ 9. deadline


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """What stalled handlers wait on; opened at the end so no server thread lingers."""
    event = threading.Event()
    yield event
    event.set()


def stall(kind: str, gate: threading.Event) -> Callable[[Request], Response]:
    """A provider that never answers, stalls after its first token, or never sends one."""

    def never(_: Request) -> Response:
        gate.wait(10)
        return ok("too late")

    def stream(first: list[bytes]) -> Callable[[Request], Response]:
        def body() -> Iterator[bytes]:
            yield b""  # the headers go out now
            yield from first
            gate.wait(10)
            yield sse(openai_chunk(None, "stop")).encode()

        return lambda _: Response(body(), content_type="text/event-stream")

    token = sse(openai_chunk("half an "), done=False).encode()
    return {"never-answers": never, "stalled-stream": stream([token]), "slow-first-token": stream([b": ping\n\n"])}[
        kind
    ]


STALLS = ["never-answers", "stalled-stream", "slow-first-token"]
DEADLINE_CHAIN = """
defaults: {attempts: 2, timeout: %(t)s, first_token_timeout: %(t)s, idle_timeout: %(t)s, deadline: %(deadline)s}
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
chains:
  main: [a/m1, b/m2]
"""


def timed(engine: Engine) -> tuple[float, Result | LlmfailError]:
    """Real seconds one streamed, collected request took, and its result or error."""

    async def one() -> Result | LlmfailError:
        try:
            return await engine.complete("main", "hi", stream=True)
        except LlmfailError as error:
            return error
        finally:
            await engine.aclose()

    started = time.monotonic()
    outcome = asyncio.run(one())
    return time.monotonic() - started, outcome


@pytest.mark.parametrize("kind", STALLS)
def test_a_stalling_provider_is_left_in_time_for_the_next_entry_to_answer_within_the_deadline(
    server: HTTPServer, store: SqliteStore, gate: threading.Event, kind: str
) -> None:
    a = Calls(stall(kind, gate))
    server.expect_request("/a/v1/chat/completions").respond_with_handler(a)
    server.expect_request("/b/v1/chat/completions").respond_with_handler(
        Calls(Response(sse(openai_chunk("whole"), openai_chunk(None, "stop")), content_type="text/event-stream"))
    )
    engine = Engine(make_config(DEADLINE_CHAIN % {"t": "500ms", "deadline": "3s"}, server), store)
    elapsed, outcome = timed(engine)
    assert isinstance(outcome, Result) and outcome.model == "b/m2" and outcome.text == "whole"
    assert a.count == 1  # a timeout is never retried on the same entry
    assert elapsed < 3 + 1
    print(f"\n{kind}: answered by the next entry after {elapsed:.2f}s (deadline 3s)")


@pytest.mark.parametrize("kind", STALLS)
def test_a_stall_longer_than_the_deadline_ends_the_request_within_the_deadline_plus_one_second(
    server: HTTPServer, store: SqliteStore, gate: threading.Event, kind: str
) -> None:
    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(stall(kind, gate)))
    b = Calls(ok("b"))
    server.expect_request("/b/v1/chat/completions").respond_with_handler(b)
    engine = Engine(make_config(DEADLINE_CHAIN % {"t": "60s", "deadline": "1s"}, server), store)
    elapsed, outcome = timed(engine)
    assert isinstance(outcome, ChainExhausted) and outcome.kind == Kind.TIMEOUT
    assert 1 <= elapsed < 1 + 1
    print(f"\n{kind}: the request ended after {elapsed:.2f}s (deadline 1s)")


# ------------------------------------------------------------------ 12. tail under retention


def test_a_follower_misses_no_row_while_a_pruner_deletes_old_rows_under_it(tmp_path: Path) -> None:
    rounds = 1500
    db = tmp_path / "state.db"
    SqliteStore(str(db)).close()
    line, stop = StartLine(tmp_path), tmp_path / "stop"
    follower = spawn("tail-until", db, "end", line.go, 60)
    writer = spawn("churn", db, rounds, line.go)
    pruner = spawn("prune", db, line.go, stop)
    line.wait_ready(3)
    line.release()
    finish([writer], timeout=120)
    (followed,) = finish([follower], timeout=120)
    stop.touch()
    (pruned,) = finish([pruner], timeout=60)

    rows = [(row_id, request_id) for row_id, request_id in followed["rows"]]
    ids = [row_id for row_id, _ in rows]
    assert ids == sorted(set(ids)), "the follower saw a row twice or out of order"
    fresh = [request_id for _, request_id in rows if not request_id.startswith("old-")]
    assert fresh == [f"fresh-{seq}" for seq in range(rounds)] + ["end"], "the follower missed a row"
    assert pruned["deleted"] > rounds // 2, "the pruner hardly ran"
    store = SqliteStore(str(db))
    try:
        assert store.max_event_id() == 2 * rounds + 1  # no id was ever handed out twice
    finally:
        store.close()
    print(
        f"\n{rounds} fresh rows followed while {pruned['deleted']} old rows were pruned "
        f"in {pruned['rounds']} prunes: 0 missed"
    )


# ------------------------------------------------------------------ 13. clock jump


def test_the_wall_clock_moving_back_an_hour_never_strands_a_bench_longer_than_its_length(
    server: HTTPServer, make_engine: Callable[..., Engine], store: SqliteStore, clock: FakeClock
) -> None:
    a = Calls(openai_error(503), openai_error(503), openai_error(503), ok("a is back"))
    server.expect_request("/a/v1/chat/completions").respond_with_handler(a)
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("b")))
    engine = make_engine(OUTAGE_CHAIN % "try_all")
    assert complete(engine) == "b/m2"
    length = (store.states(["a/m1"])["a/m1"].bench_until or 0) - clock()
    assert length == pytest.approx(30)

    clock.advance(-3600)  # NTP steps the wall clock back an hour
    for waited in (0.0, length / 2):
        clock.advance(waited)
        assert all(row.remaining_s <= length for row in list_benches(store, clock())), (
            "ls-benched shows a stranded bench"
        )
    clock.advance(length / 2)  # the bench's own length has passed, whatever the clock reads
    assert complete(engine) == "a/m1" and a.count == 4  # one probe, and the model is back


def test_a_manual_bench_is_kept_when_the_clock_moves_back(store: SqliteStore, clock: FakeClock) -> None:
    """The operator's word wins: a clock step never lifts a manual bench (`unbench` does)."""
    store.bench("a/m1", now=clock(), until=clock() + 600, manual=True, reason="maintenance", kind=None)
    clock.advance(-3600)
    assert [row.model for row in list_benches(store, clock())] == ["a/m1"]


def complete(engine: Engine) -> str:
    """The model that answered one request (on the engine's own clock)."""

    async def one() -> str:
        try:
            return (await engine.complete("main", "hi")).model
        finally:
            await engine.aclose()

    return asyncio.run(one())
