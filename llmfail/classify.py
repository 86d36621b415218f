"""From a provider's failure (status, headers, body, exception) to one classified error.

Every adapter hands its failures here, so one ordered table (`RULES`) decides the
kind for every provider (docs/classification.md explains it to users). The first rule that
matches wins, and the order is the whole point:

1. **Safety refusals** (a `content_filter` / `content_policy_violation` /
   `invalid_prompt` code, Azure's `innererror`, OpenRouter's moderation
   metadata, a Gemini `blockReason` or a filtering finish reason). They come
   first because providers send them under statuses that mean something else
   (400, OpenRouter's 403, a 200), and the policy for them (`on_content_filter`)
   must see them as what they are.
2. **Billing stops and dead accounts** (`insufficient_quota`, spend limits,
   Anthropic's `enforced_spend_limit_reached`, Gemini `FAILED_PRECONDITION` and
   `API_KEY_INVALID`, region refusals) -> `auth`. They arrive as 400 or 429, and
   filing them as `invalid_request` or `rate_limited` would either stop the chain
   or retry a key that cannot work until someone pays. The one exception sits
   just before them: OpenRouter's 402 *with* a Retry-After is a wait, not a bill.
3. **Context length by code/type** (`context_length_exceeded`,
   `exceed_context_size_error`, `request_too_large`).
4. **Message text**, only now and only for messages taken from a JSON error
   (an HTML or plain-text body never overrides the status): billing wording,
   then content-policy wording, then context-length wording, then OpenAI's
   "Request too large ... tokens per min" 429. Text beats the generic 400 and
   "5xx means transient" because some servers (Ollama) send a context overflow
   as 413 or 500, but it never touches 401/403/404/408 or an ordinary 429:
   Gemini's per-minute 429 says "exceeded your current quota" and is only a
   rate limit.
5. **The HTTP status**: 401/402/403/404 auth (404 is a missing model), 408
   timeout, 413 context length, 429 rate limited, 409 and Groq's 498 transient,
   any 5xx (529 included) transient, any other 4xx invalid request.
6. **No usable status** (an error inside a 200 stream or 2xx body): the error's
   own type/code/status string (`overloaded_error` transient, `rate_limit_error`
   rate limited, a numeric code is read as that HTTP status before step 1).
7. **Anything else is transient**: retrying an unknown failure is cheap, and
   the engine benches an entry that keeps failing.

Wait times (`retry_after`, `reset_at`) and `x-should-retry` come from headers
(and Gemini's `RetryInfo`) on every error, whatever the kind. Messages and
reasons always pass through `redact()`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any

import httpx

from llmfail.errors import Kind, ProviderError
from llmfail.redact import redact

__all__ = [
    "RULES",
    "classify_error_object",
    "classify_exception",
    "classify_http",
    "finish_reason_kind",
    "reset_at",
    "retry_after_seconds",
]

MAX_MESSAGE = 500
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

# ---------------------------------------------------------------------------
# Vocabularies (all lower-case; matched against every type/code/status/reason
# string the error carries).
# ---------------------------------------------------------------------------

CONTENT_FILTER_IDS = frozenset(
    {"content_filter", "content_policy_violation", "invalid_prompt", "responsibleaipolicyviolation"}
)
BILLING_IDS = frozenset(
    {
        "insufficient_quota",  # OpenAI type (and older code)
        "credit_balance_exhausted",  # OpenAI code
        "organization_usage_limit_exceeded",  # OpenAI code
        "enforced_spend_limit_reached",  # Anthropic error.details.error_code, even on 429
        "failed_precondition",  # Gemini: free tier not available here / billing not enabled
        "api_key_invalid",  # Gemini ErrorInfo.reason on a 400
        "unsupported_country_region_territory",  # OpenAI region refusal
    }
)
BILLING_ID_SUFFIXES = ("_spend_limit_exceeded",)  # organization_/project_spend_limit_exceeded
CONTEXT_IDS = frozenset({"context_length_exceeded", "exceed_context_size_error", "request_too_large"})

#: Kind by error type/code when there is no HTTP status to go by (in-stream errors).
TYPE_KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        # transient: the provider's own trouble, including its own timeouts
        "overloaded_error": Kind.TRANSIENT,
        "api_error": Kind.TRANSIENT,
        "server_error": Kind.TRANSIENT,
        "internal_server_error": Kind.TRANSIENT,
        "service_unavailable_error": Kind.TRANSIENT,
        "server_is_overloaded": Kind.TRANSIENT,
        "unavailable_error": Kind.TRANSIENT,
        "capacity_exceeded": Kind.TRANSIENT,
        "timeout_error": Kind.TRANSIENT,
        "conflict_error": Kind.TRANSIENT,
        "internal": Kind.TRANSIENT,
        "unavailable": Kind.TRANSIENT,
        "deadline_exceeded": Kind.TRANSIENT,
        "aborted": Kind.TRANSIENT,
        # rate limited
        "rate_limit_error": Kind.RATE_LIMITED,
        "rate_limit_exceeded": Kind.RATE_LIMITED,
        "resource_exhausted": Kind.RATE_LIMITED,
        # auth
        "authentication_error": Kind.AUTH,
        "permission_error": Kind.AUTH,
        "not_found_error": Kind.AUTH,
        "invalid_api_key": Kind.AUTH,
        "model_not_found": Kind.AUTH,
        "unauthenticated": Kind.AUTH,
        "permission_denied": Kind.AUTH,
        "not_found": Kind.AUTH,
        # invalid request
        "invalid_request_error": Kind.INVALID_REQUEST,
        "invalid_argument": Kind.INVALID_REQUEST,
        "badrequesterror": Kind.INVALID_REQUEST,
    }
)

#: Finish / stop reasons that mean the answer was withheld for safety.
FILTER_FINISH_REASONS = frozenset(
    {
        "CONTENT_FILTER",  # OpenAI, Azure
        "REFUSAL",  # Anthropic stop_reason
        "SAFETY",  # Gemini finishReason / blockReason
        "RECITATION",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
ERROR_FINISH_REASONS = frozenset({"ERROR"})  # OpenRouter's finish_reason "error"


class _Pattern:
    """A regular expression compiled when first used: a process whose requests never fail (a
    one-shot `llmfail run`) never pays for compiling the classifier's wording (~1.5 ms)."""

    __slots__ = ("_compiled", "_flags", "_source")

    def __init__(self, source: str, flags: int = 0) -> None:
        self._source, self._flags = source, flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self._source, self._flags)
        return self._compiled


# Message wording, in the order the table tries it.
_BILLING_TEXT = _Pattern(
    r"credit balance is too low"
    r"|reached your specified (?:workspace )?api usage limits"
    r"|account (?:is )?overdue"
    r"|country, region,? or territory not supported"
    r"|user location is not supported",
    re.IGNORECASE,
)
_POLICY_TEXT = _Pattern(
    r"content management policy|content[ _]policy|usage polic(?:y|ies)|safety system",
    re.IGNORECASE,
)
_CONTEXT_TEXT = _Pattern(
    r"maximum context length"
    r"|prompt is too long"
    r"|exceeds? (?:the )?context limit"
    r"|exceeds the context"
    r"|input token count\b.*\bexceeds"
    r"|context length"
    r"|exceeds the available context size",
    re.IGNORECASE | re.DOTALL,
)
_TOO_LARGE_FOR_RATE = _Pattern(r"request too large\b.*\b(?:tokens per min|TPM)", re.IGNORECASE | re.DOTALL)
_OLLAMA_PULL = _Pattern(r"""model ["']([^"']+)["'] not found, try pulling it first""")


# ---------------------------------------------------------------------------
# What a failure says, extracted once.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Signals:
    status: int | None
    """The HTTP status that decides: the response's when not 2xx, else a numeric error code."""
    codes: tuple[str, ...] = ()
    """Every type/code/status/reason string, most specific first, original case."""
    message: str | None = None
    """The provider's message (unredacted here; redacted on the way out)."""
    text_is_structured: bool = False
    """The message came from a JSON error, so wording rules may read it."""
    moderation: tuple[str, ...] | None = None
    """OpenRouter metadata.reasons (or () when only flagged_input is present)."""
    filter_result: Any = None
    """Azure innererror.content_filter_result."""
    blocked: str | None = None
    """A Gemini blockReason / filtering finish reason, described."""
    retry_after: float | None = None
    ids: frozenset[str] = field(default=frozenset())

    def has(self, vocabulary: Iterable[str]) -> bool:
        return not self.ids.isdisjoint(vocabulary)

    def wording(self, pattern: _Pattern) -> bool:
        return bool(self.text_is_structured and self.message and pattern.compiled.search(self.message))

    @property
    def text_may_decide(self) -> bool:
        """Wording may beat the status: 400, 413, 422, 5xx, or no status at all."""
        return self.status is None or self.status in (400, 413, 422) or self.status >= 500

    @property
    def is_4xx_or_none(self) -> bool:
        return self.status is None or 400 <= self.status < 500


def _type_kind(s: _Signals) -> Kind | None:
    for code in s.codes:
        kind = TYPE_KINDS.get(code.lower())
        if kind is not None:
            return kind
    return None


def _ollama_hint(s: _Signals, model: str | None) -> str:
    match = _OLLAMA_PULL.compiled.search(s.message or "")
    name = match.group(1) if match else (model or "MODEL")
    return f"run `ollama pull {name}`"


@dataclass(frozen=True)
class Rule:
    """One row of the decision table: when `when` holds, the failure is `kind`."""

    name: str
    when: Callable[[_Signals], bool]
    kind: Kind | Callable[[_Signals], Kind | None]
    keeps_reason: bool = False
    """The provider's explanation is worth keeping in ProviderError.reason."""
    hint: Callable[[_Signals, str | None], str] | None = None

    def kind_for(self, s: _Signals) -> Kind:
        kind = self.kind(s) if callable(self.kind) else self.kind
        return kind if kind is not None else Kind.TRANSIENT


#: The decision, in order; the first matching rule wins (see the module docstring).
RULES: tuple[Rule, ...] = (
    # 1. safety refusals, whatever the status
    Rule(
        "content-filter code",
        lambda s: s.has(CONTENT_FILTER_IDS) or s.filter_result is not None,
        Kind.CONTENT_FILTER,
        keeps_reason=True,
    ),
    Rule(
        "moderation flag (OpenRouter metadata)",
        lambda s: s.moderation is not None,
        Kind.CONTENT_FILTER,
        keeps_reason=True,
    ),
    Rule("blocked prompt or filtered answer", lambda s: s.blocked is not None, Kind.CONTENT_FILTER, keeps_reason=True),
    # 2. billing stops and dead accounts
    Rule(
        "402 with a Retry-After (OpenRouter budget)",
        lambda s: s.status == 402 and s.retry_after is not None,
        Kind.RATE_LIMITED,
    ),
    Rule(
        "billing, dead key or region code",
        lambda s: s.has(BILLING_IDS) or any(i.endswith(BILLING_ID_SUFFIXES) for i in s.ids),
        Kind.AUTH,
        keeps_reason=True,
    ),
    # 3. context length by code/type
    Rule("context-length code", lambda s: s.has(CONTEXT_IDS), Kind.CONTEXT_LENGTH),
    # 4. wording, in a fixed order, never for 401/403/404/408 or a plain 429
    Rule(
        "billing or region wording",
        lambda s: s.is_4xx_or_none and s.wording(_BILLING_TEXT),
        Kind.AUTH,
        keeps_reason=True,
    ),
    Rule(
        "content-policy wording",
        lambda s: s.text_may_decide and s.wording(_POLICY_TEXT),
        Kind.CONTENT_FILTER,
        keeps_reason=True,
    ),
    Rule("context-length wording", lambda s: s.text_may_decide and s.wording(_CONTEXT_TEXT), Kind.CONTEXT_LENGTH),
    Rule(
        "429 request too large for the TPM limit",
        lambda s: s.status in (429, None) and s.wording(_TOO_LARGE_FOR_RATE),
        Kind.CONTEXT_LENGTH,
    ),
    # 5. the status
    Rule(
        "404 Ollama model not pulled",
        lambda s: s.status == 404 and s.wording(_OLLAMA_PULL),
        Kind.AUTH,
        hint=_ollama_hint,
    ),
    Rule("402 payment required", lambda s: s.status == 402, Kind.AUTH, keeps_reason=True),
    Rule("401/403/404", lambda s: s.status in (401, 403, 404), Kind.AUTH),
    Rule("408", lambda s: s.status == 408, Kind.TIMEOUT),
    Rule("413", lambda s: s.status == 413, Kind.CONTEXT_LENGTH),
    Rule("429", lambda s: s.status == 429, Kind.RATE_LIMITED),
    Rule("409 conflict / 498 capacity", lambda s: s.status in (409, 498), Kind.TRANSIENT),
    Rule("5xx", lambda s: s.status is not None and 500 <= s.status < 600, Kind.TRANSIENT),
    Rule("400/422 and any other 4xx", lambda s: s.status is not None and 400 <= s.status < 500, Kind.INVALID_REQUEST),
    # 6. no status: the error's own type/code
    Rule("error type/code", lambda s: s.status is None and _type_kind(s) is not None, _type_kind),
    # 7. the rest
    Rule("anything else", lambda s: True, Kind.TRANSIENT),
)


def _decide(s: _Signals) -> Rule:
    for rule in RULES:
        if rule.when(s):
            return rule
    raise AssertionError("the last rule always matches")  # pragma: no cover


# ---------------------------------------------------------------------------
# Reading bodies
# ---------------------------------------------------------------------------


def _parse_json(body: object) -> object | None:
    """A parsed body: dict/list as given, bytes/str through json; None when not JSON."""
    if isinstance(body, (Mapping, list)):
        return body
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", errors="replace")
    if not isinstance(body, str):
        return None
    text = body.strip().lstrip("\ufeff")
    if not text or text[0] not in '{["':
        return None
    try:
        loaded: object = json.loads(text)
    except ValueError:
        return None
    return loaded


def _error_envelope(parsed: object) -> Mapping[str, Any] | None:
    """The object that holds the error: unwrap a JSON array around it (Gemini)."""
    if isinstance(parsed, Mapping):
        return parsed
    if isinstance(parsed, list):
        mappings = [item for item in parsed if isinstance(item, Mapping)]
        for item in mappings:
            if "error" in item:
                return item
        return mappings[0] if mappings else None
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _finish_block(envelope: Mapping[str, Any]) -> str | None:
    """Describe a safety block in a 2xx body or stream chunk, or None."""
    feedback = envelope.get("promptFeedback")
    if isinstance(feedback, Mapping) and feedback.get("blockReason"):
        return _describe_block("blockReason", str(feedback["blockReason"]), feedback.get("safetyRatings"))
    for candidate in _mappings(envelope.get("candidates")):
        reason = candidate.get("finishReason")
        if finish_reason_kind(reason if isinstance(reason, str) else None) is Kind.CONTENT_FILTER:
            return _describe_block("finishReason", str(reason), candidate.get("safetyRatings"))
    for choice in _mappings(envelope.get("choices")):
        reason = choice.get("finish_reason")
        if finish_reason_kind(reason if isinstance(reason, str) else None) is Kind.CONTENT_FILTER:
            return f"finish_reason {reason}"
    holders = [envelope, envelope.get("delta"), envelope.get("message")]
    for holder in holders:
        if not isinstance(holder, Mapping):
            continue
        reason = holder.get("stop_reason")
        if finish_reason_kind(reason if isinstance(reason, str) else None) is Kind.CONTENT_FILTER:
            details = holder.get("stop_details")
            if isinstance(details, Mapping) and details.get("explanation"):
                return f"stop_reason {reason}: {details['explanation']}"
            return f"stop_reason {reason}"
    return None


def _describe_block(field_name: str, reason: str, ratings: object) -> str:
    flagged = [
        str(r.get("category"))
        for r in _mappings(ratings)
        if r.get("blocked") is True or str(r.get("probability", "")).upper() == "HIGH"
    ]
    return f"{field_name} {reason}" + (f" ({', '.join(flagged)})" if flagged else "")


def _mappings(value: object) -> list[Mapping[str, Any]]:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [item for item in value if isinstance(item, Mapping)]
    return []


def _finish_error(envelope: Mapping[str, Any]) -> bool:
    return any(
        finish_reason_kind(c.get("finish_reason") if isinstance(c.get("finish_reason"), str) else None)
        is Kind.TRANSIENT
        for c in _mappings(envelope.get("choices"))
    )


def _signals(
    envelope: Mapping[str, Any] | None,
    *,
    status: int | None,
    message: str | None,
    retry_after: float | None,
) -> _Signals:
    """Pull every structured field out of an error envelope (any provider's shape)."""
    if envelope is None:
        return _Signals(status=status, message=message, retry_after=retry_after)

    inner = envelope.get("error")
    if isinstance(inner, Mapping):
        err: Mapping[str, Any] = inner
    elif isinstance(inner, str):  # Ollama: {"error": "..."}
        err = {"message": inner}
    else:  # flat error (vLLM <= 0.10) or a chunk without an error object
        err = envelope

    codes: list[str] = []
    numeric: int | None = None

    def add(value: object) -> None:
        nonlocal numeric
        if isinstance(value, str) and value.strip() and not value.strip().isdigit():
            codes.append(value.strip())
        elif (n := _as_int(value)) is not None and numeric is None:
            numeric = n

    details = err.get("details")
    if isinstance(details, Mapping):  # Anthropic: error.details.error_code
        add(details.get("error_code"))
    add(err.get("code"))
    for item in _mappings(details):  # Google: ErrorInfo.reason
        if str(item.get("@type", "")).endswith("ErrorInfo"):
            add(item.get("reason"))
    add(err.get("status"))
    if err is not envelope or envelope.get("object") == "error" or "message" in envelope:
        add(err.get("type"))
    innererror = err.get("innererror")
    filter_result = None
    if isinstance(innererror, Mapping):
        add(innererror.get("code"))
        filter_result = innererror.get("content_filter_result")

    metadata = err.get("metadata")
    moderation: tuple[str, ...] | None = None
    if isinstance(metadata, Mapping) and (metadata.get("reasons") or metadata.get("flagged_input")):
        reasons = metadata.get("reasons")
        moderation = tuple(str(r) for r in reasons) if isinstance(reasons, list) else ()

    text_is_structured = False
    raw = err.get("message")
    if not isinstance(raw, str) or not raw.strip():
        raw = envelope.get("message") if isinstance(envelope.get("message"), str) else None
    if raw is None and "detail" in envelope:  # FastAPI-style {"detail": ...}
        detail = envelope["detail"]
        raw = detail if isinstance(detail, str) else _compact(detail)
    if isinstance(raw, str) and raw.strip():
        message, text_is_structured = raw.strip(), True

    blocked = _finish_block(envelope)
    if message is None and blocked is not None:
        message = f"blocked by the provider: {blocked}"
    if message is None and _finish_error(envelope):
        message = "the provider ended the answer with finish_reason error"

    decisive = status if status is not None and not 200 <= status < 300 else None
    if decisive is None and numeric is not None and 400 <= numeric < 600:
        decisive = numeric  # "a number code like 502 -> by that status"

    return _Signals(
        status=decisive,
        codes=tuple(codes) + ((str(numeric),) if numeric is not None else ()),
        message=message,
        text_is_structured=text_is_structured,
        moderation=moderation,
        filter_result=filter_result,
        blocked=blocked,
        retry_after=retry_after,
        ids=frozenset(c.lower() for c in codes),
    )


def _clean(text: str | None) -> str | None:
    text = redact(text)
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _reason(s: _Signals) -> str | None:
    if s.filter_result is not None:
        return _compact(s.filter_result)
    if s.moderation:
        return ", ".join(s.moderation)
    if s.blocked is not None:
        return s.blocked
    return s.message


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = {str(k).lower(): v for k, v in headers.items()}
    value = lowered.get(name)
    return str(value).strip() if value is not None else None


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = (_header(headers, "x-should-retry") or "").lower()
    return True if value == "true" else False if value == "false" else None


def _build(
    s: _Signals,
    *,
    http_status: int | None,
    headers: Mapping[str, str],
    now: float,
    model: str | None,
) -> ProviderError:
    rule = _decide(s)
    kind = rule.kind_for(s)
    return ProviderError(
        kind,
        _clean(s.message) or (f"HTTP {http_status}" if http_status is not None else "provider error"),
        status=http_status,
        model=model,
        code=s.codes[0] if s.codes else None,
        retry_after=s.retry_after,
        reset_at=reset_at(headers, now=now),
        should_retry=_should_retry(headers),
        reason=_clean(_reason(s)) if rule.keeps_reason else None,
        hint=rule.hint(s, model) if rule.hint else None,
    )


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def classify_http(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float,
    model: str | None = None,
) -> ProviderError:
    """Classify an HTTP answer that failed (any provider's shape).

    JSON bodies (an object, or an array wrapping one) are read for structured
    fields; an HTML, plain-text or empty body keeps the status code's kind. A 2xx
    handed here (a blocked Gemini prompt, an error object in a 200 body) is
    classified from its body alone.
    """
    parsed = _parse_json(body)
    envelope = _error_envelope(parsed)
    wait = retry_after_seconds(headers, parsed, now=now)
    message: str | None = None
    if envelope is None:
        if isinstance(parsed, str):
            message = parsed
        else:
            text = body.decode("utf-8", errors="replace") if isinstance(body, (bytes, bytearray)) else str(body)
            content_type = (_header(headers, "content-type") or "").lower()
            if text.strip() and not text.lstrip().startswith("<") and "html" not in content_type:
                message = text.strip()
    signals = _signals(envelope, status=status, message=message, retry_after=wait)
    return _build(signals, http_status=status, headers=headers, now=now, model=model)


def classify_error_object(
    obj: Mapping[str, Any] | str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] = _NO_HEADERS,
    now: float,
    model: str | None = None,
) -> ProviderError:
    """Classify an error that arrived inside a 200 stream (or any error object).

    Accepts OpenAI's `{"error": {...}}` data, Anthropic's `event: error` data,
    Ollama's `{"error": "..."}` line (or its bare string), OpenRouter's chunk with
    `finish_reason: "error"` and a top-level error, Gemini's blocked chunk. With no
    HTTP status the kind comes from the error's type/code; unknown is transient.
    """
    envelope: Mapping[str, Any] | None
    if isinstance(obj, str):
        parsed = _parse_json(obj)
        envelope = parsed if isinstance(parsed, Mapping) else {"error": parsed if isinstance(parsed, str) else obj}
    else:
        envelope = obj
    wait = retry_after_seconds(headers, envelope, now=now)
    signals = _signals(envelope, status=status, message=None, retry_after=wait)
    return _build(signals, http_status=status, headers=headers, now=now, model=model)


_URL_QUERY = _Pattern(r"(\bhttps?://[^\s?#'\"<>]+)\?[^\s#'\"<>]*")


def _strip_queries(text: str) -> str:
    return _URL_QUERY.compiled.sub(r"\1", text)


def classify_exception(exc: BaseException, *, model: str | None = None) -> ProviderError:
    """Classify a failure that produced no HTTP answer (timeouts, connection errors).

    httpx timeouts and TimeoutError are `timeout`; every other transport error
    (refused, reset, protocol) is `transient`; a cancelled task or Ctrl-C is
    `cancelled`. The message names the exception and the URL without its query.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        import time

        try:
            content: bytes = exc.response.content
        except httpx.ResponseNotRead:
            content = b""
        return classify_http(exc.response.status_code, exc.response.headers, content, now=time.time(), model=model)

    kind: Kind
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        kind = Kind.CANCELLED
    elif isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        kind = Kind.TIMEOUT
    else:  # httpx.TransportError (connect, read, write, protocol, proxy...), OSError, the rest
        kind = Kind.TRANSIENT

    detail = str(exc).strip()
    message = type(exc).__name__ + (f": {detail}" if detail else "")
    if isinstance(exc, httpx.RequestError):
        try:
            request = exc.request
        except RuntimeError:
            request = None
        if request is not None:
            url = request.url.copy_with(query=None, fragment=None)
            message += f" ({request.method} {url})"
    return ProviderError(kind, _clean(_strip_queries(message)) or type(exc).__name__, model=model)


_GO_DURATION_PART = _Pattern(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(text: str) -> float | None:
    """Seconds in a Go duration ("644ms", "6m0s", "1h2m3.5s"); None for junk or negative."""
    text = text.strip()
    if not text:
        return None
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _GO_DURATION_PART.compiled.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and math.isfinite(total) else None


def _non_negative(value: str, scale: float = 1.0) -> float | None:
    try:
        number = float(value) * scale
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _retry_delay(body: object) -> float | None:
    """Gemini: error.details[@type ends with RetryInfo].retryDelay ("26s", "1.5s")."""
    envelope = _error_envelope(_parse_json(body) if isinstance(body, (bytes, bytearray, str)) else body)
    if envelope is None:
        return None
    inner = envelope.get("error")
    err = inner if isinstance(inner, Mapping) else envelope
    for item in _mappings(err.get("details")):
        if not str(item.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = item.get("retryDelay")
        if isinstance(delay, str):
            text = delay.strip()
            if text.endswith("s") and not text.endswith("ms"):
                return _non_negative(text[:-1])
            return _go_duration(text)
        if isinstance(delay, Mapping):  # protobuf Duration as an object
            seconds = _non_negative(str(delay.get("seconds", 0)))
            nanos = _non_negative(str(delay.get("nanos", 0)))
            return None if seconds is None or nanos is None else seconds + nanos / 1e9
    return None


def retry_after_seconds(headers: Mapping[str, str], body: object | None, *, now: float) -> float | None:
    """Seconds the server asked us to wait, or None.

    Tries `retry-after-ms`, then `retry-after` (seconds, or an HTTP-date counted
    from `now`; a date in the past is 0), then Gemini's RetryInfo.retryDelay in
    the body. Header names are case-insensitive; a negative or junk value is
    ignored and the next source is tried.
    """
    value = _header(headers, "retry-after-ms")
    if value is not None and (wait := _non_negative(value, 0.001)) is not None:
        return wait
    value = _header(headers, "retry-after")
    if value:
        wait = _non_negative(value)
        if wait is not None:
            return wait
        if not re.fullmatch(r"[-+]?[\d.eE]+|nan|inf(inity)?", value, re.IGNORECASE):
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, when.timestamp() - now)
    if body is not None:
        return _retry_delay(body)
    return None


def _rfc3339(value: str) -> float | None:
    text = value.strip()
    if not text or not text[0].isdigit():
        return None
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def reset_at(headers: Mapping[str, str], *, now: float) -> float | None:
    """Epoch seconds when the provider's rate limits all reset: the latest one.

    OpenAI (and Groq) send `x-ratelimit-reset-requests` / `-tokens` as Go
    durations ("644ms", "6m0s"); Anthropic sends `anthropic-ratelimit-*-reset`
    as RFC 3339 timestamps. Junk values are ignored.
    """
    latest: float | None = None
    for name, raw in headers.items():
        key = str(name).lower()
        value = str(raw)
        when: float | None = None
        if key.startswith("x-ratelimit-reset-"):
            seconds = _go_duration(value)
            when = now + seconds if seconds is not None else None
        elif key.startswith("anthropic-ratelimit-") and key.endswith("-reset"):
            when = _rfc3339(value)
        if when is not None and (latest is None or when > latest):
            latest = when
    return latest


def finish_reason_kind(reason: str | None) -> Kind | None:
    """The kind a finish/stop reason means: content_filter, transient ("error"), or None when normal."""
    if not reason:
        return None
    upper = reason.strip().upper()
    if upper in FILTER_FINISH_REASONS:
        return Kind.CONTENT_FILTER
    if upper in ERROR_FINISH_REASONS:
        return Kind.TRANSIENT
    return None
