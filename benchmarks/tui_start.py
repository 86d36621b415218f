"""`llmfail tui` start-to-first-paint time and memory on a state DB holding 1,000,000 events.

    python benchmarks/tui_start.py [--events 1000000] [--hours 24] [--repeat 3] [--burst 100000] [--db PATH]

Fills a fresh state DB with `stats_speed.fill` (the engine's event mix, the real
schema and indexes), then starts, each in a fresh interpreter and `--repeat`
times:

- **baseline**: a bare Textual app with one Static, measured in the same run:
  what any Textual app costs to import and paint;
- **dashboard**: what `llmfail tui` does (load the config, open the DB,
  `create_app`, run), until the first data (health table from `model_stats`,
  the newest events, the sparkline) is painted.

Time is from spawning the interpreter to that paint; memory is the process's
peak RSS. The dashboard then takes a burst of `--burst` events written by
another connection (as another process would) and reports how long it took to
show the last one and its peak RSS afterwards: the log keeps 1,000 lines
whatever the burst, so memory stays bounded.

Prints one JSON line per case (medians) and a summary line with the ratios;
exits 1 when the dashboard misses the 1 s or 200 MB target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

TARGET_S = 1.0
TARGET_MB = 200.0
SIZE = (160, 48)


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB.

    Linux: `VmHWM` of /proc/self/status, which starts afresh at exec; `ru_maxrss`
    would carry over the forking parent's peak (the harness holds the filled rows).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------- the measured processes


def child_baseline() -> dict[str, Any]:
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    painted: dict[str, float] = {}

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("hello")

        def on_ready(self) -> None:
            painted["at"] = time.time()
            self.exit()

    Bare().run(headless=True, size=SIZE)
    return {"painted_at": painted["at"], "rss_mb": peak_rss_mb()}


def child_dashboard(db: str, burst: int) -> dict[str, Any]:
    from stats_speed import CONFIG  # the chains the filled events belong to

    from llmfail.config import parse_config
    from llmfail.store import open_store
    from llmfail.tui import create_app

    app = create_app(parse_config(CONFIG, "bench.yaml"), open_store(db))
    result: dict[str, Any] = {}

    def painted() -> None:
        result["painted_at"] = time.time()
        result["rss_at_paint_mb"] = peak_rss_mb()
        if burst:
            threading.Thread(target=write_burst, args=(db, burst, result), daemon=True).start()
            app.set_interval(0.02, caught_up)
        else:
            app.exit()

    def caught_up() -> None:
        target = result.get("last_id")
        if target is not None and app.last_event_id >= target:
            result["burst_shown_after_s"] = time.time() - result["burst_done_at"]
            app.exit()

    app.first_painted = painted  # type: ignore[method-assign]
    app.run(headless=True, size=SIZE)
    result["rss_mb"] = peak_rss_mb()
    return result


def write_burst(db: str, count: int, result: dict[str, Any]) -> None:
    """`count` events from another connection, in transactions of 1,000 (a busy fleet of processes)."""
    from llmfail.events import Event
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    now = time.time()
    ids: list[int] = []
    for start in range(0, count, 1000):
        ids = store.append(
            [
                Event(
                    type="failover",
                    ts=now,
                    chain="prod",
                    model="openai/gpt-4o",
                    next_model="anthropic/claude-sonnet-4-5",
                    kind="transient",
                    detail=f"burst {i}",
                )
                for i in range(start, min(count, start + 1000))
            ]
        )
    result["burst_done_at"] = time.time()
    result["last_id"] = ids[-1] if ids else 0
    store.close()


# --------------------------------------------------------------------------- the harness


def run_child(case: str, db: str, burst: int) -> dict[str, Any]:
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--db", db, "--burst", str(burst)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{case} failed:\n{out.stderr}")
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["first_paint_s"] = figures.pop("painted_at") - spawned
    return figures


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=24.0, help="time span the events are spread over (ending now)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--burst", type=int, default=100_000, help="events written while the dashboard runs (0: none)")
    parser.add_argument("--db", help="reuse this file if it exists (default: a fresh temporary file)")
    parser.add_argument("--child", choices=("baseline", "dashboard"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        figures = child_baseline() if args.child == "baseline" else child_dashboard(args.db, args.burst)
        print(json.dumps(figures))
        return 0

    from stats_speed import fill

    path = args.db or os.path.join(tempfile.mkdtemp(prefix="llmfail-tui-"), "state.db")
    if not os.path.exists(path):
        began = time.perf_counter()
        written = fill(path, args.events, args.hours, time.time())
        print(f"filled {path} with {written} events in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    # The burst rows would pile up across repeats; every repeat starts from the same file.
    pristine = path + ".pristine"
    subprocess.run(["cp", path, pristine], check=True)

    cases: dict[str, list[dict[str, Any]]] = {"baseline": [], "dashboard": []}
    for _ in range(args.repeat):  # interleaved, so a noisy moment hits both
        cases["baseline"].append(run_child("baseline", path, 0))
        subprocess.run(["cp", pristine, path], check=True)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        cases["dashboard"].append(run_child("dashboard", path, args.burst))
    os.remove(pristine)

    base, dash = cases["baseline"], cases["dashboard"]
    summary = {
        "events": args.events,
        "baseline_first_paint_s": median(base, "first_paint_s"),
        "baseline_rss_mb": median(base, "rss_mb"),
        "dashboard_first_paint_s": median(dash, "first_paint_s"),
        "dashboard_rss_at_paint_mb": median(dash, "rss_at_paint_mb"),
        "burst": args.burst,
        "burst_shown_after_s": median(dash, "burst_shown_after_s"),
        "dashboard_rss_after_burst_mb": median(dash, "rss_mb"),
    }
    summary["time_ratio"] = round(summary["dashboard_first_paint_s"] / summary["baseline_first_paint_s"], 2)
    summary["rss_ratio"] = round(summary["dashboard_rss_after_burst_mb"] / summary["baseline_rss_mb"], 2)
    summary["ok"] = (
        summary["dashboard_first_paint_s"] < TARGET_S and summary["dashboard_rss_after_burst_mb"] < TARGET_MB
    )
    print(
        json.dumps(
            {
                "case": "baseline: bare Textual app, one Static",
                "first_paint_s": summary["baseline_first_paint_s"],
                "rss_mb": summary["baseline_rss_mb"],
            }
        )
    )
    print(
        json.dumps(
            {
                "case": f"llmfail tui on {args.events:,} events",
                "first_paint_s": summary["dashboard_first_paint_s"],
                "rss_at_paint_mb": summary["dashboard_rss_at_paint_mb"],
                "burst_shown_after_s": summary["burst_shown_after_s"],
                "rss_after_burst_mb": summary["dashboard_rss_after_burst_mb"],
            }
        )
    )
    print(json.dumps({**summary, "target_s": TARGET_S, "target_mb": TARGET_MB}))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
