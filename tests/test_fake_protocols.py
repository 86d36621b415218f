"""The fake servers (`llmfail.fakes.protocols`) speak each wire protocol well enough that
the real adapter, classifier and engine read them exactly as they read the real thing.

`simulate` and the `mock` provider rely on this: a fake whose 429 the adapter
misreads would make every simulated failover prove nothing.
"""

from __future__ import annotations

import asyncio
from random import Random
from typing import Any

import pytest

from llmfail.config import parse_config
from llmfail.engine import Engine
from llmfail.errors import ChainExhausted, Kind
from llmfail.fakes import FakeBehaviour, FakeTransport, Fault
from llmfail.fakes.protocols import PROTOCOLS
from llmfail.providers.base import Runtime
from llmfail.result import Result, Token
from llmfail.store.sqlite import SqliteStore

from .conftest import FakeClock
from .wires import WIRES

PROMPT = "tell me about failover chains"

#: What each status a fake can play must classify to, for every protocol (the kinds table of docs/concepts.md).
STATUS_KINDS = {
    400: Kind.INVALID_REQUEST,
    401: Kind.AUTH,
    403: Kind.AUTH,
    404: Kind.AUTH,
    408: Kind.TIMEOUT,
    413: Kind.CONTEXT_LENGTH,
    429: Kind.RATE_LIMITED,
    500: Kind.TRANSIENT,
    502: Kind.TRANSIENT,
    503: Kind.TRANSIENT,
    504: Kind.TRANSIENT,
    529: Kind.TRANSIENT,
}


def engine_for(protocol: str, store: SqliteStore, clock: FakeClock, *faults: str) -> tuple[Engine, FakeTransport]:
    """A one-entry chain on `protocol` whose HTTP goes to a FakeTransport playing `faults`."""
    config = parse_config(
        f"""
defaults: {{attempts: 1, on_content_filter: next, on_invalid_request: next}}
providers:
  fake: {{type: {protocol}, base_url: "http://fake.invalid", api_key_env: FAKE_KEY}}
chains:
  main: [fake/model-x]
""",
        "test.yaml",
    )
    runtime = Runtime(clock, clock.sleep, Random(3))
    transport = FakeTransport(protocol, FakeBehaviour(faults=tuple(Fault(f) for f in faults)), runtime)
    return Engine(config, store, clock=clock, sleep=clock.sleep, rng=Random(3), transport=transport), transport


def run(engine: Engine, **kwargs: Any) -> Result:
    async def go() -> Result:
        try:
            return await engine.complete("main", PROMPT, **kwargs)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def cause(engine: Engine, **kwargs: Any) -> Any:
    with pytest.raises(ChainExhausted) as caught:
        run(engine, **kwargs)
    (only,) = caught.value.causes
    return only


parametrize_protocols = pytest.mark.parametrize("protocol", WIRES)
both_ways = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


def test_every_wire_protocol_has_a_fake() -> None:
    assert set(PROTOCOLS) == set(WIRES)


@parametrize_protocols
@both_ways
def test_the_fakes_answer_parses_to_the_echoed_prompt_with_usage(protocol, stream, store, clock):
    engine, transport = engine_for(protocol, store, clock)
    result = run(engine, stream=stream)
    assert result.text == PROMPT and result.warnings == []
    assert result.usage.to_json() == {"input_tokens": 5, "output_tokens": 5}
    assert transport.requests == 1


@parametrize_protocols
def test_the_fakes_stream_arrives_word_by_word_through_the_adapter(protocol, store, clock):
    engine, _ = engine_for(protocol, store, clock)

    async def go() -> list[Any]:
        try:
            return [item async for item in engine.stream("main", PROMPT)]
        finally:
            await engine.aclose()

    items = asyncio.run(go())
    assert [i.text for i in items if isinstance(i, Token)] == ["tell ", "me ", "about ", "failover ", "chains"]
    assert items[-1].text == PROMPT


@parametrize_protocols
def test_a_cut_stream_from_the_fake_lacks_its_completion_signal_and_is_transient(protocol, store, clock):
    engine, _ = engine_for(protocol, store, clock, "stream-cut")
    error = cause(engine, stream=True)
    assert error.kind == Kind.TRANSIENT and error.message.startswith("stream cut after ")


@parametrize_protocols
def test_a_cut_whole_answer_from_the_fake_is_transient(protocol, store, clock):
    engine, _ = engine_for(protocol, store, clock, "stream-cut")
    assert cause(engine).kind == Kind.TRANSIENT


@parametrize_protocols
@pytest.mark.parametrize("status", sorted(STATUS_KINDS))
def test_each_error_status_of_the_fake_classifies_as_the_spec_says(protocol, status, store, clock):
    engine, _ = engine_for(protocol, store, clock, str(status))
    error = cause(engine)
    assert (error.kind, error.status) == (STATUS_KINDS[status], status)
    assert error.message


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
def test_the_fakes_429_carries_a_short_wait(protocol, store, clock):
    engine, _ = engine_for(protocol, store, clock, "429")
    error = cause(engine)
    assert error.retry_after == 1.0  # retry-after for OpenAI and Anthropic; RetryInfo for Gemini


def test_the_ollama_fake_has_no_wait_on_its_429_as_ollama_sends_none(store, clock):
    engine, _ = engine_for("ollama", store, clock, "429")
    assert cause(engine).retry_after is None


@parametrize_protocols
@both_ways
def test_the_fakes_content_filter_is_a_content_filter_with_a_reason(protocol, stream, store, clock):
    engine, _ = engine_for(protocol, store, clock, "content-filter")
    error = cause(engine, stream=stream)
    assert error.kind == Kind.CONTENT_FILTER and error.reason


@parametrize_protocols
def test_the_fakes_context_length_error_is_context_length(protocol, store, clock):
    engine, _ = engine_for(protocol, store, clock, "context-length")
    assert cause(engine).kind == Kind.CONTEXT_LENGTH


@parametrize_protocols
@both_ways
def test_a_malformed_answer_from_the_fake_is_transient(protocol, stream, store, clock):
    engine, _ = engine_for(protocol, store, clock, "malformed")
    assert cause(engine, stream=stream).kind == Kind.TRANSIENT


def test_anthropics_fake_overload_is_the_real_529_shape(store, clock):
    headers, body = PROTOCOLS["anthropic"]().error(529)
    assert body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "req_fake",
    }
    assert headers["x-should-retry"] == "true"


def test_geminis_fake_429_is_resource_exhausted_with_retry_info_and_no_header(store, clock):
    headers, body = PROTOCOLS["gemini"]().error(429)
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED" and "retry-after" not in headers
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"} in body["error"]["details"]


@pytest.mark.parametrize(
    ("protocol", "fault", "wait"),
    [
        ("openai", "429@20s", 20.0),
        ("anthropic", "429@20s", 20.0),
        ("gemini", "429@20s", 20.0),
        ("ollama", "429@1.5s", 1.5),
        ("openai", "503@2m", 120.0),
    ],
)
def test_a_status_with_a_wait_is_answered_with_that_wait_the_way_the_provider_says_it(
    protocol, fault, wait, store, clock
):
    engine, _ = engine_for(protocol, store, clock, fault)
    error = cause(engine)
    assert (error.status, error.retry_after) == (int(fault.partition("@")[0]), wait)


def test_geminis_wait_stays_in_its_body_and_openais_reset_header_follows_it():
    headers, body = PROTOCOLS["gemini"]().error(429)
    assert "retry-after" not in PROTOCOLS["gemini"]().with_wait(headers, body, 20.0)
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"} in body["error"]["details"]
    headers, body = PROTOCOLS["openai"]().error(429)
    assert PROTOCOLS["openai"]().with_wait(headers, body, 0.25) == {
        "retry-after-ms": "250",
        "x-ratelimit-reset-requests": "0.25s",
    }
