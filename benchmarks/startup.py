"""Start-up: median wall time of CLI commands, against `python -c "import typer, rich"`.

    python benchmarks/startup.py [--runs 9]

prints one JSON line: {name: median seconds}. `run` sends one real request to
the local benchmark server (server.py); every command gets a throwaway config,
state DB and home directory (also their working directory, so `python -m` finds
the installed llmfail, not a checkout in the current directory). Commands that do not exist yet are reported as
null (skipped).

The commands are measured in interleaved rounds (each command once per round,
after one unmeasured round), so a shared machine's load drifts over all of them
alike and the ratios to the floor stay comparable. Python may write bytecode
(`PYTHONDONTWRITEBYTECODE` is dropped from the environment): an installed
llmfail has its `.pyc` files, like typer and rich in the floor, and without
them every run would compile llmfail's source again (~25 ms here).
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

from server import serve

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


def median_walls(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, float | None]:
    """Median seconds of each command over `runs` interleaved rounds; None for a command that fails."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    failed: set[str] = set()
    for index in range(runs + 1):  # round 0 warms the page cache and writes the bytecode
        for name, cmd in commands.items():
            if name in failed:
                continue
            began = time.perf_counter()
            done = subprocess.run(
                cmd,
                env=env,
                cwd=env["HOME"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
                check=False,
            )
            elapsed = time.perf_counter() - began
            if done.returncode != 0:
                sys.stderr.write(
                    f"startup: {' '.join(cmd[-3:])} exited {done.returncode}: {done.stderr.decode()[-300:]}\n"
                )
                failed.add(name)
            elif index:
                times[name].append(elapsed)
    return {name: None if name in failed else statistics.median(times[name]) for name in commands}


def exists(command: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [*_llmfail(), command, "--help"], env=env, cwd=env["HOME"], capture_output=True, timeout=60, check=False
    )
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
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # see the module docstring
        commands = {
            "floor": [sys.executable, "-c", "import typer, rich"],
            "help": [*_llmfail(), "--help"],
            "ls-benched": [*_llmfail(), "ls-benched"],
            "run": [*_llmfail(), "run", *RUN_ARGS],
            # The same on the engine's default transport (aiohttp), which `run` avoids for its one
            # request: the price of importing aiohttp.
            "run-aiohttp": [sys.executable, "-c", RUN_ON_AIOHTTP, *RUN_ARGS],
        }
        if not exists("ls-benched", env):
            del commands["ls-benched"]
        results: dict[str, float | None] = {"ls-benched": None, **median_walls(commands, env, args.runs)}
        results = {name: results[name] for name in ("floor", "help", "ls-benched", "run", "run-aiohttp")}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
