"""Operator commands through the real CLI on a real state DB: bench, unbench, ls-benched, events, chains, check."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from typer.testing import CliRunner, Result

from llmfail import events as ev
from llmfail.cli import app
from llmfail.events import Event
from llmfail.store.sqlite import SqliteStore

runner = CliRunner()

BENCH_ROW_KEYS = ["model", "until", "remaining_s", "manual", "reason", "kind", "bench_count"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

CONFIG = """
defaults: {cooldown: 45s, retention: 1h}
providers:
  a: {type: openai, base_url: "http://127.0.0.1:9/a/v1"}
  b: {type: openai, base_url: "http://127.0.0.1:9/b/v1"}
chains:
  prod: [a/m1, {chain: backup}]
  backup: [b/m2, a/m3]
"""


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "chains.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def db_path() -> Path:
    return Path(os.environ["LLMFAIL_DB"])


def open_db() -> SqliteStore:
    return SqliteStore(str(db_path()))


def cli_process(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmfail.cli", *args], capture_output=True, text=True, timeout=60, **kwargs
    )  # type: ignore[call-overload]


# --------------------------------------------------------------------------- bench


def test_bench_json_prints_the_bench_row_in_the_documented_shape(tmp_path: Path):
    result = cli("bench", "openai/gpt-4o", "--for", "10m", "--reason", "bad deploy", "--json")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)
    assert list(row) == BENCH_ROW_KEYS
    assert ISO_UTC.match(row["until"])
    assert 595 <= row["remaining_s"] <= 600
    assert row | {"until": None, "remaining_s": None} == {
        "model": "openai/gpt-4o",
        "until": None,
        "remaining_s": None,
        "manual": True,
        "reason": "bad deploy",
        "kind": "manual",
        "bench_count": 1,
    }


def test_bench_lasts_the_config_cooldown_by_default(tmp_path: Path):
    write_config(tmp_path)
    row = json.loads(cli("bench", "a/m1", "--json").stdout)
    assert 44 <= row["remaining_s"] <= 45


def test_bench_without_any_config_uses_the_built_in_cooldown_and_warns_the_name_cannot_be_checked():
    result = cli("bench", "opneai/gpt-4o", "--json")
    assert result.exit_code == 0
    assert 29 <= json.loads(result.stdout)["remaining_s"] <= 30
    assert result.stderr.strip() == (
        "llmfail: warning: no config file found, so opneai/gpt-4o cannot be checked against any chain: benched anyway"
    )


def test_bench_writes_a_benched_event_with_the_reason_and_the_os_user():
    before = time.time()
    cli("bench", "openai/gpt-4o", "--for", "5m", "--reason", "provider incident")
    (event,) = open_db().events(types=[ev.BENCHED])
    assert event.model == "openai/gpt-4o" and event.kind == "manual" and event.detail == "provider incident"
    assert event.benched_until is not None and before + 299 <= event.benched_until <= time.time() + 300
    assert event.data == {
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "reason": "provider incident",
        "manual": True,
    }


def test_benching_a_model_no_chain_contains_warns_and_still_benches(tmp_path: Path):
    write_config(tmp_path)
    result = cli("bench", "c/future-model", "--for", "1m")
    assert result.exit_code == 0
    assert "warning: no chain in" in result.stderr and "c/future-model" in result.stderr
    assert [s.model for s in open_db().benches(time.time())] == ["c/future-model"]


def test_benching_a_model_of_a_nested_chain_gives_no_warning(tmp_path: Path):
    write_config(tmp_path)
    result = cli("bench", "a/m3", "--for", "1m")
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize("duration", ["10 minutes", "-5m", "soon", "0"])
def test_a_bad_bench_duration_is_exit_2_with_one_error_line_and_benches_nothing(duration: str):
    result = cli("bench", "openai/gpt-4o", "--for", duration)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("llmfail: error: ") and len(lines) <= 2  # the error and its hint
    assert "Traceback" not in result.output
    assert not db_path().exists() or open_db().benches(time.time()) == []


def test_a_model_name_without_a_provider_is_exit_2():
    result = cli("bench", "gpt-4o", "--for", "1m")
    assert result.exit_code == 2 and "expected provider/model" in result.stderr


def test_with_a_broken_config_bench_for_still_works_but_bench_without_for_is_exit_2(tmp_path: Path):
    write_config(tmp_path, "chains:\n  prod: [mock/m1]\n  bad: 3\n")
    without = cli("bench", "mock/m1")
    assert without.exit_code == 2 and "chains.yaml:3:" in without.stderr
    with_for = cli("bench", "mock/m1", "--for", "2m")
    assert with_for.exit_code == 0 and "warning: chains.yaml:3:" in with_for.stderr
    assert [s.model for s in open_db().benches(time.time())] == ["mock/m1"]


# --------------------------------------------------------------------------- unbench


def test_unbench_lifts_a_bench_and_logs_who_did_it():
    cli("bench", "openai/gpt-4o", "--for", "10m")
    result = cli("unbench", "openai/gpt-4o", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"unbenched": ["openai/gpt-4o"]}
    store = open_db()
    assert store.benches(time.time()) == []
    (event,) = store.events(types=[ev.UNBENCHED])
    assert event.model == "openai/gpt-4o" and event.data["user"] == getpass.getuser()


def test_unbench_of_a_model_that_is_not_benched_is_exit_1_with_a_clear_line():
    cli("bench", "openai/gpt-4o", "--for", "10m")
    result = cli("unbench", "anthropic/claude")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "llmfail: error: anthropic/claude is not benched"
    assert [s.model for s in open_db().benches(time.time())] == ["openai/gpt-4o"]


def test_unbench_all_lifts_every_bench_and_is_fine_when_there_is_none():
    for model in ("a/x", "b/y"):
        cli("bench", model, "--for", "10m")
    result = cli("unbench", "--all", "--json")
    assert result.exit_code == 0 and sorted(json.loads(result.stdout)["unbenched"]) == ["a/x", "b/y"]
    again = cli("unbench", "--all", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout) == {"unbenched": []}


def test_unbench_lifts_the_credential_benches_of_the_model_too():
    now = time.time()
    store = open_db()
    store.record_failure("anthropic/claude#1", now=now, kind="auth", status=401, bench_for=600)
    result = cli("unbench", "anthropic/claude", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"unbenched": ["anthropic/claude#1"]}


@pytest.mark.parametrize("args", [["unbench"], ["unbench", "a/x", "--all"]])
def test_unbench_needs_a_model_or_all_but_not_both(args: list[str]):
    assert cli(*args).exit_code == 2


# --------------------------------------------------------------------------- ls-benched


def test_ls_benched_lists_running_benches_soonest_first_and_never_an_expired_one():
    now = time.time()
    store = open_db()
    store.bench("a/late", now=now, until=now + 900, manual=True, reason="maintenance", kind=None)
    store.record_failure("b/soon", now=now, kind="rate_limited", status=429, bench_for=60, reason="slow down")
    store.bench("c/expired", now=now - 120, until=now - 60, manual=True, reason="old", kind=None)
    result = cli("ls-benched", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["b/soon", "a/late"]
    assert all(list(r) == BENCH_ROW_KEYS and ISO_UTC.match(r["until"]) for r in rows)
    assert rows[0] | {"until": None, "remaining_s": None} == {
        "model": "b/soon",
        "until": None,
        "remaining_s": None,
        "manual": False,
        "reason": "slow down",
        "kind": "rate_limited",
        "bench_count": 1,
    }
    assert 55 <= rows[0]["remaining_s"] <= 60 and 895 <= rows[1]["remaining_s"] <= 900


def test_ls_benched_for_people_shows_remaining_time_who_benched_and_why():
    now = time.time()
    store = open_db()
    store.bench("a/late", now=now, until=now + 252.5, manual=True, reason="maintenance", kind=None)
    store.record_failure("b/soon", now=now, kind="rate_limited", status=429, bench_for=60)
    out = cli("ls-benched").stdout
    late, soon = (
        next(line for line in out.splitlines() if "a/late" in line),
        next(line for line in out.splitlines() if "b/soon" in line),
    )
    assert out.index("b/soon") < out.index("a/late")
    assert re.search(r"\b4m1[12]s\b", late) and "manual" in late and "maintenance" in late
    assert re.search(r"\b(59|60)s\b", soon) and "auto" in soon and "rate_limited" in soon
    assert re.search(r"\b\d\d:\d\d:\d\d\b", late)  # until, in local time


def test_ls_benched_with_no_state_db_prints_nothing_and_creates_no_file():
    result = cli("ls-benched", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert not db_path().exists()


def test_reading_commands_leave_the_state_db_byte_for_byte_identical(tmp_path: Path):
    """Listing is a pure read, even of expired and half-open rows."""
    write_config(tmp_path)
    now = time.time()
    store = open_db()
    store.bench("a/m1", now=now, until=now + 600, manual=True, reason="x", kind=None)
    store.bench("b/m2", now=now - 120, until=now - 60, manual=False, reason=None, kind="transient")  # half-open
    store.append([Event(type=ev.REQUEST, ts=now, chain="prod", model="a/m3", data={"ok": True})])
    store.close()
    files_before = sorted(p.name for p in tmp_path.iterdir())
    digest = hashlib.sha256(db_path().read_bytes()).hexdigest()
    for args in (["ls-benched"], ["ls-benched", "--json"], ["chains"], ["chains", "--json"], ["events", "--json"]):
        result = cli_process(*args)  # a real process: its exit closes (and checkpoints) the connection
        assert result.returncode == 0, result.stderr
        assert hashlib.sha256(db_path().read_bytes()).hexdigest() == digest, args
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before


# --------------------------------------------------------------------------- chains


def test_chains_json_maps_each_chain_to_its_flattened_entries_with_the_state_the_table_shows(tmp_path: Path):
    write_config(tmp_path)
    cli("bench", "b/m2", "--for", "10m", "--reason", "bad deploy")
    result = cli("chains", "--json")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert {name: [e["model"] for e in entries] for name, entries in out.items()} == {
        "prod": ["a/m1", "b/m2", "a/m3"],
        "backup": ["b/m2", "a/m3"],
    }
    benched = out["backup"][0]
    assert set(benched) == {"model", "state", "until", "remaining_s", "reason", "credentials_benched"}
    assert benched["state"] == "manual" and benched["reason"] == "bad deploy" and 590 < benched["remaining_s"] <= 600
    assert ISO_UTC.match(benched["until"])
    assert out["backup"][1] == {
        "model": "a/m3",
        "state": "healthy",
        "until": None,
        "remaining_s": None,
        "reason": None,
        "credentials_benched": [],
    }


def test_chains_for_people_marks_the_entries_benched_now(tmp_path: Path):
    write_config(tmp_path)
    cli("bench", "b/m2", "--for", "10m", "--reason", "incident")
    lines = cli("chains").stdout.splitlines()
    b_rows = [line for line in lines if "b/m2" in line]
    assert len(b_rows) == 2 and all("manual" in r and "incident" in r for r in b_rows)
    assert all("healthy" in line for line in lines if "a/m1" in line or "a/m3" in line)


def test_chains_shows_half_open_entries_and_entries_whose_every_credential_is_benched(tmp_path: Path):
    write_config(
        tmp_path,
        """
        providers:
          a: {type: openai, base_url: "http://127.0.0.1:9/a/v1"}
          b: {type: openai, base_url: "http://127.0.0.1:9/b/v1"}
        chains:
          prod:
            - a/m1
            - {model: b/m2, credentials: [{api_key_env: K1}, {api_key_env: K2}]}
            - {model: b/m3, credentials: [{api_key_env: K1}, {api_key_env: K2}]}
        """,
    )
    now = time.time()
    store = open_db()
    store.record_failure("a/m1", now=now - 120, kind="timeout", status=None, bench_for=30)  # ended: half-open
    for key in ("b/m2#0", "b/m2#1", "b/m3#1"):
        store.record_failure(key, now=now, kind="auth", status=401, bench_for=600)
    store.close()
    rows = {m: line for line in cli("chains").stdout.splitlines() for m in ("a/m1", "b/m2", "b/m3") if m in line}
    assert "half-open" in rows["a/m1"]
    assert "benched" in rows["b/m2"] and "auth" in rows["b/m2"]
    assert "healthy" in rows["b/m3"] and "credentials benched: b/m3#1" in rows["b/m3"]


def test_bench_for_people_says_what_was_benched_until_when():
    result = cli("bench", "openai/gpt-4o", "--for", "90s", "--reason", "deploy")
    assert result.exit_code == 0
    assert re.fullmatch(r"benched openai/gpt-4o for 1m(29|30)s, until \d\d:\d\d:\d\d \(deploy\)\n", result.stdout)


# --------------------------------------------------------------------------- check


def test_check_accepts_a_good_config_with_exit_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write_config(
        tmp_path,
        """
        providers:
          a: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: A_KEY}
        chains:
          prod: [a/m1, mock/echo]
        """,
    )
    monkeypatch.setenv("A_KEY", "k")
    result = cli("check", str(path))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"{path}: ok (1 chain, 2 entries, 0 warnings)"]


def test_check_reports_every_problem_with_file_line_and_column_and_exits_2(tmp_path: Path):
    path = write_config(
        tmp_path,
        """
        defaults:
          cooldwn: 30s
        chains:
          prod: [nope/m1]
        """,
    )
    result = cli("--config", str(path), "check")
    assert result.exit_code == 2
    problems = result.stdout.splitlines()
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:2:3: defaults.cooldwn:") and "cooldown" in problems[0]
    assert problems[1].startswith(f"{path}:4:10:") and "nope" in problems[1]
    assert result.stderr.startswith(f"llmfail: error: {path}: 2 problems")
    assert "Traceback" not in result.output


def test_check_warns_about_suspicious_setups_but_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write_config(
        tmp_path,
        """
        defaults: {attempts: 3, timeout: 30s, deadline: 1m}
        providers:
          a: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: A_KEY}
          b: {type: openai, base_url: "http://127.0.0.1:8/v1", api_key_env: B_KEY}
        chains:
          single: [a/m1, a/m2]
          mixed:
            - b/m3
            - {model: a/m1, timeout: 5s}
            - {model: b/m4, timeout: 25s}
        """,
    )
    monkeypatch.setenv("A_KEY", "k")
    monkeypatch.delenv("B_KEY", raising=False)
    result = cli("check", str(path))
    assert result.exit_code == 0
    warnings = [line for line in result.stdout.splitlines() if "warning:" in line]
    assert any(w.startswith(f"{path}:6:12: warning: chain 'single': every entry is on provider a") for w in warnings)
    assert (
        f"{path}: warning: defaults (used by a/m1, a/m2, b/m3): attempts × timeout = 3 × 30s = 1m30s, "
        "longer than the deadline of 1m" in result.stdout
    )
    assert any(w.startswith(f"{path}:10:7: warning: b/m4: attempts × timeout = 3 × 25s = 1m15s") for w in warnings)
    assert any(w.endswith("warning: $B_KEY is not set (the key of b/m3, b/m4)") for w in warnings)
    assert not any("A_KEY" in w or "chain 'mixed'" in w for w in warnings)
    assert len(warnings) == 4


# --------------------------------------------------------------------------- events


def seed_events(now: float) -> None:
    store = open_db()
    store.append(
        [
            Event(type=ev.ATTEMPT_FAILED, ts=now - 7200, chain="prod", model="a/m1", kind="transient", status=503),
            Event(type=ev.FAILOVER, ts=now - 60, chain="prod", model="a/m1", next_model="b/m2", kind="transient"),
            Event(type=ev.REQUEST, ts=now - 59, chain="prod", model="b/m2", latency_ms=812.0, data={"ok": True}),
            Event(type=ev.BENCHED, ts=now - 30, chain="other", model="c/m3", kind="timeout", benched_until=now + 30),
        ]
    )
    store.close()


def json_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_an_event_rows_latency_is_in_hundredths_of_a_millisecond_as_the_documented_sample_shows():
    measured = Event(type=ev.REQUEST, ts=1_760_000_000.0, latency_ms=69.70906257629395)
    assert measured.to_json()["latency_ms"] == 69.71
    assert Event(type=ev.RETRY, ts=1_760_000_000.0).to_json()["latency_ms"] is None


def test_events_json_prints_one_event_row_per_line_oldest_first():
    now = time.time()
    seed_events(now)
    result = cli("events", "--json")
    assert result.exit_code == 0
    rows = json_lines(result)
    assert [r["type"] for r in rows] == ["attempt_failed", "failover", "request", "benched"]
    expected = open_db().events()
    assert rows == [e.to_json() for e in expected]
    assert list(rows[0]) == [
        "id",
        "type",
        "ts",
        "request_id",
        "chain",
        "model",
        "kind",
        "status",
        "attempt",
        "benched_until",
        "next_model",
        "latency_ms",
        "detail",
        "data",
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--since", "1h"], ["failover", "request", "benched"]),
        (["--model", "a/m1"], ["attempt_failed", "failover"]),
        (["--chain", "other"], ["benched"]),
        (["--type", "request", "--type", "benched"], ["request", "benched"]),
        (["--type", "request,attempt_failed"], ["attempt_failed", "request"]),
        (["--limit", "2"], ["request", "benched"]),
        (["--since", "1h", "--model", "a/m1", "--type", "failover"], ["failover"]),
    ],
)
def test_events_filters(args: list[str], expected: list[str]):
    seed_events(time.time())
    result = cli("events", "--json", *args)
    assert result.exit_code == 0
    assert [r["type"] for r in json_lines(result)] == expected


def test_events_for_people_are_readable_lines():
    seed_events(time.time())
    result = cli("events")
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert re.match(r"\d\d:\d\d:\d\d\s+failover\s+\[prod\] a/m1 -> b/m2 transient", lines[1])
    assert re.match(r"\d\d:\d\d:\d\d\s+request\s+ok \[prod\] b/m2 812ms", lines[2])


@pytest.mark.parametrize("args", [["--type", "benchd"], ["--since", "yesterday"], ["--limit", "-1"]])
def test_events_usage_errors_are_exit_2(args: list[str]):
    result = cli("events", *args)
    assert result.exit_code == 2


def test_unknown_event_type_suggests_the_right_one():
    assert "did you mean 'benched'" in cli("events", "--type", "benchd").stderr


def test_events_vacuum_prunes_by_the_configured_retention_at_once(tmp_path: Path):
    write_config(tmp_path)  # retention: 1h
    now = time.time()
    seed_events(now)
    store = open_db()
    store.prune(now=now, retention=3600)  # an hourly prune just ran: only --vacuum may prune again now
    store.append([Event(type=ev.PROBE, ts=now - 5400, model="a/m1")])
    store.close()
    result = cli("events", "--vacuum", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"pruned": 1}
    assert [e.type for e in open_db().events()] == ["failover", "request", "benched"]


# --------------------------------------------------------------------------- events --follow


class LineReader:
    """Lines of a child's stdout, read on a thread so the test can wait with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put((time.time(), line.rstrip("\n")))

    def join(self) -> None:
        self._thread.join(timeout=10)

    def next(self, timeout: float) -> tuple[float, str]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s") from None


WRITER = textwrap.dedent(
    """
    import sys, time
    from llmfail.events import Event
    from llmfail.store.sqlite import SqliteStore
    store = SqliteStore(sys.argv[1])
    store.append([Event(type="attempt_failed", ts=time.time(), model=sys.argv[2], kind="transient", status=503)])
    print(time.time(), flush=True)  # right after the commit
    """
)


def start_follower(*args: str) -> tuple[subprocess.Popen[str], LineReader]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfail.cli", "events", "--follow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    return proc, LineReader(proc.stdout)  # type: ignore[arg-type]


def stop(proc: subprocess.Popen[str], reader: LineReader) -> str:
    """End the follower (if still running), reap it, and close its pipes; returns its stderr."""
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=10)
    reader.join()
    assert proc.stdout is not None and proc.stderr is not None
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return err


def test_events_follow_shows_a_row_written_by_another_process_within_1s():
    open_db().append([Event(type=ev.REQUEST, ts=time.time(), model="seed/m", data={"ok": True})])
    proc, reader = start_follower("--json")
    try:
        _, seed = reader.next(timeout=20)  # the backlog: the follower is up and following
        assert json.loads(seed)["model"] == "seed/m"
        latencies = []
        for n in range(3):
            writer = subprocess.run(
                [sys.executable, "-c", WRITER, str(db_path()), f"w/m{n}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            committed = float(writer.stdout)
            seen, line = reader.next(timeout=5)
            row = json.loads(line)
            assert row["model"] == f"w/m{n}" and row["type"] == "attempt_failed"
            latencies.append(seen - committed)
        assert max(latencies) < 1.0, latencies
        assert proc.poll() is None  # still following
    finally:
        stop(proc, reader)


def test_events_follow_for_people_applies_the_filters_to_new_rows():
    proc, reader = start_follower("--type", "benched")
    try:
        time.sleep(0.5)  # let it start; a row written before it reads its mark is backlog, shown too
        assert cli_process("bench", "x/ignored", "--for", "1m").returncode == 0  # benched: shown
        assert cli_process("unbench", "x/ignored").returncode == 0  # unbenched: filtered out
        assert cli_process("bench", "x/second", "--for", "1m").returncode == 0
        first, second = reader.next(timeout=5)[1], reader.next(timeout=5)[1]
        assert "benched" in first and "x/ignored" in first and f"by {getpass.getuser()}@" in first
        assert "benched" in second and "x/second" in second
        with pytest.raises(AssertionError):
            reader.next(timeout=0.6)
    finally:
        stop(proc, reader)


def test_ctrl_c_ends_events_follow_quietly_with_130():
    proc, reader = start_follower("--json")
    try:
        open_db().append([Event(type=ev.PROBE, ts=time.time(), model="a/m")])
        reader.next(timeout=20)  # running and following
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        err = stop(proc, reader)
    assert err == ""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_an_idle_follower_sleeps_instead_of_spinning():
    open_db().append([Event(type=ev.PROBE, ts=time.time(), model="a/m")])
    proc, reader = start_follower("--json")
    try:
        reader.next(timeout=20)
        before = cpu_seconds(proc.pid)
        time.sleep(1.5)
        assert cpu_seconds(proc.pid) - before < 0.2
    finally:
        stop(proc, reader)


def test_following_queries_the_log_only_after_another_connection_committed(tmp_path: Path):
    """Each poll is one `PRAGMA data_version`; the log is read only when it changed."""
    from llmfail.actions import EventFilter, follow_events

    follower, writer = SqliteStore(str(tmp_path / "f.db")), SqliteStore(str(tmp_path / "f.db"))
    reads: list[int | None] = []
    original = follower.events

    def counting_events(**kwargs: object) -> list[Event]:
        reads.append(kwargs.get("after_id"))  # type: ignore[arg-type]
        return original(**kwargs)  # type: ignore[arg-type]

    follower.events = counting_events  # type: ignore[method-assign]
    polls: list[float] = []

    class Done(Exception):
        pass

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            writer.append([Event(type=ev.PROBE, ts=time.time(), model="a/m")])
        if len(polls) == 6:
            raise Done

    batches = follow_events(follower, EventFilter(), 0, sleep=sleep)
    (event,) = next(batches)  # polls 0-1 are idle; the write after poll 2 shows up on poll 3
    assert event.model == "a/m"
    with pytest.raises(Done):  # three more idle polls, then the fake sleep stops the loop
        next(batches)
    assert polls == [0.2] * 6
    assert len(reads) == 2  # the first look, and one after the write: idle polls read nothing
