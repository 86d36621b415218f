"""A circuit breaker around a store, so a broken store never fails a request.

Shared state (benches, probe leases, the event log) is an optimisation of the
walk, not a precondition for answering. `GuardedStore` sits between the engine
and its store:

    closed ──(a call raises StateError)──▶ open ──(reopen_after_s later)──▶ half-open
      ▲                                                                        │
      └──────────────(the one trial call succeeds: spool replayed)─────────────┘
                                         (the trial fails: open again)

While open (`degraded` says why) no call reaches the store; the request path
goes on without it:

- `states()` answers from the last shared snapshot (benches still expire by
  time) with a local overlay on top: failures, benches, probe leases and
  demotions made meanwhile live in a private in-memory store that applies the
  very same rules as the shared one (it *is* a `SqliteStore`, so no rule is
  written twice). The overlay is dropped when the breaker closes: the shared
  state is the truth again, and the events that explain the local benches are
  replayed into it.
- Events are spooled in memory (at most `SPOOL_MAX`; when full the oldest are
  dropped and counted, and the count is logged on replay) and written with
  their original timestamps when the store is back, before anything newer.
  A spooled event has id 0 until then.
- Daily quotas fail closed: N hosts counting locally would spend N times the cap.
- Operator-facing calls (`bench`, `unbench`, `benches`, `events`, `tally`, …)
  never pretend: they raise the `StateError` that opened the breaker. Pure
  housekeeping (`prune`, the config audit's `swap_meta`) is skipped quietly.

Only `StateError` opens the breaker: every backend turns its own failures
(SQLite's locked/not-a-database, Redis's connection errors and timeouts) into
one. A call is bounded by the backend's own timeout, which the opener sets to
the budget (the engine opens SQLite with a `busy_timeout` of `BUDGET_S`), because
a blocking call cannot be interrupted from outside; a call that succeeds but
takes longer than `budget_s` keeps its answer and is logged at debug level.

The breaker logs one line per transition on the `llmfail.store` logger (which
has a `NullHandler`, as libraries should, so the CLI prints the request's
warning instead of a second line). The engine adds `warning_since()` to every
request that was walked while degraded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StateError
from ..events import Event
from . import EventTally, ModelState, Store

if TYPE_CHECKING:
    from .select import StateSection
    from .sqlite import SqliteStore

log = logging.getLogger("llmfail.store")
log.addHandler(logging.NullHandler())

T = TypeVar("T")

#: Per-call budget on the request path (seconds): the SQLite busy timeout the engine opens its store with.
BUDGET_S = 0.1
#: Seconds the breaker stays open before one call tries the store again.
REOPEN_AFTER_S = 5.0
#: Events kept for replay while the store is unreachable; beyond it the oldest are dropped.
SPOOL_MAX = 10_000


class GuardedStore:
    """`Store` behind a circuit breaker: see the module docstring for what degraded means.

    `opener` builds the real store; it is called lazily and again after a failed
    open, so an engine whose store cannot even be opened (a directory given as
    the DB, Redis down at start-up) still starts and answers. `clock` is the
    engine's (injected) clock: it decides when the breaker half-opens.
    """

    def __init__(
        self,
        opener: Callable[[], Store],
        *,
        clock: Callable[[], float] = time.time,
        budget_s: float = BUDGET_S,
        reopen_after_s: float = REOPEN_AFTER_S,
        spool_max: int = SPOOL_MAX,
    ) -> None:
        self._opener = opener
        self._clock = clock
        self.budget_s = budget_s
        self.reopen_after_s = reopen_after_s
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._why: str | None = None  # the error that opened the breaker; None when closed
        self._error: StateError | None = None
        self._last_why = ""  # the reason of the latest outage, kept after it ends for the warning
        self._retry_at = 0.0  # when the breaker half-opens (clock time)
        self._trial = False  # a half-open trial call is in flight
        self._missed_at: float | None = None  # clock time of the last call answered without the store
        self._snapshot: dict[str, ModelState] = {}
        self._overlay: SqliteStore | None = None
        self._seeded: set[str] = set()
        self._spool: deque[Event] = deque(maxlen=spool_max)
        self._dropped = 0
        #: Whether the store's appends wait on the network (`llmfail.journal`); known once it is opened.
        self.appends_wait = False

    # ------------------------------------------------------------------ the breaker

    @property
    def degraded(self) -> str | None:
        """Why shared state is unavailable right now; None while the breaker is closed."""
        return self._why

    @property
    def spooled(self) -> int:
        """Events waiting to be written when the store is back."""
        return len(self._spool)

    def warning_since(self, start: float) -> str | None:
        """The warning a request begun at `start` carries, if any call since then was answered
        without the shared state (None otherwise)."""
        missed = self._missed_at
        if missed is None or missed < start:
            return None
        return f"shared state unavailable ({self._last_why}): answered without it"

    def _call(self, use: Callable[[Store], T], fallback: Callable[[], T]) -> T:
        """`use(store)` when the breaker lets the call through, else `fallback()`."""
        store = self._admit()
        if store is None:
            self._missed_at = self._clock()
            return fallback()
        began = time.perf_counter()
        try:
            value = use(store)
        except StateError as error:
            self._trip(error)
            self._missed_at = self._clock()
            return fallback()
        except BaseException:
            self._trial = False  # not the store's failure: the next call may try again
            raise
        took = time.perf_counter() - began
        if took > self.budget_s:
            log.debug("llmfail: a shared-state call took %.0f ms (budget %.0f ms)", took * 1000, self.budget_s * 1000)
        if self._why is not None or self._trial:
            self._close(store)
        return value

    def _strict(self, use: Callable[[Store], T]) -> T:
        """A call that must reach the store (operator-facing): the breaker's error when it is open."""
        store = self._admit()
        if store is None:
            assert self._error is not None
            raise self._error
        try:
            value = use(store)
        except StateError as error:
            self._trip(error)
            raise
        except BaseException:
            self._trial = False
            raise
        if self._why is not None or self._trial:
            self._close(store)
        return value

    def _admit(self) -> Store | None:
        """The store if this call may use it (closed, or the one half-open trial), else None."""
        if self._why is None and self._store is not None:  # the healthy path takes no lock
            return self._store
        with self._lock:
            if self._why is not None:
                if self._trial or self._clock() < self._retry_at:
                    return None
                self._trial = True
        if self._store is None:
            try:
                self._store = self._opener()
            except StateError as error:
                self._trip(error)
                return None
            self.appends_wait = bool(getattr(self._store, "appends_wait", False))
        return self._store

    def _trip(self, error: StateError) -> None:
        with self._lock:
            opened = self._why is None
            self._why, self._error, self._last_why = error.message, error, error.message
            self._retry_at = self._clock() + self.reopen_after_s
            self._trial = False
        if opened:
            log.warning("llmfail: shared state unavailable (%s): answering without it", error.message)

    def _close(self, store: Store) -> None:
        """The store answered again: replay the spool (oldest first), drop the overlay, close."""
        with self._lock:
            if self._why is None and not self._trial:
                return
            events = list(self._spool)
            dropped, self._dropped = self._dropped, 0
        try:
            if events:
                store.append(events)
        except StateError as error:
            with self._lock:
                self._dropped += dropped
            self._trip(error)
            return
        with self._lock:
            for _ in events:
                self._spool.popleft()
            self._why, self._error, self._trial = None, None, False
            overlay, self._overlay, self._seeded = self._overlay, None, set()
        if overlay is not None:
            overlay.close()
        lost = f"; {dropped} older event(s) were dropped (spool full)" if dropped else ""
        log.warning("llmfail: shared state is back: %d spooled event(s) written%s", len(events), lost)

    # ------------------------------------------------------------------ the local overlay

    def _local(self, *models: str) -> SqliteStore:
        """The overlay, with `models` seeded from the last snapshot so local rules continue
        from the shared counts (a third failure is a third bench, not a first)."""
        with self._lock:
            if self._overlay is None:
                from .sqlite import SqliteStore

                self._overlay = SqliteStore(":memory:")
            overlay = self._overlay
            fresh = [m for m in models if m not in self._seeded]
            self._seeded.update(fresh)
        seeds = [self._snapshot[m] for m in fresh if m in self._snapshot]
        if seeds:
            with overlay._write() as conn:
                for state in seeds:
                    overlay._put(conn, state)
        return overlay

    def _merged(self, models: Iterable[str]) -> dict[str, ModelState]:
        keys = list(dict.fromkeys(models))
        local = self._overlay.states(keys) if self._overlay is not None else {}
        merged: dict[str, ModelState] = {}
        for key in keys:
            state = local.get(key) or self._snapshot.get(key)
            if state is not None:
                merged[key] = state
        return merged

    def _remember(self, keys: list[str], states: dict[str, ModelState]) -> dict[str, ModelState]:
        for key in keys:
            if key in states:
                self._snapshot[key] = states[key]
            else:
                self._snapshot.pop(key, None)
        return states

    def _spool_events(self, events: Sequence[Event]) -> list[int]:
        with self._lock:
            room = (self._spool.maxlen or 0) - len(self._spool)
            self._dropped += max(0, len(events) - room)
            self._spool.extend(events)
        return [0] * len(events)

    # ------------------------------------------------------------------ the request path

    def states(self, models: Iterable[str]) -> dict[str, ModelState]:
        keys = list(dict.fromkeys(models))
        return self._call(lambda s: self._remember(keys, s.states(keys)), lambda: self._merged(keys))

    def record_failure(self, model: str, **kwargs: Any) -> Any:
        def remember(value: Any) -> Any:
            state = value[0] if isinstance(value, tuple) else value
            if isinstance(state, ModelState):
                self._snapshot[model] = state
            return value

        return self._call(
            lambda s: remember(s.record_failure(model, **kwargs)),
            lambda: self._local(model).record_failure(model, **kwargs),
        )

    def record_success(self, model: str, *, now: float) -> ModelState | None:
        def local() -> ModelState | None:
            before = self._merged([model]).get(model)
            self._local(model).record_success(model, now=now)
            return before

        return self._call(lambda s: s.record_success(model, now=now), local)

    def claim_probe(self, model: str, *, now: float, lease: float, holder: str) -> bool:
        return self._call(
            lambda s: s.claim_probe(model, now=now, lease=lease, holder=holder),
            lambda: self._local(model).claim_probe(model, now=now, lease=lease, holder=holder),
        )

    def release_probe(self, model: str, *, holder: str) -> None:
        self._call(
            lambda s: s.release_probe(model, holder=holder),
            lambda: self._local(model).release_probe(model, holder=holder),
        )

    def demote(self, model: str, *, now: float, slow_ms: float, recheck_at: float) -> bool:
        return self._call(
            lambda s: s.demote(model, now=now, slow_ms=slow_ms, recheck_at=recheck_at),
            lambda: self._local(model).demote(model, now=now, slow_ms=slow_ms, recheck_at=recheck_at),
        )

    def restore(self, model: str, *, now: float, fast_ms: float) -> bool:
        return self._call(
            lambda s: s.restore(model, now=now, fast_ms=fast_ms),
            lambda: self._local(model).restore(model, now=now, fast_ms=fast_ms),
        )

    def claim_recheck(self, model: str, *, now: float, next_at: float) -> bool:
        return self._call(
            lambda s: s.claim_recheck(model, now=now, next_at=next_at),
            lambda: self._local(model).claim_recheck(model, now=now, next_at=next_at),
        )

    def claim_alert(self, key: str, type_: str, *, now: float, window: float) -> bool:
        """Degraded: deduplicated per process only (an alert sent twice beats one never sent)."""
        return self._call(
            lambda s: s.claim_alert(key, type_, now=now, window=window),
            lambda: self._local().claim_alert(key, type_, now=now, window=window),
        )

    def recent_ttfts(self, model: str, *, after: float | None, limit: int) -> list[float]:
        return self._call(lambda s: s.recent_ttfts(model, after=after, limit=limit), list)

    def take_quota(self, model: str, *, day: str, limit: int) -> bool:
        """Fails closed while degraded: N hosts counting on their own would spend N times the cap."""
        return self._call(lambda s: s.take_quota(model, day=day, limit=limit), lambda: False)

    def append(self, events: Sequence[Event]) -> list[int]:
        """Spooled while degraded (id 0); written, oldest first, when the store is back."""
        if not events:
            return []
        batch = list(events)
        return self._call(lambda s: s.append(batch), lambda: self._spool_events(batch))

    def prune(self, *, now: float, retention: float, force: bool = False) -> int:
        """Housekeeping: skipped (0) while degraded."""
        return self._call(lambda s: s.prune(now=now, retention=retention, force=force), lambda: 0)

    def swap_meta(self, key: str, value: str) -> str | None:
        """Degraded: reports 'unchanged' (the config audit waits for the store to be back)."""
        return self._call(lambda s: s.swap_meta(key, value), lambda: value)

    # ------------------------------------------------------------------ operator-facing: never pretend

    def all_states(self) -> list[ModelState]:
        return self._strict(lambda s: s.all_states())

    def benches(self, now: float) -> list[ModelState]:
        return self._strict(lambda s: s.benches(now))

    def bench(self, model: str, **kwargs: Any) -> ModelState:
        state: ModelState = self._strict(lambda s: s.bench(model, **kwargs))
        self._snapshot[model] = state
        return state

    def unbench(self, models: Sequence[str] | None, *, now: float) -> list[str]:
        lifted = self._strict(lambda s: s.unbench(models, now=now))
        for key in lifted:
            if key in self._snapshot:
                self._snapshot[key] = replace(
                    self._snapshot[key], bench_until=None, probe_holder=None, probe_until=None
                )
        return lifted

    def quota_used(self, model: str, *, day: str) -> int:
        return self._strict(lambda s: s.quota_used(model, day=day))

    def events(self, **kwargs: Any) -> list[Event]:
        return self._strict(lambda s: s.events(**kwargs))

    def tally(
        self, *, since: float, until: float, chain: str | None = None, sample: int = 2000
    ) -> dict[str, EventTally]:
        return self._strict(lambda s: s.tally(since=since, until=until, chain=chain, sample=sample))

    def max_event_id(self) -> int:
        return self._strict(lambda s: s.max_event_id())

    def change_token(self) -> Hashable:
        return self._strict(lambda s: s.change_token())

    def close(self) -> None:
        """Closes the real store (a last attempt to write the spool first) and the overlay."""
        if self._spool and self._store is not None:
            try:
                self._store.append(list(self._spool))
                self._spool.clear()
            except StateError:
                log.warning("llmfail: %d spooled event(s) could not be written before closing", len(self._spool))
        for store in (self._store, self._overlay):
            if store is not None:
                store.close()
        self._store = self._overlay = None

    def __repr__(self) -> str:
        state = f"degraded: {self._why}" if self._why else "closed"
        return f"GuardedStore({self._store!r}, {state})"


def guard_store(
    store: Store | None, db: str | None, state: StateSection | None, *, clock: Callable[[], float] = time.time
) -> GuardedStore:
    """The request path's store: `store` behind a breaker (itself when it already is one); with no
    store, the selected one (`select_store(db, state)`), opened lazily with the short busy timeout."""
    if isinstance(store, GuardedStore):
        return store
    if store is not None:
        given = store
        return GuardedStore(lambda: given, clock=clock)
    from .select import select_store

    selection = select_store(db, state)
    return GuardedStore(lambda: selection.open(busy_timeout=BUDGET_S), clock=clock)
