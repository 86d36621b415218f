"""Shared state: benches, probe leases, daily quotas and the event log.

`Store` is the one small interface the engine, CLI and TUI use; SQLite
(`llmfail.store.sqlite`) is its first backend, a distributed store can be the
next. Every method that reads is pure; every read-modify-write is atomic across
processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..events import Event
from .transitions import CLOCK_STEP_S, clock_stepped_back


@dataclass(frozen=True)
class ModelState:
    """What the shared state knows about one bench key (`provider/model` or `provider/model#N`)."""

    model: str
    bench_until: float | None = None  # epoch s; None when not benched
    benched_at: float | None = None
    manual: bool = False
    reason: str | None = None  # operator's reason, or the error detail that benched it
    kind: str | None = None  # kind of the failure that caused the bench ("manual" for manual)
    bench_count: int = 0  # benches since the last success
    failures: int = 0  # consecutive failed attempts since the last success
    last_error_kind: str | None = None
    last_error_status: int | None = None
    last_error_at: float | None = None
    probe_holder: str | None = None
    probe_until: float | None = None  # probe lease expiry
    # Slow demotion (written only by demote/restore/claim_recheck, never by bench state changes):
    slow_since: float | None = None  # demoted since (epoch s); None when not demoted
    slow_ms: float | None = None  # first-token latency behind the last demote/restore decision
    speed_at: float | None = None  # when that decision was made: older samples no longer count
    recheck_at: float | None = None  # a demoted model's next turn at its own place in the chain

    @property
    def is_demoted(self) -> bool:
        return self.slow_since is not None

    def is_benched(self, now: float) -> bool:
        return self.bench_until is not None and self.bench_until > now and not clock_stepped_back(self, now)

    def is_half_open(self, now: float) -> bool:
        """The bench has ended but no success has closed it yet: one probe may go."""
        return self.bench_until is not None and (self.bench_until <= now or clock_stepped_back(self, now))

    def clock_stepped_back(self, now: float) -> bool:
        """See `transitions.clock_stepped_back`: the one place the clock-step rule lives."""
        return clock_stepped_back(self, now)

    def probe_leased(self, now: float) -> bool:
        return self.probe_until is not None and self.probe_until > now


@dataclass(frozen=True)
class EventTally:
    """One model's raw figures over a window of the event log, as `llmfail.stats` needs them.

    The store counts; `llmfail.stats` turns counts into rates, percentiles and
    states. Traffic figures (`answered`, `errors`, `failovers`, the samples)
    follow the chain filter; health figures (`benched`, `recoveries`) do not,
    because a bench is shared by every chain that uses the model.
    """

    model: str
    answered: int = 0  # `request` rows answered by this model
    errors: Mapping[str, int] = field(default_factory=dict)  # `attempt_failed` rows by kind
    failovers: int = 0  # `failover` rows leaving this model
    benched: int = 0  # `benched` rows (automatic and manual)
    recoveries: int = 0  # `probe` rows of a half-open probe that closed a bench
    latencies_ms: tuple[float, ...] = ()  # the answering attempt's latency, newest answers first
    ttfts_ms: tuple[float, ...] = ()  # the answering attempt's time to first token, newest first
    last_seen: float | None = None  # newest event of this model up to the window's end


class Store(Protocol):
    """The state interface. Times are epoch seconds passed in by the caller (injected clock)."""

    def states(self, models: Iterable[str]) -> dict[str, ModelState]:
        """Pure read of the given keys; keys never seen are absent from the result."""
        ...

    def all_states(self) -> list[ModelState]:
        """Pure read of every key the store knows."""
        ...

    def benches(self, now: float) -> list[ModelState]:
        """Keys benched at `now` (`ModelState.is_benched`), soonest expiry first. Pure read."""
        ...

    def bench(
        self, model: str, *, now: float, until: float, manual: bool, reason: str | None, kind: str | None
    ) -> ModelState:
        """Set a bench outright (operator's `llmfail bench`); bench_count += 1."""
        ...

    def record_failure(
        self,
        model: str,
        *,
        now: float,
        kind: str,
        status: int | None,
        bench_for: float | None,
        factor: float = 1.0,
        min_until: float | None = None,
        reason: str | None = None,
    ) -> ModelState:
        """One failed attempt: failures += 1, last error noted, probe lease released.

        With `bench_for` the key is benched too: bench_count += 1 and
        until = max(now + bench_for * min(factor, bench_count), min_until). A
        manual bench keeps its flag and reason and is only ever extended.
        """
        ...

    def record_success(self, model: str, *, now: float) -> ModelState | None:
        """Closes the circuit: failures and bench_count reset, lease released, an automatic
        bench cleared. A manual bench stays (only unbench or expiry ends it).
        Returns the state before the change (None if the key was unknown)."""
        ...

    def unbench(self, models: Sequence[str] | None, *, now: float) -> list[str]:
        """Lift the benches of `models` (None: every bench). Returns the keys that were benched."""
        ...

    def claim_probe(self, model: str, *, now: float, lease: float, holder: str) -> bool:
        """Take the half-open probe lease if nobody holds it; True when this caller got it."""
        ...

    def swap_meta(self, key: str, value: str) -> str | None:
        """Set a small piece of bookkeeping (e.g. the last config's hash) and return what it was
        (None when unset). Unchanged: no write. Changed: exactly one caller sees the old value."""
        ...

    def claim_alert(self, key: str, type_: str, *, now: float, window: float) -> bool:
        """The right to send the (key, type) alert now: True for exactly one caller per
        `window` seconds, across every process sharing the store."""
        ...

    def recent_ttfts(self, model: str, *, after: float | None, limit: int) -> list[float]:
        """First-token times (ms) of the model's newest `limit` answers written after `after`,
        newest first: the samples slow demotion takes its rolling median over. Pure read."""
        ...

    def demote(self, model: str, *, now: float, slow_ms: float, recheck_at: float) -> bool:
        """Mark `model` slow unless it already is; True when this call did (so exactly one
        process writes the `demoted` event)."""
        ...

    def restore(self, model: str, *, now: float, fast_ms: float) -> bool:
        """Clear a demotion; True when this call did (exactly one `restored` event)."""
        ...

    def claim_recheck(self, model: str, *, now: float, next_at: float) -> bool:
        """A demoted model's due recheck turn, taken by exactly one request; the next is at `next_at`."""
        ...

    def release_probe(self, model: str, *, holder: str) -> None: ...

    def take_quota(self, model: str, *, day: str, limit: int) -> bool:
        """Count one request against `model`'s daily quota; False (and no count) when full."""
        ...

    def quota_used(self, model: str, *, day: str) -> int: ...

    def append(self, events: Sequence[Event]) -> list[int]:
        """Write events in one transaction (details redacted and truncated); returns their ids."""
        ...

    def events(
        self,
        *,
        after_id: int | None = None,
        since: float | None = None,
        model: str | None = None,
        chain: str | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[Event]:
        """Events in id order, filtered; `newest=True` with `limit` gives the last N."""
        ...

    def tally(
        self, *, since: float, until: float, chain: str | None = None, sample: int = 2000
    ) -> dict[str, EventTally]:
        """Per-model figures of the events with since <= ts <= until, from indexed
        counts (never a scan of the whole log); at most `sample` newest answers
        per model are returned for percentiles. Models with no event in the
        window are absent. Pure read, one consistent snapshot."""
        ...

    def max_event_id(self) -> int: ...

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap 'anything new?' check."""
        ...

    def prune(self, *, now: float, retention: float, force: bool = False) -> int:
        """Delete events older than `retention`, at most once an hour unless `force`."""
        ...

    def close(self) -> None: ...


def open_store(path: str | None = None) -> Store:
    """The SQLite store at `path` (default: `paths.state_db()`), created and migrated if needed."""
    from ..paths import state_db
    from .sqlite import SqliteStore

    return SqliteStore(path or str(state_db()))
