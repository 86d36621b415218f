"""OpenAI's Chat Completions shapes, both ways: the request read, the answer, stream chunks, errors.

Whatever entry answers (OpenAI, Anthropic, Gemini, Ollama), the client sees OpenAI's
JSON: the engine's `Result` and `Token`s are already protocol-free, so the translation
is only about names (`finish_reason`, `usage`) and about which llmfail error becomes
which HTTP status. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AllBenched, ChainExhausted, FailFast, Kind, LlmfailError, ProviderError, StreamInterrupted
from ..result import Result

#: Roles a message may have. `developer` is OpenAI's newer name for `system`; tool and
#: function messages have no translation to the other protocols, so they are refused.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

#: Body fields the gateway reads itself; every other field is passed on to OpenAI-protocol entries.
OWN_FIELDS = frozenset(
    {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens"}
    | {"temperature", "stop", "user", "n"}
)

#: Each protocol's way of saying why an answer ended, in OpenAI's words.
FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "STOP": "stop",
    "length": "length",
    "max_tokens": "length",
    "MAX_TOKENS": "length",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
}

#: The HTTP status a failure of each kind answers with, when it is the reason the request failed.
#: A provider's auth failure is the gateway's problem, not the client's key: 502, never 401.
KIND_STATUS = {
    Kind.RATE_LIMITED: 429,
    Kind.TRANSIENT: 502,
    Kind.TIMEOUT: 504,
    Kind.AUTH: 502,
    Kind.QUOTA: 429,
    Kind.CONTEXT_LENGTH: 400,
    Kind.INVALID_REQUEST: 400,
    Kind.CONTENT_FILTER: 400,
}

#: OpenAI's error `code` for the kinds a client can act on.
KIND_CODE = {
    Kind.CONTEXT_LENGTH: "context_length_exceeded",
    Kind.CONTENT_FILTER: "content_filter",
    Kind.QUOTA: "insufficient_quota",
    Kind.RATE_LIMITED: "rate_limit_exceeded",
}


class BadRequest(Exception):
    """A request body the gateway cannot use: a 400 (or `status`) in OpenAI's error shape."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


@dataclass(frozen=True)
class ChatCall:
    """One Chat Completions request, read: what `Engine.complete` / `Engine.stream` take."""

    chain: str
    messages: list[dict[str, str]]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def engine_args(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stop": self.stop,
            "user": self.user,
            "extra": self.extra,
        }


def parse_chat(body: Any) -> ChatCall:
    """Read a Chat Completions body; BadRequest names the first field that is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    chain = body.get("model")
    if not isinstance(chain, str) or not chain:
        raise BadRequest("`model` is required: the name of a chain (GET /v1/models lists them)", param="model")
    messages = _messages(body.get("messages"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("`stream` must be true or false", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("`stream_options` must be an object", param="stream_options")
    n = body.get("n", 1)
    if n not in (1, None):
        raise BadRequest("only n=1 is supported: a chain gives one answer", param="n")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise BadRequest("`max_tokens` must be a positive integer", param="max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 2
    ):
        raise BadRequest("`temperature` must be a number from 0 to 2", param="temperature")
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if not all(isinstance(s, str) for s in stops):
        raise BadRequest("`stop` must be a string or a list of strings", param="stop")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("`user` must be a string", param="user")
    return ChatCall(
        chain=chain,
        messages=messages,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens=limit,
        temperature=float(temperature) if temperature is not None else None,
        stop=stops,
        user=user,
        extra={k: v for k, v in body.items() if k not in OWN_FIELDS},
    )


def _messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest("`messages` must be a non-empty list", param="messages")
    messages = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object", param=where)
        role = ROLES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise BadRequest(
                f"{where}.role {message.get('role')!r} is not supported (system, developer, user, assistant)",
                param=f"{where}.role",
            )
        messages.append({"role": role, "content": _text(message.get("content"), where)})
    return messages


def _text(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts (other parts have no translation)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(f"{where}.content: only text parts are supported", param=f"{where}.content")
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest(f"{where}.content must be a string or a list of text parts", param=f"{where}.content")


# --------------------------------------------------------------------------- answers


def finish_reason(word: str | None) -> str:
    return FINISH_REASONS.get(word or "stop", "stop")


def usage_json(result: Result) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def completion_json(result: Result, created: int) -> dict[str, Any]:
    """A whole answer as `chat.completion`; `model` is the entry that answered."""
    return {
        "id": f"chatcmpl-{result.request_id}",
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": finish_reason(result.finish_reason),
            }
        ],
        "usage": usage_json(result),
    }


def chunk_json(
    request_id: str,
    created: int,
    model: str | None,
    delta: Mapping[str, Any],
    finish: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk`."""
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
        **more,
    }


# --------------------------------------------------------------------------- errors


def error_json(message: str, type_: str, code: str | None = None, param: str | None = None, **more: Any) -> Any:
    """OpenAI's error object: `{"error": {"message", "type", "param", "code", ...}}`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **more}}


def error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


@dataclass(frozen=True)
class ErrorAnswer:
    """An llmfail error as the HTTP answer a client gets."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def cause_json(cause: ProviderError) -> dict[str, Any]:
    """One failed entry for a client: model, kind, status and the redacted message (never a key)."""
    return {"model": cause.model, "kind": str(cause.kind), "status": cause.status, "message": cause.message}


def error_answer(error: LlmfailError, now: float) -> ErrorAnswer:
    """The status, OpenAI-shaped body and headers for an error that ended a request."""
    if isinstance(error, AllBenched):
        wait = max(1, math.ceil(error.first_until - now)) if error.first_until is not None else 1
        body = error_json(error.message, "server_error", "all_benched", retry_after_s=wait)
        return ErrorAnswer(503, body, {"Retry-After": str(wait)})
    if isinstance(error, StreamInterrupted):  # only reachable before the answer's headers left
        return _kind_answer(error.message, error.kind, [cause_json(error.cause)], error.cause)
    if isinstance(error, FailFast | ProviderError):
        return _kind_answer(error.message, error.kind, [cause_json(error)], error)
    if isinstance(error, ChainExhausted):
        causes = [cause_json(c) for c in error.causes]
        kinds = {c.kind for c in error.causes}
        # Every entry refused for the same reason of the request's own (too long for every
        # model, every daily quota used up): the client's natural status, not a gateway failure.
        if len(kinds) == 1 and (kind := next(iter(kinds))) in (Kind.CONTEXT_LENGTH, Kind.QUOTA, Kind.CONTENT_FILTER):
            return _kind_answer(error.message, kind, causes, error.causes[-1])
        return ErrorAnswer(502, error_json(error.message, "server_error", "chain_exhausted", causes=causes))
    return ErrorAnswer(500, error_json(error.message, "server_error", "internal_error"))


def _kind_answer(message: str, kind: Kind, causes: list[dict[str, Any]], last: ProviderError) -> ErrorAnswer:
    status = KIND_STATUS.get(kind, 502)
    code = KIND_CODE.get(kind, str(kind))
    headers = {}
    if status == 429 and last.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(last.retry_after)))
    return ErrorAnswer(status, error_json(message, error_type(status), code, causes=causes), headers)
