"""The one path every event takes into the log: store append, observers, retention.

Events come from many places — the engine's walk, an operator's bench or
unbench (CLI, dashboard or `Engine.bench`), `llmfail probe`, an alert sink
that failed, the config audit. If each wrote to the store itself, each would
have to remember the observers and the pruning, and one would forget (they
did: a manual bench never reached `Engine.on_event`). So they all call
`Journal.write`, which

1. appends the event through the store (the store assigns the id, redacts and
   truncates the detail);
2. hands the stored event to every observer, in the writer's thread, in the
   order they subscribed — an observer that raises is logged and skipped, it
   never fails the write (nor the request that made the event);
3. offers the store a retention prune when this journal first writes and then
   at most hourly (the store keeps the hourly limit across processes); a prune
   that fails is logged, never raised: housekeeping must not fail a request.

A store that cannot append raises from `write` (nothing was stored, so no
observer sees the event); the caller decides whether that fails its work.

Writes are synchronous: when `write` returns, the event is committed and any
other process can read it, so a crash loses no event that `write` returned.
Batching them off the request path (group commit) would save about 25 µs of CPU
per event on SQLite (one event costs ~40 µs alone, ~15 µs in a batch of 30), but
observers would get events late and without ids, readers right after a request
would miss its events, and a crash would lose the unflushed ones; not worth it yet.

A process without an `Engine` (the CLI's operator commands, the dashboard)
uses a bare `Journal(store)`: the same path, with nobody subscribed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .events import Event

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("llmfail")

Observer = Callable[[Event], None]

#: How often one journal offers the store a retention prune.
PRUNE_EVERY_S = 3600.0


class Journal:
    """Writes events through `store`, tells observers, prunes past `retention` (seconds; None: never)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, retention: float | None = None) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention
        self._observers: tuple[Observer, ...] = ()
        self._prune_at = float("-inf")
        self._before: tuple[Callable[[], None], ...] = ()

    def write(self, event: Event) -> Event:
        """Append `event`; returns the stored event (with its id) after every observer has seen it."""
        return self.write_many((event,))[0]

    def write_many(self, events: Sequence[Event]) -> list[Event]:
        """Append `events` in one store write (one transaction); observers see each, in order."""
        if not events:
            return []
        if self._before:
            before, self._before = self._before, ()
            for step in before:
                try:
                    step()
                except Exception:  # a preparatory step must not lose the event
                    log.exception("llmfail: %r failed before an event write", step)
        ids = self.store.append(events)
        stored = [event.with_id(event_id) for event, event_id in zip(events, ids, strict=True)]
        observers = self._observers  # a snapshot: (un)subscribing from an observer affects the next write
        for event in stored:
            for observer in observers:
                try:
                    observer(event)
                except Exception:  # an observer must never break a write
                    log.exception("llmfail: event observer %r failed on a %s event", observer, event.type)
        self._offer_prune()
        return stored

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call `observer(event)` for every event written from now on; returns an unsubscribe
        function (calling it twice is harmless)."""
        self._observers = (*self._observers, observer)

        def unsubscribe() -> None:
            observers = list(self._observers)
            if observer in observers:
                observers.remove(observer)
                self._observers = tuple(observers)

        return unsubscribe

    def before_next_write(self, step: Callable[[], None]) -> None:
        """Run `step()` once, just before the next write (it may write through this journal itself;
        if it raises, that is logged and the write goes on).

        The engine's config audit uses it: done at construction, its event would reach no
        observer, since nobody could have subscribed yet.
        """
        self._before = (*self._before, step)

    def _offer_prune(self) -> None:
        if self.retention is None:
            return
        now = self.clock()
        if now < self._prune_at:
            return
        self._prune_at = now + PRUNE_EVERY_S
        try:
            self.store.prune(now=now, retention=self.retention)
        except Exception:  # housekeeping must never fail a write
            log.warning("llmfail: pruning old events failed", exc_info=True)
