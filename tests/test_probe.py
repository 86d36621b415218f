"""`llmfail probe`: one real 1-token request per entry, concurrently, classified healthy / slow /
degraded / offline, recorded as `probe` events; exit 1 when a chain has no healthy entry."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner
from werkzeug import Request, Response

from llmfail import events as ev
from llmfail.config import Config
from llmfail.engine import Engine
from llmfail.errors import Kind, ProviderError
from llmfail.events import Event
from llmfail.probe import ProbeReport, probe_chains, state_of_error
from llmfail.store.sqlite import SqliteStore

from .conftest import CANARY_KEY, Calls, FakeClock, make_config, ok, openai_error

runner = CliRunner()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


FOUR_STATES = """
defaults: {timeout: 500ms, slow_threshold: 1s}
providers:
  fast: {type: openai, base_url: "{url}/fast/v1"}
  slow: {type: openai, base_url: "{url}/slow/v1"}
  busy: {type: openai, base_url: "{url}/busy/v1"}
  limited: {type: openai, base_url: "{url}/limited/v1"}
  silent: {type: openai, base_url: "{url}/silent/v1"}
  keyless: {type: openai, base_url: "{url}/keyless/v1"}
  gone: {type: openai, base_url: "http://127.0.0.1:%(port)d/v1"}
chains:
  good: [slow/m, fast/m]
  flaky: [busy/m, limited/m]
  dead: [silent/m, keyless/m, gone/m]
"""


def route(server: HTTPServer, name: str, handler: Callable[[Request], Response]) -> None:
    server.expect_request(f"/{name}/v1/chat/completions", method="POST").respond_with_handler(handler)


def serve_four_states(server: HTTPServer, stop: threading.Event) -> None:
    """`slow` answers at once here: virtual time is shared by concurrent probes, so the slow
    state has its own test (`test_an_answer_after_slow_threshold_is_slow`)."""

    def silent(request: Request) -> Response:
        stop.wait(5)  # answers nothing within the 500 ms timeout
        return ok("late")

    route(server, "fast", lambda r: ok("p"))
    route(server, "slow", lambda r: ok("p"))
    route(server, "busy", lambda r: openai_error(503))
    route(server, "limited", lambda r: openai_error(429, err_type="requests", message="slow down"))
    route(server, "silent", silent)
    route(server, "keyless", lambda r: openai_error(401, code="invalid_api_key", err_type="invalid_request_error"))


def probe(engine: Engine) -> ProbeReport:
    async def go() -> ProbeReport:
        try:
            return await probe_chains(engine, list(engine.config.chains.values()))
        finally:
            await engine.aclose()

    return asyncio.run(go())


def test_each_state_and_the_chains_verdict(
    make_engine: Callable[..., Engine], server: HTTPServer, clock: FakeClock, store: SqliteStore
) -> None:
    stop = threading.Event()
    serve_four_states(server, stop)
    try:
        report = probe(make_engine(FOUR_STATES % {"port": closed_port()}))
    finally:
        stop.set()
    got = {r.model: (r.state, r.kind, r.status) for r in report.results}
    assert got == {
        "slow/m": ("healthy", None, None),
        "fast/m": ("healthy", None, None),
        "busy/m": ("degraded", "transient", 503),
        "limited/m": ("degraded", "rate_limited", 429),
        "silent/m": ("offline", "timeout", None),
        "keyless/m": ("offline", "auth", 401),
        "gone/m": ("offline", "transient", None),  # connection refused: no HTTP answer at all
    }
    assert [r.model for r in report.results] == list(got)  # config order, each model once
    assert report.chains == {"good": True, "flaky": False, "dead": False} and not report.ok
    events = store.events(types=[ev.PROBE])
    assert {e.model: e.data["state"] for e in events} == {m: s for m, (s, _, _) in got.items()}
    assert all(e.data["source"] == "llmfail probe" for e in events)
    assert {e.model: e.data["ok"] for e in events} == {m: s == "healthy" for m, (s, _, _) in got.items()}
    assert store.benches(clock.now) == []  # a probe measures; it never benches


def test_an_answer_after_slow_threshold_is_slow_and_a_slow_entry_is_not_healthy(
    make_engine: Callable[..., Engine], server: HTTPServer, clock: FakeClock, store: SqliteStore
) -> None:
    def slow(request: Request) -> Response:
        clock.advance(2.0)  # the first (and only) token after 2 s of virtual time
        return ok("p")

    route(server, "slow", slow)
    engine = make_engine("""
defaults: {slow_threshold: 1s}
providers:
  slow: {type: openai, base_url: "{url}/slow/v1"}
chains:
  only: [slow/m]
""")
    report = probe(engine)
    (result,) = report.results
    assert (result.state, result.latency_ms, result.kind) == ("slow", pytest.approx(2000), None)
    assert report.chains == {"only": False} and not report.ok  # answering, but too slow to count as healthy
    (event,) = store.events(types=[ev.PROBE])
    assert event.data == {"ok": True, "state": "slow", "source": "llmfail probe"}
    assert event.latency_ms == pytest.approx(2000)


def test_probes_of_five_entries_run_concurrently(make_engine: Callable[..., Engine], server: HTTPServer) -> None:
    """Each handler waits until all five requests have arrived: sequential probes would break the
    barrier (each would wait alone until its timeout) and come back degraded."""
    barrier = threading.Barrier(5, timeout=5)

    def together(request: Request) -> Response:
        barrier.wait()
        return ok("p")

    for name in "abcde":
        route(server, name, together)
    providers = "\n".join(f'  {n}: {{type: openai, base_url: "{{url}}/{n}/v1"}}' for n in "abcde")
    engine = make_engine(
        f"defaults: {{timeout: 10s}}\nproviders:\n{providers}\nchains:\n  five: [a/m, b/m, c/m, d/m, e/m]\n"
    )
    began = time.monotonic()
    report = probe(engine)
    assert [r.state for r in report.results] == ["healthy"] * 5, report.results
    assert not barrier.broken
    assert time.monotonic() - began < 5  # about the slowest probe, far below five barrier timeouts


def test_a_probe_is_the_adapters_real_one_token_request_with_the_key_kept_out_of_the_log(
    make_engine: Callable[..., Engine], server: HTTPServer, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTH_KEY", CANARY_KEY)
    calls = Calls(
        Response(
            json.dumps(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude",
                    "content": [{"type": "text", "text": "p"}],
                    "stop_reason": "max_tokens",
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                }
            ),
            content_type="application/json",
        )
    )
    server.expect_request("/anthropic/v1/messages", method="POST").respond_with_handler(calls)
    engine = make_engine("""
providers:
  claude: {type: anthropic, base_url: "{url}/anthropic", api_key_env: ANTH_KEY}
chains:
  c: [claude/claude-sonnet-4-5]
""")
    report = probe(engine)
    assert report.ok and report.results[0].state == "healthy"
    (request,) = calls.requests
    body = json.loads(request.data)
    assert body["max_tokens"] == 1 and body["model"] == "claude-sonnet-4-5"
    assert request.headers["x-api-key"] == CANARY_KEY
    with store._read() as conn:
        dump = "\n".join(str(row) for row in conn.execute("SELECT * FROM events"))
    assert CANARY_KEY not in dump


def test_an_auth_dead_credential_falls_through_to_the_next(
    make_engine: Callable[..., Engine], server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K1", "sk-dead")
    monkeypatch.setenv("K2", "sk-live")

    def by_key(request: Request) -> Response:
        if request.headers.get("authorization") == "Bearer sk-live":
            return ok("p")
        return openai_error(401, code="invalid_api_key", err_type="invalid_request_error")

    route(server, "a", by_key)
    engine = make_engine("""
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
chains:
  c:
    - model: a/m
      credentials: [{api_key_env: K1}, {api_key_env: K2}]
""")
    assert [r.state for r in probe(engine).results] == ["healthy"]


@pytest.mark.parametrize(
    ("kind", "status", "state"),
    [
        (Kind.TIMEOUT, None, "offline"),
        (Kind.AUTH, 403, "offline"),
        (Kind.TRANSIENT, None, "offline"),
        (Kind.TRANSIENT, 502, "degraded"),
        (Kind.RATE_LIMITED, 429, "degraded"),
        (Kind.INVALID_REQUEST, 400, "degraded"),
        (Kind.CONTEXT_LENGTH, 413, "degraded"),
    ],
)
def test_errors_map_to_states(kind: Kind, status: int | None, state: str) -> None:
    assert state_of_error(ProviderError(kind, "x", status=status)) == state


# --------------------------------------------------------------------------- the command


def write_config(tmp_path: Path, server: HTTPServer, text: str) -> Config:
    config = make_config(text, server)
    (tmp_path / "chains.yaml").write_text(text.replace("{url}", server.url_for("").rstrip("/")), encoding="utf-8")
    return config


def test_probe_json_and_exit_codes(tmp_path: Path, server: HTTPServer) -> None:
    stop = threading.Event()
    serve_four_states(server, stop)
    write_config(tmp_path, server, FOUR_STATES % {"port": closed_port()})
    try:
        everything = runner.invoke(app_(), ["probe", "--json"])
        good = runner.invoke(app_(), ["probe", "--chain", "good", "--json"])
        flaky = runner.invoke(app_(), ["probe", "--chain", "flaky"])
    finally:
        stop.set()
    assert everything.exit_code == 1  # flaky and dead have no healthy entry
    rows = json.loads(everything.stdout)
    assert [list(row) for row in rows] == [["model", "state", "latency_ms", "kind", "status"]] * 7
    assert {row["model"]: row["state"] for row in rows} == {
        "slow/m": "healthy",
        "fast/m": "healthy",
        "busy/m": "degraded",
        "limited/m": "degraded",
        "silent/m": "offline",
        "keyless/m": "offline",
        "gone/m": "offline",
    }
    assert good.exit_code == 0, good.stderr
    assert [row["model"] for row in json.loads(good.stdout)] == ["slow/m", "fast/m"]
    assert flaky.exit_code == 1 and "chain 'flaky' has no healthy entry" in flaky.stderr
    assert "busy/m" in flaky.stdout and "degraded" in flaky.stdout
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    try:
        assert len(store.events(types=[ev.PROBE])) == 7 + 2 + 2
    finally:
        store.close()


def test_probe_with_an_unknown_chain_is_a_usage_error(tmp_path: Path, server: HTTPServer) -> None:
    write_config(tmp_path, server, "providers:\n  a: {type: openai, base_url: '{url}/a/v1'}\nchains:\n  c: [a/m]\n")
    result = runner.invoke(app_(), ["probe", "--chain", "nope"])
    assert result.exit_code == 2 and "no chain named 'nope'" in result.stderr


def app_() -> Any:
    from llmfail.cli import app

    return app


def test_an_engine_observer_sees_every_probe_result(
    make_engine: Callable[..., Engine], server: HTTPServer, store: SqliteStore
) -> None:
    """Probe results are written through the engine's journal, so `on_event` sees them (and with
    the ids the store gave them)."""
    route(server, "fast", lambda r: ok("p"))
    route(server, "busy", lambda r: openai_error(503))
    engine = make_engine("""
providers:
  fast: {type: openai, base_url: "{url}/fast/v1"}
  busy: {type: openai, base_url: "{url}/busy/v1"}
chains:
  main: [fast/m, busy/m]
""")
    seen: list[Event] = []
    engine.on_event(seen.append)
    probe(engine)
    probes = [e for e in seen if e.type == ev.PROBE]
    assert {(e.model, e.data["state"]) for e in probes} == {("fast/m", "healthy"), ("busy/m", "degraded")}
    assert [e.id for e in probes] == [e.id for e in store.events(types=[ev.PROBE])]
