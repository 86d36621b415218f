"""`llmfail simulate` as CI runs it: whole tables in a log, a --db timeline that ends now, clear fault rules, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from typer.testing import CliRunner

from llmfail.store.sqlite import SqliteStore

runner = CliRunner()

LONG = "mock/a-model-name-long-enough-to-squeeze-any-eighty-column-table-into-ellipses"
CONFIG = f"""
defaults: {{cooldown: 30s}}
providers:
  flaky: {{type: mock, fail: 503}}
chains:
  c: ["{LONG}", mock/backup-model-with-a-long-name-too]
  m: [flaky/m1, mock/ok]
"""


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "chains.yaml"
    path.write_text(textwrap.dedent(CONFIG).lstrip("\n"), encoding="utf-8")
    return path


def llmfail(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "llmfail.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        **kwargs,
    )  # type: ignore[call-overload]


def test_through_a_pipe_the_tables_are_never_cut_to_80_columns(tmp_path: Path):
    write_config(tmp_path)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        f'rate: 1/s\nduration: 2m\nphases:\n  - {{at: 0m, name: outage, faults: ["{LONG}:503=0.5", '
        f'"{LONG}:429=0.2"]}}\n'
    )
    done = llmfail("simulate", "--chain", "c", "--scenario", str(scenario), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    assert LONG in done.stdout
    header = next(line for line in done.stdout.splitlines() if line.lstrip().startswith("#"))
    assert header.split() == ["#", "model", "attempts", "ok", "share", "errors", "benched"]
    phases = next(line for line in done.stdout.splitlines() if line.split()[:2] == ["phase", "from"])
    assert "faults" in phases.split()
    assert f"{LONG}:503=0.5" in done.stdout


def test_with_db_the_simulated_timeline_ends_at_the_wall_clock(tmp_path: Path):
    write_config(tmp_path)
    db = tmp_path / "sim.db"
    before = time.time()
    done = llmfail(
        "--db", str(db), "simulate", "--chain", "c", "--fail-rate", "503", "--requests", "200", "--json", cwd=tmp_path
    )
    after = time.time()
    assert done.returncode == 0, done.stderr
    store = SqliteStore(str(db))
    events = store.events()
    assert len([e for e in events if e.type == "request"]) == 200
    assert max(e.ts for e in events) <= after
    assert min(e.ts for e in events) < before - 30  # 200 requests, each falling over: minutes of simulated time
    # The bench the run left behind runs on from now by what it had left: never past a cooldown from now.
    (bench,) = store.benches(after)
    assert bench.model == LONG and bench.bench_until is not None and bench.bench_until <= after + 30
    # ... and keeps the failure that benched it, for ls-benched, stats and the dashboard's "last error"
    assert (bench.kind, bench.last_error_kind, bench.last_error_status) == ("transient", "transient", 503)
    assert bench.last_error_at is not None and bench.last_error_at <= after
    assert "--db" in llmfail("simulate", "--help").stdout and "wall clock" in llmfail("simulate", "--help").stdout


def test_a_fail_rate_for_a_mock_entry_replaces_its_own_fail_and_says_so(tmp_path: Path):
    write_config(tmp_path)
    done = llmfail("simulate", "--chain", "m", "--fail-rate", "flaky/m1:429", "--requests", "5", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning: --fail-rate replaces flaky/m1's own `fail: 503`" in done.stderr
    assert set(json.loads(done.stdout)["models"]["flaky/m1"]["errors"]) == {"rate_limited"}
    plain = llmfail("simulate", "--chain", "m", "--requests", "5", "--json", cwd=tmp_path)
    assert set(json.loads(plain.stdout)["models"]["flaky/m1"]["errors"]) == {"transient"} and plain.stderr == ""


def test_a_junit_path_in_a_missing_folder_fails_before_simulating(tmp_path: Path):
    write_config(tmp_path)
    began = time.monotonic()
    done = llmfail("simulate", "--chain", "c", "--requests", "1000000", "--junit", "missing-dir/x.xml", cwd=tmp_path)
    assert done.returncode == 2 and time.monotonic() - began < 20
    assert done.stderr.splitlines()[0] == (
        "llmfail: error: --junit missing-dir/x.xml: the folder missing-dir does not exist"
    )
    assert done.stdout == ""


def test_ctrl_c_prints_the_partial_report_and_exits_130(tmp_path: Path):
    write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmfail.cli",
            "simulate",
            "--chain",
            "c",
            "--fail-rate",
            "503=0.5",
            "--requests",
            "100000000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        time.sleep(2.5)  # well into the simulation (start-up takes a fraction of that)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "answered" in out and LONG in out
    assert "llmfail: interrupted after" in err and "Traceback" not in err
