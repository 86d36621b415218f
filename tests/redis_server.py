"""A real `redis-server` for the Redis store tests: started by the tests on a free loopback port.

Never the machine's own instance (6379): each session starts its own with
`--save '' --appendonly no` (nothing written to disk), and every test gets a
namespace of its own, so tests never see each other's keys. Without a
`redis-server` (or `valkey-server`) binary the Redis tests are skipped, except
under `CI=true`, where a missing server must fail the run rather than pass it
silently.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfail.store import StoreTarget

SERVER_BINARIES = ("redis-server", "valkey-server")


def server_binary() -> str | None:
    for name in SERVER_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One `redis-server` process on 127.0.0.1; `stop`/`pause`/`resume` for the fault tests."""

    def __init__(self, binary: str, workdir: Path, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--protected-mode",
                "yes",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    reply = sock.recv(64)
                if reply.startswith((b"+PONG", b"-NOAUTH")):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{binary} did not start on port {self.port}")
            time.sleep(0.02)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)


def start_server(tmp: Path, *extra: str, port: int | None = None) -> RedisServer:
    """A fresh server, or a skip (a failure under CI=true) when no binary is installed."""
    binary = server_binary()
    missing = None
    if binary is None:
        missing = "no redis-server or valkey-server on PATH: install Redis >= 7 to run the Redis store tests"
    elif importlib.util.find_spec("redis") is None:
        missing = "the redis package is missing: pip install -e '.[test]' (or 'llmfail[redis]')"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    assert binary is not None
    return RedisServer(binary, tmp, *extra, port=port)


_SHARED: list[RedisServer] = []


def shared_server() -> RedisServer:
    """The session's server, started on first use and stopped when the test process exits
    (the contract suite's backend factory is a plain function, not a fixture)."""
    if not _SHARED:
        server = start_server(Path(tempfile.mkdtemp(prefix="llmfail-redis-")))
        atexit.register(server.stop)
        _SHARED.append(server)
    return _SHARED[0]


def redis_target(directory: Path, name: str) -> StoreTarget:
    """The contract suite's Redis backend: the session's server, a namespace of the test's own."""
    return StoreTarget(shared_server().url, namespace=f"{name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    return shared_server()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start servers of the test's own (for faults: stop, pause, restart, read-only); all stopped after it."""
    started: list[RedisServer] = []

    def start(*extra: str, port: int | None = None) -> RedisServer:
        server = start_server(tmp_path, *extra, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_namespace() -> str:
    """A namespace no other test uses: tests share the server, never keys."""
    return "test-" + uuid.uuid4().hex[:12]


@pytest.fixture
def redis_store(redis_url: str, redis_namespace: str) -> Iterator[Any]:
    from llmfail.store.redis import RedisStore

    store = RedisStore.from_url(redis_url, namespace=redis_namespace)
    yield store
    store.close()
