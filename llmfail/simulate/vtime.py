"""Virtual time: an asyncio event loop whose clock jumps instead of waiting.

Why a whole event loop rather than a fake `sleep()`: the engine bounds every
attempt with `asyncio.timeout(...)`, backs off with the injected sleep, and
`simulate` runs many requests concurrently. If only `sleep` were virtual, the
engine's timeouts would still tick in real time, and concurrent tasks would
each advance a shared counter on their own. On this loop *every* timer —
`asyncio.sleep`, `asyncio.timeout`, `call_later` — lives on one virtual
clock, so timeouts, backoff, Retry-After and cooldowns behave exactly as in
production while an hour of traffic runs in seconds.

It is a discrete-event scheduler built from asyncio's own parts: when no
callback is ready, asyncio asks its selector to wait until the earliest timer;
our selector polls real I/O without blocking and then moves the clock forward
by exactly that wait. Nothing here reads the wall clock, and asyncio runs ready
callbacks in FIFO order and timers by due time, so a run is deterministic.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: How long (real seconds) a loop with no timers and nothing ready waits for
#: outside I/O (a signal, a thread handing work back) before calling it a stall.
STALL_AFTER_S = 5.0


class SimulationStalled(RuntimeError):
    """Every task is waiting and no timer is pending: the simulation can never progress."""


class _JumpingSelector(selectors.BaseSelector):
    """A real selector that never blocks: a wait for a timer becomes a jump of the clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only outside I/O could wake anyone
            ready = self._real.select(STALL_AFTER_S)
            if not ready:
                raise SimulationStalled("every simulated task is waiting and no timer is pending")
            return ready
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time; `time()` starts at 0 and only moves when all tasks wait.

    Starting at 0 keeps float resolution fine-grained (timers due at
    `when` fire at exactly `when`); callers add their own epoch.
    """

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the selector does this when everyone is waiting)."""
        self._now += max(0.0, seconds)


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh virtual-time loop (like `asyncio.run`)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
