"""Anthropic's Messages API (`POST {base_url}/v1/messages`).

What differs from OpenAI, and why it matters for failover:

- The system prompt is a top-level `system` field, not a message.
- `max_tokens` is required: a request without it is a 400 (`invalid_request`),
  which would fail every attempt, so the policy's default is always sent.
- Errors are `{"type": "error", "error": {"type": ...}}` with the status the
  table in `classify.py` already reads (529 `overloaded_error` is transient).
- A stream is a sequence of named SSE events. Text comes in
  `content_block_delta`, the stop reason and output tokens in `message_delta`,
  input tokens in `message_start`; only `message_stop` completes the answer.
  An `event: error` can arrive after the 200 (e.g. `overloaded_error`
  mid-answer) and fails the attempt with its own kind.
- `stop_reason: "refusal"` is a safety stop: `content_filter`, with the
  provider's explanation kept as the reason.
"""

from __future__ import annotations

from typing import Any

from ..errors import Kind, ProviderError
from .base import (
    Adapter,
    ChatRequest,
    Chunk,
    Completion,
    Usage,
    answer_object,
    in_band_error,
    json_object,
    raise_if_withheld,
)

API_VERSION = "2023-06-01"


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(int(raw.get("input_tokens") or 0), int(raw.get("output_tokens") or 0))


def _text_of(blocks: Any) -> str:
    """The answer's text blocks joined; thinking and tool blocks are not part of the answer."""
    if not isinstance(blocks, list):
        return ""
    return "".join(str(b.get("text") or "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")


class AnthropicAdapter(Adapter):
    # message_stop is the last event of a Messages stream.
    stream_ends_at_done = True

    def build(
        self, request: ChatRequest, wire_model: str, api_key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {
            "model": wire_model,
            "max_tokens": request.max_tokens or request.default_max_tokens,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.turns],
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.user is not None:
            body["metadata"] = {"user_id": request.user}
        if request.stream:
            body["stream"] = True
        auth = {"x-api-key": api_key} if api_key else {}
        return self.url("/v1/messages"), self.headers(auth, {"anthropic-version": API_VERSION}), body

    def parse_completion(self, body: Any) -> Completion:
        answer = answer_object(body)
        if answer.get("type") == "error":
            raise in_band_error(answer)
        if not isinstance(answer.get("content"), list):
            raise ProviderError(Kind.TRANSIENT, "response has no content", status=200)
        stop = answer.get("stop_reason")
        if stop is None:
            raise ProviderError(Kind.TRANSIENT, "answer has no stop_reason (truncated)", status=200)
        raise_if_withheld(answer, stop)
        return Completion(_text_of(answer["content"]), _usage(answer.get("usage")) or Usage(), str(stop))

    def parse_event(self, event: str, data: str) -> Chunk | None:
        obj = json_object(data)
        kind = obj.get("type") or event
        if kind == "error" or event == "error":
            raise in_band_error(obj)
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            # text_delta only: thinking, signature and tool-input deltas are not answer text
            return Chunk(text=str(delta.get("text") or "")) if delta.get("type") == "text_delta" else None
        if kind == "content_block_start":
            block = obj.get("content_block") or {}
            text = str(block.get("text") or "") if block.get("type") == "text" else ""
            return Chunk(text=text) if text else None
        if kind == "message_start":
            usage = _usage((obj.get("message") or {}).get("usage"))
            return Chunk(usage=usage) if usage else None
        if kind == "message_delta":
            stop = (obj.get("delta") or {}).get("stop_reason")
            raise_if_withheld(obj, stop)
            return Chunk(finish_reason=stop, usage=_usage(obj.get("usage")))
        if kind == "message_stop":
            return Chunk(done=True)
        return None  # ping, content_block_stop, and event types added later
