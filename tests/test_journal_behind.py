"""The journal's writer thread, for stores whose appends wait on the network (Redis).

A request's events leave the event loop for one writer thread, which appends what has queued
up in one call; the request still returns only after its events are stored and every
observer has seen them with their ids. Run on a real `redis-server` of the session's own.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from llmfail import events as ev
from llmfail.config import parse_config
from llmfail.engine import Engine
from llmfail.events import Event
from llmfail.journal import Journal
from llmfail.serve.app import create_app
from llmfail.store.sqlite import SqliteStore
from tests.redis_server import private_redis, redis_namespace, redis_server, redis_store, redis_url
from tests.test_journal import concurrent_walks

# fixtures, imported to be found
__all__ = ["private_redis", "redis_namespace", "redis_server", "redis_store", "redis_url"]

pytest.importorskip("redis")
from llmfail.store.redis import RedisStore

CONFIG = """
providers:
  m: {type: mock}
chains:
  demo: [m/echo]
"""


def probe(model: str, ts: float = 1_760_000_000.0) -> Event:
    return Event(type=ev.PROBE, ts=ts, model=model)


def test_posted_events_are_stored_in_order_by_the_writer_thread_which_tells_the_observers(redis_store: RedisStore):
    journal = Journal(redis_store)
    seen: list[tuple[int | None, str | None, str]] = []
    journal.subscribe(lambda e: seen.append((e.id, e.model, threading.current_thread().name)))
    for index in range(50):
        journal.post(probe(f"p/m{index}"))
    journal.flush()
    stored = redis_store.events()
    assert [e.model for e in stored] == [f"p/m{index}" for index in range(50)]
    assert seen == [(e.id, e.model, "llmfail-journal") for e in stored]
    journal.post(probe("p/after"))  # a post after a flush starts the writer again
    journal.flush()
    assert redis_store.events()[-1].model == "p/after"


def test_settled_returns_once_every_event_posted_before_it_is_stored_and_observed(redis_store: RedisStore):
    journal = Journal(redis_store)
    seen: list[str | None] = []
    journal.subscribe(lambda e: seen.append(e.model))

    async def post_and_settle(count: int) -> list[str | None]:
        for index in range(count):
            journal.post(probe(f"p/m{index}"))
        await journal.settled()
        return [e.model for e in redis_store.events()]

    models = [f"p/m{index}" for index in range(20)]
    assert asyncio.run(post_and_settle(20)) == models
    assert seen == models


REQUEST_NAME: contextvars.ContextVar[str] = contextvars.ContextVar("request_name", default="none")


def test_observers_on_the_writer_thread_run_in_the_context_of_the_code_that_posted_each_event(
    redis_store: RedisStore,
):
    journal = Journal(redis_store)
    seen: list[tuple[str | None, str, str]] = []
    journal.subscribe(lambda e: seen.append((e.model, REQUEST_NAME.get(), threading.current_thread().name)))

    async def request(name: str) -> None:  # each task has a context of its own, as each request does
        REQUEST_NAME.set(name)
        for index in range(3):
            journal.post(probe(f"p/{name}{index}"))
            await asyncio.sleep(0)
        await journal.settled()

    async def both() -> None:
        await asyncio.gather(request("a"), request("b"))

    asyncio.run(both())
    assert sorted(seen) == [(f"p/{name}{index}", name, "llmfail-journal") for name in "ab" for index in range(3)]
    assert REQUEST_NAME.get() == "none"  # the writer ran in copies: nothing leaked into this context


@pytest.mark.parametrize("answer_first", [False, True], ids=["settled-by-the-walk", "answer-first"])
def test_concurrent_requests_on_redis_each_return_after_their_events_are_stored_and_observed(
    redis_url: str, redis_namespace: str, answer_first: bool
):
    engine = Engine(parse_config(CONFIG, "test.yaml"), RedisStore.from_url(redis_url, namespace=redis_namespace))
    reader = RedisStore.from_url(redis_url, namespace=redis_namespace)
    try:
        concurrent_walks(
            engine, lambda: {e.request_id for e in reader.events(types=[ev.REQUEST])}, 64, answer_first=answer_first
        )
    finally:
        reader.close()


def test_events_a_process_leaves_unsettled_are_written_before_it_exits(redis_url: str, redis_namespace: str):
    script = textwrap.dedent(
        """
        import sys
        from llmfail.events import Event
        from llmfail.journal import Journal
        from llmfail.store.redis import RedisStore

        journal = Journal(RedisStore.from_url(sys.argv[1], namespace=sys.argv[2]))
        for index in range(200):
            journal.post(Event(type="probe", ts=1_760_000_000.0, model=f"p/m{index}"))
        # no flush, no close: the interpreter's exit must not lose them
        """
    )
    subprocess.run([sys.executable, "-c", script, redis_url, redis_namespace], check=True, timeout=60)
    reader = RedisStore.from_url(redis_url, namespace=redis_namespace)
    try:
        models: list[Any] = [e.model for e in reader.events()]
    finally:
        reader.close()
    assert models == [f"p/m{index}" for index in range(200)]


def test_a_client_that_hangs_up_right_after_its_whole_answer_is_logged_200_not_499(
    redis_url: str, redis_namespace: str, caplog: pytest.LogCaptureFixture
):
    asyncio.run(_hang_up_after_the_answer(redis_url, redis_namespace, caplog))


async def _hang_up_after_the_answer(redis_url: str, redis_namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    """The gateway sends its answer, then waits for the writer thread to store the request's rows;
    a client that reads the answer and closes at once cancels the handler meanwhile. That answer
    was delivered: the access line says 200, and the rows are stored all the same."""
    store = RedisStore.from_url(redis_url, namespace=redis_namespace)
    engine = Engine(parse_config("chains:\n  demo: [mock/echo]\n", "test.yaml"), store)
    closed = threading.Event()
    # The writer thread runs the observers: hold it until the client has gone.
    engine.on_event(lambda e: closed.wait(5) if e.type == "request" else None)
    test_server = TestServer(create_app(engine), handler_cancellation=True)  # as `llmfail serve` runs it
    await test_server.start_server()
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).encode()

    def read_whole_answer_and_hang_up() -> bytes:
        with socket.create_connection(("127.0.0.1", test_server.port)) as conn:
            conn.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int(
                next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
            )
            while len(rest) < length:
                rest += conn.recv(65536)
        closed.set()
        return head

    try:
        with caplog.at_level(logging.INFO, logger="llmfail.serve.access"):
            head = await asyncio.to_thread(read_whole_answer_and_hang_up)
            for _ in range(500):
                if lines := [r.getMessage() for r in caplog.records if r.name == "llmfail.serve.access"]:
                    break
                await asyncio.sleep(0.01)
    finally:
        await test_server.close()
        await engine.aclose()
    assert head.startswith(b"HTTP/1.1 200")
    assert len(lines) == 1 and " status=200 " in lines[0]
    reader = RedisStore.from_url(redis_url, namespace=redis_namespace)
    try:
        assert [e.data["ok"] for e in reader.events(types=["request"])] == [True]
    finally:
        reader.close()


def test_events_held_before_the_store_turned_out_to_wait_on_the_network_keep_their_place(
    tmp_path: Path, redis_store: RedisStore
):
    """A guarded store says it is Redis only once it has opened (Redis was down at start-up):
    what was held until then is written before anything the writer thread takes."""

    class OpensLate(SqliteStore):
        appends_wait = False

    store = OpensLate(str(tmp_path / "state.db"))
    journal = Journal(store)

    async def walk() -> None:
        journal.post(probe("held/m"))
        store.appends_wait = True  # the store is up now, and its appends wait on the network
        journal.post(probe("behind/m"))
        for _ in range(500):  # the loop is blocked here on purpose: the held event's timer cannot run
            if any(e.model == "behind/m" for e in store.events()):
                break
            time.sleep(0.01)
        await journal.settled()

    asyncio.run(walk())
    journal.flush()
    assert [e.model for e in store.events()] == ["held/m", "behind/m"]
    store.close()
