"""`llmfail stats` speed on a state DB holding 1,000,000 events.

    python benchmarks/stats_speed.py [--events 1000000] [--hours 24] [--repeat 5] [--db PATH]

Fills a fresh state DB (the real schema and indexes, via `SqliteStore`) with
the engine's event mix for a chain of four models over `--hours` hours ending
now: answered requests, failed attempts with retries, benches, failovers,
exhaustions and half-open probes. Then, for a few windows, it times
`model_stats` (what `stats`, `stats --json` and the dashboard call) next to a
baseline measured in the same run on the same file: a bare
`SELECT count(*) FROM events WHERE ts >= ? AND ts <= ?` over the same window,
the cheapest query that touches every event in it. Each figure is the best of
`--repeat` runs, with a warm page cache (the dashboard polls the same file).

Prints one JSON line per window:
`{"window", "events_in_window", "stats_ms", "count_ms", "ratio", "target_ms", "ok"}`
and exits 1 when a window's stats time misses the 300 ms target.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from llmfail.config import parse_config
from llmfail.stats import model_stats
from llmfail.store.sqlite import SqliteStore

TARGET_MS = 300.0

CONFIG = """
providers:
  openai: {type: openai}
  anthropic: {type: anthropic}
  local: {type: openai, base_url: http://127.0.0.1:8000/v1}
  gemini: {type: gemini}
chains:
  prod: [openai/gpt-4o, anthropic/claude-sonnet-4-5, gemini/gemini-2.0-flash, local/llama-3.1-8b]
  cheap: [local/llama-3.1-8b, gemini/gemini-2.0-flash]
"""

COLUMNS = (
    "ts",
    "request_id",
    "chain",
    "model",
    "type",
    "kind",
    "status",
    "attempt",
    "benched_until",
    "next_model",
    "latency_ms",
    "detail",
    "data",
)
Row = tuple[Any, ...]


def request_rows(rng: random.Random, ts: float, chain: str, models: list[str]) -> Iterator[Row]:
    """One request's events as the engine writes them: failures walk down the chain."""
    rid = f"{rng.getrandbits(64):016x}"
    failovers = 0
    for index, model in enumerate(models):
        fate = rng.random()
        if fate < 0.8 or (index == len(models) - 1 and fate < 0.97):
            ms = rng.lognormvariate(6.0, 0.6)
            data = {
                "ok": True,
                "answered_by": model,
                "failovers": failovers,
                "ttft_ms": round(ms * 0.4, 1),
                "attempts": index + 1,
                "panic": False,
                "usage": {"input_tokens": 12, "output_tokens": 80},
                "attempt_ms": round(ms, 1),
                "attempt_ttft_ms": round(ms * 0.35, 1),
            }
            yield (
                ts,
                rid,
                chain,
                model,
                "request",
                None,
                None,
                None,
                None,
                None,
                ms * 1.05,
                None,
                json.dumps(data, separators=(",", ":")),
            )
            return
        kind, status = rng.choice([("transient", 503), ("rate_limited", 429), ("timeout", None), ("transient", 529)])
        yield (
            ts,
            rid,
            chain,
            model,
            "attempt_failed",
            kind,
            status,
            1,
            None,
            None,
            rng.uniform(20, 900),
            "HTTP 503: upstream overloaded",
            None,
        )
        if rng.random() < 0.3:
            yield (
                ts,
                rid,
                chain,
                model,
                "retry",
                kind,
                status,
                2,
                None,
                None,
                None,
                "waiting 0.180s",
                '{"wait_s":0.18}',
            )
            yield (
                ts,
                rid,
                chain,
                model,
                "attempt_failed",
                kind,
                status,
                2,
                None,
                None,
                rng.uniform(20, 900),
                "HTTP 503: upstream overloaded",
                None,
            )
        if rng.random() < 0.2:
            yield (
                ts,
                rid,
                chain,
                model,
                "benched",
                kind,
                status,
                None,
                ts + 30,
                None,
                None,
                "overloaded",
                '{"bench_count":1,"probe":false}',
            )
        if index + 1 < len(models):
            failovers += 1
            yield (ts, rid, chain, model, "failover", kind, None, None, None, models[index + 1], None, None, None)
    yield (ts, rid, chain, None, "exhausted", "transient", 503, None, None, None, None, "every entry failed", None)
    yield (
        ts,
        rid,
        chain,
        None,
        "request",
        "transient",
        503,
        None,
        None,
        None,
        900.0,
        None,
        '{"ok":false,"answered_by":null,"failovers":3}',
    )


def fill(path: str, events: int, hours: float, now: float, seed: int = 1) -> int:
    """Write about `events` rows spread evenly over `hours` hours before `now`; returns the count."""
    config = parse_config(CONFIG, "bench.yaml")
    chains = {name: chain.models for name, chain in config.chains.items()}
    SqliteStore(path).close()  # the real schema, migrations and indexes
    rng = random.Random(seed)
    rows: list[Row] = []
    while len(rows) < events:
        chain = "prod" if rng.random() < 0.75 else "cheap"
        rows.extend(request_rows(rng, 0.0, chain, chains[chain]))
        if rng.random() < 0.002:
            model = rng.choice(chains["prod"])
            rows.append(
                (
                    0.0,
                    None,
                    "prod",
                    model,
                    "probe",
                    None,
                    None,
                    None,
                    None,
                    None,
                    300.0,
                    None,
                    '{"ok":true,"recovered":true}',
                )
            )
    del rows[events:]
    span = hours * 3600.0
    step = span / len(rows)
    timed = [(now - span + i * step, *row[1:]) for i, row in enumerate(rows)]
    conn = sqlite3.connect(path)
    try:
        conn.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", timed)
        conn.commit()
    finally:
        conn.close()
    return len(timed)


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=24.0, help="time span the events are spread over")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", help="reuse this file if it exists (default: a fresh temporary file)")
    args = parser.parse_args()
    now = time.time()
    directory = tempfile.mkdtemp(prefix="llmfail-stats-")
    path = args.db or os.path.join(directory, "state.db")
    if not os.path.exists(path):
        began = time.perf_counter()
        written = fill(path, args.events, args.hours, now)
        print(f"filled {path} with {written} events in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    else:
        with sqlite3.connect(path) as conn:
            now = conn.execute("SELECT max(ts) FROM events").fetchone()[0]
    config = parse_config(CONFIG, "bench.yaml")
    store = SqliteStore(path)
    failed = False
    try:
        windows = [
            ("1h", 3600.0, None),
            ("1h --chain prod", 3600.0, "prod"),
            (f"{args.hours:g}h (every event)", args.hours * 3600.0 + 1, None),
            (f"{args.hours:g}h --chain prod", args.hours * 3600.0 + 1, "prod"),
        ]
        for label, length, chain in windows:
            since = now - length
            with store._read() as conn:

                def count() -> object:
                    return conn.execute(
                        "SELECT count(*) FROM events WHERE ts >= ? AND ts <= ?", (since, now)
                    ).fetchone()

                in_window = int(
                    conn.execute("SELECT count(*) FROM events WHERE ts >= ? AND ts <= ?", (since, now)).fetchone()[0]
                )
            count_ms = best_ms(count, args.repeat)
            selected = config.chain(chain) if chain else None
            stats_ms = best_ms(
                lambda: model_stats(store, since=since, now=now, chain=selected, config=config), args.repeat
            )
            ok = stats_ms < TARGET_MS
            failed = failed or not ok
            print(
                json.dumps(
                    {
                        "window": label,
                        "events_in_window": in_window,
                        "stats_ms": round(stats_ms, 1),
                        "count_ms": round(count_ms, 1),
                        "ratio": round(stats_ms / max(count_ms, 1e-3), 2),
                        "target_ms": TARGET_MS,
                        "ok": ok,
                    }
                )
            )
    finally:
        store.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
