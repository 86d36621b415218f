"""The adapter interface every provider implements, and the shapes they exchange.

An adapter is pure translation: it builds the HTTP request for its wire
protocol, parses a whole answer or a stream into `Chunk`s, and turns a failure
into a classified `ProviderError`. It never retries, sleeps or keeps state —
the engine is the one retry loop (SPEC §3 item 10) and owns time.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any

import httpx

from ..classify import classify_http
from ..config import ProviderConfig
from ..errors import Kind, ProviderError


@dataclass(frozen=True)
class ChatRequest:
    """What the caller asks for, independent of any wire protocol."""

    messages: tuple[Mapping[str, str], ...]  # {"role": "system"|"user"|"assistant", "content": str}
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False

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


@dataclass(frozen=True)
class Chunk:
    """One parsed piece of an answer.

    `done` is the provider's completion signal: without it a stream is cut.
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


class Adapter(ABC):
    """One wire protocol. Subclasses fill in the four translation steps."""

    #: Whether the stream is SSE (parsed with httpx-sse) or NDJSON lines.
    stream_format: str = "sse"

    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider

    @abstractmethod
    def build(self, request: ChatRequest, wire_model: str, api_key: str | None) -> tuple[str, dict[str, str], dict[str, Any]]:
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

    async def iter_stream(self, response: httpx.Response) -> AsyncIterator[Chunk]:
        """Chunks of a streamed answer, raw events parsed by `parse_event`.

        A malformed event becomes a warning chunk; the engine decides whether
        the stream still completes.
        """
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

    def _parse_safely(self, event: str, data: str) -> Chunk | None:
        try:
            return self.parse_event(event, data)
        except ProviderError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            return Chunk(warning=f"skipped a malformed stream event ({type(exc).__name__})")


def decode_json(body: bytes | str) -> Any:
    """JSON of a 2xx answer; an unparseable one is a transient failure (SPEC §3)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProviderError(Kind.TRANSIENT, "unparseable response body", status=200) from None

