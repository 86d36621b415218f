"""What the walk does after one failed attempt (the kinds table in docs/concepts.md), decided without side effects.

`decide(failure, policy, jitter)` maps the facts of a failure — its kind and the
server's hints, which attempt it was, how much of the request's time is left,
whether text already reached the caller — to a `Decision`: one `Action` (retry
the same credential after `wait` seconds, the next credential, the next entry,
or fail fast) and the health `Record` to write (whose key, bench or only count).
The engine carries the decision out; nothing here touches the store, the clock
or the network, so the table is tested row by row (`tests/test_decide.py`).

    kind             same entry                           health record            then
    rate_limited  \\  wait Retry-After (<= max_retry_wait)  count; bench when the    next entry
    transient     /  or back off, while attempts remain   wait is too long or the
                                                          attempts ran out
    timeout          no retry (one if x-should-retry)     bench                    next entry
    auth             no retry                             bench the credential     next credential
    quota            (skipped before any try)             none                     next entry
    context_length   no retry                             none                     next entry
    invalid_request  no retry                             none                     on_invalid_request
    content_filter   no retry                             none                     on_content_filter
    cancelled        stop                                 none                     fail fast

Special cases, in the order they are checked:

- an attempt cut short by the request's own deadline says nothing about the
  model: next entry, nothing recorded;
- after text reached a streaming caller the same entry is never tried again
  (the answer would repeat): a retry or next credential becomes next entry and
  a retryable kind is benched at once (the engine then restarts or interrupts
  the stream, by `mid_stream`);
- a 401 sent without a key because this process lacks the key variable is not a
  verdict on the credential: next credential, nothing recorded;
- a retry whose wait would not end before the request's deadline is next entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from .errors import Kind

if TYPE_CHECKING:
    from .config import Policy
    from .errors import ProviderError


class Action(Enum):
    """Where the walk goes after a failed attempt."""

    RETRY = "retry"
    """The same credential again, after `Decision.wait` seconds."""
    NEXT_CREDENTIAL = "next_credential"
    """The entry's next credential that is not benched; after the last, the next entry."""
    NEXT_ENTRY = "next_entry"
    """Leave this entry: the next one in the walk."""
    FAIL_FAST = "fail_fast"
    """Stop the walk with the provider's own error."""


class Blame(Enum):
    """Whose health a failure counts against."""

    ENTRY = "entry"
    """The entry's own bench key (`provider/model`): the model or its provider failed."""
    CREDENTIAL = "credential"
    """The credential's bench key (`provider/model#N`; the entry's own key when it has one)."""


@dataclass(frozen=True)
class Record:
    """A failure to write into the shared health state.

    `bench_for` None only counts it (failures += 1); a number benches the key
    for `bench_for * min(factor, bench_count)` seconds, and at least until
    `min_until` (a server's reset time) when that is later.
    """

    blame: Blame
    bench_for: float | None
    factor: float = 1.0
    min_until: float | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    wait: float = 0.0  # seconds to sleep before the retry (RETRY only)
    record: Record | None = None


@dataclass(frozen=True)
class Failure:
    """The facts of one failed attempt that the decision depends on."""

    kind: Kind
    attempt: int  # 1-based, within this credential
    attempts: int  # attempts allowed for this credential (1 for a probe or in panic mode)
    now: float  # epoch seconds, when the attempt failed
    remaining: float  # seconds left before the request's deadline
    retry_after: float | None = None  # the server's wait (retry-after-ms, retry-after, RetryInfo)
    reset_at: float | None = None  # epoch seconds when the server says its limit resets
    should_retry: bool | None = None  # the server's x-should-retry header
    deadline_cut: bool = False  # the request's own deadline cut the attempt short
    partial: bool = False  # text of this entry already reached a streaming caller
    missing_key: bool = False  # the credential's key variable is not set in this process

    @classmethod
    def of(
        cls,
        error: ProviderError,
        *,
        attempt: int,
        attempts: int,
        now: float,
        remaining: float,
        deadline_cut: bool = False,
        partial: bool = False,
        missing_key: bool = False,
    ) -> Failure:
        return cls(
            error.kind,
            attempt,
            attempts,
            now,
            remaining,
            error.retry_after,
            error.reset_at,
            error.should_retry,
            deadline_cut,
            partial,
            missing_key,
        )


#: Draws the full-jitter backoff: a uniform value in [0, cap]. Injected (the engine's seeded
#: `Random`) and called only when a backoff is taken, so a seed replays the same run.
Jitter = Callable[[float], float]


def decide(failure: Failure, policy: Policy, jitter: Jitter) -> Decision:
    """The kinds table: what to do after `failure` under `policy`."""
    if failure.deadline_cut:
        return _NEXT_ENTRY
    return _RULES[failure.kind](failure, policy, jitter)


def backoff_cap(policy: Policy, attempt: int) -> float:
    """The ceiling of the full-jitter backoff after `attempt`: min(max, base * 2**(attempt-1))."""
    return min(policy.backoff.max, policy.backoff.base * 2.0 ** (attempt - 1))


_NEXT_ENTRY = Decision(Action.NEXT_ENTRY)
_FAIL_FAST = Decision(Action.FAIL_FAST)

_Rule = Callable[[Failure, "Policy", Jitter], Decision]


def _wait_or_bench(f: Failure, policy: Policy, jitter: Jitter) -> Decision:
    """rate_limited and transient: retry while allowed, then bench. A 503/529 with
    Retry-After is honoured like a 429's (up to max_retry_wait)."""
    wait = f.retry_after
    too_long = wait is not None and wait > policy.max_retry_wait
    if too_long or f.attempt >= f.attempts or f.should_retry is False or f.partial:
        floor = max(f.now + (wait or 0.0), f.reset_at or 0.0) if wait is not None or f.reset_at else None
        return Decision(
            Action.NEXT_ENTRY, record=Record(Blame.ENTRY, policy.cooldown, policy.max_cooldown_factor, floor)
        )
    count = Record(Blame.ENTRY, None, policy.max_cooldown_factor)
    delay = wait if wait is not None else jitter(backoff_cap(policy, f.attempt))
    if delay >= f.remaining:  # the retry could not happen in time: try the next entry
        return Decision(Action.NEXT_ENTRY, record=count)
    return Decision(Action.RETRY, wait=min(delay, max(0.0, f.remaining)), record=count)


def _bench_timeout(f: Failure, policy: Policy, jitter: Jitter) -> Decision:
    """timeout: a silent provider is not retried (it only multiplies the wait), unless
    the server said the request is worth repeating (`x-should-retry: true`): once."""
    if f.should_retry is True and f.attempt == 1 and f.attempts > 1 and not f.partial:
        delay = jitter(backoff_cap(policy, f.attempt))
        return Decision(
            Action.RETRY,
            wait=min(delay, max(0.0, f.remaining)),
            record=Record(Blame.ENTRY, None, policy.max_cooldown_factor),
        )
    return Decision(Action.NEXT_ENTRY, record=Record(Blame.ENTRY, policy.cooldown, policy.max_cooldown_factor))


def _next_credential(f: Failure, policy: Policy, jitter: Jitter) -> Decision:
    """auth: this credential is dead for auth_cooldown (a fixed length: it never grows)."""
    action = Action.NEXT_ENTRY if f.partial else Action.NEXT_CREDENTIAL
    if f.missing_key:  # sent without a key because this process lacks the variable: not a shared verdict
        return Decision(action)
    return Decision(action, record=Record(Blame.CREDENTIAL, policy.auth_cooldown, 1.0))


def _next_entry(f: Failure, policy: Policy, jitter: Jitter) -> Decision:
    """Kinds caused by the request itself: another model may take it; nothing is recorded."""
    return _NEXT_ENTRY


def _invalid_request(f: Failure, policy: Policy, jitter: Jitter) -> Decision:
    return _FAIL_FAST if policy.on_invalid_request == "fail" else _NEXT_ENTRY


def _content_filter(f: Failure, policy: Policy, jitter: Jitter) -> Decision:
    return _FAIL_FAST if policy.on_content_filter == "fail" else _NEXT_ENTRY


def _stop(f: Failure, policy: Policy, jitter: Jitter) -> Decision:
    """cancelled: the caller gave up; nothing is the model's fault."""
    return _FAIL_FAST


_RULES: dict[Kind, _Rule] = {
    Kind.RATE_LIMITED: _wait_or_bench,
    Kind.TRANSIENT: _wait_or_bench,
    Kind.TIMEOUT: _bench_timeout,
    Kind.AUTH: _next_credential,
    Kind.QUOTA: _next_entry,
    Kind.CONTEXT_LENGTH: _next_entry,
    Kind.INVALID_REQUEST: _invalid_request,
    Kind.CONTENT_FILTER: _content_filter,
    Kind.CANCELLED: _stop,
}
