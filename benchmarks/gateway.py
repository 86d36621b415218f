"""`llmfail serve` against a direct request and LiteLLM's proxy: requests/s and p50/p99 at c=1 and c=32.

    python benchmarks/gateway.py [--seconds 2] [--rounds 1] [--markdown] [--no-litellm]

The same local fake (server.py) stands behind everything, and the same client
(overhead.py's raw aiohttp, one process per run) drives each side:

    direct    the client asks the fake itself: for the failover path, the
              hand-written "on 429 ask the next model" loop (two requests)
    llmfail   one request to `llmfail serve` (a subprocess, fresh SQLite state,
              every event written, its access log on), model = the chain
    litellm   one request to LiteLLM's proxy (`litellm --config FILE`, offline:
              a local price list, no telemetry), model = the first deployment,
              `fallbacks` to the others and no retries

Paths (the chain has three entries): `healthy` (ok-a answers) and `failover`
(toolarge-a answers every request with a 429 that llmfail never benches, and
LiteLLM runs with cooldowns disabled, so every request really tries the primary
and falls back; the fake's hit counts confirm it).

Added latency is the gateway's p50 minus the direct p50, at c=1. LiteLLM's proxy
needs `litellm[proxy]`, which pins rich<14 while Textual needs rich>=14.2, so it
does not belong in llmfail's venv: install it in a venv of its own and name its
`litellm` with `--litellm`:

    python3 -m venv /tmp/litellm-proxy && /tmp/litellm-proxy/bin/pip install 'litellm[proxy]'
    python benchmarks/gateway.py --litellm /tmp/litellm-proxy/bin/litellm

Without `--litellm`, the `litellm` beside this Python is used when its proxy's
dependencies import here; otherwise LiteLLM's rows are skipped, with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from run import overhead  # noqa: E402
from server import serve  # noqa: E402

from tests.serve_process import ServeProcess  # noqa: E402

CASES = {"healthy": ["ok-a", "ok-b", "ok-c"], "failover": ["toolarge-a", "ok-b", "ok-c"]}
LITELLM_KEY = "sk-bench-master"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llmfail_serve(fake: int, case: str, workdir: Path) -> Iterator[str]:
    entries = ", ".join(f"bench/{m}" for m in CASES[case])
    config = workdir / f"llmfail-{case}.yaml"
    config.write_text(
        f"providers:\n  bench: {{type: openai, base_url: 'http://127.0.0.1:{fake}/v1'}}\n"
        f"chains:\n  bench: [{entries}]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFAIL_")}
    process = ServeProcess(
        config,
        workdir / f"state-{case}.db",
        workdir / f"serve-{case}.log",
        env=env,
        args=("--max-concurrency", "1024"),
    ).start()
    try:
        yield process.url + "/v1"
    finally:
        process.stop()


@contextlib.contextmanager
def litellm_proxy(litellm: str, fake: int, case: str, workdir: Path) -> Iterator[str]:
    config = workdir / f"litellm-{case}.yaml"
    lines = ["model_list:"]
    for name, model in zip("abc", CASES[case], strict=True):
        lines += [
            f"  - model_name: {name}",
            f"    litellm_params: {{model: openai/{model}, api_base: 'http://127.0.0.1:{fake}/v1', api_key: sk-x}}",
        ]
    lines += [
        "router_settings:",
        "  num_retries: 0",
        '  fallbacks: [{"a": ["b", "c"]}]',
        f"  disable_cooldowns: {'true' if case == 'failover' else 'false'}",
        "litellm_settings: {telemetry: false, set_verbose: false}",
    ]
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": LITELLM_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    with (workdir / f"litellm-{case}.log").open("wb") as log:
        proc = subprocess.Popen(
            [litellm, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"LiteLLM's proxy did not start: see {workdir}/litellm-{case}.log") from None
                time.sleep(0.25)
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def litellm_command(given: str | None) -> tuple[str, str | None]:
    """The `litellm` executable to run, and why LiteLLM's rows are skipped (None: they are not)."""
    if given:
        return given, None if os.access(given, os.X_OK) else f"skipped: {given} is not an executable"
    beside = os.path.join(os.path.dirname(sys.executable), "litellm")
    missing = [name for name in ("litellm", "fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:  # looked up, not imported: importing litellm would try to download its price list
        return beside, f"skipped: LiteLLM's proxy cannot run here ({', '.join(missing)} missing); see --litellm"
    return beside, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per run (each concurrency)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median is reported")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--litellm", help="the `litellm` executable of a venv with litellm[proxy]")
    parser.add_argument("--json", dest="json_out", help="write every raw figure to this file")
    args = parser.parse_args()
    litellm, why_not = litellm_command(args.litellm)
    if args.no_litellm:
        why_not = "skipped (--no-litellm)"
    if why_not:
        print(f"gateway: LiteLLM rows {why_not}", file=sys.stderr)
    rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    with serve() as fake, tempfile.TemporaryDirectory(prefix="llmfail-gateway-") as tmp:
        workdir = Path(tmp)
        for case in CASES:
            with contextlib.ExitStack() as stack:
                sides: list[tuple[str, list[str]]] = [("direct", [])]
                url = stack.enter_context(llmfail_serve(fake, case, workdir))
                sides.append(("llmfail serve", ["--url", url, "--model", "bench"]))
                if not why_not:
                    lurl = stack.enter_context(litellm_proxy(litellm, fake, case, workdir))
                    sides.append(("LiteLLM proxy", ["--url", lurl, "--model", "a", "--key", LITELLM_KEY]))
                for _ in range(args.rounds):
                    for side, extra in sides:
                        print(f"gateway: {case} / {side}", file=sys.stderr)
                        client = "gateway" if extra else "aiohttp"
                        for run in overhead(fake, client, case, "default", args.seconds, "1,32", extra):
                            rows.setdefault((case, side, run["concurrency"]), []).append(run)
    report(rows, args.markdown)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({" / ".join(map(str, k)): v for k, v in rows.items()}, indent=1))


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(rows: dict[tuple[str, str, int], list[dict[str, Any]]], markdown: bool) -> None:
    head = ["path", "c", "side", "req/s", "p50 ms", "p99 ms", "errors", "fake hits/req", "vs direct p50"]
    lines = []
    for (case, side, concurrency), runs in rows.items():
        direct = rows.get((case, "direct", concurrency))
        n = sum(r["requests"] for r in runs)
        hits = sum(sum(r["hits"].values()) for r in runs) / n if n else 0.0
        added = median(runs, "p50_ms") - median(direct, "p50_ms") if direct and side != "direct" else None
        lines.append(
            [
                case,
                str(concurrency),
                side,
                f"{median(runs, 'rps'):,.0f}",
                f"{median(runs, 'p50_ms'):.2f}",
                f"{median(runs, 'p99_ms'):.2f}",
                str(sum(r["errors"] for r in runs)),
                f"{hits:.2f}",
                f"+{added:.2f} ms" if added is not None else "",
            ]
        )
    for case in CASES:
        ours, theirs = rows.get((case, "llmfail serve", 32)), rows.get((case, "LiteLLM proxy", 32))
        if ours and theirs:
            ratio = median(ours, "rps") / median(theirs, "rps")
            lines.append([case, "32", "llmfail serve / LiteLLM proxy", f"{ratio:.1f}x", "", "", "", "", ""])
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        for line in [head, *lines]:
            print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average after: {load:.2f}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
