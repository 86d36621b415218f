"""The Redis store's costs: round trips per request, bench propagation across processes, `stats` on 1M events.

    python benchmarks/redis_roundtrips.py [--requests 300] [--trials 100] [--events 1000000]

Starts its own `redis-server` on a free loopback port (`--save '' --appendonly no`)
and the local benchmark server (server.py), then prints one JSON line per figure:

- **round trips per request** for the healthy, benched-skip and failover cases
  of overhead.py (same chains), an `Engine` on `RedisStore`, requests one after
  another: every command the engine's connections send is counted with
  `MONITOR` (attributed by connection, so the cache's background re-reads,
  which run on a connection of their own, are reported apart), after a warm-up.
  Target: healthy <= 1.
- **bench propagation**: a reader process polls `states()` (cached, as the engine
  does); this process benches the model; the delay until the reader sees it,
  p50/p99 over `--trials`, with pub/sub delivered and with every message lost
  (only the 250 ms re-read can notice). Target: < 1 s. run.py calls
  `propagation` too (fewer trials), for its rows beside SQLite.
- **`stats` on `--events` events over 24 h**: `llmfail.stats.model_stats` (what
  `stats` and the dashboard call) for the windows stats_speed.py uses, best of
  3. Target: < 300 ms.

Requests/s on Redis beside SQLite are run.py's rows (overhead.py's llmfail
client with `--db redis://…`, in the same interleaved rounds as the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis
from server import serve

from llmfail.events import Event
from llmfail.store.redis import RedisStore

CHAINS = {
    "healthy": ["ok-a", "ok-b", "ok-c"],
    "benched": ["busy-a", "ok-b", "ok-c"],
    "failover": ["toolarge-a", "ok-b", "ok-c"],
}
MESSAGES = [{"role": "user", "content": "ping"}]


SERVER_BINARIES = ("redis-server", "valkey-server")


def server_binary() -> str | None:
    """The first Redis-compatible server on PATH, or None (the Redis figures are then skipped)."""
    for name in SERVER_BINARIES:
        if found := shutil.which(name):
            return found
    return None


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    """A private server on a free loopback port, nothing written to disk; run.py starts its own with this too."""
    import socket

    binary = server_binary()
    if binary is None:
        raise RuntimeError("no redis-server or valkey-server on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(250):
            try:
                client.ping()
                return proc, port
            except redis.ConnectionError:
                if proc.poll() is not None:
                    break
                time.sleep(0.02)
    finally:
        client.close()
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{binary} did not start on port {port}")


class Monitor:
    """Every command the server receives, with the connection it came on (`MONITOR`)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.commands: list[tuple[str, str]] = []
        self._client = redis.Redis(port=port, decode_responses=True)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                text = command["command"]
                if text == "ECHO monitor-stop":
                    return
                self.commands.append((f"{command['client_address']}:{command['client_port']}", text.split()[0]))

    def stop(self) -> dict[str, str]:
        """Stop; returns address -> client name of every connection now open."""
        names = {c["addr"]: c["name"] for c in self._client.client_list()}
        self._client.echo("monitor-stop")
        self._thread.join(5)
        self._client.close()
        return names


async def roundtrips(port: int, base: str, case: str, requests: int, namespace: str) -> dict[str, Any]:
    from llmfail.config import parse_config
    from llmfail.engine import Engine

    entries = ", ".join(f"bench/{m}" for m in CHAINS[case])
    config = parse_config(
        f"providers:\n  bench: {{type: openai, base_url: '{base}'}}\nchains:\n  bench: [{entries}]\n", "<bench>"
    )
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", namespace=namespace)
    if case == "benched":
        store.record_failure(
            f"bench/{CHAINS[case][0]}", now=time.time(), kind="transient", status=503, bench_for=3600.0
        )
    engine = Engine(config, store)
    try:
        for _ in range(20):  # warm-up: connections, scripts loaded, cache listener subscribed, prune offered
            await engine.complete("bench", MESSAGES)
        await asyncio.sleep(0.3)
        monitor = Monitor(port)
        began = time.perf_counter()
        for _ in range(requests):
            await engine.complete("bench", MESSAGES)
        elapsed = time.perf_counter() - began
        names = monitor.stop()
    finally:
        await engine.aclose()
        store.close()
    by_name: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    for addr, command in monitor.commands:
        name = names.get(addr, "?")
        by_name[name] += 1
        if name == "llmfail":
            commands[command] += 1
    return {
        "figure": "round trips per request",
        "case": case,
        "requests": requests,
        "round_trips": round(by_name["llmfail"] / requests, 3),
        "commands": {k: round(v / requests, 3) for k, v in commands.items()},
        "background_per_s": round(by_name["llmfail-cache"] / elapsed, 1),
        "target": "<= 1" if case == "healthy" else None,
        "ok": by_name["llmfail"] / requests <= 1 if case == "healthy" else None,
    }


#: The other host: the same reader script as the cross-host test's.
READER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "redis_bench_reader.py")


def propagation(port: int, trials: int, messages: str) -> dict[str, Any]:
    url, namespace = f"redis://127.0.0.1:{port}/0", f"prop-{messages}"
    reader = subprocess.Popen([sys.executable, READER, url, namespace, messages], stdout=subprocess.PIPE, text=True)
    writer = RedisStore.from_url(url, namespace=namespace)
    delays = []
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
        for trial in range(trials):
            writer.unbench(None, now=time.time())
            if trial:
                reader.stdout.readline()
            time.sleep(0.02 + random.random() * 0.05)
            at = time.time()
            writer.bench("shared/model", now=at, until=at + 60, manual=True, reason=f"t{trial}", kind=None)
            reason, seen = reader.stdout.readline().split()
            assert reason == f"t{trial}", reason
            delays.append(float(seen) - at)
        at = time.time()
        writer.bench("shared/model", now=at, until=at + 60, manual=True, reason="stop", kind=None, replace=True)
        reader.wait(10)
    finally:
        writer.close()
        if reader.poll() is None:
            reader.kill()
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    return {
        "figure": "bench propagation",
        "pubsub": messages,
        "trials": trials,
        "p50_ms": round(statistics.median(delays) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1),
        "target_ms": 1000,
        "ok": delays[-1] < 1.0,
    }


def stats_speed(port: int, events: int) -> list[dict[str, Any]]:
    import stats_speed as sqlite_bench

    from llmfail.config import parse_config
    from llmfail.stats import model_stats

    config = parse_config(sqlite_bench.CONFIG, "bench.yaml")
    chains = {name: chain.models for name, chain in config.chains.items()}
    rng = random.Random(1)
    rows: list[tuple[Any, ...]] = []
    while len(rows) < events:
        chain = "prod" if rng.random() < 0.75 else "cheap"
        rows.extend(sqlite_bench.request_rows(rng, 0.0, chain, chains[chain]))
        if rng.random() < 0.002:
            rows.append(
                (
                    0.0,
                    None,
                    "prod",
                    rng.choice(chains["prod"]),
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
    now = time.time()
    span = 24 * 3600.0
    step = span / len(rows)
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", namespace="stats", timeout=5.0)
    began = time.perf_counter()
    batch: list[Event] = []
    for i, row in enumerate(rows):
        values = dict(zip(sqlite_bench.COLUMNS, row, strict=True))
        values["ts"] = now - span + i * step
        values["data"] = json.loads(values["data"]) if values["data"] else {}
        batch.append(Event(**values))
        if len(batch) == 1000:
            store.append(batch)
            batch = []
    store.append(batch)
    print(f"filled {len(rows)} events in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    out = []
    try:
        for label, length, chain in [
            ("1h", 3600.0, None),
            ("1h --chain prod", 3600.0, "prod"),
            ("24h (every event)", span + 1, None),
            ("24h --chain prod", span + 1, "prod"),
        ]:
            selected = config.chain(chain) if chain else None
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                model_stats(store, since=now - length, now=now, chain=selected, config=config)
                best = min(best, time.perf_counter() - t)
            out.append(
                {
                    "figure": "stats",
                    "window": label,
                    "events": len(rows),
                    "stats_ms": round(best * 1000, 1),
                    "target_ms": 300,
                    "ok": best < 0.3,
                }
            )
    finally:
        store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--events", type=int, default=1_000_000, help="0: skip the stats figure")
    parser.add_argument("--only", choices=["roundtrips", "propagation", "stats"], help="run one part")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="llmfail-redis-bench-")
    server, port = start_redis(workdir)
    failed = False
    try:
        http = args.only in (None, "roundtrips")
        with serve() if http else contextlib.nullcontext(0) as http_port:
            base = f"http://127.0.0.1:{http_port}/v1"
            for case in CHAINS if args.only in (None, "roundtrips") else []:
                row = asyncio.run(roundtrips(port, base, case, args.requests, f"rt-{case}"))
                failed = failed or row["ok"] is False
                print(json.dumps(row), flush=True)
        for messages in ("delivered", "lose") if args.only in (None, "propagation") else ():
            row = propagation(port, args.trials, messages)
            failed = failed or not row["ok"]
            print(json.dumps(row), flush=True)
        if args.events and args.only in (None, "stats"):
            for row in stats_speed(port, args.events):
                failed = failed or not row["ok"]
                print(json.dumps(row), flush=True)
    finally:
        server.kill()
        server.wait()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
