"""How each vendor's server talks: answers, streams and realistic error bodies, for the fakes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


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
