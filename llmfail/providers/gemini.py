"""Google's Gemini API (`POST {base_url}/v1beta/models/{model}:generateContent`).

What differs, and why it matters:

- The key goes in the `x-goog-api-key` header, never in a `?key=` query, so
  it cannot leak through a URL in an error message or a log line.
- Messages are `contents[]` with roles `user` / `model` and `parts[].text`;
  the system prompt is `systemInstruction`; limits go in `generationConfig`.
- Streaming is a different method, `:streamGenerateContent?alt=sse` (without
  `alt=sse` Gemini streams one JSON array, which no SSE parser can read).
  Every SSE chunk has the shape of a whole answer; the one carrying a
  `finishReason` completes the stream.
- A refusal comes inside a 200: `promptFeedback.blockReason` (the prompt was
  blocked, no candidates at all) or a candidate `finishReason` of `SAFETY`,
  `RECITATION`, `PROHIBITED_CONTENT`... Both are `content_filter`, never an
  empty success or a cut, and the block reason with the flagged
  categories is kept as the error's reason.
- Output tokens are `candidatesTokenCount` plus `thoughtsTokenCount`: thinking
  tokens are billed as output, and usage exists to count what was spent.
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

_ROLES = {"user": "user", "assistant": "model"}


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    output = int(raw.get("candidatesTokenCount") or 0) + int(raw.get("thoughtsTokenCount") or 0)
    return Usage(int(raw.get("promptTokenCount") or 0), output)


def _candidate(obj: dict[str, Any]) -> dict[str, Any]:
    """The first candidate, after failing the attempt if the prompt or the answer was blocked."""
    feedback = obj.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        raise in_band_error(obj)  # any block reason, OTHER included, withholds the answer
    candidates = obj.get("candidates")
    candidate = candidates[0] if isinstance(candidates, list) and candidates else {}
    if not isinstance(candidate, dict):
        raise ValueError("candidate is not an object")
    raise_if_withheld(obj, candidate.get("finishReason"))
    return candidate


def _text(candidate: dict[str, Any]) -> str:
    """Answer text; parts marked `thought` are the model's reasoning, not its answer."""
    parts = (candidate.get("content") or {}).get("parts") or []
    return "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict) and not p.get("thought"))


class GeminiAdapter(Adapter):
    # the chunk with the finishReason also carries the final usageMetadata
    stream_ends_at_done = True

    def build(
        self, request: ChatRequest, wire_model: str, api_key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {
            "contents": [
                {"role": _ROLES.get(m["role"], "user"), "parts": [{"text": m["content"]}]} for m in request.turns
            ],
        }
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if config:
            body["generationConfig"] = config
        model = wire_model.removeprefix("models/")
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        auth = {"x-goog-api-key": api_key} if api_key else {}
        return self.url(f"/v1beta/models/{model}:{method}"), self.headers(auth), body

    def parse_completion(self, body: Any) -> Completion:
        answer = answer_object(body)
        candidate = _candidate(answer)
        finish = candidate.get("finishReason")
        if not finish:
            raise ProviderError(Kind.TRANSIENT, "answer has no finishReason (truncated)", status=200)
        return Completion(_text(candidate), _usage(answer.get("usageMetadata")) or Usage(), str(finish))

    def parse_event(self, event: str, data: str) -> Chunk | None:
        obj = json_object(data)
        if obj.get("error"):
            raise in_band_error(obj)
        candidate = _candidate(obj)
        finish = candidate.get("finishReason")
        return Chunk(
            text=_text(candidate),
            done=bool(finish),
            finish_reason=str(finish) if finish else None,
            usage=_usage(obj.get("usageMetadata")),
        )
