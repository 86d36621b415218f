"""OpenAI Chat Completions, and every server that speaks it (vLLM, llama.cpp, LM Studio,
Ollama's /v1, OpenRouter, Groq, Together, Azure-style gateways).

What matters for failover: a choice's `finish_reason` is the completion signal
(a missing `[DONE]` after it is fine); `finish_reason: "error"` with a
top-level `error` (OpenRouter) fails the attempt; a `refusal` is a safety stop;
usage arrives in a trailing chunk when asked for with `stream_options`.
"""

from __future__ import annotations

from typing import Any

from ..errors import Kind, ProviderError
from .base import Adapter, ChatRequest, Chunk, Completion, Usage, answer_object, in_band_error, json_object


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


def _refused(refusal: object) -> ProviderError:
    return ProviderError(Kind.CONTENT_FILTER, str(refusal)[:500], status=200, code="refusal", reason="refusal")


class OpenAIAdapter(Adapter):
    takes_extra = True

    def build(
        self, request: ChatRequest, wire_model: str, api_key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        # The caller's extra fields first: the ones the engine sets below always win.
        body: dict[str, Any] = {**request.extra, "model": wire_model, "messages": [dict(m) for m in request.messages]}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if request.user is not None:
            body["user"] = request.user
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        return self.url("/chat/completions"), self.headers(auth), body

    def parse_completion(self, body: Any) -> Completion:
        answer = answer_object(body)
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError(Kind.TRANSIENT, "response has no choices", status=200)
        choice = choices[0]
        message = choice.get("message") or {}
        if message.get("refusal"):
            raise _refused(message["refusal"])
        finish = choice.get("finish_reason")
        if finish is None:
            raise ProviderError(Kind.TRANSIENT, "answer has no finish_reason (truncated)", status=200)
        return Completion(str(message.get("content") or ""), _usage(answer.get("usage")) or Usage(), finish)

    def parse_event(self, event: str, data: str) -> Chunk | None:
        if data.strip() == "[DONE]":
            return None
        obj = json_object(data)
        if obj.get("error"):
            raise in_band_error(obj)
        usage = _usage(obj.get("usage"))
        choices = obj.get("choices") or []
        if not choices:
            return Chunk(usage=usage) if usage else None
        choice = choices[0]
        delta = choice.get("delta") or {}
        if delta.get("refusal"):
            raise _refused(delta["refusal"])
        finish = choice.get("finish_reason")
        return Chunk(text=str(delta.get("content") or ""), done=finish is not None, finish_reason=finish, usage=usage)
