"""`events --follow` on Redis waits in `XREAD BLOCK`: a row another host writes is printed at once,
and an idle follower sends one blocking read every couple of seconds instead of polling.

The follower is the real CLI in a child process that shares nothing with the writer but the
Redis URL (`$LLMFAIL_DB`) and the namespace (the config's `state:` section), as two hosts would.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from llmfail.actions import FOLLOW_WAIT_S, EventFilter, follow_events
from llmfail.events import Event
from tests.redis_server import RedisServer, private_redis, redis_namespace, redis_server, redis_store, redis_url

# fixtures, imported to be found
__all__ = ["private_redis", "redis_namespace", "redis_server", "redis_store", "redis_url"]

pytest.importorskip("redis")
from llmfail.store.redis import RedisStore

ROOT = Path(__file__).resolve().parent.parent

#: A second host: appends one event per line of stdin (the line is its model) and prints the
#: time right after the append was acknowledged.
WRITER = textwrap.dedent(
    """
    import sys, time
    from llmfail.events import Event
    from llmfail.store.redis import RedisStore

    store = RedisStore.from_url(sys.argv[1], namespace=sys.argv[2])
    store.max_event_id()  # connected before the first timed write
    print("ready", flush=True)
    for line in sys.stdin:
        store.append([Event(type="attempt_failed", ts=time.time(), model=line.strip(), kind="transient", status=503)])
        print(time.time(), flush=True)
    store.close()
    """
)


class Lines:
    """A child's stdout lines, read on a thread and stamped with the time each arrived."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[tuple[float, str]] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put((time.time(), line.rstrip("\n")))

    def next(self, timeout: float) -> tuple[float, str]:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None


def follower_env(tmp_path: Path, url: str, namespace: str) -> dict[str, str]:
    """The URL in $LLMFAIL_DB, the namespace in the config's `state:` section (which applies to it)."""
    config = tmp_path / "chains.yaml"
    config.write_text(
        f"state: {{url: 'redis://192.0.2.1:1/0', namespace: {namespace}}}\n"
        "providers:\n  m: {type: mock}\nchains:\n  demo: [m/echo]\n"
    )
    return {**os.environ, "LLMFAIL_DB": url, "LLMFAIL_CONFIG": str(config)}


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], Lines]]]:
    """Start `llmfail events --follow ARGS` on a Redis URL and namespace; stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(url: str, namespace: str, *args: str) -> tuple[subprocess.Popen[str], Lines]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmfail.cli", "events", "--follow", *args],
            env=follower_env(tmp_path, url, namespace),
            cwd=tmp_path,
            text=True,
            bufsize=1,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        assert proc.stdout is not None
        return proc, Lines(proc.stdout)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_events_follow_on_redis_prints_a_row_another_host_writes_within_a_second(
    follower: Callable[..., tuple[subprocess.Popen[str], Lines]], redis_url: str, redis_namespace: str
) -> None:
    seeder = RedisStore.from_url(redis_url, namespace=redis_namespace)
    seeder.append([Event(type="request", ts=time.time(), model="seed/m", data={"ok": True})])
    seeder.close()
    proc, lines = follower(redis_url, redis_namespace, "--json")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, redis_url, redis_namespace],
        cwd=ROOT,
        text=True,
        bufsize=1,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert json.loads(lines.next(timeout=20)[1])["model"] == "seed/m"  # the backlog: it is following
        assert writer.stdout.readline().strip() == "ready"
        latencies = []
        for n in range(10):
            time.sleep(0.1 if n % 2 else 0.7)  # some rows reach a follower mid-wait, some right after one
            writer.stdin.write(f"w/m{n}\n")
            writer.stdin.flush()
            written = float(writer.stdout.readline())
            seen, line = lines.next(timeout=5)
            row = json.loads(line)
            assert (row["model"], row["type"]) == (f"w/m{n}", "attempt_failed")
            latencies.append(seen - written)
        assert proc.poll() is None  # still following
    finally:
        writer.stdin.close()
        writer.wait(timeout=10)
        writer.stdout.close()
        assert writer.stderr is not None
        writer.stderr.close()
    print(
        f"\nevents --follow on Redis, a row written by another process printed after: median "
        f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms over {len(latencies)} rows"
    )
    assert max(latencies) < 1.0, latencies


def command_calls(client: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in client.info("commandstats").items()}


@pytest.mark.parametrize("idle_s", [3.5])
def test_an_idle_redis_follower_waits_in_xread_block_and_polls_nothing(
    follower: Callable[..., tuple[subprocess.Popen[str], Lines]],
    private_redis: Callable[..., RedisServer],
    redis_namespace: str,
    idle_s: float,
) -> None:
    """`INFO commandstats` over an idle spell: only blocking XREADs (one per FOLLOW_WAIT_S), no MGET,
    XRANGE or GET per poll. A server of the test's own, so no other client's commands count."""
    import redis

    server = private_redis()
    admin = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    store = RedisStore.from_url(server.url, namespace=redis_namespace)
    store.append([Event(type="probe", ts=time.time(), model="seed/m")])
    proc, lines = follower(server.url, redis_namespace, "--json")
    try:
        lines.next(timeout=20)  # the backlog is printed: the follower is waiting now
        time.sleep(0.2)
        before = command_calls(admin)
        time.sleep(idle_s)
        after = command_calls(admin)
        delta = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
        delta["info"] -= 1  # our own second INFO
        delta = {name: calls for name, calls in delta.items() if calls}
        print(f"\ncommands sent by an idle follower in {idle_s} s: {delta}")
        waits = delta.pop("xread", 0)
        assert 1 <= waits <= idle_s / FOLLOW_WAIT_S + 1
        assert delta == {}  # nothing else: no MGET, XRANGE, GET or EVALSHA per poll
        blocked = [c for c in admin.client_list() if c.get("name") == "llmfail-follow"]
        assert len(blocked) == 1 and blocked[0]["cmd"] == "xread" and "b" in blocked[0]["flags"]

        store.append([Event(type="probe", ts=time.time(), model="after/idle")])
        assert json.loads(lines.next(timeout=2)[1])["model"] == "after/idle"
        proc.send_signal(signal.SIGINT)  # Ctrl-C while blocked in XREAD: a quiet 130
        assert proc.wait(timeout=10) == 130
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        store.close()
        admin.close()


def test_following_a_redis_store_applies_the_filters_and_moves_past_rows_that_do_not_match(
    redis_store: RedisStore, redis_url: str, redis_namespace: str
) -> None:
    writer = RedisStore.from_url(redis_url, namespace=redis_namespace)
    now = time.time()
    start = redis_store.max_event_id()
    writer.append(
        [
            Event(type="request", ts=now, chain="prod", model="a/x", data={"ok": True}),
            Event(type="benched", ts=now - 3600, chain="prod", model="a/x"),  # older than --since
            Event(type="benched", ts=now, chain="prod", model="b/y"),
            Event(type="benched", ts=now, chain="dev", model="a/x"),
            Event(type="benched", ts=now, chain="prod", model="a/x", detail="the one"),
        ]
    )
    where = EventFilter(since=now - 60, model="a/x", chain="prod", types=("benched",))
    batches = follow_events(redis_store, where, start, wait_s=0.2)
    first = next(batches)
    assert [e.detail for e in first] == ["the one"]
    assert first == redis_store.events(after_id=start, **where.query())  # the same rows a query gives
    writer.append([Event(type="benched", ts=now, chain="prod", model="a/x", detail="next")])
    (row,) = next(batches)  # read from after the last row seen, matching or not: nothing twice
    assert row.detail == "next"
    writer.close()


def test_a_db_url_from_the_command_line_or_env_takes_the_configs_namespace(
    tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    """`llmfail --db URL bench` must reach the fleet's namespace (the config's `state:`), not `default`:
    a bench that only some hosts see would be a lie."""
    env = follower_env(tmp_path, redis_url, redis_namespace)
    for args, extra in ((["--db", redis_url], {"LLMFAIL_DB": ""}), ([], {})):
        done = subprocess.run(
            [sys.executable, "-m", "llmfail.cli", *args, "bench", "m/echo", "--for", "5m"],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    store = RedisStore.from_url(redis_url, namespace=redis_namespace)
    try:
        assert [s.model for s in store.benches(time.time())] == ["m/echo"]
    finally:
        store.close()


def test_events_follow_exits_1_with_the_clear_error_when_redis_goes_away(
    follower: Callable[..., tuple[subprocess.Popen[str], Lines]],
    private_redis: Callable[..., RedisServer],
    redis_namespace: str,
) -> None:
    server = private_redis()
    store = RedisStore.from_url(server.url, namespace=redis_namespace)
    store.append([Event(type="probe", ts=time.time(), model="seed/m")])
    store.close()
    proc, lines = follower(server.url, redis_namespace)
    lines.next(timeout=20)  # the backlog is printed: it is waiting in XREAD now
    server.stop()
    assert proc.wait(timeout=FOLLOW_WAIT_S + 5) == 1
    assert proc.stderr is not None
    error, hint = proc.stderr.read().splitlines()
    assert error.startswith(f"llmfail: error: cannot reach shared state {server.url} (") and hint.startswith("  hint:")
