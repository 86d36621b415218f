"""One vocabulary for an entry's health, decided in one place.

The engine's live set, `llmfail chains`, `stats`, `probe` and the dashboard all
ask the same question — "what state is this entry in right now?" — and all get
their answer from `entry_status`, so a model can never be "live" in one view and
"benched" in another. Statuses are read from the shared state (`ModelState`
rows) at a given `now`; reading never changes anything.

    MANUAL     an operator's bench is running (only `unbench` or expiry ends it)
    BENCHED    an automatic bench is running, or every credential of the entry is benched
    PROBING    the bench ended and another request holds the half-open probe lease
    HALF_OPEN  the bench ended; the next request makes the single probe attempt
    SLOW       answering, but demoted for slow first tokens (tried after the fast entries)
    HEALTHY    none of the above

Requests walk the *live* statuses (HEALTHY, SLOW, HALF_OPEN); the others are
skipped unless every entry is skipped (panic mode).

Two words are shown *over* a status by the views that have the evidence for them;
they never replace it where decisions are made:

    NO_DATA      `stats` and the dashboard: HEALTHY, but no request in the window backs it
    PANIC_TRIED  the dashboard: benched, yet being tried because every entry of a chain is

`llmfail probe`'s healthy/slow/degraded/offline is another thing again: the verdict
of one real request just made (`probe.ProbeVerdict`), which changes an entry's
status only through the usual records.

`HealthTracker` is the engine's writing side of the same state: the half-open
probe lease, each attempt's outcome, the credential roll-up and slow demotion.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from enum import Enum, StrEnum
from typing import TYPE_CHECKING

from .errors import LlmfailError
from .events import BENCHED, DEMOTED, PROBE, RESTORED, Event

if TYPE_CHECKING:
    from .config import Entry
    from .decide import Record
    from .errors import ProviderError
    from .journal import Journal
    from .store import ModelState, Store


def _warn(message: str, *args: object) -> None:
    """Log a housekeeping failure (with its traceback); `logging` is loaded only then, so
    reading statuses (`ls-benched --json`, which polls in loops) never pays for it."""
    import logging

    logging.getLogger("llmfail").warning(message, *args, exc_info=True)


#: Slow demotion: the rolling median is over the model's newest SPEED_SAMPLES answers since
#: its last demote/restore decision, and needs SPEED_MIN_SAMPLES of them (a majority), so
#: one slow answer never demotes and one fast answer never restores. A probe decides alone.
SPEED_SAMPLES = 5
SPEED_MIN_SAMPLES = 3


class EntryStatus(StrEnum):
    """Worst first: the order a dashboard sorts troubled entries by."""

    MANUAL = "manual"
    BENCHED = "benched"
    PROBING = "probing"
    HALF_OPEN = "half-open"
    SLOW = "slow"
    HEALTHY = "healthy"

    @property
    def is_live(self) -> bool:
        """A request may try the entry now (outside panic mode)."""
        return self in _LIVE

    @property
    def is_benched(self) -> bool:
        return self in (EntryStatus.MANUAL, EntryStatus.BENCHED)


_LIVE = frozenset({EntryStatus.HEALTHY, EntryStatus.SLOW, EntryStatus.HALF_OPEN})

#: Overlays shown over a status (see the module docstring).
NO_DATA = "no data"
PANIC_TRIED = "panic-tried"


def entry_status(
    entry: Entry | None, states: Mapping[str, ModelState], now: float, *, model: str | None = None
) -> EntryStatus:
    """The status of `entry` at `now` from the shared state `states` (keyed by bench key).

    `entry` None (a model the config does not name, e.g. one seen only in the
    event log) is judged by its own key `model` alone.
    """
    key = entry.model if entry is not None else model
    own = states.get(key) if key is not None else None
    if own is not None and own.is_benched(now):
        return EntryStatus.MANUAL if own.manual else EntryStatus.BENCHED
    if entry is not None:
        creds = entry.credential_keys()
        if creds and all((s := states.get(k)) is not None and s.is_benched(now) for k in creds):
            return EntryStatus.BENCHED
    if own is not None and own.is_half_open(now):
        return EntryStatus.PROBING if own.probe_leased(now) else EntryStatus.HALF_OPEN
    if own is not None and own.is_demoted:
        return EntryStatus.SLOW
    return EntryStatus.HEALTHY


class Turn(Enum):
    """How one request may try an entry, as far as the half-open probe goes."""

    REGULAR = "regular"
    """The circuit is closed (or the walk is in panic mode): attempts as the policy allows."""
    PROBE = "probe"
    """This request holds the probe lease: a single attempt decides the entry's fate."""
    SKIP = "skip"
    """Another request holds the probe, or it failed since the walk began: leave the entry alone."""


class HealthTracker:
    """The engine's side of shared health: what a request reads and writes, beyond the status.

    It claims and releases the half-open probe lease (one request per entry
    across every process), records each attempt's outcome into the store (a
    failure counted or benched, a success that closes the circuit), benches an
    entry whose every credential is benched (the credential roll-up), and keeps
    slow demotion (slow entries go last; a rolling median of first-token times
    demotes and restores). Every event it causes is posted to the engine's
    journal, the one exit for events. Housekeeping that only improves later
    requests (releasing a lease, speed samples) is logged when the store fails,
    never raised: a lease expires on its own.
    """

    def __init__(self, store: Store, clock: Callable[[], float], journal: Journal) -> None:
        self.store = store
        self.clock = clock
        self.journal = journal
        self._emit = journal.post
        import socket  # here, not at import: `ls-benched` reads statuses and never needs a host name

        self._holder = f"{socket.gethostname()}:{os.getpid()}"

    # ------------------------------------------------------------------ the half-open probe

    def turn(self, entry: Entry, state: ModelState | None, *, now: float, lease: float, request_id: str) -> Turn:
        """Whether this request probes `entry` (its bench ended), skips it, or tries it as usual.

        The lease covers the whole probe (`lease` seconds, at most the rest of the
        request's deadline) and is held per request, so concurrent requests of one
        process do not all probe.
        """
        if state is None or not state.is_half_open(now):
            return Turn.REGULAR
        if self.store.claim_probe(entry.model, now=now, lease=lease, holder=self._probe_holder(request_id)):
            return Turn.PROBE
        fresh = self.store.states([entry.model]).get(entry.model)
        if fresh is not None and (fresh.is_benched(now) or fresh.is_half_open(now)):
            return Turn.SKIP  # another request is probing it, or its probe failed
        return Turn.REGULAR  # closed by another process's probe since this walk began

    def release_probe(self, model: str, request_id: str) -> None:
        try:
            self.store.release_probe(model, holder=self._probe_holder(request_id))
        except LlmfailError:
            _warn("llmfail: releasing the probe lease of %s failed (it expires on its own)", model)

    def _probe_holder(self, request_id: str) -> str:
        return f"{self._holder}:{request_id}"

    # ------------------------------------------------------------------ outcomes

    def record_failure(
        self, key: str, error: ProviderError, record: Record, *, began: float, request_id: str, chain: str, probe: bool
    ) -> None:
        """Count a failed attempt against `key`; when `record` benches, bench it and say so in an event.

        `began` is when the request's walk read the states: a bench that began
        after it was never seen by this walk's retries, so their failures are
        counted but bench nothing more (the store decides, and says whether it
        benched).
        """
        state, benched = self.store.record_failure(
            key,
            now=self.clock(),
            kind=str(error.kind),
            status=error.status,
            bench_for=record.bench_for,
            factor=record.factor,
            min_until=record.min_until,
            reason=error.message,
            began=began,
        )
        if benched:
            self._emit(
                Event(
                    type=BENCHED,
                    ts=self.clock(),
                    request_id=request_id,
                    chain=chain,
                    model=key,
                    kind=str(error.kind),
                    status=error.status,
                    benched_until=state.bench_until,
                    detail=error.message,
                    data={"bench_count": state.bench_count, "probe": probe},
                )
            )

    def record_success(
        self, entry: Entry, key: str, *, latency_ms: float, probe: bool, request_id: str, chain: str
    ) -> None:
        """Close the circuit of `entry` (and of the credential that answered); a probe that
        answered, or an answer that ended an automatic bench, is a recovery event."""
        previous = self.store.record_success(entry.model, now=self.clock())
        if key != entry.model:
            self.store.record_success(key, now=self.clock())
        if probe or (previous is not None and previous.bench_until is not None and not previous.manual):
            self._emit(
                Event(
                    type=PROBE,
                    ts=self.clock(),
                    request_id=request_id,
                    chain=chain,
                    model=entry.model,
                    latency_ms=latency_ms,
                    data={"ok": True, "recovered": True},
                )
            )

    def roll_up(
        self, entry: Entry, cause: ProviderError, *, began: float, request_id: str, chain: str, probe: bool
    ) -> None:
        """Bench the entry itself once every one of its credentials is benched (for auth_cooldown).
        `began` as for `record_failure`: another request's roll-up since then is not repeated."""
        if len(entry.credentials) < 2:
            return
        if entry_status(entry, self.store.states(entry.credential_keys()), self.clock()) == EntryStatus.BENCHED:
            from .decide import Blame, Record

            self.record_failure(
                entry.model,
                cause,
                Record(Blame.ENTRY, entry.policy.auth_cooldown, 1.0),
                began=began,
                request_id=request_id,
                chain=chain,
                probe=probe,
            )

    # ------------------------------------------------------------------ slow demotion

    def fast_first(self, plan: list[Entry], states: Mapping[str, ModelState], now: float) -> list[Entry]:
        """Slow demotion: demoted entries (on_slow: demote) go after the others, in chain order.

        Once per `cooldown` one request (across processes: a claim in the state DB)
        tries a demoted entry in its own place instead, so a model that became
        fast again is measured and restored even when nothing fails over to it.
        """
        slow = {
            id(e)
            for e in plan
            if e.policy.on_slow == "demote"
            and (s := states.get(e.model)) is not None
            and s.is_demoted
            and not (
                s.recheck_at is not None
                and s.recheck_at <= now
                and self.store.claim_recheck(e.model, now=now, next_at=now + e.policy.cooldown)
            )
        }
        if not slow:
            return plan
        return [e for e in plan if id(e) not in slow] + [e for e in plan if id(e) in slow]

    def note_speed(
        self,
        entry: Entry,
        state: ModelState | None,
        ttft_ms: float | None,
        *,
        request_id: str | None = None,
        chain: str | None = None,
        probe: bool = False,
    ) -> None:
        """Demote or restore `entry` after an answer: the rolling median of its recent first-token
        times (or a probe's alone) against `slow_threshold`; one event per change.

        An answer that agrees with the model's current state cannot flip it, so the
        common case (a fast answer from a fast model) costs no query at all. Like
        every piece of housekeeping here, a failure is logged, never raised.
        """
        policy = entry.policy
        demoted = state is not None and state.is_demoted
        threshold_ms = policy.slow_threshold * 1000
        if policy.on_slow != "demote" or ttft_ms is None or (ttft_ms > threshold_ms) == demoted:
            return
        try:
            if not probe:
                self.journal.flush()  # the samples are request rows: this answer's own may still be held
            samples = (
                [ttft_ms]
                if probe
                else self.store.recent_ttfts(entry.model, after=state.speed_at if state else None, limit=SPEED_SAMPLES)
            )
            if len(samples) < (1 if probe else SPEED_MIN_SAMPLES):
                return
            import statistics  # only here: `llmfail chains` and the dashboard read health too

            median = statistics.median(samples)
            if (median > threshold_ms) == demoted:
                return
            now = self.clock()
            changed = (
                self.store.restore(entry.model, now=now, fast_ms=median)
                if demoted
                else self.store.demote(entry.model, now=now, slow_ms=median, recheck_at=now + policy.cooldown)
            )
            if changed:
                self._emit(
                    Event(
                        type=RESTORED if demoted else DEMOTED,
                        ts=now,
                        request_id=request_id,
                        chain=chain,
                        model=entry.model,
                        latency_ms=round(median, 1),
                        detail=(
                            f"first token in {median:.0f} ms "
                            + ("within" if demoted else "above")
                            + f" slow_threshold {threshold_ms:.0f} ms"
                        ),
                        data={
                            "threshold_ms": threshold_ms,
                            "samples": len(samples),
                            "source": "probe" if probe else "requests",
                        },
                    )
                )
        except LlmfailError:
            _warn("llmfail: recording %s's speed failed", entry.model)
