"""In-process fake providers: real wire protocols, injected faults, no network.

The `mock` provider and `simulate` plug a `FakeTransport` into httpx, so the
real adapter, classifier and engine run and only the network is replaced. A
`Fault` uses the vocabulary of `simulate --fail-rate` and `mock` providers'
`fail:`: an HTTP status, `timeout`, `reset`, `malformed`, `stream-cut`,
`content-filter`, `context-length` or `slow:DURATION`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .durations import parse_duration
from .providers.base import Runtime

NAMED_FAULTS = ("timeout", "reset", "malformed", "stream-cut", "content-filter", "context-length")


@dataclass(frozen=True)
class Fault:
    """One kind of misbehaviour and how often it happens."""

    what: str  # "503", "timeout", "slow:2s", ...
    rate: float = 1.0

    @property
    def status(self) -> int | None:
        return int(self.what) if self.what.isdigit() else None

    @property
    def slow(self) -> float | None:
        return parse_duration(self.what[5:]) if self.what.startswith("slow:") else None


def parse_fault(text: str) -> str:
    """Validate a FAULT word; returns it normalised or raises ValueError."""
    word = str(text).strip().lower()
    if word.isdigit() and 100 <= int(word) <= 599:
        return word
    if word in NAMED_FAULTS:
        return word
    if word.startswith("slow:"):
        parse_duration(word[5:])
        return word
    raise ValueError(
        f"unknown fault {text!r}: expected an HTTP status or one of {', '.join(NAMED_FAULTS)}, slow:DURATION"
    )


# --------------------------------------------------------------------------- protocols


class FakeProtocol:
    """How one vendor's server says things: answers, streams and error bodies."""

    def answer(self, text: str, model: str, usage: tuple[int, int]) -> dict[str, Any]:
        raise NotImplementedError

    def stream_events(self, text: str, model: str, usage: tuple[int, int], cut: bool) -> list[bytes]:
        """The raw byte chunks of a streamed answer; `cut` stops before the completion signal."""
        raise NotImplementedError

    def error(self, status: int) -> tuple[dict[str, str], dict[str, Any]]:
        """(headers, body) of a realistic error answer with this status."""
        raise NotImplementedError

    def content_filter(self) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def context_length(self) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def prompt(self, body: dict[str, Any]) -> str:
        """The last user message of a request body (what an echo answers)."""
        raise NotImplementedError

    stream_content_type = "text/event-stream"


def _sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)] or [""]


class OpenAIProtocol(FakeProtocol):
    _ERRORS = {
        400: ("invalid_request_error", "invalid_request_error", "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
        404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
        408: ("timeout", None, "Request timed out."),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests per min (RPM). Please try again in 1s."),
    }

    def answer(self, text: str, model: str, usage: tuple[int, int]) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }

    def stream_events(self, text: str, model: str, usage: tuple[int, int], cut: bool) -> list[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            return _sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        words = _words(text)
        out = [chunk({"role": "assistant", "content": ""}, None)]
        shown = words[: max(1, len(words) // 2)] if cut else words
        out += [chunk({"content": w}, None) for w in shown]
        if cut:
            return out
        out.append(chunk({}, "stop"))
        out.append(_sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model, "choices": [],
                         "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}}))
        out.append(b"data: [DONE]\n\n")
        return out

    def error(self, status: int) -> tuple[dict[str, str], dict[str, Any]]:
        err_type, code, message = self._ERRORS.get(
            status, ("server_error", None, "The server had an error while processing your request.")
        )
        headers = {"retry-after": "1", "x-ratelimit-reset-requests": "1s"} if status == 429 else {}
        return headers, {"error": {"message": message, "type": err_type, "param": None, "code": code}}

    def content_filter(self) -> tuple[int, dict[str, Any]]:
        return 400, {"error": {"message": "Your request was rejected as a result of our safety system.",
                               "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}}

    def context_length(self) -> tuple[int, dict[str, Any]]:
        return 400, {"error": {"message": "This model's maximum context length is 8192 tokens.",
                               "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}

    def prompt(self, body: dict[str, Any]) -> str:
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        return str(users[-1]) if users else ""


PROTOCOLS: dict[str, Callable[[], FakeProtocol]] = {"openai": OpenAIProtocol}


# --------------------------------------------------------------------------- transport


@dataclass
class FakeBehaviour:
    """What a fake server does: faults checked in order, then an answer."""

    faults: tuple[Fault, ...] = ()
    latency: float = 0.0
    reply: str | None = None


class _Body(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], runtime: Runtime, gap: float, error: Exception | None) -> None:
        self._chunks, self._runtime, self._gap, self._error = chunks, runtime, gap, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._chunks):
            if i and self._gap:
                await self._runtime.sleep(self._gap)
            yield chunk
        if self._error is not None:
            raise self._error


class FakeTransport(httpx.AsyncBaseTransport):
    """An httpx transport that answers like `protocol`'s server, misbehaving as told.

    Randomness and waiting come from the engine's `Runtime`, so a seeded run on
    virtual time is reproducible bit for bit.
    """

    def __init__(self, protocol: str, behaviour: FakeBehaviour, runtime: Runtime) -> None:
        self.protocol = PROTOCOLS[protocol]()
        self.behaviour = behaviour
        self.runtime = runtime
        self.requests = 0

    def _pick(self) -> Fault | None:
        for fault in self.behaviour.faults:
            if fault.rate >= 1.0 or self.runtime.rng.random() < fault.rate:
                return fault
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await request.aread()
        body = json.loads(request.content or b"{}")
        streaming = bool(body.get("stream")) or "stream" in request.url.path or request.url.params.get("alt") == "sse"
        fault = self._pick()
        if self.behaviour.latency:
            await self.runtime.sleep(self.behaviour.latency * (0.5 + self.runtime.rng.random()))
        if fault is not None and fault.slow is not None:
            await self.runtime.sleep(fault.slow)
            fault = None
        what = fault.what if fault else None
        if what == "timeout":
            raise httpx.ReadTimeout("fake provider did not answer", request=request)
        if what == "reset":
            raise httpx.RemoteProtocolError("fake provider reset the connection", request=request)
        if fault is not None and fault.status is not None and fault.status >= 300:
            headers, err = self.protocol.error(fault.status)
            return httpx.Response(fault.status, headers=headers, json=err)
        if what == "content-filter":
            status, err = self.protocol.content_filter()
            return httpx.Response(status, json=err)
        if what == "context-length":
            status, err = self.protocol.context_length()
            return httpx.Response(status, json=err)
        text = self.behaviour.reply if self.behaviour.reply is not None else self.protocol.prompt(body) or "ok"
        model = str(body.get("model", "mock"))
        usage = (max(1, len(self.protocol.prompt(body).split())), max(1, len(text.split())))
        if what == "malformed":
            return httpx.Response(200, headers={"content-type": "application/json"}, content=b"{not json")
        if streaming:
            events = self.protocol.stream_events(text, model, usage, cut=what == "stream-cut")
            return httpx.Response(
                200,
                headers={"content-type": self.protocol.stream_content_type},
                stream=_Body(events, self.runtime, 0.0, None),
            )
        if what == "stream-cut":
            cut = json.dumps(self.protocol.answer(text, model, usage)).encode()
            return httpx.Response(200, headers={"content-type": "application/json"}, content=cut[: len(cut) // 2])
        return httpx.Response(200, json=self.protocol.answer(text, model, usage))
