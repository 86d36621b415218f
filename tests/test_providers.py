"""Each wire protocol (docs/providers.md) against a loopback server: request shape, answers, usage,
every recorded error shape, the recorded streams, and no key in anything llmfail writes.

Bodies here are written out from each vendor's API reference (not rendered by
llmfail's own fakes), so an adapter that drifts from the real wire format fails.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from werkzeug import Request, Response

from llmfail.cli import app
from llmfail.engine import Engine
from llmfail.errors import ChainExhausted, FailFast, Kind, LlmfailError
from llmfail.result import Result
from llmfail.store.sqlite import SqliteStore

from .conftest import CANARY_KEY, Calls, openai_answer
from .wires import ALL, AUTH_HEADERS, Wire

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "provider-errors"
#: The adapter each fixture file goes through (the fixtures' README.md).
ADAPTER_OF_FILE = {
    "openai": "openai",
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama",
}
CASES = [(ADAPTER_OF_FILE[p.stem], fx) for p in sorted(FIXTURES.glob("*.json")) for fx in json.loads(p.read_text())]
HTTP_CASES = [(wire, fx) for wire, fx in CASES if "stream" not in fx]
STREAM_CASES = [(wire, fx) for wire, fx in CASES if "stream" in fx]

KEY = "sk-provider-test-key-0001"


def chain(wire: str, *, attempts: int = 1, single: bool = False, **policy: str) -> str:
    settings = {
        "attempts": str(attempts),
        "backoff": "{base: 1ms, max: 2ms}",
        "timeout": "2s",
        "on_content_filter": "next",
        "on_invalid_request": "next",
        **policy,
    }
    defaults = "\n  ".join(f"{key}: {value}" for key, value in settings.items())
    return f"""
defaults:
  {defaults}
providers:
  {Wire(wire).provider("p", "P_KEY")}
  {Wire(wire).provider("s", "S_KEY")}
chains:
  main: {"[p/m1]" if single else "[p/m1, s/m2]"}
"""


def route(server: Any, wire: str, label: str, *responses: Any) -> Calls:
    calls = Calls(*responses)
    Wire(wire).route(server, label, "m1" if label == "p" else "m2", calls)
    return calls


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


def complete(engine: Engine, messages: Any = "hi", **kwargs: Any) -> Result:
    async def go() -> Result:
        try:
            return await engine.complete("main", messages, **kwargs)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def failure(engine: Engine, **kwargs: Any) -> Any:
    """The first classified cause of a walk that is expected to fail."""
    with pytest.raises(LlmfailError) as caught:
        complete(engine, **kwargs)
    error = caught.value
    return error.causes[0] if isinstance(error, ChainExhausted) else error


def body_of(request: Request) -> dict[str, Any]:
    return json.loads(request.get_data())


# ---------------------------------------------------------------- request shape


def test_openai_request_shape(server, make_engine, monkeypatch):
    monkeypatch.setenv("P_KEY", KEY)
    calls = route(server, "openai", "p", json_response(openai_answer("x")))
    complete(make_engine(chain("openai")), system="be brief", max_tokens=50, temperature=0.2)
    request = calls.requests[0]
    assert request.path == "/p/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert body_of(request) == {
        "model": "m1",
        "max_tokens": 50,
        "temperature": 0.2,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    }


def test_openai_streaming_asks_for_usage_and_sends_no_auth_header_without_a_key(server, make_engine):
    calls = route(
        server,
        "openai",
        "p",
        Response('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n', content_type="text/event-stream"),
    )
    complete(make_engine(chain("openai")), stream=True)
    request = calls.requests[0]
    assert "authorization" not in request.headers
    body = body_of(request)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "max_tokens" not in body


def anthropic_answer(text: str = "Hello!") -> dict[str, Any]:
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 2095, "output_tokens": 503},
    }


def test_anthropic_request_shape(server, make_engine, monkeypatch):
    monkeypatch.setenv("P_KEY", KEY)
    calls = route(server, "anthropic", "p", json_response(anthropic_answer()))
    complete(make_engine(chain("anthropic")), system="be brief", temperature=0.2)
    request = calls.requests[0]
    assert request.path == "/p/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert body_of(request) == {
        "model": "m1",
        "max_tokens": 1024,
        "system": "be brief",
        "temperature": 0.2,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_configured_headers_add_to_and_override_the_protocol_defaults_but_never_the_key(
    server, make_engine, monkeypatch
):
    monkeypatch.setenv("P_KEY", KEY)
    calls = route(server, "anthropic", "p", json_response(anthropic_answer()))
    headers = '{Anthropic-Version: "2099-01-01", anthropic-beta: "tools-1", X-Api-Key: "not-the-key"}'
    text = chain("anthropic").replace("api_key_env: P_KEY}", f"api_key_env: P_KEY, headers: {headers}}}", 1)
    complete(make_engine(text))
    request = calls.requests[0]
    assert request.headers.getlist("anthropic-version") == ["2099-01-01"]
    assert request.headers["anthropic-beta"] == "tools-1"
    assert request.headers.getlist("x-api-key") == [KEY]


def test_anthropic_always_sends_max_tokens_the_callers_or_the_policys(server, make_engine):
    calls = route(server, "anthropic", "p", json_response(anthropic_answer()))
    complete(make_engine(chain("anthropic")), max_tokens=50)
    complete(make_engine(chain("anthropic", max_tokens="333")))
    complete(make_engine(chain("anthropic")), stream=False)
    assert [body_of(r)["max_tokens"] for r in calls.requests] == [50, 333, 1024]


def test_anthropic_stream_flag_and_multi_turn_messages(server, make_engine):
    calls = route(
        server,
        "anthropic",
        "p",
        Response('event: message_stop\ndata: {"type": "message_stop"}\n\n', content_type="text/event-stream"),
    )
    turns = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    complete(make_engine(chain("anthropic")), turns, stream=True)
    body = body_of(calls.requests[0])
    assert body["stream"] is True and body["system"] == "sys"
    assert body["messages"] == turns[1:]


def ollama_answer(text: str = "Hello! How are you today?") -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "stop",
        "total_duration": 5191566416,
        "load_duration": 2154458,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 383809000,
        "eval_count": 298,
        "eval_duration": 4799921000,
    }


def test_ollama_request_shape(server, make_engine):
    calls = route(server, "ollama", "p", json_response(ollama_answer()))
    complete(make_engine(chain("ollama")), system="be brief", max_tokens=50, temperature=0.2)
    request = calls.requests[0]
    assert request.path == "/p/api/chat"
    assert "authorization" not in request.headers
    assert body_of(request) == {
        "model": "m1",
        "stream": False,
        "options": {"num_predict": 50, "temperature": 0.2},
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    }


def test_ollama_always_says_whether_to_stream_because_its_default_is_to_stream(server, make_engine):
    calls = route(
        server,
        "ollama",
        "p",
        json_response(ollama_answer()),
        Response(json.dumps(ollama_answer()) + "\n", content_type="application/x-ndjson"),
    )
    complete(make_engine(chain("ollama")))
    complete(make_engine(chain("ollama")), stream=True)
    assert [body_of(r)["stream"] for r in calls.requests] == [False, True]
    assert "options" not in body_of(calls.requests[0])


def gemini_answer(text: str = "Hello") -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash",
    }


def test_gemini_request_shape(server, make_engine, monkeypatch):
    monkeypatch.setenv("P_KEY", KEY)
    calls = route(server, "gemini", "p", json_response(gemini_answer()))
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    complete(make_engine(chain("gemini")), turns, system="be brief", max_tokens=50, temperature=0.2)
    request = calls.requests[0]
    assert request.path == "/p/v1beta/models/m1:generateContent"
    assert request.query_string == b"", "the key never goes in the URL"
    assert request.headers["x-goog-api-key"] == KEY
    assert "authorization" not in request.headers
    assert body_of(request) == {
        "contents": [
            {"role": "user", "parts": [{"text": "a"}]},
            {"role": "model", "parts": [{"text": "b"}]},
            {"role": "user", "parts": [{"text": "c"}]},
        ],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2},
    }


def test_gemini_streams_on_its_own_method_with_alt_sse(server, make_engine, monkeypatch):
    monkeypatch.setenv("P_KEY", KEY)
    calls = route(
        server,
        "gemini",
        "p",
        Response(f"data: {json.dumps(gemini_answer())}\r\n\r\n", content_type="text/event-stream"),
    )
    complete(make_engine(chain("gemini")), stream=True)
    request = calls.requests[0]
    assert request.path == "/p/v1beta/models/m1:streamGenerateContent"
    assert request.args.to_dict() == {"alt": "sse"}
    assert "stream" not in body_of(request)


# ---------------------------------------------------------------- answers and usage


def test_anthropic_answer_joins_the_text_blocks_and_reads_usage(server, make_engine):
    answer = anthropic_answer()
    answer["content"] = [
        {"type": "thinking", "thinking": "hmm", "signature": "x"},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "text", "text": " world"},
    ]
    route(server, "anthropic", "p", json_response(answer))
    result = complete(make_engine(chain("anthropic")))
    assert result.text == "Hello world" and result.model == "p/m1"
    assert result.usage.to_json() == {"input_tokens": 2095, "output_tokens": 503}


def test_ollama_answer_and_usage_from_the_eval_counts(server, make_engine):
    route(server, "ollama", "p", json_response(ollama_answer()))
    result = complete(make_engine(chain("ollama")))
    assert result.text == "Hello! How are you today?"
    assert result.usage.to_json() == {"input_tokens": 26, "output_tokens": 298}


def test_gemini_answer_skips_thought_parts_and_counts_thinking_as_output(server, make_engine):
    answer = gemini_answer()
    answer["candidates"][0]["content"]["parts"] = [
        {"text": "let me think", "thought": True},
        {"text": "Hel"},
        {"text": "lo"},
    ]
    answer["usageMetadata"]["thoughtsTokenCount"] = 5
    route(server, "gemini", "p", json_response(answer))
    result = complete(make_engine(chain("gemini")))
    assert result.text == "Hello"
    assert result.usage.to_json() == {"input_tokens": 4, "output_tokens": 8}


def test_openai_answer_and_usage(server, make_engine):
    route(server, "openai", "p", json_response(openai_answer("hey")))
    result = complete(make_engine(chain("openai")))
    assert result.text == "hey" and result.usage.to_json() == {"input_tokens": 3, "output_tokens": 2}


ANTHROPIC_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"""


def test_an_anthropic_stream_takes_input_tokens_from_message_start_and_output_from_message_delta(server, make_engine):
    route(server, "anthropic", "p", Response(ANTHROPIC_STREAM, content_type="text/event-stream"))
    result = complete(make_engine(chain("anthropic")), stream=True)
    assert result.text == "Hello!"
    assert result.usage.to_json() == {"input_tokens": 25, "output_tokens": 15}


def test_a_gemini_stream_with_crlf_events_and_running_usage_counts_the_final_totals(server, make_engine):
    chunks = [
        {
            "candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1, "totalTokenCount": 10},
        },
        {
            "candidates": [
                {"content": {"parts": [{"text": "lo"}], "role": "model"}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
        },
    ]
    body = "".join(f"data: {json.dumps(c)}\r\n\r\n" for c in chunks)
    route(server, "gemini", "p", Response(body, content_type="text/event-stream"))
    result = complete(make_engine(chain("gemini")), stream=True)
    assert result.text == "Hello" and result.usage.to_json() == {"input_tokens": 9, "output_tokens": 2}


def test_an_ollama_ndjson_stream_ends_on_done_and_reads_its_counts(server, make_engine):
    lines = [
        {
            "model": "llama3.2",
            "created_at": "2023-08-04T08:52:19.385406455-07:00",
            "message": {"role": "assistant", "content": w},
            "done": False,
        }
        for w in ("The", " sky")
    ]
    lines.append(
        {
            "model": "llama3.2",
            "created_at": "2023-08-04T19:22:45.499127Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 26,
            "eval_count": 290,
        }
    )
    route(
        server,
        "ollama",
        "p",
        Response("".join(json.dumps(x) + "\n" for x in lines), content_type="application/x-ndjson"),
    )
    result = complete(make_engine(chain("ollama")), stream=True)
    assert result.text == "The sky" and result.usage.to_json() == {"input_tokens": 26, "output_tokens": 290}


@pytest.mark.parametrize("wire", ["anthropic", "gemini", "ollama"])
def test_a_whole_answer_without_its_completion_signal_is_a_transient_failure(wire, server, make_engine):
    body = {
        "anthropic": {**anthropic_answer(), "stop_reason": None},
        "gemini": {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},
        "ollama": {**ollama_answer(), "done": False},
    }[wire]
    route(server, wire, "p", json_response(body))
    route(
        server,
        wire,
        "s",
        json_response(
            {"anthropic": anthropic_answer("s"), "gemini": gemini_answer("s"), "ollama": ollama_answer("s")}[wire]
        ),
    )
    result = complete(make_engine(chain(wire, attempts=2)))
    assert result.text == "s" and [a.kind for a in result.attempts] == ["transient", "transient", None]


@pytest.mark.parametrize("wire", ["anthropic", "gemini", "ollama"])
@pytest.mark.parametrize(
    "body", ["{not json", "[1, 2]", '{"content": 5, "candidates": [7], "message": 3, "done": true}']
)
def test_an_unparseable_or_oddly_shaped_200_body_is_transient_never_a_crash(wire, body, server, make_engine):
    route(server, wire, "p", Response(body, content_type="application/json"))
    error = failure(make_engine(chain(wire, single=True)))
    assert error.kind == Kind.TRANSIENT and error.status == 200


def test_a_json_answer_to_a_stream_request_is_read_as_that_whole_answer(server, make_engine):
    """Some OpenAI-compatible servers ignore `stream: true`; a refusal can come the same way."""
    route(server, "openai", "p", json_response(openai_answer("whole")))
    assert complete(make_engine(chain("openai")), stream=True).text == "whole"


# ---------------------------------------------------------------- refusals


def test_an_anthropic_refusal_is_a_content_filter_keeping_the_explanation(server, make_engine):
    refusal = {
        **anthropic_answer(""),
        "stop_reason": "refusal",
        "stop_details": {"type": "refusal", "category": "cyber", "explanation": "declined: cyber harm"},
    }
    route(server, "anthropic", "p", json_response(refusal))
    secondary = route(server, "anthropic", "s", json_response(anthropic_answer()))
    with pytest.raises(FailFast) as caught:
        complete(make_engine(chain("anthropic", on_content_filter="fail")))
    assert (
        caught.value.kind == Kind.CONTENT_FILTER and caught.value.reason == "stop_reason refusal: declined: cyber harm"
    )
    assert secondary.count == 0


@pytest.mark.parametrize("block", ["SAFETY", "PROHIBITED_CONTENT", "OTHER"])
def test_a_gemini_prompt_block_is_a_content_filter_whatever_the_block_reason(block, server, make_engine):
    route(server, "gemini", "p", json_response({"promptFeedback": {"blockReason": block}}))
    error = failure(make_engine(chain("gemini", single=True)))
    assert error.kind == Kind.CONTENT_FILTER and block in (error.reason or "")


def test_a_gemini_prompt_block_in_a_stream_is_a_content_filter_not_a_cut(server, make_engine):
    block = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
        }
    }
    route(server, "gemini", "p", Response(f"data: {json.dumps(block)}\r\n\r\n", content_type="text/event-stream"))
    error = failure(make_engine(chain("gemini", single=True)), stream=True)
    assert error.kind == Kind.CONTENT_FILTER
    assert error.reason == "blockReason SAFETY (HARM_CATEGORY_DANGEROUS_CONTENT)"


# ---------------------------------------------------------------- every recorded error shape


def fixture_response(fx: dict[str, Any]) -> Response:
    headers = {k: v for k, v in fx["headers"].items() if k not in ("content-length", "transfer-encoding", "connection")}
    if "stream" in fx:
        body = "\n".join(fx["stream"]) + "\n"
    else:
        body = fx["body"] if isinstance(fx["body"], str) else json.dumps(fx["body"])
    return Response(body, status=fx["http_status"], headers=headers)


@pytest.mark.parametrize(("wire", "fx"), HTTP_CASES, ids=[fx["id"] for _, fx in HTTP_CASES])
def test_every_recorded_error_answer_is_classified_through_its_adapter(wire, fx, server, make_engine):
    route(server, wire, "p", fixture_response(fx))
    error = failure(make_engine(chain(wire, single=True)))
    assert error.kind == fx["expected_kind"], fx["why"]
    assert error.status == fx["http_status"] and error.model == "p/m1"
    if fx["retry_after_s"] is not None:
        assert error.retry_after == pytest.approx(fx["retry_after_s"], abs=0.01)
    if error.kind == Kind.CONTENT_FILTER:
        assert error.reason, "the provider's reason is kept in the error"


STREAM_TYPES = {"ollama": "application/x-ndjson"}


@pytest.mark.parametrize(("wire", "fx"), STREAM_CASES, ids=[fx["id"] for _, fx in STREAM_CASES])
def test_every_recorded_stream_failure_is_classified_through_its_adapter(wire, fx, server, make_engine):
    response = fixture_response(fx)
    response.content_type = STREAM_TYPES.get(wire, "text/event-stream")
    route(server, wire, "p", response)
    error = failure(make_engine(chain(wire, single=True)), stream=True)
    assert error.kind == fx["expected_kind"], fx["why"]
    assert error.status == 200


def test_an_anthropic_429_waits_the_retry_after_then_retries_the_same_entry(server, make_engine, clock):
    limited = json_response(
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, 429, {"retry-after": "2"}
    )
    primary = route(server, "anthropic", "p", limited, json_response(anthropic_answer("after the wait")))
    result = complete(make_engine(chain("anthropic", attempts=2)))
    assert result.text == "after the wait" and primary.count == 2 and clock.sleeps == [2.0]


def test_an_anthropic_529_overloaded_is_retried_with_backoff_then_falls_over(server, make_engine, clock):
    overloaded = json_response({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 529)
    primary = route(server, "anthropic", "p", overloaded)
    route(server, "anthropic", "s", json_response(anthropic_answer("from s")))
    result = complete(make_engine(chain("anthropic", attempts=3)))
    assert result.model == "s/m2" and primary.count == 3 and len(clock.sleeps) == 2
    assert [a.status for a in result.attempts] == [529, 529, 529, None]


def test_a_gemini_resource_exhausted_waits_its_retry_info_delay(server, make_engine, clock):
    exhausted = json_response(
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}],
            }
        },
        429,
    )
    primary = route(server, "gemini", "p", exhausted, json_response(gemini_answer("after")))
    result = complete(make_engine(chain("gemini", attempts=2)))
    assert result.text == "after" and primary.count == 2 and clock.sleeps == [3.0]


def test_an_ollama_model_that_is_not_pulled_is_auth_with_a_pull_hint(server, make_engine):
    route(server, "ollama", "p", json_response({"error": 'model "llama3.1" not found, try pulling it first'}, 404))
    error = failure(make_engine(chain("ollama", single=True)))
    assert error.kind == Kind.AUTH and error.hint == "run `ollama pull llama3.1`"


# ---------------------------------------------------------------- the key never leaks


CANARIES = [CANARY_KEY, "PlainCanary0NoKeyShape0Zz9"]  # the second matches no key pattern: only registration removes it


def key_of(wire: Wire, request: Request) -> str:
    header, template = AUTH_HEADERS[wire.name]
    value = request.headers.get(header, "")
    return value.removeprefix(template.removesuffix("{key}"))


def echoing_error(wire: Wire, status: int) -> Any:
    """A handler answering `status` with the key it was sent echoed in the error message."""

    def handler(request: Request) -> Response:
        headers, body = wire.protocol.error(status)
        message = f"invalid key {key_of(wire, request)} for this request"
        if isinstance(body.get("error"), dict):
            body["error"]["message"] = message
        else:
            body["error"] = message
        return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")

    return handler


def echoing_stream_error(wire: Wire) -> Any:
    def handler(request: Request) -> Response:
        events = wire.events("one two three four")
        first = wire.first_text_index(events, "one ")
        return wire.stream_of(events[: first + 1] + [wire.in_band_error(f"Overloaded ({key_of(wire, request)})")])

    return handler


def echoing_text(wire: Wire) -> Any:
    def handler(request: Request) -> Response:
        return Response(f"upstream rejected key={key_of(wire, request)} !", status=500, content_type="text/plain")

    return handler


def assert_nowhere(secret: str, store: SqliteStore, db_path: Path, *texts: str) -> None:
    for text in texts:
        assert secret not in text
    for event in store.events():
        assert secret not in json.dumps(event.to_json())
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        if path.exists():
            assert secret.encode() not in path.read_bytes(), path.name


@pytest.mark.parametrize("secret", CANARIES, ids=["canary", "shapeless"])
@pytest.mark.parametrize("wire", ALL, ids=lambda w: w.name)
def test_the_api_key_echoed_by_a_failing_provider_never_reaches_errors_events_or_the_db(
    wire, secret, server, make_engine, store, db_path, monkeypatch
):
    monkeypatch.setenv("P_KEY", secret)
    monkeypatch.setenv("S_KEY", secret)
    primary = route(server, wire.name, "p", echoing_error(wire, 401), echoing_text(wire))
    secondary = route(server, wire.name, "s", echoing_stream_error(wire))
    engine = make_engine(chain(wire.name, attempts=2))
    with pytest.raises(ChainExhausted) as caught:
        complete(engine)
    with pytest.raises(ChainExhausted) as caught_stream:
        complete(make_engine(chain(wire.name, attempts=1)), stream=True)
    assert key_of(wire, primary.requests[0]) == secret and key_of(wire, secondary.requests[0]) == secret
    texts = [str(caught.value), str(caught_stream.value), caught.value.message]
    texts += [f"{c} {c.reason} {c.hint}" for c in caught.value.causes + caught_stream.value.causes]
    texts += [a.error or "" for a in caught.value.attempts + caught_stream.value.attempts]
    assert any("invalid key ***" in t for t in texts), "the echo reached the error, redacted"
    assert_nowhere(secret, store, db_path, *texts)


@pytest.mark.parametrize("wire", ALL, ids=lambda w: w.name)
def test_the_api_key_never_reaches_run_output_for_any_provider(wire, server, tmp_path, store, db_path, monkeypatch):
    monkeypatch.setenv("P_KEY", CANARY_KEY)
    monkeypatch.setenv("S_KEY", CANARY_KEY)
    route(server, wire.name, "p", echoing_error(wire, 403))
    route(server, wire.name, "s", echoing_stream_error(wire))
    config = tmp_path / "chains.yaml"
    config.write_text(chain(wire.name).replace("{url}", server.url_for("").rstrip("/")))
    runner = CliRunner()
    outputs = []
    for flags in (["--stream"], ["--no-stream"], ["--json"], ["--stream", "--json"]):
        result = runner.invoke(app, ["--config", str(config), "run", "hi", *flags])
        assert result.exit_code == 1, result.output
        outputs += [result.stdout, result.stderr]
    assert any("***" in o for o in outputs)
    assert_nowhere(CANARY_KEY, store, db_path, *outputs)
