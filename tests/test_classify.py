"""classify.py against 60 recorded provider failures, plus the wait-time and exception rules."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmfail.classify import (
    RULES,
    classify_error_object,
    classify_exception,
    classify_http,
    finish_reason_kind,
    reset_at,
    retry_after_seconds,
)
from llmfail.errors import Kind, ProviderError
from llmfail.redact import register_secret

REPO_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "provider-errors"
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "provider-errors"
FIXTURES = REPO_FIXTURES if REPO_FIXTURES.is_dir() else SHARED_FIXTURES

#: 2025-08-21T12:40:00Z, a fixed clock for every test.
NOW = datetime(2025, 8, 21, 12, 40, 0, tzinfo=UTC).timestamp()

CASES: list[dict[str, Any]] = [fx for p in sorted(FIXTURES.glob("*.json")) for fx in json.loads(p.read_text())]
HTTP_CASES = [fx for fx in CASES if "stream" not in fx]
STREAM_CASES = [fx for fx in CASES if "stream" in fx]


def body_bytes(fx: dict[str, Any]) -> bytes:
    body = fx["body"]
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def stream_payloads(fx: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON objects of a recorded stream: SSE `data:` lines, or NDJSON lines."""
    payloads = []
    for line in fx["stream"]:
        if line.startswith("data:"):
            data = line[len("data:") :].strip()
            if data and data != "[DONE]":
                payloads.append(json.loads(data))
        elif line.startswith("{"):
            payloads.append(json.loads(line))
    return payloads


def stream_outcome(fx: dict[str, Any]) -> Kind | None:
    """The kind of the first error object or non-normal finish reason in a stream."""
    for payload in stream_payloads(fx):
        if "error" in payload or payload.get("type") == "error":
            return classify_error_object(payload, now=NOW).kind
        reasons = [c.get("finish_reason") for c in payload.get("choices", [])]
        reasons += [c.get("finishReason") for c in payload.get("candidates", [])]
        reasons += [payload.get("delta", {}).get("stop_reason")]
        for reason in reasons:
            if (kind := finish_reason_kind(reason)) is not None:
                return kind
    return None


# --- the fixtures ------------------------------------------------------------


def test_the_fixture_folder_holds_all_sixty_recorded_failures() -> None:
    assert len(CASES) == 60
    assert len({fx["id"] for fx in CASES}) == 60


#: The prose fields of a recorded failure: ours are reworded to stand on their own (they named a
#: document that is not in this repository); every other field must match the shared recording.
PROSE = frozenset({"why", "note", "source"})


def _recorded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _recorded(v) for k, v in value.items() if k not in PROSE}
    if isinstance(value, list):
        return [_recorded(v) for v in value]
    return value


@pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason="the shared fixture folder is not next to this repo")
def test_the_repo_copy_of_the_fixtures_records_the_same_failures_as_the_shared_folder() -> None:
    shared = {p.name: _recorded(json.loads(p.read_text())) for p in SHARED_FIXTURES.glob("*.json")}
    copy = {p.name: _recorded(json.loads(p.read_text())) for p in REPO_FIXTURES.glob("*.json")}
    assert copy == shared


@pytest.mark.parametrize("fx", HTTP_CASES, ids=[fx["id"] for fx in HTTP_CASES])
def test_every_recorded_http_failure_is_classified_as_the_spec_says(fx: dict[str, Any]) -> None:
    error = classify_http(fx["http_status"], fx["headers"], body_bytes(fx), now=NOW, model="m")
    assert error.kind == fx["expected_kind"], fx["why"]
    if fx["retry_after_s"] is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(fx["retry_after_s"], abs=0.01)
    assert error.status == fx["http_status"]
    assert error.model == "m"
    assert error.message and len(error.message) <= 500


@pytest.mark.parametrize("fx", STREAM_CASES, ids=[fx["id"] for fx in STREAM_CASES])
def test_every_recorded_stream_failure_is_classified_as_the_spec_says(fx: dict[str, Any]) -> None:
    assert stream_outcome(fx) == fx["expected_kind"], fx["why"]


def fixture(fixture_id: str) -> dict[str, Any]:
    return next(fx for fx in CASES if fx["id"] == fixture_id)


def classify_fixture(fixture_id: str) -> ProviderError:
    fx = fixture(fixture_id)
    return classify_http(fx["http_status"], fx["headers"], body_bytes(fx), now=NOW)


# --- what the error carries --------------------------------------------------


def test_an_html_error_page_keeps_its_status_kind_and_says_only_http_502() -> None:
    error = classify_fixture("openai-502-cloudflare-html")
    assert error.kind is Kind.TRANSIENT
    assert error.message == "HTTP 502"


def test_an_html_page_on_a_400_is_still_an_invalid_request() -> None:
    assert classify_http(400, {}, b"<html>context length exceeded</html>", now=NOW).kind is Kind.INVALID_REQUEST


def test_a_plain_text_body_never_overrides_the_status_code() -> None:
    error = classify_http(500, {"content-type": "text/plain"}, "the input length exceeds the context length", now=NOW)
    assert error.kind is Kind.TRANSIENT
    assert error.message == "the input length exceeds the context length"


def test_an_empty_body_is_classified_by_status_alone() -> None:
    assert classify_http(503, {}, b"", now=NOW).kind is Kind.TRANSIENT
    assert classify_http(401, {}, b"", now=NOW).message == "HTTP 401"


def test_the_error_code_is_the_providers_own_code_or_type() -> None:
    assert classify_fixture("openai-429-rate-limit-tpm").code == "rate_limit_exceeded"
    assert classify_fixture("anthropic-529-overloaded").code == "overloaded_error"
    assert classify_fixture("anthropic-429-enforced-spend-limit").code == "enforced_spend_limit_reached"
    assert classify_fixture("gemini-429-resource-exhausted-retryinfo").code == "RESOURCE_EXHAUSTED"
    assert classify_fixture("gemini-400-api-key-invalid").code == "API_KEY_INVALID"
    assert classify_fixture("openai-500-server-error").code == "server_error"
    assert classify_fixture("ollama-500-out-of-memory").code is None


def test_azure_content_filter_keeps_the_filter_result_as_compact_json_reason() -> None:
    error = classify_fixture("azure-400-content-filter-jailbreak")
    assert error.kind is Kind.CONTENT_FILTER
    assert error.reason == '{"jailbreak":{"detected":true,"filtered":true}}'


def test_openrouter_moderation_keeps_the_flagged_categories_as_reason() -> None:
    error = classify_fixture("openrouter-403-moderation-flagged")
    assert error.kind is Kind.CONTENT_FILTER
    assert error.reason == "harassment"


def test_openai_content_policy_violation_keeps_the_message_as_reason() -> None:
    error = classify_fixture("openai-400-content-policy-violation")
    assert error.reason is not None and error.reason.startswith("Your request was rejected")


def test_a_gemini_prompt_block_names_the_block_reason_and_flagged_category() -> None:
    error = classify_fixture("gemini-200-prompt-feedback-blocked")
    assert error.kind is Kind.CONTENT_FILTER
    assert error.reason == "blockReason SAFETY (HARM_CATEGORY_DANGEROUS_CONTENT)"


def test_a_billing_stop_keeps_the_providers_explanation_as_reason() -> None:
    error = classify_fixture("anthropic-400-workspace-spend-limit")
    assert error.kind is Kind.AUTH
    assert error.reason is not None and "regain access on 2026-09-01" in error.reason


def test_an_ordinary_rate_limit_has_no_reason() -> None:
    assert classify_fixture("openai-429-rate-limit-tpm").reason is None


def test_ollama_model_not_found_hints_at_ollama_pull() -> None:
    error = classify_fixture("ollama-404-model-not-found")
    assert error.kind is Kind.AUTH
    assert error.hint == "run `ollama pull llama3.1`"


def test_ollama_hint_also_reads_the_older_single_quoted_message() -> None:
    error = classify_http(404, {}, b"""{"error":"model 'gemma2:2b' not found, try pulling it first"}""", now=NOW)
    assert error.hint == "run `ollama pull gemma2:2b`"


def test_x_should_retry_is_read_as_true_or_false() -> None:
    assert classify_fixture("anthropic-429-rate-limit").should_retry is True
    assert classify_fixture("anthropic-400-invalid-request").should_retry is False
    assert classify_fixture("openai-500-server-error").should_retry is None
    assert classify_http(500, {"X-Should-Retry": "FALSE"}, b"", now=NOW).should_retry is False


def test_reset_time_is_filled_on_every_error_that_carries_reset_headers() -> None:
    assert classify_fixture("anthropic-429-rate-limit").reset_at == pytest.approx(NOW + 77)
    assert classify_fixture("openai-429-rate-limit-tpm").reset_at == pytest.approx(NOW + 0.644)
    assert classify_fixture("openai-400-invalid-prompt-flagged").reset_at == pytest.approx(NOW + 0.04)
    assert classify_fixture("openai-500-server-error").reset_at is None


def test_a_fake_key_echoed_in_an_error_body_never_reaches_the_message() -> None:
    register_secret("sk-test-CANARY123456789")
    body = {"error": {"message": "Incorrect API key provided: sk-test-CANARY123456789.", "code": "invalid_api_key"}}
    error = classify_http(401, {}, json.dumps(body), now=NOW)
    assert "CANARY" not in error.message
    assert "CANARY" not in str(error)
    streamed = classify_error_object({"error": "bad key sk-test-CANARY123456789"}, now=NOW)
    assert "CANARY" not in streamed.message


def test_a_long_message_is_cut_to_500_characters() -> None:
    body = {"error": {"message": "x" * 2000, "type": "server_error"}}
    assert len(classify_http(500, {}, json.dumps(body), now=NOW).message) == 500


# --- the order of the table --------------------------------------------------


def test_geminis_quota_wording_on_a_429_is_only_a_rate_limit() -> None:
    body = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
        }
    }
    assert classify_http(429, {}, json.dumps(body), now=NOW).kind is Kind.RATE_LIMITED


def test_context_length_wording_beats_5xx_means_transient() -> None:
    body = {"error": "the input length exceeds the context length"}
    assert classify_http(500, {}, json.dumps(body), now=NOW).kind is Kind.CONTEXT_LENGTH
    assert classify_http(413, {}, json.dumps(body), now=NOW).kind is Kind.CONTEXT_LENGTH


def test_content_policy_wording_beats_context_length_wording_and_the_generic_400() -> None:
    body = {
        "error": {
            "message": "Rejected by our content policy (context length was fine)",
            "type": "invalid_request_error",
        }
    }
    assert classify_http(400, {}, json.dumps(body), now=NOW).kind is Kind.CONTENT_FILTER


def test_wording_never_turns_a_401_or_a_plain_429_into_something_else() -> None:
    body = {"error": {"message": "maximum context length reached", "type": "x"}}
    assert classify_http(401, {}, json.dumps(body), now=NOW).kind is Kind.AUTH
    assert classify_http(429, {}, json.dumps(body), now=NOW).kind is Kind.RATE_LIMITED


def test_an_openrouter_402_with_retry_after_is_a_rate_limit_and_without_is_auth() -> None:
    body = json.dumps({"error": {"code": 402, "message": "in-flight budget", "metadata": {"limit_source": "x"}}})
    limited = classify_http(402, {"Retry-After": "3"}, body, now=NOW)
    assert limited.kind is Kind.RATE_LIMITED
    assert limited.retry_after == 3.0
    assert classify_http(402, {}, body, now=NOW).kind is Kind.AUTH


@pytest.mark.parametrize(
    "code",
    [
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
        "credit_balance_exhausted",
    ],
)
def test_every_openai_billing_code_is_auth_even_on_a_429(code: str) -> None:
    body = {"error": {"message": "billing", "type": "insufficient_quota", "code": code}}
    assert classify_http(429, {}, json.dumps(body), now=NOW).kind is Kind.AUTH


def test_insufficient_quota_with_a_null_code_is_auth_by_its_type() -> None:
    body = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": None}}
    assert classify_http(429, {}, json.dumps(body), now=NOW).kind is Kind.AUTH


def test_a_region_refusal_in_words_only_is_auth() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "User location is not supported for the API use.",
            "status": "INVALID_ARGUMENT",
        }
    }
    assert classify_http(400, {}, json.dumps(body), now=NOW).kind is Kind.AUTH


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (409, Kind.TRANSIENT),
        (418, Kind.INVALID_REQUEST),
        (422, Kind.INVALID_REQUEST),
        (498, Kind.TRANSIENT),
        (502, Kind.TRANSIENT),
        (529, Kind.TRANSIENT),
        (599, Kind.TRANSIENT),
        (408, Kind.TIMEOUT),
        (413, Kind.CONTEXT_LENGTH),
    ],
)
def test_each_bare_status_has_its_kind(status: int, kind: Kind) -> None:
    assert classify_http(status, {}, b"{}", now=NOW).kind is kind


def test_the_table_ends_with_a_rule_that_always_matches() -> None:
    assert RULES[-1].name == "anything else"
    assert len({rule.name for rule in RULES}) == len(RULES)


# --- errors inside a 200 stream ---------------------------------------------


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, Kind.TRANSIENT),
        ({"type": "error", "error": {"type": "api_error", "message": "Internal"}}, Kind.TRANSIENT),
        ({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, Kind.RATE_LIMITED),
        ({"error": {"message": "boom", "type": "server_error", "code": "server_error"}}, Kind.TRANSIENT),
        ({"error": {"message": "bad gateway", "code": 502}}, Kind.TRANSIENT),
        ({"error": {"message": "too many", "code": 429}}, Kind.RATE_LIMITED),
        ({"error": {"message": "long", "code": "context_length_exceeded"}}, Kind.CONTEXT_LENGTH),
        ({"error": {"code": 504, "message": "Deadline", "status": "DEADLINE_EXCEEDED"}}, Kind.TRANSIENT),
        ({"error": "an error was encountered while running the model"}, Kind.TRANSIENT),
        ({"error": {"message": "who knows"}}, Kind.TRANSIENT),
        ({"choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}, Kind.TRANSIENT),
        ({"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}, Kind.CONTENT_FILTER),
        ({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}, Kind.CONTENT_FILTER),
    ],
)
def test_an_error_object_inside_a_stream_is_classified_by_its_type_or_code(obj: dict[str, Any], kind: Kind) -> None:
    assert classify_error_object(obj, now=NOW).kind is kind


def test_an_ollama_error_line_may_be_passed_as_raw_text() -> None:
    error = classify_error_object('{"error":"an error was encountered while running the model"}', now=NOW)
    assert error.kind is Kind.TRANSIENT
    assert error.message == "an error was encountered while running the model"


def test_an_error_object_given_a_status_is_classified_by_that_status() -> None:
    assert classify_error_object({"error": {"message": "nope"}}, status=401, now=NOW).kind is Kind.AUTH


def test_an_anthropic_refusal_delta_keeps_the_explanation_as_reason() -> None:
    delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": "refusal",
            "stop_details": {"type": "refusal", "explanation": "declined for cyber harm"},
        },
    }
    error = classify_error_object(delta, now=NOW)
    assert error.kind is Kind.CONTENT_FILTER
    assert error.reason == "stop_reason refusal: declined for cyber harm"


@pytest.mark.parametrize(
    "reason",
    ["content_filter", "refusal", "SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"],
)
def test_a_safety_finish_reason_is_a_content_filter(reason: str) -> None:
    assert finish_reason_kind(reason) is Kind.CONTENT_FILTER


@pytest.mark.parametrize(
    "reason", [None, "", "stop", "length", "end_turn", "STOP", "MAX_TOKENS", "tool_calls", "tool_use", "max_tokens"]
)
def test_a_normal_finish_reason_has_no_kind(reason: str | None) -> None:
    assert finish_reason_kind(reason) is None


def test_finish_reason_error_is_transient() -> None:
    assert finish_reason_kind("error") is Kind.TRANSIENT


# --- wait times --------------------------------------------------------------


def test_retry_after_ms_beats_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "644", "retry-after": "1"}, None, now=NOW) == pytest.approx(0.644)


def test_retry_after_header_names_are_case_insensitive() -> None:
    assert retry_after_seconds({"Retry-After": "17"}, None, now=NOW) == 17.0
    assert retry_after_seconds({"RETRY-AFTER-MS": "1500"}, None, now=NOW) == 1.5


def test_retry_after_as_an_http_date_counts_from_now() -> None:
    assert retry_after_seconds({"retry-after": "Thu, 21 Aug 2025 12:40:30 GMT"}, None, now=NOW) == pytest.approx(30)


def test_retry_after_as_a_date_in_the_past_is_zero() -> None:
    assert retry_after_seconds({"retry-after": "Thu, 21 Aug 2025 12:00:00 GMT"}, None, now=NOW) == 0.0


@pytest.mark.parametrize("value", ["-5", "soon", "", "nan", "inf", "1e400", "Thu, 99 Foo 2025"])
def test_a_negative_or_junk_retry_after_is_ignored(value: str) -> None:
    assert retry_after_seconds({"retry-after": value}, None, now=NOW) is None
    assert retry_after_seconds({"retry-after-ms": value}, None, now=NOW) is None


def test_a_junk_retry_after_ms_falls_back_to_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "junk", "retry-after": "4"}, None, now=NOW) == 4.0


def test_geminis_retry_delay_is_read_from_the_body_when_no_header_says_more() -> None:
    body = {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}}
    assert retry_after_seconds({}, body, now=NOW) == 1.5
    assert retry_after_seconds({}, json.dumps(body), now=NOW) == 1.5
    assert retry_after_seconds({"retry-after": "9"}, body, now=NOW) == 9.0
    junk = {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "-3s"}]}}
    assert retry_after_seconds({}, junk, now=NOW) is None


def test_openai_reset_durations_are_go_durations_and_the_latest_wins() -> None:
    headers = {"x-ratelimit-reset-requests": "644ms", "x-ratelimit-reset-tokens": "6m0s"}
    assert reset_at(headers, now=NOW) == pytest.approx(NOW + 360)
    assert reset_at({"x-ratelimit-reset-tokens": "1h2m3.5s"}, now=NOW) == pytest.approx(NOW + 3723.5)
    assert reset_at({"x-ratelimit-reset-requests": "20s"}, now=NOW) == pytest.approx(NOW + 20)


def test_anthropic_reset_timestamps_are_rfc_3339() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
        "anthropic-ratelimit-tokens-reset": "2025-08-21T12:41:17+00:00",
    }
    assert reset_at(headers, now=NOW) == pytest.approx(NOW + 77)


def test_junk_reset_values_are_ignored() -> None:
    assert reset_at({"x-ratelimit-reset-tokens": "soon", "anthropic-ratelimit-tokens-reset": "later"}, now=NOW) is None
    assert reset_at({"x-ratelimit-reset-tokens": "-5s", "x-ratelimit-reset-requests": "2s"}, now=NOW) == NOW + 2
    assert reset_at({}, now=NOW) is None


# --- exceptions --------------------------------------------------------------


def test_a_connect_timeout_is_a_timeout() -> None:
    assert classify_exception(httpx.ConnectTimeout("timed out")).kind is Kind.TIMEOUT


def test_asyncio_and_builtin_timeouts_are_timeouts() -> None:
    assert classify_exception(TimeoutError()).kind is Kind.TIMEOUT
    assert classify_exception(TimeoutError("slow")).kind is Kind.TIMEOUT


@pytest.mark.parametrize(
    "exc_type",
    [
        httpx.ConnectError,
        httpx.ReadError,
        httpx.WriteError,
        httpx.RemoteProtocolError,
        httpx.NetworkError,
        httpx.ProxyError,
    ],
)
def test_a_transport_failure_is_transient(exc_type: type[httpx.TransportError]) -> None:
    error = classify_exception(exc_type("connection reset"), model="gpt")
    assert error.kind is Kind.TRANSIENT
    assert error.model == "gpt"
    assert error.message.startswith(exc_type.__name__)


def test_an_exception_message_keeps_the_url_but_not_its_query_string() -> None:
    request = httpx.Request("POST", "https://example.test/v1beta/models/x:generateContent?key=SECRETKEY123456")
    error = classify_exception(httpx.ConnectError("failed https://example.test/a?key=SECRETKEY123456", request=request))
    assert "SECRETKEY" not in error.message
    assert "https://example.test/v1beta/models/x:generateContent" in error.message


def test_a_cancelled_task_is_cancelled() -> None:
    assert classify_exception(asyncio.CancelledError()).kind is Kind.CANCELLED


def test_a_402_without_retry_after_is_a_billing_stop_that_keeps_its_message() -> None:
    error = classify_fixture("openrouter-402-insufficient-credits")
    assert error.kind is Kind.AUTH
    assert error.reason is not None and error.reason.startswith("This request requires more credits")


def test_an_error_object_in_a_200_stream_is_classified_by_its_type_not_by_the_200() -> None:
    obj = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    error = classify_error_object(obj, status=200, headers=httpx.Headers({"Retry-After": "2"}), now=NOW)
    assert error.kind is Kind.RATE_LIMITED
    assert error.retry_after == 2.0
    assert error.status == 200
