"""State throughput: events/s into the SQLite state DB, and the cost of a bench lookup.

    python benchmarks/state.py [--seconds 2]

prints one JSON line:

- `single_eps`: events/s one process writes with the production settings and
  the engine's pattern (one `append([event])` per event, each its own
  `BEGIN IMMEDIATE` transaction, committed before the call returns);
- `multi_eps`: the same, 4 processes writing to one file at once (total), with
  `lost` = events written minus events found (must be 0);
- `lookup_us`: one `store.states(keys)` for a 3-entry chain's keys (what the
  engine reads at the start of every request), with 100 other keys in the table.

Each loop is bounded by a count and a wall-clock limit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid

from llmfail.events import Event
from llmfail.store.sqlite import SqliteStore

MAX_EVENTS = 200_000
PROCESSES = 4


def request_event(n: int) -> Event:
    """The `request` outcome row the engine writes after every answered request."""
    return Event(
        type="request",
        ts=time.time(),
        request_id=uuid.uuid4().hex[:16],
        chain="bench",
        model="bench/ok-a",
        latency_ms=1.25,
        data={
            "ok": True,
            "answered_by": "bench/ok-a",
            "failovers": 0,
            "ttft_ms": 1.2,
            "attempts": 1,
            "panic": False,
            "usage": {"input_tokens": 5, "output_tokens": 1},
            "n": n,
        },
    )


def write_for(
    path: str, seconds: float, start_at: float, results: multiprocessing.Queue[tuple[int, float]] | None
) -> tuple[int, float]:
    """Append events one at a time until `seconds` pass; (count, elapsed)."""
    store = SqliteStore(path)
    while time.time() < start_at:  # every writer starts together
        time.sleep(0.001)
    count, began = 0, time.perf_counter()
    stop = began + seconds
    while count < MAX_EVENTS and time.perf_counter() < stop:
        store.append([request_event(count)])
        count += 1
    elapsed = time.perf_counter() - began
    store.close()
    if results is not None:
        results.put((count, elapsed))
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="llmfail-state-")

    single_db = os.path.join(folder, "single.db")
    SqliteStore(single_db).close()
    count, elapsed = write_for(single_db, args.seconds, 0.0, None)
    single_eps = count / elapsed

    multi_db = os.path.join(folder, "multi.db")
    SqliteStore(multi_db).close()
    ctx = multiprocessing.get_context("spawn")  # no connection carried across fork()
    queue: multiprocessing.Queue[tuple[int, float]] = ctx.Queue()
    start_at = time.time() + 1.5  # spawn start-up (imports) happens before the clock starts
    workers = [ctx.Process(target=write_for, args=(multi_db, args.seconds, start_at, queue)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    written = sum(c for c, _ in outcomes)
    multi_eps = written / max(e for _, e in outcomes)
    with sqlite3.connect(multi_db) as conn:
        found = conn.execute("SELECT count(*) FROM events").fetchone()[0]

    store = SqliteStore(os.path.join(folder, "lookup.db"))
    now = time.time()
    for i in range(100):
        store.record_failure(
            f"other/model-{i}", now=now, kind="transient", status=503, bench_for=3600.0 if i % 2 else None
        )
    store.record_failure("bench/busy-a", now=now, kind="transient", status=503, bench_for=3600.0)
    keys = ["bench/busy-a", "bench/ok-b", "bench/ok-c"]
    for _ in range(1000):
        store.states(keys)
    calls, began = 0, time.perf_counter()
    while calls < 200_000 and time.perf_counter() - began < args.seconds:
        store.states(keys)
        calls += 1
    lookup_us = (time.perf_counter() - began) / calls * 1e6
    store.close()

    print(
        json.dumps(
            {
                "single_eps": single_eps,
                "single_events": count,
                "multi_eps": multi_eps,
                "multi_events": written,
                "lost": written - found,
                "processes": PROCESSES,
                "lookup_us": lookup_us,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
