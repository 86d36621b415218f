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

    def with_wait(self, headers: dict[str, str], body: dict[str, Any], seconds: float) -> dict[str, str]:
        """`headers` of an error answer saying "retry after `seconds`" the way this vendor says it
        (`STATUS@DURATION` faults); the default is the standard header (`retry-after-ms` when the
        wait is not a whole number of seconds). `body` may be changed in place."""
        out = {k: v for k, v in headers.items() if k not in ("retry-after", "retry-after-ms")}
        if seconds == int(seconds):
            out["retry-after"] = str(int(seconds))
        else:
            out["retry-after-ms"] = str(round(seconds * 1000))
        if "x-ratelimit-reset-requests" in out:
            out["x-ratelimit-reset-requests"] = f"{seconds:g}s"
        return out

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


def _streamed(text: str, cut: bool) -> list[str]:
    """The pieces a stream sends: every word, or only the first half when the stream is cut."""
    words = _words(text)
    return words[: max(1, len(words) // 2)] if cut else words


def _last_user(messages: Any) -> str:
    """The last user message's text (a string, or Anthropic-style text blocks)."""
    if not isinstance(messages, list):
        return ""
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1]
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


class OpenAIProtocol(FakeProtocol):
    _ERRORS = {
        400: ("invalid_request_error", "invalid_request_error", "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        403: (
            "request_forbidden",
            "unsupported_country_region_territory",
            "Country, region, or territory not supported",
        ),
        404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
        408: ("timeout", None, "Request timed out."),
        429: (
            "requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests per min (RPM). Please try again in 1s.",
        ),
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
            return _sse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        out = [chunk({"role": "assistant", "content": ""}, None)]
        out += [chunk({"content": w}, None) for w in _streamed(text, cut)]
        if cut:
            return out
        out.append(chunk({}, "stop"))
        out.append(
            _sse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
                }
            )
        )
        out.append(b"data: [DONE]\n\n")
        return out

    def error(self, status: int) -> tuple[dict[str, str], dict[str, Any]]:
        err_type, code, message = self._ERRORS.get(
            status, ("server_error", None, "The server had an error while processing your request.")
        )
        headers = {"retry-after": "1", "x-ratelimit-reset-requests": "1s"} if status == 429 else {}
        return headers, {"error": {"message": message, "type": err_type, "param": None, "code": code}}

    def content_filter(self) -> tuple[int, dict[str, Any]]:
        return 400, {
            "error": {
                "message": "Your request was rejected as a result of our safety system.",
                "type": "invalid_request_error",
                "param": None,
                "code": "content_policy_violation",
            }
        }

    def context_length(self) -> tuple[int, dict[str, Any]]:
        return 400, {
            "error": {
                "message": "This model's maximum context length is 8192 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }

    def prompt(self, body: dict[str, Any]) -> str:
        return _last_user(body.get("messages"))


class AnthropicProtocol(FakeProtocol):
    """Messages API: named SSE events ending with `message_stop`; `{"type": "error"}` bodies.

    A refusal is what Anthropic really sends: a 200 whose `stop_reason` is
    `refusal`, with the explanation in `stop_details`.
    """

    _ERRORS = {
        400: ("invalid_request_error", 'messages: roles must alternate between "user" and "assistant"'),
        401: ("authentication_error", "invalid x-api-key"),
        403: ("permission_error", "Your API key does not have permission to use the specified resource."),
        404: ("not_found_error", "model: claude-fake"),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute.",
        ),
        500: ("api_error", "Internal server error"),
        504: ("timeout_error", "Request timed out"),
        529: ("overloaded_error", "Overloaded"),
    }

    def _message(
        self, model: str, content: list[dict[str, Any]], stop: str | None, usage: tuple[int, int]
    ) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }

    def answer(self, text: str, model: str, usage: tuple[int, int]) -> dict[str, Any]:
        return self._message(model, [{"type": "text", "text": text}], "end_turn", usage)

    def stream_events(self, text: str, model: str, usage: tuple[int, int], cut: bool) -> list[bytes]:
        out = [
            _sse({"type": "message_start", "message": self._message(model, [], None, (usage[0], 1))}, "message_start"),
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
            _sse({"type": "ping"}, "ping"),
        ]
        out += [
            _sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
                "content_block_delta",
            )
            for w in _streamed(text, cut)
        ]
        if cut:
            return out
        out.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        out.append(
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage[1]},
                },
                "message_delta",
            )
        )
        out.append(_sse({"type": "message_stop"}, "message_stop"))
        return out

    def error(self, status: int) -> tuple[dict[str, str], dict[str, Any]]:
        err_type, message = self._ERRORS.get(status, self._ERRORS[500 if status >= 500 else 400])
        headers = {"request-id": "req_fake"}
        if status in (429, 500, 529):
            headers["x-should-retry"] = "true"
        if status == 429:
            headers["retry-after"] = "1"
        return headers, {"type": "error", "error": {"type": err_type, "message": message}, "request_id": "req_fake"}

    def content_filter(self) -> tuple[int, dict[str, Any]]:
        refusal = self._message("claude-fake", [], "refusal", (10, 0))
        refusal["stop_details"] = {
            "type": "refusal",
            "category": "cyber",
            "explanation": "This request was declined because it could enable cyber harm.",
        }
        return 200, refusal

    def context_length(self) -> tuple[int, dict[str, Any]]:
        return 400, {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"},
        }

    def prompt(self, body: dict[str, Any]) -> str:
        return _last_user(body.get("messages"))


class OllamaProtocol(FakeProtocol):
    """Native `/api/chat`: NDJSON lines ending with `"done": true`; `{"error": "..."}` bodies."""

    stream_content_type = "application/x-ndjson"

    _ERRORS = {
        400: "invalid message format",
        401: "unauthorized",
        404: 'model "llama-fake" not found, try pulling it first',
        429: "too many requests",
        500: "model requires more system memory (63.6 GiB) than is available (18.9 GiB)",
        503: "server busy, please try again.  maximum pending requests exceeded",
    }

    def _line(self, model: str, content: str, done: bool, usage: tuple[int, int] | None = None) -> dict[str, Any]:
        line: dict[str, Any] = {
            "model": model,
            "created_at": "2025-10-26T17:21:21.196249Z",
            "message": {"role": "assistant", "content": content},
            "done": done,
        }
        if done:
            line["done_reason"] = "stop"
            line["total_duration"] = 1_000_000
        if usage is not None:
            line["prompt_eval_count"], line["eval_count"] = usage
        return line

    def answer(self, text: str, model: str, usage: tuple[int, int]) -> dict[str, Any]:
        return self._line(model, text, True, usage)

    def stream_events(self, text: str, model: str, usage: tuple[int, int], cut: bool) -> list[bytes]:
        out = [json.dumps(self._line(model, w, False)).encode() + b"\n" for w in _streamed(text, cut)]
        if not cut:
            out.append(json.dumps(self._line(model, "", True, usage)).encode() + b"\n")
        return out

    def error(self, status: int) -> tuple[dict[str, str], dict[str, Any]]:
        return {}, {"error": self._ERRORS.get(status, self._ERRORS[500 if status >= 500 else 400])}

    def content_filter(self) -> tuple[int, dict[str, Any]]:
        # Ollama filters nothing itself; this is what a moderating proxy in front of it answers.
        return 400, {"error": "the request was rejected by the content policy"}

    def context_length(self) -> tuple[int, dict[str, Any]]:
        return 400, {"error": "the input length exceeds the context length"}

    def prompt(self, body: dict[str, Any]) -> str:
        return _last_user(body.get("messages"))


class GeminiProtocol(FakeProtocol):
    """generateContent / streamGenerateContent?alt=sse: google.rpc error bodies.

    A 429 is RESOURCE_EXHAUSTED whose wait is only in the body (RetryInfo),
    as Gemini sends it; a block is a 200 with `promptFeedback.blockReason`.
    """

    _ERRORS = {
        400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
        403: ("PERMISSION_DENIED", "Your API key was reported as leaked. Please use another API key."),
        404: (
            "NOT_FOUND",
            "models/gemini-fake is not found for API version v1beta, or is not supported for generateContent.",
        ),
        429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
        500: (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        ),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    }

    def _chunk(self, model: str, text: str, finish: str | None, usage: tuple[int, int] | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
        if usage is not None:
            out["usageMetadata"] = {
                "promptTokenCount": usage[0],
                "candidatesTokenCount": usage[1],
                "totalTokenCount": sum(usage),
            }
        return out

    def answer(self, text: str, model: str, usage: tuple[int, int]) -> dict[str, Any]:
        return self._chunk(model, text, "STOP", usage)

    def stream_events(self, text: str, model: str, usage: tuple[int, int], cut: bool) -> list[bytes]:
        words = _streamed(text, cut)
        # Gemini ends SSE lines with CRLF; every chunk carries running usage, the last one the finishReason.
        out = [
            _sse(self._chunk(model, w, None, (usage[0], i + 1))).replace(b"\n", b"\r\n")
            for i, w in enumerate(words[:-1] if not cut else words)
        ]
        if not cut:
            out.append(_sse(self._chunk(model, words[-1], "STOP", usage)).replace(b"\n", b"\r\n"))
        return out

    def error(self, status: int) -> tuple[dict[str, str], dict[str, Any]]:
        code, message = self._ERRORS.get(status, ("UNKNOWN", f"HTTP {status}"))
        error: dict[str, Any] = {"code": status, "message": message, "status": code}
        if status == 429:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
            ]
        return {"content-type": "application/json; charset=UTF-8"}, {"error": error}

    def with_wait(self, headers: dict[str, str], body: dict[str, Any], seconds: float) -> dict[str, str]:
        """Gemini gives its wait only in the body's RetryInfo; other statuses get the standard header."""
        for detail in body.get("error", {}).get("details", ()):
            if detail.get("@type", "").endswith("RetryInfo"):
                detail["retryDelay"] = f"{seconds:g}s"
                return headers
        return super().with_wait(headers, body, seconds)

    def content_filter(self) -> tuple[int, dict[str, Any]]:
        return 200, {
            "promptFeedback": {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"},
                    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
                ],
            },
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        }

    def context_length(self) -> tuple[int, dict[str, Any]]:
        return 400, {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
            }
        }

    def prompt(self, body: dict[str, Any]) -> str:
        users = [c for c in body.get("contents") or [] if isinstance(c, dict) and c.get("role", "user") == "user"]
        parts = (users[-1].get("parts") or []) if users else []
        return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


PROTOCOLS: dict[str, Callable[[], FakeProtocol]] = {
    "openai": OpenAIProtocol,
    "anthropic": AnthropicProtocol,
    "ollama": OllamaProtocol,
    "gemini": GeminiProtocol,
}
