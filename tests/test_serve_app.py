"""The gateway's finer points, in-process: aiohttp's test client against `create_app`, loopback fakes behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from werkzeug import Request, Response

from llmfail.engine import Engine
from llmfail.serve.app import GATEWAY, create_app

from .conftest import CANARY_KEY, Calls, ok, openai_chunk, openai_error, sse

TWO = """
defaults: {attempts: 1, cooldown: 1m, on_all_benched: fail}
providers:
  a: {type: openai, base_url: "{url}/a/v1", api_key_env: KEY_A}
  b: {type: openai, base_url: "{url}/b/v1"}
  ant: {type: anthropic, base_url: "{url}/ant"}
chains:
  main: [a/m1, b/m2]
  restart: [{model: a/m1, mid_stream: restart}, b/m2]
  anthropic: [ant/claude]
"""

HI = {"model": "main", "messages": [{"role": "user", "content": "hi"}]}

Gateway = Callable[..., Any]


@pytest.fixture
async def gateway(make_engine: Callable[..., Engine]) -> AsyncIterator[Gateway]:
    """`await gateway(**create_app options)`: a test client on a fresh app over the TWO config."""
    clients: list[TestClient[Any, Any]] = []

    async def make(**options: Any) -> TestClient[Any, Any]:
        engine = make_engine(TWO)
        client = TestClient(TestServer(create_app(engine, **options)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
        await engine_of(client).aclose()


def engine_of(client: TestClient[Any, Any]) -> Engine:
    return client.server.app[GATEWAY].engine


def route(server: Any, name: str, handler: Any) -> Any:
    server.expect_request(f"/{name}/v1/chat/completions", method="POST").respond_with_handler(handler)
    return handler


async def post(client: TestClient[Any, Any], body: Any = HI, **kwargs: Any) -> tuple[int, Any, Any]:
    response = await client.post("/v1/chat/completions", json=body, **kwargs)
    return response.status, await response.json(), response.headers


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "main"}, "messages"),
        ({"model": "main", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": "main", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({**HI, "n": 2}, "n"),
        ({**HI, "max_tokens": 0}, "max_tokens"),
        ({**HI, "temperature": "hot"}, "temperature"),
        ({**HI, "stop": [1]}, "stop"),
    ],
    ids=["no model", "no messages", "tool role", "image part", "n=2", "max_tokens 0", "temperature text", "stop int"],
)
async def test_an_invalid_body_is_a_400_naming_the_field(gateway, server, body, param):
    calls = route(server, "a", Calls(ok()))
    status, error, _ = await post(await gateway(), body)
    assert status == 400 and error["error"]["param"] == param and error["error"]["type"] == "invalid_request_error"
    assert calls.count == 0


async def test_a_body_that_is_not_json_is_a_400(gateway):
    response = await (await gateway()).post("/v1/chat/completions", data=b"{nope")
    assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_json"


async def test_a_body_over_the_limit_is_a_413_in_openai_shape(gateway, server):
    calls = route(server, "a", Calls(ok()))
    big = {**HI, "messages": [{"role": "user", "content": "x" * 5000}]}
    status, error, _ = await post(await gateway(body_limit=4096), big)
    assert status == 413 and error["error"]["code"] == "request_too_large"
    assert calls.count == 0


async def test_developer_messages_and_text_parts_reach_the_entry_as_plain_messages(gateway, server):
    calls = route(server, "a", Calls(ok("fine")))
    body = {
        "model": "main",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
        ],
    }
    status, _, _ = await post(await gateway(), body)
    assert status == 200
    assert json.loads(calls.requests[0].get_data())["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]


async def test_openai_only_fields_are_dropped_for_an_anthropic_entry_with_a_debug_line(gateway, server, caplog):
    answer = {
        "type": "message",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 2, "output_tokens": 1},
    }
    calls = Calls(Response(json.dumps(answer), content_type="application/json"))
    server.expect_request("/ant/v1/messages").respond_with_handler(calls)
    with caplog.at_level(logging.DEBUG, logger="llmfail"):
        status, body, _ = await post(await gateway(), {**HI, "model": "anthropic", "seed": 1, "user": "u-9"})
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    sent = json.loads(calls.requests[0].get_data())
    assert "seed" not in sent and sent["metadata"] == {"user_id": "u-9"}
    assert "dropped the fields seed" in caplog.text


# --------------------------------------------------------------------------- errors


async def test_an_exhausted_chain_is_a_502_listing_each_cause_without_secrets(gateway, server, monkeypatch):
    monkeypatch.setenv("KEY_A", CANARY_KEY)
    route(server, "a", Calls(openai_error(503, message=f"upstream broke near {CANARY_KEY}")))
    route(server, "b", Calls(openai_error(500)))
    status, error, headers = await post(await gateway())
    assert status == 502 and error["error"]["code"] == "chain_exhausted"
    assert [(c["model"], c["kind"], c["status"]) for c in error["error"]["causes"]] == [
        ("a/m1", "transient", 503),
        ("b/m2", "transient", 500),
    ]
    assert CANARY_KEY not in json.dumps(error)
    assert headers["x-llmfail-failovers"] == "1" and "x-llmfail-model" not in headers
    assert headers["x-should-retry"] == "false"  # the engine retried already: SDKs must not multiply it


@pytest.mark.parametrize(
    "code, status, expected",
    [
        ("content_policy_violation", 400, "content_filter"),
        ("context_length_exceeded", 400, "context_length_exceeded"),
    ],
)
async def test_a_request_refused_for_its_content_or_length_is_a_400_with_openais_code(
    gateway, server, code, status, expected
):
    route(server, "a", Calls(openai_error(400, code, "invalid_request_error")))
    route(server, "b", Calls(openai_error(400, code, "invalid_request_error")))
    got, error, _ = await post(await gateway())
    assert got == status and error["error"]["code"] == expected


async def test_an_invalid_request_under_on_invalid_request_fail_is_a_400_without_failover(make_engine, server):
    route(server, "a", Calls(openai_error(400, "invalid_value", "invalid_request_error")))
    b = route(server, "b", Calls(ok()))
    engine = make_engine(TWO.replace("defaults: {attempts: 1,", "defaults: {attempts: 1, on_invalid_request: fail,"))
    async with TestClient(TestServer(create_app(engine))) as client:
        status, error, headers = await post(client)
    await engine.aclose()
    assert status == 400 and error["error"]["code"] == "invalid_request"
    assert error["error"]["causes"][0]["kind"] == "invalid_request" and headers["x-llmfail-failovers"] == "0"
    assert b.count == 0


async def test_every_daily_quota_used_up_is_a_429_insufficient_quota(make_engine, server):
    route(server, "a", Calls(ok()))
    engine = make_engine(TWO.replace("main: [a/m1, b/m2]", "main: [{model: a/m1, daily_quota: 1}]"))
    async with TestClient(TestServer(create_app(engine))) as client:
        assert (await post(client))[0] == 200
        status, error, _ = await post(client)
    await engine.aclose()
    assert status == 429 and error["error"]["code"] == "insufficient_quota"
    assert error["error"]["causes"][0]["kind"] == "quota"


async def test_every_entry_benched_answers_503_with_retry_after_even_for_a_stream(gateway):
    client = await gateway()
    engine_of(client).bench("a/m1", "90s")
    engine_of(client).bench("b/m2", "2m")
    for body in (HI, {**HI, "stream": True}):
        status, error, headers = await post(client, body)
        assert status == 503 and error["error"]["code"] == "all_benched"
        assert headers["Retry-After"] == "90"


class Stalled:
    """An upstream that holds each request until `release` is set; `reached()` waits for the first."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.release, self.arrived = threading.Event(), threading.Event()

    def __call__(self, request: Request) -> Response:
        self.arrived.set()
        self.release.wait(10)
        return ok(self.answer)

    async def reached(self) -> bool:
        return await asyncio.to_thread(self.arrived.wait, 10)


async def test_past_max_concurrency_a_request_is_refused_at_once_with_503(gateway, server):
    stall = Stalled("late")
    route(server, "a", stall)
    client = await gateway(max_concurrency=1)
    first = asyncio.create_task(post(client))
    try:
        assert await stall.reached()
        status, error, headers = await post(client)
        assert status == 503 and error["error"]["code"] == "overloaded" and headers["Retry-After"] == "1"
    finally:
        stall.release.set()
    assert (await first)[0] == 200
    assert (await post(client))[0] == 200  # the slot is free again


async def test_stopping_lets_a_request_in_flight_finish_within_the_grace(gateway, server):
    stall = Stalled("in time")
    route(server, "a", stall)
    client = await gateway()
    first = asyncio.create_task(post(client))
    assert await stall.reached()
    gateway_ = client.server.app[GATEWAY]
    gateway_.draining = True
    drained = asyncio.create_task(gateway_.drain(10))
    status, error, headers = await post(client)  # a late request on a kept-alive connection
    assert status == 503 and error["error"]["code"] == "stopping" and headers["x-should-retry"] == "true"
    assert headers["Connection"] == "close"
    stall.release.set()
    assert await drained == 0
    status, answer, _ = await first
    assert status == 200 and answer["choices"][0]["message"]["content"] == "in time"


async def test_stopping_cancels_what_still_runs_when_the_grace_is_over_and_benches_nothing(gateway, server, caplog):
    stall = Stalled("too late")
    route(server, "a", stall)
    client = await gateway()
    first = asyncio.create_task(post(client))
    try:
        assert await stall.reached()
        with caplog.at_level(logging.INFO, logger="llmfail.serve.access"):
            assert await client.server.app[GATEWAY].drain(0.05) == 1  # the upstream answers only on release
    finally:
        stall.release.set()
    with pytest.raises(aiohttp.ClientError):  # nothing was answered: the connection is dropped
        await first
    (access,) = [r.getMessage() for r in caplog.records if r.name == "llmfail.serve.access"]
    assert " status=503 " in access  # stopped by the gateway, not a client that left (499)
    store = engine_of(client).store
    assert [(e.kind, e.data["ok"]) for e in store.events(types=["request"])] == [("cancelled", False)]
    assert store.events(types=["benched", "attempt_failed"]) == []


async def test_a_stream_still_running_when_the_grace_is_over_ends_with_an_error_event_not_done(gateway, server):
    release, arrived = threading.Event(), threading.Event()

    def trickle(request: Request) -> Response:
        def body() -> Any:
            yield sse(openai_chunk("early "), done=False)
            arrived.set()
            release.wait(10)
            yield sse(openai_chunk("late", finish="stop"))

        return Response(body(), content_type="text/event-stream")

    route(server, "a", trickle)
    client = await gateway()
    response = await client.post("/v1/chat/completions", json={**HI, "stream": True})
    lines = [await response.content.readline()]  # the first chunk has reached the client
    try:
        assert await asyncio.to_thread(arrived.wait, 10)
        gateway_ = client.server.app[GATEWAY]
        gateway_.draining = True
        assert await gateway_.drain(0.05) == 1
    finally:
        release.set()
    with contextlib.suppress(aiohttp.ClientPayloadError):  # the connection closes after the event
        while line := await response.content.readline():
            lines.append(line)
    events = [line[6:].decode() for line in lines if line.startswith(b"data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "early "
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "stream_interrupted"
    assert "stopped" in json.loads(events[-1])["error"]["message"]


# --------------------------------------------------------------------------- streams


async def test_a_stream_under_mid_stream_restart_marks_the_restart_before_the_next_answer(gateway, server):
    cut = sse(openai_chunk("par"), done=False)  # no finish_reason: a cut stream
    route(server, "a", Calls(Response(cut, content_type="text/event-stream")))
    whole = sse(openai_chunk("whole"), openai_chunk(finish="stop"))
    route(server, "b", Calls(Response(whole, content_type="text/event-stream")))
    response = await (await gateway()).post("/v1/chat/completions", json={**HI, "model": "restart", "stream": True})
    assert response.headers["x-llmfail-model"] == "a/m1"  # the entry that sent the first token
    events = [line[6:] for line in (await response.text()).split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["par", None, "whole", None]
    assert chunks[1]["x_llmfail_restart"] == {"failed_model": "a/m1", "model": "b/m2", "kind": "transient"}
    assert chunks[-1]["model"] == "b/m2" and chunks[-1]["choices"][0]["finish_reason"] == "stop"


# --------------------------------------------------------------------------- health, admin off, access log


async def test_readyz_turns_503_when_no_chain_has_a_live_entry_while_healthz_stays_200(gateway):
    client = await gateway()
    assert (await client.get("/readyz")).status == 200
    for model in ("a/m1", "b/m2", "ant/claude"):
        engine_of(client).bench(model, "1m")
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["live_chains"] == []
    assert (await client.get("/healthz")).status == 200


async def test_without_an_admin_token_the_admin_api_does_not_exist(gateway):
    client = await gateway()
    response = await client.get("/admin/benches", headers={"Authorization": "Bearer anything"})
    assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"


async def test_a_failure_of_the_gateway_itself_is_a_500_in_openai_shape_with_its_traceback_logged(make_engine, caplog):
    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    app = create_app(make_engine(TWO))
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.INFO, logger="llmfail"):
            response = await client.get("/broken")
            assert response.status == 500
            assert (await response.json())["error"]["code"] == "internal_error"
    await app[GATEWAY].engine.aclose()
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
    (access,) = [r.getMessage() for r in caplog.records if r.name == "llmfail.serve.access"]
    assert access.startswith("GET /broken chain=- status=500")


async def test_admin_events_reads_limit_0_as_all_like_the_cli_and_refuses_a_negative_one(gateway):
    client = await gateway(admin_token="admin-t")
    auth = {"Authorization": "Bearer admin-t"}
    assert (await client.post("/admin/bench", json={"model": "a/m1", "for": "1m"}, headers=auth)).status == 200
    for limit in ("0", "5"):
        answer = await client.get("/admin/events", params={"limit": limit}, headers=auth)
        assert [e["type"] for e in (await answer.json())["events"]] == ["benched"]
    refused = await client.get("/admin/events", params={"limit": "-1"}, headers=auth)
    assert refused.status == 400 and "limit" in (await refused.json())["error"]["message"]


async def test_each_request_writes_one_access_line(gateway, server, caplog):
    route(server, "a", Calls(openai_error(503)))
    route(server, "b", Calls(ok()))
    with caplog.at_level(logging.INFO, logger="llmfail.serve.access"):
        _, _, headers = await post(await gateway())
        # The line follows the answer: the client can have it before the handler has finished.
        for _ in range(500):
            if lines := [r.getMessage() for r in caplog.records if r.name == "llmfail.serve.access"]:
                break
            await asyncio.sleep(0.01)
    assert len(lines) == 1
    assert lines[0].startswith("POST /v1/chat/completions chain=main status=200 model=b/m2 failovers=1 ms=")
    assert lines[0].endswith(f"id={headers['x-llmfail-request-id']}")
