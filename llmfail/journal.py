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

`write` is synchronous: when it returns, the event is committed and any other
process can read it, so a crash loses no event that `write` returned.

A request's walk uses `post` instead, and awaits `settled()` before it returns
its answer. What callers see is the same as with `write`: observers get every
event, with its id, in order, before the request that made it returns (inside
`answer_first()`, below, before its caller's `settled()` returns); a request's
events are committed when it returns. What `post` saves is commits:

- With SQLite, a commit (~60 µs: the WAL frames of the table and its indexes)
  costs far more than an insert (~10 µs). `post` holds the event until the
  posting code next waits (a timer due at once, which the loop runs after the
  callbacks it already holds), so what a walk emits between two waits, and
  what every request in flight emitted in that loop turn, is one transaction,
  written once the walk's next HTTP request is on the wire. `settled()` waits
  for that timer, so requests that finish in the same turn share a commit.
  Outside an event loop `post` is `write`. A synchronous `write` (an operator's
  bench, from any thread) writes what is held first, in its own thread; a
  forked child drops what its parent held (the parent writes it), and what is
  still held at interpreter exit is written then. (Handing SQLite's appends to
  the writer thread below measured worse: in-process c=1 p50 0.46 → 0.70 ms and
  c=32 4,040 → 2,560 req/s; the hand-off and the thread's share of the GIL
  cost more than the commit they move.)
- With a store whose appends wait on the network (`appends_wait`: Redis), a
  synchronous append would stall the event loop for a round trip per event,
  and every other request with it (~0.7× SQLite's throughput at 32 concurrent
  requests). There `post` queues the event for one writer thread, which
  appends whatever has queued up in one call (a group commit across requests,
  so concurrency means fewer round trips, not more), then runs the observers
  in its own thread.

Either way a process killed mid-request can lose that request's events (the
ones a synchronous write would have committed before the kill), and observers
run in the context (`contextvars`) of the code that posted the event, as they
would have with `write`: each post carries a copy of it, so an observer that
reads the caller's context — OpenTelemetry's current span, which
`llmfail.otel` makes a request's span the child of — sees the same thing on
either store.

`answer_first()` is for a caller whose answer leaves the process (the
gateway): inside it a walk's `settled()` returns at once, and the caller
awaits `settled()` itself once its answer is sent, so the commit is not on
the client's clock. The walk's events are held for its answer too (a failover
writes nothing before it), unless it takes longer than `ANSWER_FIRST_HOLD_S`:
then a timer writes them, so a long walk still shows up live.

A process without an `Engine` (the CLI's operator commands, the dashboard)
uses a bare `Journal(store)`: the same path, with nobody subscribed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .events import Event

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("llmfail")

Observer = Callable[[Event], None]

#: How often one journal offers the store a retention prune.
PRUNE_EVERY_S = 3600.0

#: Inside `answer_first()`, how long (seconds) a walk's events may wait for its answer to go
#: out before they are written anyway: a walk slower than that still shows up live.
ANSWER_FIRST_HOLD_S = 0.1

#: Set inside `Journal.answer_first()`: a walk's `settled()` leaves the waiting to its caller.
_ANSWER_FIRST: contextvars.ContextVar[bool] = contextvars.ContextVar("llmfail_answer_first", default=False)

_Held = tuple[Event, contextvars.Context]  # an event posted and not yet written, with its poster's context


class Journal:
    """Writes events through `store`, tells observers, prunes past `retention` (seconds; None: never)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, retention: float | None = None) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention
        self._observers: tuple[Observer, ...] = ()
        self._prune_at = float("-inf")
        self._before: tuple[Callable[[], None], ...] = ()
        self._behind: _WriteBehind | None = None
        self._held: list[_Held] = []  # posted, not yet written (SQLite: until the poster next waits)
        self._due: asyncio.AbstractEventLoop | None = None  # the loop whose timer due now writes them
        self._later = False  # a timer ANSWER_FIRST_HOLD_S away is set to write them
        self._settling: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []  # waiting for it
        self._order = threading.RLock()  # held events are written before any later write
        _JOURNALS.add(self)

    def write(self, event: Event) -> Event:
        """Append `event`; returns the stored event (with its id) after every observer has seen it."""
        return self.write_many((event,))[0]

    def write_many(self, events: Sequence[Event]) -> list[Event]:
        """Append `events` in one store write (one transaction); observers see each, in order."""
        if not events:
            return []
        self._run_before()
        with self._order:
            self._write_held()
            return self._append(events)

    def post(self, event: Event) -> None:
        """Write `event` soon: when the posting code next waits (SQLite), or from the writer
        thread (a store whose appends wait on the network). Await `settled()` before relying
        on it being stored."""
        self._run_before()
        _hook_exit()
        if getattr(self.store, "appends_wait", False):
            if self._held:  # held before the store turned out to be Redis (opened late): those first
                self._write_held()
            behind = self._behind
            if behind is None or behind.pid != os.getpid():  # none yet, or the parent's after fork()
                behind = self._behind = _WriteBehind(self)
            behind.post(event)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing will wait, so nothing to write together
            self.write(event)
            return
        answer_first = _ANSWER_FIRST.get()
        with self._order:
            self._held.append((event, contextvars.copy_context()))
            if answer_first:  # written after the answer, or by a timer should the walk take long
                schedule = not self._later and not self._due_live()
                self._later = self._later or schedule
            else:
                schedule = not self._due_live()
                if schedule:
                    self._due = loop
        if not schedule:
            return
        if answer_first:
            loop.call_later(ANSWER_FIRST_HOLD_S, self._write_late)
        else:  # a timer, not call_soon: it runs after what the loop already holds (the request being sent)
            loop.call_later(0, self._write_held)

    async def settled(self) -> None:
        """Wait until every event posted so far is stored and its observers have run
        (inside `answer_first()`: return at once, the caller waits once its answer is out).

        Held events are written by a timer due now (set here if none is), so requests that
        settle in the same loop turn share one transaction; one due on another loop's timer
        is written at once."""
        if _ANSWER_FIRST.get():
            return
        loop = asyncio.get_running_loop()
        schedule = waiting = False
        with self._order:  # also waits out a write under way in another thread: it may hold ours
            if self._held:
                if not self._due_live():
                    self._due, schedule = loop, True
                waiting = self._due is loop
                if waiting:
                    future: asyncio.Future[None] = loop.create_future()
                    self._settling.append((loop, future))
        if schedule:
            loop.call_later(0, self._write_held)
        if waiting:
            await future
        else:
            self._write_held()  # due on another loop's timer: written now, not when that loop turns
        behind = self._behind
        if behind is not None:
            await behind.settled()

    @contextmanager
    def answer_first(self) -> Iterator[None]:
        """Walks inside it leave `settled()` to the caller, who awaits it after sending the answer.
        Left by an exception (the request was cancelled: no answer is coming), what is held is
        written at once rather than by the timer."""
        token = _ANSWER_FIRST.set(True)
        try:
            yield
        except BaseException:
            self._write_held()
            raise
        finally:
            _ANSWER_FIRST.reset(token)

    def flush(self) -> None:
        """Block until every event posted so far is stored; the writer thread then exits (a later
        `post` starts another). Engines call it on close; it also runs at interpreter exit."""
        self._write_held()
        behind = self._behind
        if behind is not None:
            behind.flush()

    def _due_live(self) -> bool:
        """A timer due now is set on a loop that can still run it."""
        return self._due is not None and not self._due.is_closed()

    def _write_late(self) -> None:
        self._later = False
        self._write_held()

    def _write_held(self) -> None:
        """Write the events `post` holds, in one store write, and wake whoever settles on them
        (also when an observer raises past `Exception`: nobody is left waiting)."""
        settling: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        try:
            with self._order:
                held, self._held, self._due = self._held, [], None
                settling, self._settling = self._settling, []
                if held:
                    try:
                        self._append([event for event, _ in held], [context for _, context in held])
                    except Exception:  # the engine's store is guarded and spools; any other store: say so, go on
                        log.exception("llmfail: %d event(s) could not be written", len(held))
        finally:
            for loop, future in settling:
                _wake(loop, future)

    def _forget_held(self) -> None:
        """In a forked child: the parent writes what it held; the child starts empty."""
        self._held, self._due, self._later, self._settling = [], None, False, []
        self._order = threading.RLock()

    def _run_before(self) -> None:
        if self._before:
            before, self._before = self._before, ()
            for step in before:
                try:
                    step()
                except Exception:  # a preparatory step must not lose the event
                    log.exception("llmfail: %r failed before an event write", step)

    def _append(self, events: Sequence[Event], contexts: Sequence[contextvars.Context] | None = None) -> list[Event]:
        """Store `events`, then tell the observers, each event in `contexts`' matching one (the
        posters' contexts, for the writer thread) or else in the current one."""
        ids = self.store.append(events)
        stored = [event.with_id(event_id) for event, event_id in zip(events, ids, strict=True)]
        observers = self._observers  # a snapshot: (un)subscribing from an observer affects the next write
        for index, event in enumerate(stored):
            context = contexts[index] if contexts is not None else None
            for observer in observers:
                try:
                    if context is None:
                        observer(event)
                    else:
                        context.run(observer, event)
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


class _WriteBehind:
    """The writer thread behind `Journal.post`: appends what has queued up, one call per batch.

    Events get sequence numbers as they are posted; `settled()` waits (on the caller's event
    loop) until the writer has stored up to the caller's last one. The thread is a daemon that
    exits once the queue is empty after `flush()`; an `atexit` hook flushes what a process
    leaves behind (daemon threads still run while `atexit` hooks do).
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: list[_Held] = []  # each event with its poster's context
        self._posted = 0  # sequence number of the newest posted event
        self._done = 0  # ... of the newest one the writer has finished with
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False

    def post(self, event: Event) -> None:
        context = contextvars.copy_context()  # a copy of its own: only the writer thread enters it
        with self._cond:
            self._queue.append((event, context))
            self._posted += 1
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="llmfail-journal", daemon=True)
                self._thread.start()
            elif len(self._queue) == 1:
                self._cond.notify()

    async def settled(self) -> None:
        with self._cond:
            if self._done >= self._posted:
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((self._posted, loop, future))
        await future

    def flush(self) -> None:
        with self._cond:
            thread, self._stopping = self._thread, True
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:  # stopping, and nothing left: a later post starts a new thread
                    self._thread = None
                    return
                batch, self._queue = self._queue, []
            try:
                self.journal._append([event for event, _ in batch], [context for _, context in batch])
            except Exception:  # the engine's store is guarded and spools; any other store: say so, go on
                log.exception("llmfail: %d event(s) could not be written", len(batch))
            with self._cond:
                self._done += len(batch)
                ready = [w for w in self._waiters if w[0] <= self._done]
                self._waiters = [w for w in self._waiters if w[0] > self._done]
            for _, loop, future in ready:
                _wake(loop, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """Resolve `future` of `loop`, from that loop's thread or any other."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        _resolve(future)
        return
    try:
        loop.call_soon_threadsafe(_resolve, future)
    except RuntimeError:  # that loop is closed: nobody is waiting any more
        pass


#: Every journal, for the fork and exit hooks below (weakly: a journal is not kept alive by them).
_JOURNALS: weakref.WeakSet[Journal] = weakref.WeakSet()


def _forget_held_in_child() -> None:
    for journal in list(_JOURNALS):
        journal._forget_held()


def _flush_at_exit() -> None:
    """What every journal still holds or has queued when the interpreter exits (a loop stopped
    before its timer ran; a writer thread's queue: daemon threads still run while `atexit`
    hooks do). A writer thread of a parent process is not this process's to flush."""
    for journal in list(_JOURNALS):
        try:
            journal._write_held()
            behind = journal._behind
            if behind is not None and behind.pid == os.getpid():
                behind.flush()
        except Exception:  # exiting: say so, never raise
            log.exception("llmfail: writing held events at exit failed")


_exit_hooked = False


def _hook_exit() -> None:
    """Register `_flush_at_exit` at the first post, not at import: `atexit` runs hooks last
    registered first, and the alert sender's flush (registered when an engine with alert
    sinks is made) must run after this one, which may still hand it events."""
    global _exit_hooked
    if not _exit_hooked:
        _exit_hooked = True
        atexit.register(_flush_at_exit)


os.register_at_fork(after_in_child=_forget_held_in_child)
