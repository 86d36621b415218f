"""How long `llmfail replay` takes on a day of traffic: 100,000 requests in the event log.

    python benchmarks/replay.py [--requests 100000] [--repeat 3] [--full]

Set-up (not timed): `simulate --db` writes a day of traffic on a 2-entry chain
into a fresh SQLite state DB (as production would: a request row per request,
attempt, failover and bench rows), 100,000 requests over 24 hours with a 503
outage, a stretch of 429s that ask for 20 s and a stretch of timeouts.

Timed: the whole command, `llmfail replay --since 25h --json` in a fresh
process (start-up, reading the window, deriving the scenario, the "then"
report, and the simulation of today's config, which by default sends at most
10,000 requests: `--max-requests`), median of `--repeat` runs; and, in this
process, each step on its own. The baseline, measured in the same run, is
`llmfail stats --since 25h --json` over the same log: a pure read of the same
window. `--full` also times one `--max-requests 0` run (all 100,000 simulated).
The target is < 10 s for the whole command. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from llmfail.config import parse_config
from llmfail.simulate import Plan, parse_scenario, simulate
from llmfail.simulate.replay import MAX_REQUESTS, Span, derive, read_window, thin, timeline_step
from llmfail.store.sqlite import SqliteStore

CONFIG = """
providers:
  a: {type: openai, base_url: "https://a.example/v1", api_key_env: A_KEY}
  b: {type: openai, base_url: "https://b.example/v1", api_key_env: B_KEY}
chains:
  main: [a/primary, b/secondary]
"""

TARGET_S = 10.0


def day(requests: int) -> dict[str, Any]:
    """A day at a steady rate with three bad stretches."""
    return {
        "chain": "main",
        "rate": f"{requests / 86400:.6f}/s",
        "duration": "24h",
        "phases": [
            {"at": "0h", "name": "healthy", "faults": []},
            {"at": "6h", "name": "outage", "faults": ["a/primary:503=0.9"]},
            {"at": "7h", "name": "calm", "faults": []},
            {"at": "12h", "name": "rate limits", "faults": ["a/primary:429@20s=0.5"]},
            {"at": "13h", "name": "calm again", "faults": []},
            {"at": "18h", "name": "timeouts", "faults": ["a/primary:timeout=0.3"]},
            {"at": "18h30m", "name": "recovered", "faults": []},
        ],
    }


def cli(folder: str, db: str, *args: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", "--config", os.path.join(folder, "chains.yaml"), "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"llmfail {' '.join(args)} failed: {done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time one run simulating every request")
    args = parser.parse_args()
    config = parse_config(CONFIG, "benchmark.yaml")
    with tempfile.TemporaryDirectory(prefix="llmfail-replay-bench-") as folder:
        with open(os.path.join(folder, "chains.yaml"), "w", encoding="utf-8") as file:
            file.write(CONFIG)
        db = os.path.join(folder, "state.db")
        began = time.perf_counter()
        written = simulate(config, Plan("main", scenario=parse_scenario(day(args.requests)), seed=1), db=db)
        setup_s = time.perf_counter() - began

        store = SqliteStore(db)
        now = time.time()
        span = Span(now - 25 * 3600, now)
        t0 = time.perf_counter()
        events = read_window(store, span)
        t1 = time.perf_counter()
        derivation = derive(events, "main", config.chain("main").models, span)
        t2 = time.perf_counter()
        scenario = derivation.scenario
        share = min(1.0, MAX_REQUESTS / scenario.requests)
        step = timeline_step(scenario)
        simulate(config, Plan("main", seed=0, scenario=thin(scenario, share)), step=step)
        t3 = time.perf_counter()
        derivation.then(config.chain("main").models, step=step)
        t4 = time.perf_counter()
        store.close()

        replay_s = [cli(folder, db, "replay", "--since", "25h", "--json") for _ in range(args.repeat)]
        stats_s = [cli(folder, db, "stats", "--since", "25h", "--json") for _ in range(args.repeat)]
        full_s = cli(folder, db, "replay", "--since", "25h", "--json", "--max-requests", "0") if args.full else None
    replay_med, stats_med = statistics.median(replay_s), statistics.median(stats_s)
    print(
        json.dumps(
            {
                "requests_in_log": written.requests,
                "events_read": len(events),
                "derived_phases": len(scenario.phases),
                "setup_s": round(setup_s, 1),
                "replay_wall_s": round(replay_med, 2),
                "replay_runs_s": [round(s, 2) for s in replay_s],
                "baseline_stats_wall_s": round(stats_med, 2),
                "ratio_to_baseline": round(replay_med / stats_med, 2),
                "steps_s": {
                    "read_window": round(t1 - t0, 2),
                    "derive": round(t2 - t1, 2),
                    "simulate_now": round(t3 - t2, 2),
                    "then_report": round(t4 - t3, 2),
                },
                "full_simulation_wall_s": round(full_s, 2) if full_s is not None else None,
                "target_s": TARGET_S,
                "holds": replay_med < TARGET_S,
                "python": platform.python_version(),
                "load_before": os.getloadavg()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
