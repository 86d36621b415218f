"""Ollama's native chat API (`POST {base_url}/api/chat`).

(Ollama's OpenAI-compatible `/v1` endpoint is served by the `openai` adapter.)

What differs, and why it matters:

- Ollama streams unless told otherwise, so `stream` is always sent: a whole
  answer must ask for `"stream": false`, or it would get NDJSON back.
- Limits and sampling go under `options` (`num_predict`, `temperature`).
- The stream is NDJSON: one object per line, the last one with `"done": true`
  and the token counts (`prompt_eval_count`, `eval_count`). A stream that ends
  without that line is cut.
- Errors are `{"error": "..."}`, as the whole body of a non-2xx answer and as a
  line in the middle of a 200 stream (the model crashed); both go through the
  classifier (a 404 "model not found, try pulling it first" is `auth` with an
  `ollama pull` hint).
- Local Ollama needs no key. When one is configured (Ollama behind an
  authenticating proxy, or ollama.com) it is sent as a bearer token.
"""

from __future__ import annotations

from typing import Any

from ..errors import Kind, ProviderError
from .base import Adapter, ChatRequest, Chunk, Completion, Usage, answer_object, in_band_error, json_object


def _usage(obj: dict[str, Any]) -> Usage | None:
    if "prompt_eval_count" not in obj and "eval_count" not in obj:
        return None
    return Usage(int(obj.get("prompt_eval_count") or 0), int(obj.get("eval_count") or 0))


def _text(obj: dict[str, Any]) -> str:
    message = obj.get("message")
    if message is None:
        return ""
    if not isinstance(message, dict):
        raise ValueError("message is not an object")
    return str(message.get("content") or "")


class OllamaAdapter(Adapter):
    stream_format = "ndjson"
    # the `"done": true` line is the last one and carries the counts
    stream_ends_at_done = True

    def build(
        self, request: ChatRequest, wire_model: str, api_key: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {
            "model": wire_model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
            "stream": request.stream,
        }
        options: dict[str, Any] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.stop:
            options["stop"] = list(request.stop)
        if options:
            body["options"] = options
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        return self.url("/api/chat"), self.headers(auth), body

    def parse_completion(self, body: Any) -> Completion:
        answer = answer_object(body)
        if answer.get("done") is not True:
            raise ProviderError(Kind.TRANSIENT, "answer is not done (truncated)", status=200)
        return Completion(_text(answer), _usage(answer) or Usage(), str(answer.get("done_reason") or "stop"))

    def parse_event(self, event: str, data: str) -> Chunk | None:
        obj = json_object(data)
        if obj.get("error"):
            raise in_band_error(obj)
        done = obj.get("done") is True
        return Chunk(
            text=_text(obj),
            done=done,
            finish_reason=str(obj.get("done_reason") or "stop") if done else None,
            usage=_usage(obj),
        )
