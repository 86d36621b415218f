"""The bench rules: pure functions from one key's state (and an input) to its next state.

Why they live here, apart from any backend: every backend (SQLite today, Redis
next) must bench, extend, lift and probe *exactly* alike, or two processes on
two backends would disagree about whether a model may be called. So a backend
only supplies an atomic read-modify-write of one key — read the row, call one
of these, write the result — and the contract suite checks that the effect is
the same everywhere. A backend that cannot run Python inside its atomic step
(Redis runs Lua) implements these rules line for line and is held to them by
the same tests; the functions below are the reference.

The rules (docs/concepts.md tells users the same):

- **Progressive cooldown**: a bench lasts `bench_for * min(factor, bench_count)`
  (bench_count counts benches since the last success), at least to `min_until`
  (a server-given reset time).
- **No bench is ever shortened by a later one** — manual or automatic, by a
  failure or by the operator — unless the operator says `replace`: the later
  deadline wins. Two processes failing at once, or a rate-limit reset followed
  by an ordinary failure, must not let traffic back early.
- **Failures of requests already in flight when a bench began** (`began <=
  benched_at` while that bench runs, `began` being when the request read the
  bench state) are counted but bench nothing: under concurrency, the requests
  already waiting on (or retrying) a model when it was benched would otherwise
  re-bench it once each and inflate its progressive cooldown.
- **Manual benches** keep their flag and reason through failures and
  successes; only `lift` (unbench) or expiry ends them.
- **Half-open**: a bench that has ended (or an automatic one from before a
  clock step back) waits for one probe; one holder at a time takes its lease.
- **Clock steps**: bench ends are absolute times; an automatic bench that
  starts more than CLOCK_STEP_S after `now` was set before the wall clock was
  stepped back, and counts as ended rather than stranding the model.

Times are epoch seconds chosen by the caller (an injected clock), never read here.
"""

from __future__ import annotations

from dataclasses import replace as evolve
from typing import TYPE_CHECKING

from ..events import DETAIL_MAX
from ..redact import redact

if TYPE_CHECKING:
    from . import ModelState

#: How far a bench's start may lie in the future before the clock counts as stepped
#: back. Above the 10 s a writer can wait for the lock with a `now` read before it,
#: so a bench another process set meanwhile is never mistaken for a clock step.
CLOCK_STEP_S = 60.0


def clean_detail(text: str | None) -> str | None:
    """Redact, then truncate to DETAIL_MAX: what every stored reason and event detail goes through.

    Redacting first means a key cut in half by the truncation cannot leave a
    recognisable prefix behind. A backend deciding in another language (Lua)
    passes reasons through this before sending them.
    """
    cleaned = redact(text)
    if cleaned is not None and len(cleaned) > DETAIL_MAX:
        cleaned = cleaned[:DETAIL_MAX]
    return cleaned


def clock_stepped_back(state: ModelState, now: float) -> bool:
    """An automatic bench that starts more than CLOCK_STEP_S after `now`: the wall clock
    was stepped back since it was set, so its end (an absolute time) no longer says how
    long it has left. Such a bench counts as ended (half-open: one probe decides) rather
    than stranding the model for the size of the step. Manual benches keep their end:
    the operator's deadline is the operator's."""
    return not state.manual and state.benched_at is not None and state.benched_at > now + CLOCK_STEP_S


def after_failure(
    prev: ModelState,
    now: float,
    *,
    kind: str,
    status: int | None,
    bench_for: float | None,
    factor: float = 1.0,
    min_until: float | None = None,
    reason: str | None = None,
    began: float | None = None,
) -> tuple[ModelState, bool]:
    """One failed attempt on `prev`'s key; returns the next state and whether it benched.

    Always: failures += 1, the last error is noted, the probe lease is released
    (the probe, if this was it, has failed; the key is benched again or was
    never half-open).

    With `bench_for` the key is benched as well, and the flag is True:
    bench_count += 1 and until = max(now + bench_for * min(factor, bench_count),
    min_until). If a bench is running, it is only ever extended (the later
    deadline wins) and keeps its start (`benched_at`); a running *manual* bench
    also keeps its flag, reason and kind, an automatic one takes this failure's.

    Except when the request was already in flight as the running bench began
    (`began <= prev.benched_at`, `began` being when the caller last read the
    bench state — the engine's walk reads it once, at its start, and retries
    without looking again): that failure tells nothing the bench does not
    already say, so it is counted but benches nothing (flag False,
    bench_count unchanged), and the caller writes no `benched` event. The same
    instant counts as in flight: on a virtual clock (`simulate`, tests)
    concurrent requests start at one instant, and a request starting after the
    bench would have skipped the benched entry anyway. `began` None (the
    caller does not know) never counts as in flight.
    """
    running = prev.is_benched(now)
    counted = evolve(
        prev,
        failures=prev.failures + 1,
        last_error_kind=kind,
        last_error_status=status,
        last_error_at=now,
        probe_holder=None,
        probe_until=None,
    )
    in_flight = running and began is not None and prev.benched_at is not None and began <= prev.benched_at
    if bench_for is None or in_flight:
        return counted, False
    bench_count = prev.bench_count + 1
    until = now + bench_for * min(factor, bench_count)
    if min_until is not None:
        until = max(until, min_until)
    if running and prev.bench_until is not None:
        until = max(until, prev.bench_until)
    keep_manual = running and prev.manual
    return evolve(
        counted,
        bench_until=until,
        benched_at=prev.benched_at if running else now,
        manual=keep_manual,
        reason=prev.reason if keep_manual else clean_detail(reason),
        kind=prev.kind if keep_manual else kind,
        bench_count=bench_count,
    ), True


def after_success(prev: ModelState, now: float) -> ModelState | None:
    """An answered request closes the circuit; None when that changes nothing.

    failures and bench_count reset, the probe lease is released and an
    automatic bench (running, half-open or stale) is cleared. A running manual
    bench stays (only unbench or expiry ends it, not even a success in panic
    mode); an expired manual one is cleared like any other. The last error is
    kept as history.

    None is the common case — a key already clean — and means "write nothing":
    this runs after every answered request, and a write per request would make
    every process queue behind every other for no change.
    """
    keep_bench = prev.manual and prev.is_benched(now)
    if (
        (prev.bench_until is None or keep_bench)
        and prev.failures == 0
        and prev.bench_count == 0
        and prev.probe_holder is None
        and prev.probe_until is None
    ):
        return None
    if keep_bench:
        return evolve(prev, bench_count=0, failures=0, probe_holder=None, probe_until=None)
    return lift(prev)


def manual_bench(
    prev: ModelState,
    now: float,
    *,
    until: float,
    manual: bool,
    reason: str | None,
    kind: str | None,
    replace: bool = False,
) -> ModelState:
    """A bench set outright (the operator's `llmfail bench`, or a backend-neutral caller).

    A manual bench without an explicit kind gets kind "manual". Starting a bench
    counts one (bench_count += 1) and drops any probe lease (probing a benched
    key is pointless). What happens to a bench already running at `now`:

    - `replace` (the operator's `--replace`): the new bench replaces it
      outright, even when shorter — the operator's explicit word wins.
    - the new deadline is later: the running bench is **extended** to it, keeps
      its start (`benched_at`, so requests in flight since then stay "in
      flight"), and becomes the new bench: a manual one takes the manual flag,
      kind and the new reason — or, when no reason is given, keeps the running
      bench's reason if that was an operator's (re-benching for longer must not
      drop why the model was benched); an automatic one (manual=False) over a
      running manual bench keeps the manual flag, reason and kind, as a failure
      would.
    - otherwise (the new deadline is not later): the running bench is **kept
      unchanged** — deadline, flag, reason, kind and counters — and returned,
      so the caller can compare `bench_until` with what it asked for and tell
      the operator what was kept.

    A bench that has ended (half-open) or was set before a clock step is not
    running: the new bench starts afresh at `now`.
    """
    reason = clean_detail(reason)
    kind = kind if kind is not None else ("manual" if manual else None)
    running = prev.is_benched(now) and prev.bench_until is not None
    if running and not replace:
        assert prev.bench_until is not None
        if until <= prev.bench_until:
            return prev
        if manual:
            reason = reason if reason is not None else (prev.reason if prev.manual else None)
        elif prev.manual:
            manual, reason, kind = True, prev.reason, prev.kind
        benched_at = prev.benched_at
    else:
        benched_at = now
    return evolve(
        prev,
        bench_until=until,
        benched_at=benched_at,
        manual=manual,
        reason=reason,
        kind=kind,
        bench_count=prev.bench_count + 1,
        probe_holder=None,
        probe_until=None,
    )


def lift(prev: ModelState) -> ModelState:
    """Unbench: the operator saying "this is healthy".

    The bench (manual or not, running or half-open), its reason and kind, the
    probe lease and the failure/bench counters are all cleared, so the key
    starts fresh (its next bench is a first one). The last error and any slow
    demotion are kept: they are history and speed, not health verdicts.
    """
    return evolve(
        prev,
        bench_until=None,
        benched_at=None,
        manual=False,
        reason=None,
        kind=None,
        bench_count=0,
        failures=0,
        probe_holder=None,
        probe_until=None,
    )


def can_claim_probe(prev: ModelState | None, now: float, holder: str) -> bool:
    """Whether `holder` may take (or renew) the half-open probe lease of `prev`'s key now.

    Only a half-open key (its bench ended, or an automatic bench from before a
    clock step back) has a probe, and only one holder at a time: the lease is
    free when unset, expired, or already this holder's. An unknown key (None)
    has nothing to probe.
    """
    if prev is None or not prev.is_half_open(now):
        return False
    return not prev.probe_leased(now) or prev.probe_holder == holder


def probe_claimed(prev: ModelState, now: float, *, lease: float, holder: str) -> ModelState:
    """`prev` with the probe lease given to `holder` until `now + lease` (check `can_claim_probe` first)."""
    return evolve(prev, probe_holder=holder, probe_until=now + lease)


def probe_released(prev: ModelState, holder: str) -> ModelState | None:
    """`prev` with its lease given back early; None (no change) unless `holder` holds it,
    so a stale holder's late release cannot free a lease someone else took since."""
    if prev.probe_holder != holder:
        return None
    return evolve(prev, probe_holder=None, probe_until=None)
