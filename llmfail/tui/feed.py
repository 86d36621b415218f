"""What the dashboard reads from the shared state DB, one cheap poll at a time (no Textual here).

The dashboard runs against a DB other processes write all the time, possibly
holding millions of events, so every read is bounded:

- the event log starts from the newest `keep` rows (`events(newest=True,
  limit=keep)`) and then follows by id (`id > last`), never re-reading;
- "anything new?" is one `PRAGMA data_version`, which only moves when another
  connection commits, so an idle DB costs no query at all;
- the failover-rate sparkline keeps one counter per minute for the last hour;
- the health rows are recomputed when something was written, and every few
  seconds anyway, because the rolling window slides even when nothing happens.

`Feed.step` does one poll and returns an `Update` (or None when nothing
changed); the app calls it from a worker thread and only paints the result.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .. import events as ev
from ..actions import FOLLOW_BATCH, EventFilter, recent_events
from .health import HealthRow, known_models, sort_rows, state_of

if TYPE_CHECKING:
    from ..config import Config
    from ..events import Event
    from ..store import Store

#: Event rows the log pane keeps (and reads at start): enough to scroll back through an incident.
KEEP_EVENTS = 1000

#: The rolling window of the table's figures (requests, success %, failovers, p50).
WINDOW_S = 15 * 60.0

#: The sparkline's span and bucket: failovers per minute over the last hour.
RATE_SPAN_S = 3600.0
RATE_BUCKET_S = 60.0

#: At most this many failover rows are read to seed the sparkline at start; beyond it the
#: older minutes are marked unknown instead of loading an unbounded number of rows.
RATE_SEED_LIMIT = 20_000

#: Rows are recomputed at least this often (seconds of real time) so the window slides.
ROWS_EVERY_S = 5.0


class FailoverRate:
    """Failovers per minute over the last hour, kept as counters keyed by minute."""

    def __init__(self, chain: str | None = None) -> None:
        self.chain = chain
        self.counts: dict[int, int] = {}
        self.known_from: float | None = None  # before this time the counts are incomplete

    def seed(self, store: Store, now: float, upto_id: int) -> None:
        """Count the last hour's failovers from the DB (bounded by RATE_SEED_LIMIT rows).

        Only rows up to `upto_id` (where the tail stands) are counted: later ones
        reach `add` through the tail, and must not be counted twice.
        """
        self.counts.clear()
        rows = store.events(since=now - RATE_SPAN_S, types=[ev.FAILOVER], chain=self.chain,
                            newest=True, limit=RATE_SEED_LIMIT)
        self.known_from = rows[0].ts if len(rows) >= RATE_SEED_LIMIT else None
        self.add(e for e in rows if e.id is not None and e.id <= upto_id)

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.type == ev.FAILOVER and (self.chain is None or event.chain == self.chain):
                minute = int(event.ts // RATE_BUCKET_S)
                self.counts[minute] = self.counts.get(minute, 0) + 1

    def series(self, now: float) -> list[int]:
        """One count per minute, oldest first, ending with the current minute; old minutes dropped."""
        last = int(now // RATE_BUCKET_S)
        buckets = int(RATE_SPAN_S // RATE_BUCKET_S)
        first = last - buckets + 1
        for minute in [m for m in self.counts if m < first]:
            del self.counts[minute]
        return [self.counts.get(m, 0) for m in range(first, last + 1)]

    def partial(self, now: float) -> bool:
        """Whether the seed hit its limit inside the shown hour (older minutes are undercounted)."""
        return self.known_from is not None and self.known_from > now - RATE_SPAN_S


class EventTail:
    """Follows the event log by id: the newest `keep` rows first, then only what is new."""

    def __init__(self, store: Store, keep: int = KEEP_EVENTS) -> None:
        self.store = store
        self.keep = keep
        self.last_id = 0

    def start(self) -> list[Event]:
        """The newest `keep` events, oldest first; following resumes after them."""
        rows, self.last_id = recent_events(self.store, EventFilter(), self.keep)
        return rows

    def batches(self) -> Iterator[list[Event]]:
        """Every event written since the last call, in id order, FOLLOW_BATCH rows per query.

        All of them are read (a burst's failovers must reach the sparkline), but
        the caller keeps only the newest `keep` for the log, so memory stays bounded.
        """
        while True:
            batch = self.store.events(after_id=self.last_id, limit=FOLLOW_BATCH)
            if batch:
                self.last_id = batch[-1].id or self.last_id
                yield batch
            if len(batch) < FOLLOW_BATCH:
                return


@dataclass(frozen=True)
class Update:
    """One poll's worth of news for the screen."""

    chain: str | None  # the chain the rows and the rate are for (None: all)
    rows: list[HealthRow]
    rate: list[int]  # failovers per minute, oldest first
    rate_partial: bool
    events: list[Event] = field(default_factory=list)  # new events for the log, oldest first (<= keep)
    skipped: int = 0  # new events that were too many to keep (only the newest `keep` are shown)
    first: bool = False  # the initial load


class Feed:
    """Everything the dashboard reads, for one chain selection at a time.

    `step` is called repeatedly (from one thread); it reads the DB only when
    another process committed, when `force` is set (after the dashboard's own
    writes, which do not move `data_version`), when the chain changed, or when
    the rows are ROWS_EVERY_S old.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        chain: str | None = None,
        window: float = WINDOW_S,
        keep: int = KEEP_EVENTS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.window = window
        self.tail = EventTail(store, keep)
        self.rate = FailoverRate(chain)
        self._monotonic = monotonic
        self._version: int | None = None
        self._rows_at = float("-inf")

    @property
    def chain(self) -> str | None:
        return self.rate.chain

    def step(self, *, chain: str | None, force: bool = False) -> Update | None:
        now = self.clock()
        version = self.store.data_version()
        first = self._version is None
        new_chain = chain != self.rate.chain
        written = version != self._version
        if not (first or new_chain or written or force or self._monotonic() - self._rows_at >= ROWS_EVERY_S):
            return None
        self._version = version
        fresh: deque[Event] = deque(maxlen=self.tail.keep)
        seen = 0
        if first:
            fresh.extend(self.tail.start())
            seen = len(fresh)
        elif written or force or new_chain:
            for batch in self.tail.batches():
                if not new_chain:  # a new chain's rate is seeded from the DB below
                    self.rate.add(batch)
                fresh.extend(batch)
                seen += len(batch)
        if first or new_chain:
            self.rate = FailoverRate(chain)
            self.rate.seed(self.store, now, self.tail.last_id)
        self._rows_at = self._monotonic()
        return Update(
            chain=chain,
            rows=self.rows(now),
            rate=self.rate.series(now),
            rate_partial=self.rate.partial(now),
            events=list(fresh),
            skipped=seen - len(fresh),
            first=first,
        )

    def rows(self, now: float) -> list[HealthRow]:
        """The health table for the current chain selection at `now`."""
        chain = self.rate.chain
        stored = [] if chain is not None else [s.model for s in self.store.all_states()]
        models = known_models(self.config, chain, stored)
        states = self.store.states(models)
        rows = []
        for model in models:
            state = states.get(model)
            rows.append(HealthRow(
                model=model,
                state=state_of(state, now),
                bench_until=state.bench_until if state else None,
                failures=state.failures if state else 0,
                bench_count=state.bench_count if state else 0,
                last_error_kind=state.last_error_kind if state else None,
                last_error_status=state.last_error_status if state else None,
                last_error_at=state.last_error_at if state else None,
            ))
        return sort_rows(rows, models if chain is not None else None)


@dataclass(frozen=True)
class LogFilter:
    """Which events the log pane shows, from what the operator typed after `/`.

    Words are ANDed. `model:X`, `type:X` and `chain:X` match that field; a bare
    word matches any of the three. Matching is by substring and ignores case, so
    `gpt-4o` or `bench` is enough mid-incident. Empty text shows everything.
    """

    text: str = ""

    FIELDS = ("model", "type", "chain")

    @cached_property
    def terms(self) -> list[tuple[str | None, str]]:
        found: list[tuple[str | None, str]] = []
        for word in self.text.split():
            name, sep, value = word.partition(":")
            if sep and name.lower() in self.FIELDS and value:
                found.append((name.lower(), value.lower()))
            else:
                found.append((None, word.lower()))
        return found

    def matches(self, event: Event) -> bool:
        for name, value in self.terms:
            fields = (name,) if name is not None else self.FIELDS
            if not any(value in (getattr(event, f) or "").lower() for f in fields):
                return False
        return True
