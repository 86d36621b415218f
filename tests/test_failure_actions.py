"""From a recorded failure to what the engine does (issue 8, items 6 and 7).

tests/test_classify.py proves each of the 60 recorded provider errors gets the
right kind. This file proves the *action* that follows, end to end: every
recorded shape is served by a loopback provider in its own wire protocol to a
real engine, and the number of HTTP calls, the bench and who answers must be
what the kinds table (docs/concepts.md) says for that kind. Real transport failures (refused,
dropped, garbage, cut bodies) and wait times read on a virtual clock
(Retry-After as seconds, milliseconds and HTTP-date, reset timestamps and
durations, junk) get the same treatment.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail.engine import Engine
from llmfail.errors import REQUEST_KINDS, FailFast, Kind
from llmfail.result import Result
from llmfail.store.sqlite import SqliteStore

from .conftest import Calls, FakeClock, ok, openai_chunk, openai_error, sse

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "provider-errors"
CASES: list[dict[str, Any]] = [fx for p in sorted(FIXTURES.glob("*.json")) for fx in json.loads(p.read_text())]
WIRE = {"anthropic": "anthropic", "gemini": "gemini", "ollama": "ollama"}  # everything else speaks OpenAI
ATTEMPTS, MAX_RETRY_WAIT, COOLDOWN, AUTH_COOLDOWN = 3, 5.0, 30.0, 600.0

CHAIN = f"""
defaults: {{attempts: {ATTEMPTS}, backoff: {{base: 100ms, max: 1s}}, cooldown: {COOLDOWN:g}s,
           auth_cooldown: {AUTH_COOLDOWN:g}s, max_retry_wait: {MAX_RETRY_WAIT:g}s, timeout: 2s, deadline: 10m}}
providers:
  p: {{type: %(wire)s, base_url: "%(base)s"}}
  s: {{type: openai, base_url: "{{url}}/s/v1"}}
chains:
  main: [p/m1, s/m2]
"""


def chain(wire: str, base: str = "{url}/p") -> str:
    return CHAIN % {"wire": wire, "base": base + ("/v1" if wire == "openai" and base.endswith("/p") else "")}


def secondary(request: Request) -> Response:
    """The healthy next entry, streaming when asked to."""
    if json.loads(request.get_data() or b"{}").get("stream"):
        return Response(sse(openai_chunk("from s"), openai_chunk(None, "stop")), content_type="text/event-stream")
    return ok("from s")


def replay(fx: dict[str, Any]) -> Response:
    """The recorded answer, as the provider sent it."""
    headers = {
        k: v
        for k, v in fx.get("headers", {}).items()
        if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
    }
    if "stream" in fx:
        kind = "application/x-ndjson" if WIRE.get(fx["provider"]) == "ollama" else "text/event-stream"
        return Response("\n".join(fx["stream"]) + "\n", status=fx["http_status"], headers=headers, content_type=kind)
    body = fx["body"] if isinstance(fx["body"], str) else json.dumps(fx["body"])
    return Response(body, status=fx["http_status"], headers=headers)


def expected_calls(fx: dict[str, Any]) -> int:
    """Only rate_limited and transient retry, and only while allowed."""
    kind, wait = fx["expected_kind"], fx["retry_after_s"]
    if kind not in (Kind.TRANSIENT, Kind.RATE_LIMITED) or fx.get("headers", {}).get("x-should-retry") == "false":
        return 1
    return 1 if kind == Kind.RATE_LIMITED and wait is not None and wait > MAX_RETRY_WAIT else ATTEMPTS


def walk(engine: Engine, *, stream: bool = False) -> Result | FailFast:
    async def one() -> Result | FailFast:
        try:
            return await engine.complete("main", "hi", stream=stream)
        except FailFast as error:
            return error
        finally:
            await engine.aclose()

    return asyncio.run(one())


@pytest.mark.parametrize("fx", CASES, ids=[fx["id"] for fx in CASES])
def test_every_recorded_failure_leads_to_the_action_the_spec_table_gives_its_kind(
    fx: dict[str, Any], server: HTTPServer, make_engine: Callable[..., Engine], store: SqliteStore, clock: FakeClock
) -> None:
    primary = Calls(replay(fx))
    server.expect_request(re.compile(r"/p/.*")).respond_with_handler(primary)
    following = Calls(secondary)
    server.expect_request("/s/v1/chat/completions").respond_with_handler(following)
    outcome = walk(make_engine(chain(WIRE.get(fx["provider"], "openai"))), stream="stream" in fx)
    failed_at = clock()  # the virtual clock moved only while waiting between retries

    kind = fx["expected_kind"]
    assert primary.count == expected_calls(fx), f"{kind}: {primary.count} calls"
    state = store.states(["p/m1"]).get("p/m1")
    if kind in REQUEST_KINDS:
        assert state is None, "a request-specific failure touched the model's health"
    else:
        assert state is not None and state.is_benched(clock()), f"{kind} did not bench"
        length = AUTH_COOLDOWN if kind == Kind.AUTH else max(COOLDOWN, fx["retry_after_s"] or 0)
        assert (state.bench_until or 0) - failed_at == pytest.approx(length)
    if kind == Kind.CONTENT_FILTER:  # on_content_filter: fail (the default) raises the provider's own error
        assert isinstance(outcome, FailFast) and outcome.kind == Kind.CONTENT_FILTER and following.count == 0
    else:
        assert isinstance(outcome, Result) and outcome.model == "s/m2"
        assert [a.kind for a in outcome.attempts] == [kind] * primary.count + [None]


# ------------------------------------------------------------------ transport failures


class RawServer:
    """A TCP server that answers every connection with `reply` bytes, then closes it."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


TRANSPORT_FAILURES = {
    "closed-without-a-word": b"",
    "garbage-instead-of-http": b"HELLO THERE\r\n\r\n",
    "body-cut-short": b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"id": ',
    "headers-cut-short": b"HTTP/1.1 200 OK\r\ncontent-ty",
}


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    srv = RawServer(TRANSPORT_FAILURES[request.param])
    yield srv
    srv.close()


@pytest.mark.parametrize("raw_server", sorted(TRANSPORT_FAILURES), indirect=True)
def test_a_broken_connection_is_transient_retried_then_benched_and_the_next_entry_answers(
    raw_server: RawServer, server: HTTPServer, make_engine: Callable[..., Engine], store: SqliteStore, clock: FakeClock
) -> None:
    server.expect_request("/s/v1/chat/completions").respond_with_handler(Calls(secondary))
    outcome = walk(make_engine(chain("openai", f"http://127.0.0.1:{raw_server.port}/v1")))
    assert isinstance(outcome, Result) and outcome.model == "s/m2"
    assert [a.kind for a in outcome.attempts] == ["transient"] * ATTEMPTS + [None]
    assert raw_server.connections == ATTEMPTS
    assert store.states(["p/m1"])["p/m1"].is_benched(clock())


def test_a_refused_connection_is_transient_retried_then_benched(
    server: HTTPServer, make_engine: Callable[..., Engine], store: SqliteStore, clock: FakeClock
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once it is closed
    server.expect_request("/s/v1/chat/completions").respond_with_handler(Calls(secondary))
    outcome = walk(make_engine(chain("openai", f"http://127.0.0.1:{port}/v1")))
    assert isinstance(outcome, Result) and outcome.model == "s/m2"
    assert [a.kind for a in outcome.attempts] == ["transient"] * ATTEMPTS + [None]
    assert store.states(["p/m1"])["p/m1"].is_benched(clock())


# ------------------------------------------------------------------ wait times on a virtual clock


def rate_limited(headers: Callable[[float], dict[str, str]]) -> Callable[[FakeClock], Response]:
    return lambda clock: openai_error(429, "rate_limit_exceeded", "requests", headers=headers(clock()))


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


WAITS: dict[str, tuple[Callable[[float], dict[str, str]], float | None, float | None]] = {
    # name: (headers at the fake `now`, the wait slept before the retry, the bench's end after `now`)
    "retry-after-seconds": (lambda now: {"retry-after": "3"}, 3.0, None),
    "retry-after-ms-first": (lambda now: {"retry-after-ms": "1500", "retry-after": "4"}, 1.5, None),
    "retry-after-http-date": (lambda now: {"retry-after": formatdate(now + 4, usegmt=True)}, 4.0, None),
    "http-date-in-the-past": (lambda now: {"retry-after": formatdate(now - 60, usegmt=True)}, 0.0, None),
    "too-long-benches-until-then": (lambda now: {"retry-after": "90"}, None, 90.0),
    "anthropic-rfc3339-reset": (
        lambda now: {"retry-after": "60", "anthropic-ratelimit-tokens-reset": rfc3339(now + 400)},
        None,
        400.0,
    ),
    "openai-go-duration-reset": (lambda now: {"retry-after": "60", "x-ratelimit-reset-tokens": "6m0s"}, None, 360.0),
}


@pytest.mark.parametrize("name", sorted(WAITS))
def test_wait_times_are_read_against_the_injected_clock(
    name: str, server: HTTPServer, make_engine: Callable[..., Engine], store: SqliteStore, clock: FakeClock
) -> None:
    headers, slept, bench_for = WAITS[name]
    primary = Calls(lambda _: rate_limited(headers)(clock), ok("from p"))
    server.expect_request("/p/v1/chat/completions").respond_with_handler(primary)
    server.expect_request("/s/v1/chat/completions").respond_with_handler(Calls(secondary))
    started = clock()
    outcome = walk(make_engine(chain("openai")))
    assert isinstance(outcome, Result)
    if slept is not None:  # waited on the virtual clock, then the same entry answered
        assert clock.sleeps == [pytest.approx(slept, abs=0.01)] and outcome.model == "p/m1"
    else:  # not worth waiting for: benched at least until the server's reset, and the walk moved on
        assert clock.sleeps == [] and outcome.model == "s/m2" and primary.count == 1
        assert store.states(["p/m1"])["p/m1"].bench_until == pytest.approx(started + bench_for, abs=1)


@pytest.mark.parametrize("junk", ["-5", "soon", "nan", "1e400", "Thu, 99 Foo 2025"])
def test_a_negative_or_junk_retry_after_falls_back_to_jittered_backoff(
    junk: str, server: HTTPServer, make_engine: Callable[..., Engine], clock: FakeClock
) -> None:
    primary = Calls(openai_error(429, "rate_limit_exceeded", "requests", headers={"retry-after": junk}), ok("p"))
    server.expect_request("/p/v1/chat/completions").respond_with_handler(primary)
    outcome = walk(make_engine(chain("openai")))
    assert isinstance(outcome, Result) and outcome.model == "p/m1"
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.1  # uniform(0, base) for the first retry
