"""What the dashboard reads from the shared state DB, one cheap poll at a time (no Textual here).

The dashboard runs against a DB other processes write all the time, possibly
holding millions of events, so every read is bounded:

- the event log starts from the newest `keep` rows (`events(newest=True,
  limit=keep)`) and then follows by id (`id > last`), never re-reading;
- "anything new?" is one `change_token()` (SQLite: `PRAGMA data_version`, which only
  moves when another connection commits), so an idle DB costs no query at all; on
  Redis the app does not even ask that each poll: it waits in `XREAD BLOCK`;
- the failover-rate sparkline keeps one counter per minute for the last hour;
- each chain's newest `request` row, newest answer and newest `panic` (what is
  serving it, panic mode, the `panic-tried` state) come from the newest events the
  log pane reads anyway, then from the tail; only a chain with no request among
  them costs one query, bounded to the last hour;
- the health rows are recomputed when something was written, and every few
  seconds anyway, because the rolling window slides even when nothing happens.

`Feed.step` does one poll and returns an `Update` (or None when nothing
changed); the app calls it from a worker thread and only paints the result.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

from .. import events as ev
from ..actions import FOLLOW_BATCH, EventFilter, recent_events
from ..health import PANIC_TRIED, EntryStatus
from ..stats import model_stats
from .health import ChainView, HealthRow, chain_views, sort_rows

if TYPE_CHECKING:
    from ..config import Config
    from ..events import Event
    from ..store import ModelState, Store

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

#: ... and at most this often while other processes keep writing (the log follows every poll).
ROWS_MIN_S = 0.5


class Activity:
    """Failovers per minute over the last hour, for one chain selection (None: every chain).
    Seeded once from the DB, then fed by the tail."""

    def __init__(self, chain: str | None = None) -> None:
        self.chain = chain
        self.counts: dict[int, int] = {}
        self.known_from: float | None = None  # before this time the counts are incomplete

    def seed(self, store: Store, now: float, upto_id: int) -> None:
        """Read the last hour's failovers (at most RATE_SEED_LIMIT rows).

        Only rows up to `upto_id` (where the tail stands) are counted: later ones
        reach `add` through the tail, and must not be counted twice.
        """
        self.counts.clear()
        rows = store.events(
            since=now - RATE_SPAN_S, types=[ev.FAILOVER], chain=self.chain, newest=True, limit=RATE_SEED_LIMIT
        )
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


#: Newest `request`/`panic` rows read per quiet chain to seed ChainNews (the newest answer is among them).
CHAIN_SEED_LIMIT = 100


class ChainNews:
    """Every chain's newest `request` row, newest answered one and newest `panic`, whatever
    chain is selected. Fed by every event the feed reads (newest id wins, so a row seen twice
    changes nothing); `seed` asks the DB only about chains the newest events said nothing of."""

    def __init__(self) -> None:
        self.request: dict[str, Event] = {}
        self.answer: dict[str, Event] = {}
        self.panic: dict[str, Event] = {}

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.chain is None:
                continue
            if event.type == ev.REQUEST:
                _keep_newest(self.request, event)
                if event.data.get("ok"):
                    _keep_newest(self.answer, event)
            elif event.type == ev.PANIC:
                _keep_newest(self.panic, event)

    def seed(self, store: Store, chains: Iterable[str], now: float) -> None:
        """For each chain with no request seen yet: its newest rows of the last hour."""
        for chain in chains:
            if chain not in self.request:
                self.add(
                    store.events(
                        since=now - RATE_SPAN_S,
                        chain=chain,
                        types=[ev.REQUEST, ev.PANIC],
                        newest=True,
                        limit=CHAIN_SEED_LIMIT,
                    )
                )

    def panicked_since(self, chains: Iterable[str], ts: float) -> bool:
        """Whether one of `chains` went into panic mode at or after `ts`."""
        return any(p.ts >= ts for chain in chains if (p := self.panic.get(chain)) is not None)


def _keep_newest(latest: dict[str, Event], event: Event) -> None:
    assert event.chain is not None
    held = latest.get(event.chain)
    if held is None or (event.id or 0) >= (held.id or 0):
        latest[event.chain] = event


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
    rows: list[HealthRow] | None  # None: unchanged since the last update
    chains: list[ChainView] | None  # the chains in scope, worst first; None with `rows`
    rate: list[int] | None  # failovers per minute, oldest first; None until seeded
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
        self.activity = Activity(chain)
        self.news = ChainNews()
        self._monotonic = monotonic
        self._version: object = None  # the last `change_token()`
        self._rows_at = float("-inf")
        self._seeded = False
        self._rows_dirty = False

    @property
    def chain(self) -> str | None:
        return self.activity.chain

    @property
    def pending(self) -> bool:
        """Whether the next `step` has work whatever the DB does (the sparkline's seed)."""
        return not self._seeded

    @property
    def rows_stale(self) -> bool:
        """Whether something was written since the rows were last computed (due ROWS_MIN_S after them)."""
        return self._rows_dirty

    def step(self, *, chain: str | None, force: bool = False) -> Update | None:
        """One poll. The first reads the newest events and the rows only, so they are on
        screen at once; the second seeds the sparkline (up to RATE_SEED_LIMIT rows).

        New events are followed on every poll; the rows (`model_stats`, the heavier
        read) are recomputed at most every ROWS_MIN_S under a steady stream of
        writes, which still puts a change on screen within a second.
        """
        now = self.clock()
        version = self.store.change_token()
        first = self._version is None
        reseed = not first and (chain != self.activity.chain or not self._seeded)
        written = version != self._version
        self._rows_dirty = self._rows_dirty or written
        since_rows = self._monotonic() - self._rows_at
        rows_due = (
            first or reseed or force or since_rows >= ROWS_EVERY_S or (self._rows_dirty and since_rows >= ROWS_MIN_S)
        )
        if not (written or rows_due):
            return None
        fresh: deque[Event] = deque(maxlen=self.tail.keep)
        seen = 0
        if first:
            fresh.extend(self.tail.start())
            self.news.add(fresh)
            seen = len(fresh)
            self.activity = Activity(chain)
        elif written or force or reseed:
            for batch in self.tail.batches():
                if not reseed:  # a seed reads these from the DB below
                    self.activity.add(batch)
                self.news.add(batch)
                fresh.extend(batch)
                seen += len(batch)
        if reseed:
            if not self._seeded:
                self.news.seed(self.store, self.config.chains, now)
            self.activity = Activity(chain)
            self.activity.seed(self.store, now, self.tail.last_id)
        self._version = version  # only once read: after a failed read (store down) the next step reads again
        self._seeded = not first
        rows = chains = None
        if rows_due:
            rows = self.rows(now)
            chains = self.chains(rows, now)
            self._rows_at, self._rows_dirty = self._monotonic(), False
        return Update(
            chain=chain,
            rows=rows,
            chains=chains,
            rate=self.activity.series(now) if self._seeded else None,
            rate_partial=self.activity.partial(now),
            events=list(fresh),
            skipped=seen - len(fresh),
            first=first,
        )

    def rows(self, now: float) -> list[HealthRow]:
        """The health table for the current chain selection at `now`.

        The figures are `llmfail.stats.model_stats`, the same as `llmfail stats`
        prints. Two things only the dashboard adds: in the every-chain view, bench
        keys with no traffic in the window (a model benched ahead of a deploy, one
        credential `provider/model#N`), because a running bench must never be out
        of sight; and `panic-tried`, for a benched model its chain is trying anyway.
        """
        name = self.activity.chain
        chain = self.config.chain(name) if name is not None else None
        figures = model_stats(self.store, since=now - self.window, now=now, chain=chain, config=self.config)
        rows = [HealthRow.of(f) for f in figures.values()]
        if chain is None:
            rows += [
                HealthRow.stored(s, now)
                for s in self.store.all_states()
                if s.model not in figures and s.bench_until is not None
            ]
        benched = [r.model for r in rows if r.state in (EntryStatus.BENCHED, EntryStatus.MANUAL)]
        if benched and self.news.panic:
            states = self.store.states(benched)
            rows = [self._panic_tried(row, states.get(row.model)) for row in rows]
        return sort_rows(rows, chain.models if chain is not None else None)

    def chains(self, rows: list[HealthRow], now: float) -> list[ChainView]:
        """The chains strip for the current selection (one chain, or every chain worst first)."""
        name = self.activity.chain
        chains = [self.config.chain(name)] if name is not None else list(self.config.chains.values())
        views = chain_views(
            ((c.name, c.models) for c in chains),
            rows,
            self.config.policy.on_all_benched,
            self.news.request,
            self.news.answer,
            self.news.panic,
        )
        return sorted(views, key=lambda view: view.trouble(now))

    def _panic_tried(self, row: HealthRow, state: ModelState | None) -> HealthRow:
        if state is None or state.benched_at is None or row.state not in (EntryStatus.BENCHED, EntryStatus.MANUAL):
            return row
        chains = [name for name, chain in self.config.chains.items() if row.model in chain.models]
        if not self.news.panicked_since(chains, state.benched_at):
            return row
        return replace(row, state=PANIC_TRIED)


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
