"""OpenAI Chat Completions, and every server that speaks it (vLLM, llama.cpp, LM Studio,
Ollama's /v1, OpenRouter, Groq, Together, Azure-style gateways)."""

from __future__ import annotations

import json
from typing import Any

from ..classify import classify_error_object
from ..errors import Kind, ProviderError
from .base import Adapter, ChatRequest, Chunk, Completion, Usage, decode_json


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


class OpenAIAdapter(Adapter):
    def build(self, request: ChatRequest, wire_model: str, api_key: str | None) -> tuple[str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {"model": wire_model, "messages": [dict(m) for m in request.messages]}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"content-type": "application/json", **self.extra_headers()}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return f"{(self.provider.base_url or '').rstrip('/')}/chat/completions", headers, body

    def parse_completion(self, body: Any) -> Completion:
        if not isinstance(body, dict):
            raise ProviderError(Kind.TRANSIENT, "unexpected response body", status=200)
        if "error" in body and body["error"]:
            raise classify_error_object(body, status=200, now=0.0)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError(Kind.TRANSIENT, "response has no choices", status=200)
        choice = choices[0]
        message = choice.get("message") or {}
        if message.get("refusal"):
            raise ProviderError(
                Kind.CONTENT_FILTER, str(message["refusal"])[:500], status=200, code="refusal", reason="refusal"
            )
        finish = choice.get("finish_reason")
        if finish is None:
            raise ProviderError(Kind.TRANSIENT, "answer has no finish_reason (truncated)", status=200)
        return Completion(str(message.get("content") or ""), _usage(body.get("usage")) or Usage(), finish)

    def parse_event(self, event: str, data: str) -> Chunk | None:
        if data.strip() == "[DONE]":
            return None
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("stream event is not an object")
        if obj.get("error"):
            raise classify_error_object(obj, status=200, now=0.0)
        usage = _usage(obj.get("usage"))
        choices = obj.get("choices") or []
        if not choices:
            return Chunk(usage=usage) if usage else None
        choice = choices[0]
        delta = choice.get("delta") or {}
        if delta.get("refusal"):
            raise ProviderError(Kind.CONTENT_FILTER, str(delta["refusal"])[:500], status=200, code="refusal", reason="refusal")
        finish = choice.get("finish_reason")
        return Chunk(text=str(delta.get("content") or ""), done=finish is not None, finish_reason=finish, usage=usage)
