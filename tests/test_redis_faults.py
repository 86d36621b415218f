"""Redis killed or frozen mid-traffic: requests keep being answered, operator commands say so.

A real `redis-server` of each test's own, SIGKILLed or SIGSTOPped while an
engine sends requests through a mock chain. Each request may pay at most one
store timeout (0.25 s) — the call that opens the breaker — and every request
walked while degraded carries the warning. Operator commands exit 1 with
`cannot reach shared state redis://…`. After SIGCONT or a restart the spooled
events arrive with their original timestamps and the breaker closes. The
breaker's clock is injected; latencies are measured on the real clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmfail.cli import app
from llmfail.config import parse_config
from llmfail.engine import Engine
from llmfail.store.guard import GuardedStore
from llmfail.store.select import select_store

from . import redis_server as servers
from .conftest import FakeClock
from .redis_server import RedisServer, start_server

pytest.importorskip("redis")

runner = CliRunner()

CONFIG = """
providers:
  m: {type: mock}
chains:
  demo: [m/echo]
"""

#: The Redis client's socket timeout: what one failing store call may cost.
STORE_TIMEOUT_S = 0.25
#: Headroom for a loaded test machine on top of one store timeout (two would be 0.5 s).
SLACK_S = 0.2


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_server(tmp_path)
    yield server
    server.stop()


class Traffic:
    """An engine on the Redis URL, sending requests one at a time and timing each."""

    def __init__(self, url: str, clock: FakeClock) -> None:
        self.clock = clock
        self.engine = Engine(parse_config(CONFIG, "test.yaml"), db_path=url, clock=clock, sleep=clock.sleep)
        guard = self.engine.store
        assert isinstance(guard, GuardedStore)
        self.guard = guard
        self.results: list[tuple[float, list[str], float]] = []  # (clock time, warnings, seconds taken)

    def send(self, count: int) -> list[float]:
        took = []
        for _ in range(count):
            began = time.perf_counter()
            result = self.engine.complete_sync("demo", "ping")
            seconds = time.perf_counter() - began
            assert result.text == "ping"
            self.results.append((self.clock.now, result.warnings, seconds))
            took.append(seconds)
            self.clock.advance(0.1)
        return took


def stored_requests(url: str) -> list[tuple[float, str | None]]:
    store = select_store(url, environ={}).open()
    try:
        return [(e.ts, e.request_id) for e in store.events(types=["request"])]
    finally:
        store.close()


@pytest.mark.parametrize("fault", ["sigstop", "sigkill"])
def test_requests_are_answered_through_a_redis_outage_and_the_spool_arrives_afterwards(tmp_path, clock, fault):
    server = start_server(tmp_path)
    port = server.port
    try:
        traffic = Traffic(server.url, clock)
        healthy = traffic.send(5)
        assert all(not w for _, w, _ in traffic.results)

        if fault == "sigstop":
            server.pause()
        else:
            server.stop()  # SIGKILL: nothing written to disk (--save '' --appendonly no)
        outage = traffic.send(30)
        print(
            f"\n{fault}: healthy max {max(healthy) * 1000:.1f} ms; during the outage max {max(outage) * 1000:.1f} ms, "
            f"median {sorted(outage)[15] * 1000:.1f} ms over {len(outage)} requests"
        )
        # every request answered; none paid more than one store timeout, most paid nothing
        assert max(outage) < STORE_TIMEOUT_S + SLACK_S + max(healthy)
        assert sum(1 for s in outage if s > STORE_TIMEOUT_S * 0.8) <= 1
        degraded = traffic.results[5:]
        assert all(
            w and w[0].startswith("shared state unavailable (cannot reach shared state redis://127.0.0.1:")
            for _, w, _ in degraded
        )
        assert traffic.guard.degraded is not None and traffic.guard.spooled >= 30

        if fault == "sigstop":
            server.resume()
        else:  # a fresh, empty server on the same port
            original = servers.free_port
            servers.free_port = lambda: port
            try:
                server = start_server(tmp_path)
            finally:
                servers.free_port = original
        for _ in range(5):  # the breaker retries every 5 s (injected clock); a reconnect may take one more turn
            clock.advance(5.1)
            traffic.send(1)
            if traffic.guard.degraded is None:
                break
        assert traffic.guard.degraded is None and traffic.guard.spooled == 0
        assert traffic.results[-1][1] == []  # the request that closed the breaker carries no warning
        stored = dict(stored_requests(server.url))
        outage_times = [t for t, _, _ in degraded]
        assert sorted(t for t in stored if t in set(outage_times)) == sorted(outage_times)  # original timestamps
        if fault == "sigstop":
            assert len(stored) == len(traffic.results)  # nothing lost, nothing twice
    finally:
        server.stop()


def test_operator_commands_exit_1_with_the_clear_error_while_redis_is_down(redis, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFAIL_DB", redis.url)
    assert runner.invoke(app, ["ls-benched", "--json"]).exit_code == 0
    redis.pause()
    try:
        for args in (
            ["ls-benched"],
            ["ls-benched", "--json"],
            ["bench", "m/echo", "--for", "1m"],
            ["unbench", "--all"],
            ["events"],
            ["stats"],
        ):
            began = time.monotonic()
            result = runner.invoke(app, args)
            assert result.exit_code == 1, (args, result.output)
            assert result.stdout == ""
            lines = result.stderr.splitlines()
            assert lines[0].startswith(f"llmfail: error: cannot reach shared state {redis.url} ("), args
            assert len(lines) == 2 and lines[1].startswith("  hint: ") and "Traceback" not in result.stderr
            assert time.monotonic() - began < 3.0
    finally:
        redis.resume()


def test_run_through_the_cli_answers_while_redis_hangs_with_one_warning_and_no_traceback(redis, tmp_path):
    config = tmp_path / "chains.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "LLMFAIL_DB": redis.url, "LLMFAIL_CONFIG": str(config)}
    redis.pause()
    try:
        for debug in ([], ["--debug"]):
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "llmfail.cli", *debug, "run", "still here", "--no-stream"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout == "still here\n"
            warning, lost = done.stderr.splitlines()
            assert warning == (
                f"llmfail: warning: shared state unavailable (cannot reach shared state {redis.url} "
                f"(no answer within {STORE_TIMEOUT_S:g} s)): answered without it"
            )
            # still hung when run exits: the request's events cannot be written, and that is said
            assert "of this request could not be written to the state store" in lost and lost.endswith("lost")
            assert time.monotonic() - began < 5.0
    finally:
        redis.resume()
