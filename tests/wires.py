"""One kit per wire protocol, so a streaming scenario is written once and run against all four.

The bodies come from `llmfail.fakes.protocols` (checked against the recorded
provider shapes in test_fake_protocols.py); the paths and the `base_url`
convention are each vendor's own (docs/providers.md), written out here independently
of the adapters so a wrong URL in an adapter fails the tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail.fakes.protocols import PROTOCOLS, FakeProtocol

WIRES = ("openai", "anthropic", "ollama", "gemini")

#: The header that carries the key, and how (docs/providers.md).
AUTH_HEADERS = {
    "openai": ("authorization", "Bearer {key}"),
    "anthropic": ("x-api-key", "{key}"),
    "ollama": ("authorization", "Bearer {key}"),
    "gemini": ("x-goog-api-key", "{key}"),
}


@dataclass(frozen=True)
class Wire:
    name: str

    @property
    def protocol(self) -> FakeProtocol:
        return PROTOCOLS[self.name]()

    @property
    def content_type(self) -> str:
        return self.protocol.stream_content_type

    @property
    def sse(self) -> bool:
        return self.name != "ollama"

    # ---------------------------------------------------------------- config and routes

    def provider(self, label: str, key_env: str | None = None) -> str:
        """A YAML provider line whose base_url is `{url}/LABEL` in the vendor's own convention."""
        base = f"{{url}}/{label}/v1" if self.name == "openai" else f"{{url}}/{label}"
        key = f", api_key_env: {key_env}" if key_env else ""
        return f'{label}: {{type: {self.name}, base_url: "{base}"{key}}}'

    def paths(self, label: str, model: str) -> list[str]:
        """Every path a request for `model` may use (Gemini streams on another method)."""
        return {
            "openai": [f"/{label}/v1/chat/completions"],
            "anthropic": [f"/{label}/v1/messages"],
            "ollama": [f"/{label}/api/chat"],
            "gemini": [
                f"/{label}/v1beta/models/{model}:generateContent",
                f"/{label}/v1beta/models/{model}:streamGenerateContent",
            ],
        }[self.name]

    def route(self, server: HTTPServer, label: str, model: str, handler: Callable[[Request], Response]) -> None:
        for path in self.paths(label, model):
            server.expect_request(path, method="POST").respond_with_handler(handler)

    # ---------------------------------------------------------------- bodies

    def answer(self, text: str, usage: tuple[int, int] = (3, 2)) -> Response:
        return Response(json.dumps(self.protocol.answer(text, "m", usage)), content_type="application/json")

    def events(self, text: str, *, cut: bool = False, usage: tuple[int, int] = (3, 2)) -> list[bytes]:
        return self.protocol.stream_events(text, "m", usage, cut)

    def stream(self, text: str, *, cut: bool = False, usage: tuple[int, int] = (3, 2)) -> Response:
        return self.stream_of(self.events(text, cut=cut, usage=usage))

    def stream_of(self, chunks: Iterable[bytes]) -> Response:
        """A streamed 200 sent chunk by chunk (a generator is flushed as it yields)."""
        return Response(chunks if isinstance(chunks, Iterator) else b"".join(chunks), content_type=self.content_type)

    def error(self, status: int) -> Response:
        headers, body = self.protocol.error(status)
        return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")

    def malformed_event(self) -> bytes:
        return b"data: {not json\n\n" if self.sse else b"{not json\n"

    def keepalive(self) -> bytes:
        """Bytes that flush the headers but carry no text (an SSE comment, a blank NDJSON line)."""
        return b": keep-alive\n\n" if self.sse else b"\n"

    def in_band_error(self, message: str, err_type: str = "overloaded") -> bytes:
        """An error event inside a 200 stream, in the protocol's own shape."""
        if self.name == "openai":
            return _sse({"error": {"message": message, "type": "server_error", "code": "server_error"}})
        if self.name == "anthropic":
            return _sse({"type": "error", "error": {"type": f"{err_type}_error", "message": message}}, "error")
        if self.name == "gemini":
            return _sse({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}})
        return json.dumps({"error": message}).encode() + b"\n"

    def first_text_index(self, chunks: list[bytes], word: str) -> int:
        """Index of the chunk that carries `word` (OpenAI and Anthropic lead with text-less events)."""
        needle = json.dumps(word).encode()
        return next(i for i, chunk in enumerate(chunks) if needle in chunk)


def _sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


ALL = [Wire(name) for name in WIRES]
