"""The decision after a failed attempt (the kinds table of docs/concepts.md), one row per table row and special case."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from llmfail.config import Backoff, Policy
from llmfail.decide import Action, Blame, Decision, Failure, Record, backoff_cap, decide
from llmfail.errors import Kind, ProviderError

NOW = 1_760_000_000.0
#: attempts 3, cooldown 30 s, auth_cooldown 10 m, max_retry_wait 5 s, backoff 200 ms .. 10 s
POLICY = Policy()


def worst(cap: float) -> float:
    """The jitter at its ceiling, so every backoff is exact."""
    return cap


def failure(kind: Kind, **facts: Any) -> Failure:
    base = {"attempt": 1, "attempts": 3, "now": NOW, "remaining": 100.0}
    return Failure(kind, **{**base, **facts})


def retry(wait: float) -> Decision:
    return Decision(Action.RETRY, wait=wait, record=Record(Blame.ENTRY, None, 1.0))


def bench(min_until: float | None = None, factor: float = 1.0) -> Decision:
    return Decision(Action.NEXT_ENTRY, record=Record(Blame.ENTRY, 30.0, factor, min_until))


NEXT_ENTRY = Decision(Action.NEXT_ENTRY)
FAIL_FAST = Decision(Action.FAIL_FAST)
BENCH_CREDENTIAL = Decision(Action.NEXT_CREDENTIAL, record=Record(Blame.CREDENTIAL, 600.0, 1.0))

ROWS: list[tuple[str, Failure, dict[str, Any], Decision]] = [
    # rate_limited: wait as told and retry, or bench until the reset when the wait is too long
    (
        "rate_limited: a short Retry-After is waited and the entry retried",
        failure(Kind.RATE_LIMITED, retry_after=2.0),
        {},
        retry(2.0),
    ),
    (
        "rate_limited: a Retry-After above max_retry_wait benches until it, at once",
        failure(Kind.RATE_LIMITED, retry_after=120.0),
        {},
        bench(min_until=NOW + 120),
    ),
    (
        "rate_limited: the bench lasts at least until the server's reset time",
        failure(Kind.RATE_LIMITED, retry_after=120.0, reset_at=NOW + 600),
        {},
        bench(min_until=NOW + 600),
    ),
    ("rate_limited: without a header it backs off like a transient error", failure(Kind.RATE_LIMITED), {}, retry(0.2)),
    (
        "rate_limited: when the attempts run out it benches, at least until the wait asked for",
        failure(Kind.RATE_LIMITED, attempt=3, retry_after=2.0),
        {},
        bench(min_until=NOW + 2),
    ),
    (
        "rate_limited: a reset time alone sets the bench's floor",
        failure(Kind.RATE_LIMITED, attempt=3, reset_at=NOW + 90),
        {},
        bench(min_until=NOW + 90),
    ),
    # transient: back off and retry, then bench
    ("transient: the first retry backs off up to base", failure(Kind.TRANSIENT), {}, retry(0.2)),
    ("transient: the backoff doubles with each attempt", failure(Kind.TRANSIENT, attempt=2), {}, retry(0.4)),
    (
        "transient: the backoff never exceeds backoff.max",
        failure(Kind.TRANSIENT, attempt=9, attempts=10),
        {},
        retry(10.0),
    ),
    ("transient: after the last attempt the entry is benched", failure(Kind.TRANSIENT, attempt=3), {}, bench()),
    (
        "transient: the bench grows by max_cooldown_factor",
        failure(Kind.TRANSIENT, attempt=3),
        {"max_cooldown_factor": 4.0},
        bench(factor=4.0),
    ),
    (
        "transient: a 503 with Retry-After is honoured like a 429's",
        failure(Kind.TRANSIENT, retry_after=3.0),
        {},
        retry(3.0),
    ),
    (
        "transient: x-should-retry false stops same-entry retries",
        failure(Kind.TRANSIENT, should_retry=False),
        {},
        bench(),
    ),
    (
        "transient: a retry that cannot happen before the deadline moves on, counted but not benched",
        failure(Kind.TRANSIENT, retry_after=4.0, remaining=3.0),
        {},
        Decision(Action.NEXT_ENTRY, record=Record(Blame.ENTRY, None, 1.0)),
    ),
    # timeout: no retry, bench
    ("timeout: benched and the walk moves on, no retry", failure(Kind.TIMEOUT), {}, bench()),
    ("timeout: x-should-retry true allows one retry", failure(Kind.TIMEOUT, should_retry=True), {}, retry(0.2)),
    (
        "timeout: x-should-retry true allows only one retry",
        failure(Kind.TIMEOUT, attempt=2, should_retry=True),
        {},
        bench(),
    ),
    (
        "timeout: x-should-retry true is no retry for a single-attempt probe",
        failure(Kind.TIMEOUT, attempts=1, should_retry=True),
        {},
        bench(),
    ),
    (
        "timeout: the one retry's wait is cut to the time left",
        failure(Kind.TIMEOUT, should_retry=True, remaining=0.05),
        {},
        retry(0.05),
    ),
    # auth: bench the credential, next credential
    (
        "auth: the credential is benched for auth_cooldown and the next credential tried",
        failure(Kind.AUTH),
        {},
        BENCH_CREDENTIAL,
    ),
    (
        "auth: a key variable missing in this process benches nothing",
        failure(Kind.AUTH, missing_key=True),
        {},
        Decision(Action.NEXT_CREDENTIAL),
    ),
    # the request's own kinds: never recorded
    ("quota: next entry, nothing recorded", failure(Kind.QUOTA), {}, NEXT_ENTRY),
    ("context_length: next entry, no bench, no retry", failure(Kind.CONTEXT_LENGTH), {}, NEXT_ENTRY),
    ("invalid_request: next entry by default", failure(Kind.INVALID_REQUEST), {}, NEXT_ENTRY),
    (
        "invalid_request: fail fast when on_invalid_request is fail",
        failure(Kind.INVALID_REQUEST),
        {"on_invalid_request": "fail"},
        FAIL_FAST,
    ),
    ("content_filter: fail fast by default", failure(Kind.CONTENT_FILTER), {}, FAIL_FAST),
    (
        "content_filter: next entry when on_content_filter is next",
        failure(Kind.CONTENT_FILTER),
        {"on_content_filter": "next"},
        NEXT_ENTRY,
    ),
    ("cancelled: stop, nothing recorded", failure(Kind.CANCELLED), {}, FAIL_FAST),
    # special cases
    (
        "a deadline cut is not the model's fault: next entry, nothing recorded",
        failure(Kind.TIMEOUT, deadline_cut=True),
        {},
        NEXT_ENTRY,
    ),
    (
        "after text reached the caller a transient failure benches at once and never retries",
        failure(Kind.TRANSIENT, partial=True),
        {},
        bench(),
    ),
    (
        "after text reached the caller a rate limit benches until its wait",
        failure(Kind.RATE_LIMITED, retry_after=1.0, partial=True),
        {},
        bench(min_until=NOW + 1),
    ),
    (
        "after text reached the caller x-should-retry true is no retry",
        failure(Kind.TIMEOUT, should_retry=True, partial=True),
        {},
        bench(),
    ),
    (
        "after text reached the caller an auth failure leaves the entry, benching the credential",
        failure(Kind.AUTH, partial=True),
        {},
        replace(BENCH_CREDENTIAL, action=Action.NEXT_ENTRY),
    ),
    (
        "after text reached the caller a content filter still fails fast",
        failure(Kind.CONTENT_FILTER, partial=True),
        {},
        FAIL_FAST,
    ),
]


@pytest.mark.parametrize("case, facts, policy, expected", ROWS, ids=[row[0] for row in ROWS])
def test_decide(case: str, facts: Failure, policy: dict[str, Any], expected: Decision) -> None:
    assert decide(facts, replace(POLICY, **policy), worst) == expected


def test_every_kind_has_a_row_in_the_table() -> None:
    seen = {facts.kind for _, facts, _, _ in ROWS}
    assert seen == set(Kind)


def never(cap: float) -> float:
    raise AssertionError("jitter drawn for a decision that takes no backoff")


@pytest.mark.parametrize(
    "facts",
    [
        failure(Kind.RATE_LIMITED, retry_after=2.0),
        failure(Kind.TRANSIENT, attempt=3),
        failure(Kind.TIMEOUT),
        failure(Kind.AUTH),
        failure(Kind.CONTENT_FILTER),
        failure(Kind.TRANSIENT, deadline_cut=True),
    ],
    ids=lambda f: f.kind,
)
def test_the_jitter_is_drawn_only_for_a_backoff_so_a_seed_replays_the_same_run(facts: Failure) -> None:
    decide(facts, POLICY, never)


def test_the_backoff_is_full_jitter_below_its_cap() -> None:
    policy = replace(POLICY, backoff=Backoff(base=0.1, max=1.0))
    assert [backoff_cap(policy, n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert decide(failure(Kind.TRANSIENT, attempt=2), policy, lambda cap: cap / 4).wait == pytest.approx(0.05)


def test_the_facts_of_a_provider_error_carry_the_servers_hints() -> None:
    error = ProviderError(
        Kind.RATE_LIMITED, "slow down", status=429, retry_after=2.5, reset_at=NOW + 9, should_retry=True
    )
    facts = Failure.of(error, attempt=2, attempts=3, now=NOW, remaining=50.0, partial=True)
    assert (facts.kind, facts.retry_after, facts.reset_at, facts.should_retry, facts.partial) == (
        Kind.RATE_LIMITED,
        2.5,
        NOW + 9,
        True,
        True,
    )
