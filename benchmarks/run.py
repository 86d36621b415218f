"""Every llmfail benchmark, one table: each figure, its baseline, the ratio, the target, and whether it holds.

    python benchmarks/run.py [--quick] [--markdown]

Runs in about 2.5 minutes on a 2-core machine (`--quick`: about a minute, one
round, shorter runs). Everything talks to 127.0.0.1 only: a local
OpenAI-compatible server (server.py) is started as a subprocess and every
client runs in a process of its own (overhead.py), so imports, pools and CPU
time are measured per client. The llmfail and floor runs are repeated in
interleaved rounds and the median of each figure is reported, so noise from
other work on the machine lands on the baseline and the figure alike.
LiteLLM's rows are skipped, with a note, when it is not installed
(`pip install -e '.[bench]'`).

The Redis rows put llmfail's state store on a `redis-server` this script
starts on a free loopback port (`--save '' --appendonly no`, a throwaway
directory, a fresh namespace per client) and stops at the end: healthy and
failover requests/s at concurrency 32 on Redis against the same client on a
fresh SQLite file (same request count and time limit, interleaved rounds), and
how soon another process sees a bench (redis_roundtrips.py's `propagation`).
They are skipped, with the reason, without a `redis-server`/`valkey-server` on
PATH or the `redis` package (`pip install -e '.[redis]'`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from server import serve  # noqa: E402

PY = sys.executable
CASES = ("healthy", "benched", "failover")
STORE_CASES = ("healthy", "failover")  # the Redis rows: the hot path, and one that writes three events
# Same for both backends: at most this many requests (or seconds) per run, after a short warm-up.
STORE_RUN = ["--seconds", "1.0", "--max-requests", "1500", "--warmup", "100"]


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def overhead(
    port: int,
    client: str,
    case: str,
    transport: str,
    seconds: float | None,
    concurrency: str,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    cmd = [
        PY,
        os.path.join(HERE, "overhead.py"),
        "--port",
        str(port),
        "--client",
        client,
        "--case",
        case,
        "--transport",
        transport,
        "-c",
        concurrency,
        *(["--seconds", str(seconds)] if seconds else []),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        sys.stderr.write(f"run: {client}/{case}/{transport} failed:\n{done.stderr[-2000:]}\n")
        return []
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[int | None, str]]:
    """A `redis-server` of this run's own, stopped at the end: (port, its version), or (None, why the
    Redis rows are skipped)."""
    try:
        import redis_roundtrips
    except ImportError as exc:
        yield None, f"the {exc.name} package is not installed (pip install -e '.[redis]')"
        return
    workdir = tempfile.mkdtemp(prefix="llmfail-bench-redis-")
    try:
        proc, port = redis_roundtrips.start_redis(workdir)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        yield None, str(exc)
        return
    try:
        binary = redis_roundtrips.server_binary() or "redis-server"
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
        found = [w[2:] for w in done.stdout.split() if w.startswith("v=")]
        yield port, f"{os.path.basename(binary)} {found[0] if found else '?'}"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def propagation(port: int, trials: int, messages: str) -> dict[str, Any]:
    """redis_roundtrips.py's measurement; {} (and a note) when it fails, so the other rows still print."""
    import redis_roundtrips

    try:
        return redis_roundtrips.propagation(port, trials, messages)
    except Exception as exc:  # reported; the row shows n/a
        note(f"redis: propagation ({messages}) failed: {type(exc).__name__}: {exc}")
        return {}


def note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def add(
        self,
        name: str,
        figure: float | None,
        unit: str,
        baseline: float | None = None,
        baseline_name: str = "",
        target: str = "",
        holds: Callable[[float, float | None], bool] | None = None,
        shown: str | None = None,
    ) -> None:
        """One row; `shown` replaces the value's text (the verdict still judges `figure`)."""
        fig = "n/a" if figure is None else shown or f"{_num(figure)} {unit}".strip()
        base = "" if baseline is None else f"{_num(baseline)} ({baseline_name})" if baseline_name else _num(baseline)
        ratio = ""
        if figure is not None and baseline:
            ratio = f"{figure / baseline:.2f}x"
        verdict = ""
        if holds is not None:
            verdict = "n/a" if figure is None else ("yes" if holds(figure, baseline) else "NO")
        self.rows.append((name, fig, base, ratio, target, verdict))

    def skip(self, name: str, target: str, reason: str) -> None:
        self.rows.append((name, "skipped", reason, "", target, "n/a"))

    def render(self, markdown: bool) -> str:
        head = ("figure", "value", "baseline", "ratio", "target", "holds")
        rows = [head, *self.rows]
        if markdown:
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in self.rows]
            return "\n".join(lines)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        out = []
        for index, row in enumerate(rows):
            out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if index == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, shorter runs (about a minute)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    parser.add_argument("--json", dest="json_path", help="also write every raw figure to this file")
    args = parser.parse_args()
    rounds, seconds = (1, 1.0) if args.quick else (3, 1.2)
    began = time.perf_counter()
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[0]
    note(f"benchmarks: {os.cpu_count()} cores, load average {load_before} before the run")

    # ------------------------------------------------------------------ overhead
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    main_set = [
        ("aiohttp", "healthy", "default"),
        ("aiohttp", "failover", "default"),
        *[("llmfail", case, "default") for case in CASES],
    ]
    reference_set = [
        ("httpx", "healthy", "default"),
        ("httpx", "failover", "default"),
        ("httpx", "healthy", "aiohttp"),
        ("httpx", "failover", "aiohttp"),
        *[("llmfail", case, "httpx") for case in CASES],
    ]
    have_litellm = version("litellm") is not None
    with serve() as port:
        for index in range(rounds):
            note(f"overhead: round {index + 1}/{rounds}")
            for client, case, transport in main_set:
                for r in overhead(port, client, case, transport, seconds, "1,32"):
                    runs[(client, case, transport, r["concurrency"])].append(r)
        note("overhead: reference clients (raw httpx; llmfail on httpx's own transport)")
        for client, case, transport in reference_set:
            for r in overhead(port, client, case, transport, seconds, "1,32"):
                runs[(client, case, transport, r["concurrency"])].append(r)
        if have_litellm:
            note("overhead: LiteLLM Router")
            for case in CASES:
                for r in overhead(port, "litellm", case, "default", max(seconds, 1.5), "1,32"):
                    runs[("litellm", case, "default", r["concurrency"])].append(r)
        else:
            note("overhead: LiteLLM is not installed; its rows are skipped (pip install -e '.[bench]')")

        store_runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        propagations: dict[str, dict[str, Any]] = {}
        with private_redis() as (redis_port, redis_note):
            if redis_port is None:
                note(f"redis: rows skipped: {redis_note}")
            else:
                redis_url = f"redis://127.0.0.1:{redis_port}/0"
                for index in range(rounds):
                    note(f"redis: llmfail on Redis beside SQLite, round {index + 1}/{rounds} ({redis_note})")
                    for case in STORE_CASES:
                        for backend in ("sqlite", "redis"):
                            db = ["--db", redis_url, "--namespace", f"bench-{case}-{index}"] * (backend == "redis")
                            store_runs[(backend, case)] += overhead(
                                port, "llmfail", case, "default", None, "32", [*STORE_RUN, *db]
                            )
                for messages, trials in (("delivered", 30 if args.quick else 100), ("lose", 5 if args.quick else 10)):
                    note(f"redis: bench propagation to another process, pub/sub {messages}, {trials} trials")
                    propagations[messages] = propagation(redis_port, trials, messages)

        note("start-up")
        done = subprocess.run(
            [PY, os.path.join(HERE, "startup.py"), "--runs", "5" if args.quick else "7"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        startup = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        if done.returncode != 0:
            note(done.stderr[-2000:])

    note("state throughput")
    done = subprocess.run(
        [PY, os.path.join(HERE, "state.py"), "--seconds", "1" if args.quick else "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    state = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
    if done.returncode != 0:
        note(done.stderr[-2000:])

    simulate: dict[str, Any] = {}
    simulate_script = os.path.join(HERE, "simulate_speed.py")
    if os.path.exists(simulate_script):
        note("simulate speed (benchmarks/simulate_speed.py)")
        done = subprocess.run([PY, simulate_script], capture_output=True, text=True, timeout=150, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            simulate = json.loads(lines[-1])
        else:
            note(f"simulate_speed.py failed: {done.stderr[-1000:]}")

    # ------------------------------------------------------------------ the table
    def med(client: str, case: str, c: int, key: str, transport: str = "default") -> float | None:
        values = [r[key] for r in runs.get((client, case, transport, c), []) if r["requests"] and not r["errors"]]
        return statistics.median(values) if values else None

    def bad(client: str, case: str, transport: str = "default") -> list[str]:
        return [
            f"{r['client']}/{r['case']}/c={r['concurrency']}: {r['errors']} errors, first: {r['first_error']}"
            for c in (1, 32)
            for r in runs.get((client, case, transport, c), [])
            if r["errors"]
        ]

    problems = [p for client, case, transport in main_set + reference_set for p in bad(client, case, transport)]
    problems += [p for case in CASES for p in bad("litellm", case)]

    t = Table()
    at_least = lambda target: lambda fig, base: base is not None and fig / base >= target  # noqa: E731
    for c, target in ((32, 0.5), (1, 0.7)):
        t.add(
            f"(b) llmfail healthy, c={c}, req/s",
            med("llmfail", "healthy", c, "rps"),
            "",
            med("aiohttp", "healthy", c, "rps"),
            "raw aiohttp",
            f">= {target}x",
            at_least(target),
        )
    for c in (32, 1):
        t.add(
            f"(c) llmfail primary benched, c={c}, req/s",
            med("llmfail", "benched", c, "rps"),
            "",
            med("llmfail", "healthy", c, "rps"),
            "(b)",
            ">= 0.95x",
            at_least(0.95),
        )
    # Throughput swings with whatever else runs on the machine; CPU per request does not.
    t.add(
        "(c) llmfail primary benched, c=32, CPU/req",
        med("llmfail", "benched", 32, "cpu_us"),
        "us",
        med("llmfail", "healthy", 32, "cpu_us"),
        "(b) us/req",
        "<= 1.05x",
        at_least_inverse(1.05),
    )
    t.add(
        "(d) llmfail primary 429 -> failover, c=32, req/s",
        med("llmfail", "failover", 32, "rps"),
        "",
        med("aiohttp", "failover", 32, "rps"),
        "aiohttp fallback loop",
        ">= 0.5x",
        at_least(0.5),
    )
    t.add(
        "(d) llmfail primary 429 -> failover, c=1, req/s",
        med("llmfail", "failover", 1, "rps"),
        "",
        med("aiohttp", "failover", 1, "rps"),
        "aiohttp fallback loop",
    )
    for case, floor_case, floor_name in (
        ("healthy", "healthy", "raw aiohttp"),
        ("benched", "healthy", "raw aiohttp"),
        ("failover", "failover", "aiohttp fallback loop"),
    ):
        ours, floor = med("llmfail", case, 32, "cpu_us"), med("aiohttp", floor_case, 32, "cpu_us")
        added = ours - floor if ours is not None and floor is not None else None
        t.add(
            f"added CPU per request, {case}, c=32",
            added,
            "us",
            floor,
            f"{floor_name} us/req",
            "< 150 us",
            lambda fig, base: fig < 150,
        )
    for case in CASES:
        for c in (32, 1):
            label = {"healthy": "(b)", "benched": "(c)", "failover": "(d)"}[case]
            t.add(
                f"{label} p50 / p99 ms, c={c}",
                med("llmfail", case, c, "p50_ms"),
                "ms",
                med("aiohttp", "failover" if case == "failover" else "healthy", c, "p50_ms"),
                "aiohttp p50",
                shown=f"{_num(med('llmfail', case, c, 'p50_ms') or 0)} / "
                f"{_num(med('llmfail', case, c, 'p99_ms') or 0)} ms",
            )
    for client, transport, label in (
        ("httpx", "default", "raw httpx"),
        ("httpx", "aiohttp", "raw httpx on llmfail's aiohttp transport"),
    ):
        for case in ("healthy", "failover"):
            t.add(
                f"{label}, {case}, c=32, req/s",
                med(client, case, 32, "rps", transport),
                "",
                med("aiohttp", case, 32, "rps"),
                "aiohttp",
            )
    for case in CASES:
        t.add(
            f"llmfail on httpx's own transport (before), {case}, c=32, req/s",
            med("llmfail", case, 32, "rps", "httpx"),
            "",
            med("llmfail", case, 32, "rps"),
            "llmfail now",
        )
        t.add(
            f"llmfail on httpx's own transport (before), {case}, c=32, CPU/req",
            med("llmfail", case, 32, "cpu_us", "httpx"),
            "us",
            med("llmfail", case, 32, "cpu_us"),
            "llmfail now",
        )
    if have_litellm:
        for case in CASES:
            ours, theirs = med("llmfail", case, 32, "rps"), med("litellm", case, 32, "rps")
            t.add(
                f"llmfail vs LiteLLM Router, {case}, c=32, req/s", ours, "", theirs, "LiteLLM", ">= 10x", at_least(10)
            )
            ours99, theirs99 = med("llmfail", case, 32, "p99_ms"), med("litellm", case, 32, "p99_ms")
            t.add(
                f"llmfail vs LiteLLM Router, {case}, c=32, p99 ms",
                ours99,
                "ms",
                theirs99,
                "LiteLLM",
                "lower",
                lambda fig, base: base is not None and fig < base,
            )
        for case in CASES:
            # CPU per request is steady when other work shares the machine; its ratio is the
            # throughput ratio on an otherwise idle core.
            t.add(
                f"LiteLLM Router CPU per request, {case}, c=32",
                med("litellm", case, 32, "cpu_us"),
                "us",
                med("llmfail", case, 32, "cpu_us"),
                "llmfail us/req",
            )
        for case in CASES:
            t.add(
                f"LiteLLM Router, {case}, c=1, req/s",
                med("litellm", case, 1, "rps"),
                "",
                med("llmfail", case, 1, "rps"),
                "llmfail",
            )

    def store_med(backend: str, case: str, key: str) -> float | None:
        values = [r[key] for r in store_runs.get((backend, case), []) if r["requests"] and not r["errors"]]
        return statistics.median(values) if values else None

    problems += [
        f"{backend} store: {r['case']}: {r['errors']} errors, first: {r['first_error']}"
        for (backend, _), rs in store_runs.items()
        for r in rs
        if r["errors"]
    ]
    for case in STORE_CASES:
        name = f"Redis store: llmfail {case}, c=32, req/s"
        if redis_port is None:
            t.skip(name, ">= 0.8x", redis_note)
            continue
        t.add(
            name,
            store_med("redis", case, "rps"),
            "",
            store_med("sqlite", case, "rps"),
            "SQLite store",
            ">= 0.8x",
            at_least(0.8),
        )
    for case in STORE_CASES if redis_port is not None else ():
        # llmfail's own process only: the SQLite store's work is all in it, the Redis store's partly in redis-server.
        t.add(
            f"Redis store: llmfail {case}, c=32, CPU/req (client)",
            store_med("redis", case, "cpu_us"),
            "us",
            store_med("sqlite", case, "cpu_us"),
            "SQLite store us/req",
        )
    for messages, label in (
        ("delivered", "bench seen by another process"),
        ("lose", "bench seen by another process, every pub/sub message lost"),
    ):
        name = f"Redis store: {label}, p50 / p99"
        if redis_port is None:
            t.skip(name, "< 1 s", redis_note)
            continue
        row = propagations.get(messages, {})
        # p99 of <= 100 trials is the slowest one: every trial within the second.
        t.add(
            name,
            row.get("p99_ms"),
            "ms",
            None,
            "",
            "< 1 s",
            lambda fig, base: fig < 1000,
            shown=f"{_num(row.get('p50_ms', 0))} / {_num(row.get('p99_ms', 0))} ms ({row.get('trials')} trials)",
        )
    floor = startup.get("floor")
    t.add(
        "start-up: llmfail --help, s",
        startup.get("help"),
        "s",
        floor,
        "import typer, rich",
        "<= 1.3x",
        at_least_inverse(1.3),
    )
    t.add(
        "start-up: llmfail ls-benched, s",
        startup.get("ls-benched"),
        "s",
        floor,
        "import typer, rich",
        "<= 1.5x",
        at_least_inverse(1.5),
    )
    t.add(
        "start-up: llmfail run (one request), s",
        startup.get("run"),
        "s",
        floor,
        "import typer, rich",
        "<= 2.5x",
        at_least_inverse(2.5),
    )
    t.add(
        "start-up: llmfail run on the engine's aiohttp transport, s",
        startup.get("run-aiohttp"),
        "s",
        startup.get("run"),
        "llmfail run",
    )
    t.add(
        "state: events/s, 1 process",
        state.get("single_eps"),
        "ev/s",
        None,
        "",
        ">= 5,000",
        lambda fig, base: fig >= 5000,
    )
    t.add(
        f"state: events/s, {state.get('processes', 4)} processes at once (total)",
        state.get("multi_eps"),
        "ev/s",
        state.get("single_eps"),
        "1 process",
    )
    t.add(
        "state: bench lookup per request (3 keys)",
        state.get("lookup_us"),
        "us",
        None,
        "",
        "< 50 us",
        lambda fig, base: fig < 50,
    )
    if simulate:
        t.add(
            "simulate: simulated requests per wall-second",
            simulate.get("simulated_requests_per_s"),
            "req/s",
            simulate.get("baseline_fake_transport_per_s"),
            "fake transport alone",
            ">= 5,000",
            lambda fig, base: fig >= 5000,
        )
    else:
        t.add("simulate: simulated requests per wall-second", None, "", None, "", ">= 5,000 (no simulate_speed.py)")

    print(t.render(args.markdown))
    versions = {name: version(name) for name in ("llmfail", "httpx", "aiohttp", "litellm", "typer", "rich")}
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[0]
    print()
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; "
        f"load average {load_before} before, {load_after} after; {time.perf_counter() - began:.0f} s"
    )
    print(
        "versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
        + (f"; {redis_note} (this run's own, --save '' --appendonly no)" if redis_port is not None else "")
    )
    per_request = {
        f"{k[0]}/{k[1]}/c={k[3]}": {m: round(n / max(1, r[-1]["requests"]), 2) for m, n in r[-1]["hits"].items()}
        for k, r in runs.items()
        if k[1] in ("failover", "benched") and k[2] == "default" and r
    }
    print(
        "server hits per model per request (failover: the primary must be 1.0; benched: absent): "
        + "; ".join(f"{k} {v}" for k, v in sorted(per_request.items()))
    )
    blocked = sorted({h for rs in runs.values() for r in rs for h in r.get("blocked_hosts", [])})
    if blocked:
        print("refused non-loopback lookups: " + ", ".join(blocked))
    for problem in problems:
        print("errors: " + problem)
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(
                {
                    "overhead": {"/".join(map(str, k)): v for k, v in runs.items()},
                    "startup": startup,
                    "state": state,
                    "simulate": simulate,
                    "versions": versions,
                    "redis": {
                        "server": redis_note if redis_port is not None else None,
                        "skipped": redis_note if redis_port is None else None,
                        "store": {"/".join(k): v for k, v in store_runs.items()},
                        "propagation": propagations,
                    },
                },
                f,
                indent=1,
            )
    return 0


def at_least_inverse(limit: float) -> Callable[[float, float | None], bool]:
    """Holds when figure / baseline <= limit (lower is better)."""
    return lambda fig, base: base is not None and fig / base <= limit


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
