"""Start-up: median wall time of CLI commands, against `python -c "import typer, rich"`.

    python benchmarks/startup.py [--runs 9]

prints one JSON line: {name: median seconds}. `run` sends one real request to
the local benchmark server (server.py); every command gets a throwaway config,
state DB and home directory. Commands that do not exist yet are reported as
null (skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from server import serve  # noqa: E402

BIN = os.path.dirname(sys.executable)
RUN_ARGS = ["ping", "--chain", "bench", "--no-stream", "--quiet"]
RUN_ON_AIOHTTP = """
import sys
import llmfail.run
llmfail.run.one_shot_transport = lambda: None  # the engine's default: aiohttp under httpx's API
sys.argv = ["llmfail", "run", *sys.argv[1:]]
from llmfail.cli import main
main()
"""


def _llmfail() -> list[str]:
    script = os.path.join(BIN, "llmfail")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "llmfail.cli"]


def median_wall(cmd: list[str], env: dict[str, str], runs: int) -> float | None:
    """Median seconds over `runs` (after one unmeasured run that warms the page cache); None if it fails."""
    times: list[float] = []
    for index in range(runs + 1):
        began = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, check=False)
        elapsed = time.perf_counter() - began
        if done.returncode != 0:
            sys.stderr.write(f"startup: {' '.join(cmd[-3:])} exited {done.returncode}: {done.stderr.decode()[-300:]}\n")
            return None
        if index:
            times.append(elapsed)
    return statistics.median(times)


def exists(command: str, env: dict[str, str]) -> bool:
    done = subprocess.run([*_llmfail(), command, "--help"], env=env, capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="llmfail-startup-")
    with serve() as port:
        config = os.path.join(home, "chains.yaml")
        with open(config, "w") as f:
            f.write(
                f"providers:\n  bench: {{type: openai, base_url: 'http://127.0.0.1:{port}/v1'}}\n"
                "chains:\n  bench: [bench/ok-a, bench/ok-b, bench/ok-c]\n"
            )
        env = {
            **os.environ,
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "XDG_STATE_HOME": os.path.join(home, "state"),
            "XDG_DATA_HOME": os.path.join(home, "data"),
            "LLMFAIL_CONFIG": config,
            "LLMFAIL_DB": os.path.join(home, "state.db"),
            "NO_COLOR": "1",
        }
        for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env.pop(name, None)  # only 127.0.0.1 is ever contacted
        results: dict[str, float | None] = {
            "floor": median_wall([sys.executable, "-c", "import typer, rich"], env, args.runs),
            "help": median_wall([*_llmfail(), "--help"], env, args.runs),
            "ls-benched": median_wall([*_llmfail(), "ls-benched"], env, args.runs) if exists("ls-benched", env) else None,
            "run": median_wall([*_llmfail(), "run", *RUN_ARGS], env, args.runs),
            # The same on the engine's default transport (aiohttp), which `run` avoids for its one
            # request: the price of importing aiohttp.
            "run-aiohttp": median_wall([sys.executable, "-c", RUN_ON_AIOHTTP, *RUN_ARGS], env, args.runs),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
