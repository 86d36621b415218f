"""The adapter interface every provider implements, and the shapes they exchange.

An adapter is pure translation: it builds the HTTP request for its wire
protocol, parses a whole answer or a stream into `Chunk`s, and turns a failure
into a classified `ProviderError`. It never retries, sleeps or keeps state —
the engine is the one retry loop and owns time.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any

import httpx

from ..classify import classify_error_object, classify_http, finish_reason_kind
from ..config import ProviderConfig
from ..errors import Kind, ProviderError


@dataclass(frozen=True)
class ChatRequest:
    """What the caller asks for, independent of any wire protocol."""

    messages: tuple[Mapping[str, str], ...]  # {"role": "system"|"user"|"assistant", "content": str}
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    default_max_tokens: int = 1024
    """The policy's `max_tokens` (the engine fills it per entry): sent only by
    protocols that refuse a request without a limit (Anthropic)."""
    stop: tuple[str, ...] = ()
    """Stop sequences, in each protocol's own field."""
    user: str | None = None
    """The end user the request is made for, where a protocol has a field for it (abuse tracking)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further OpenAI Chat Completions fields (`top_p`, `seed`, `response_format`...), sent as they
    are to OpenAI-protocol entries only: other protocols have no faithful translation for them,
    so they drop them (`Adapter.takes_extra`)."""

    @property
    def system(self) -> str | None:
        parts = [m["content"] for m in self.messages if m["role"] == "system"]
        return "\n\n".join(parts) if parts else None

    @property
    def turns(self) -> list[Mapping[str, str]]:
        """The messages without system prompts (for protocols that carry it apart)."""
        return [m for m in self.messages if m["role"] != "system"]


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def to_json(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}

    def merged(self, other: Usage) -> Usage:
        """Counts seen so far combined with a later chunk's.

        Providers report usage in pieces (Anthropic: input tokens in
        `message_start`, output tokens in `message_delta`) or as running totals
        (Gemini's `usageMetadata` on every chunk). Taking each field's maximum
        handles both and never counts a token twice.
        """
        return Usage(max(self.input_tokens, other.input_tokens), max(self.output_tokens, other.output_tokens))


@dataclass(frozen=True)
class Chunk:
    """One parsed piece of an answer.

    `done` is the provider's completion signal: without it a stream is cut.
    `finish_reason` may arrive before it (Anthropic's `message_delta` comes
    before `message_stop`); the engine keeps the last one seen. `usage` holds
    whatever counts this piece carries (merged with `Usage.merged`).
    `warning` notes a skipped malformed event.
    """

    text: str = ""
    done: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    warning: str | None = None


@dataclass
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Runtime:
    """The engine's injected clock, sleep and randomness, lent to in-process fakes."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rng: Random


#: What parsing an answer of an unexpected shape raises (json errors are ValueErrors).
_MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError)


class Adapter(ABC):
    """One wire protocol. Subclasses fill in the four translation steps."""

    #: Whether the stream is SSE (parsed with httpx-sse) or NDJSON lines.
    stream_format: str = "sse"
    #: Whether `ChatRequest.extra` fields reach the wire (the OpenAI protocol's own fields).
    takes_extra: bool = False
    #: Nothing worth reading follows the completion signal, so the engine stops
    #: there instead of waiting for the server to close. False for OpenAI,
    #: whose usage chunk comes after the `finish_reason` chunk.
    stream_ends_at_done: bool = False

    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider

    @abstractmethod
    def build(
        self, request: ChatRequest, wire_model: str, api_key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(url, headers, json body) for one attempt."""

    @abstractmethod
    def parse_completion(self, body: Any) -> Completion:
        """A whole (non-streamed) answer from its decoded JSON; raises ProviderError."""

    @abstractmethod
    def parse_event(self, event: str, data: str) -> Chunk | None:
        """One stream event (SSE `event`/`data`, or an NDJSON line as `data`); raises
        ProviderError for an in-band error and ValueError for an unparseable event."""

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> ProviderError:
        """A non-2xx answer as a classified error."""
        return classify_http(status, headers, body, now=now)

    def transport(self, runtime: Runtime) -> httpx.AsyncBaseTransport | None:
        """An in-process transport (the mock provider), or None to use the network."""
        return None

    def extra_headers(self) -> dict[str, str]:
        return dict(self.provider.headers)

    def url(self, path: str) -> str:
        """`path` under the provider's base_url, which follows the vendor SDK's convention (docs/providers.md)."""
        return f"{(self.provider.base_url or '').rstrip('/')}{path}"

    def headers(
        self, auth: Mapping[str, str] | None = None, defaults: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The protocol's default headers, then the provider's configured ones, then the credential.

        Configured headers come after the defaults so a provider entry can add
        or override one (e.g. `anthropic-version`), but never replace the key
        the engine chose for this attempt. Names are lower-cased so an
        override replaces its default instead of sending both.
        """
        configured = {name.lower(): value for name, value in self.extra_headers().items()}
        return {"content-type": "application/json", **(defaults or {}), **configured, **(auth or {})}

    async def iter_stream(self, response: httpx.Response) -> AsyncGenerator[Chunk, None]:
        """Chunks of a streamed answer, raw events parsed by `parse_event`.

        A malformed event becomes a warning chunk; the engine decides whether
        the stream still completes.

        A server that answers a stream request with one JSON document (a
        refusal or error in a 200, or an OpenAI-compatible server ignoring
        `stream: true`) is read as that whole answer rather than failed for
        its content type: its completion signal is in the document.
        """
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if self.stream_format == "sse" and content_type == "application/json":
            whole = self.read_completion(await response.aread())
            yield Chunk(text=whole.text, done=True, finish_reason=whole.finish_reason, usage=whole.usage)
            return
        if self.stream_format == "ndjson":
            async for line in response.aiter_lines():
                if line.strip():
                    chunk = self._parse_safely("", line)
                    if chunk is not None:
                        yield chunk
            return
        from httpx_sse import EventSource

        async for sse in EventSource(response).aiter_sse():
            if not sse.data and sse.event == "message":
                continue
            chunk = self._parse_safely(sse.event, sse.data)
            if chunk is not None:
                yield chunk

    def read_completion(self, raw: bytes) -> Completion:
        """A whole answer from its raw 2xx body.

        An answer that is not JSON, or JSON of an unexpected shape (a field of
        the wrong type deep inside), is a transient failure like any other
        unparseable body, never a crash of the walk.
        """
        try:
            return self.parse_completion(decode_json(raw))
        except ProviderError:
            raise
        except _MALFORMED as exc:
            raise ProviderError(
                Kind.TRANSIENT, f"unexpected response body ({type(exc).__name__})", status=200
            ) from None

    def _parse_safely(self, event: str, data: str) -> Chunk | None:
        try:
            return self.parse_event(event, data)
        except ProviderError:
            raise
        except _MALFORMED as exc:
            return Chunk(warning=f"skipped a malformed stream event ({type(exc).__name__})")


def json_object(data: str) -> dict[str, Any]:
    """One stream event's JSON object; ValueError (a skipped, warned event) for anything else."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("stream event is not a JSON object")
    return obj


def answer_object(body: Any) -> dict[str, Any]:
    """A whole answer's JSON object: an error object in a 2xx body fails the attempt
    with the error's own kind; any other non-object is an unparseable (transient) answer."""
    if not isinstance(body, dict):
        raise ProviderError(Kind.TRANSIENT, "unexpected response body", status=200)
    if body.get("error"):
        raise in_band_error(body)
    return body


def in_band_error(obj: dict[str, Any]) -> ProviderError:
    """An error that arrived inside a 200 answer or stream, classified by the one table.

    There is no HTTP status to go by, so the error's own type/code decides
    (`overloaded_error` transient, `rate_limit_error` rate limited...)."""
    return classify_error_object(obj, status=200, now=0.0)


def raise_if_withheld(obj: dict[str, Any], finish_reason: str | None) -> None:
    """Fail the attempt when a finish/stop reason means the answer was withheld.

    A safety stop (`refusal`, `SAFETY`, ...) becomes `content_filter` and a
    `finish_reason: error` becomes `transient`. The whole object goes to the
    classifier so the provider's explanation is kept as the error's reason
    (a refusal's reason is what the user needs to read); the engine's own
    finish-reason check would only know the bare word.
    """
    if finish_reason_kind(finish_reason) is not None:
        raise in_band_error(obj)


def decode_json(body: bytes | str) -> Any:
    """JSON of a 2xx answer; an unparseable one is a transient failure."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProviderError(Kind.TRANSIENT, "unparseable response body", status=200) from None
