"""`llmfail state copy SRC DST`: move a team's benches and event log between stores.

The copy goes through the store interface only, so it works between any two
backends (a SQLite file to a Redis URL and back, one namespace to another).
What carries over, and what does not (decided so; docs/fleet.md, moving between stores):

- **Benches, every state**: running, manual, expired-but-not-yet-probed
  (half-open) — with their end, start, manual flag, reason and kind — and slow
  demotions. Each becomes one `bench` on the destination, so its counters
  restart: the next automatic bench of a copied model is a first one
  (progressive cooldown from x1), and failure counts begin at 0.
- **The event log**, oldest first, in the source's id order with the original
  timestamps; the destination assigns its own ids (in the same order).
- **Not copied**: probe leases (seconds long), today's quota counts, alert
  dedup claims and bookkeeping (the config's hash) — all short-lived or rebuilt
  by the next request.

A destination that already holds events or bench state is refused unless
`force`: then events are added after its own, and a copied bench never
shortens one the destination already has (the later deadline wins).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ModelState, Store

#: Events read and written per batch.
PAGE = 1000


@dataclass(frozen=True)
class CopyReport:
    benches: int  # bench states copied
    demotions: int  # slow demotions copied
    events: int  # events copied


def is_empty(store: Store) -> bool:
    """No event ever written and no bench state kept."""
    return store.max_event_id() == 0 and not store.all_states()


def copy_state(src: Store, dst: Store, *, force: bool = False) -> CopyReport:
    """Copy `src`'s benches and event log into `dst` (see the module docstring).

    Raises ValueError when `dst` is not empty and not `force`; the caller words it.
    """
    if not force and not is_empty(dst):
        raise ValueError("the destination is not empty")
    benches = demotions = 0
    for state in src.all_states():
        if _copy_bench(dst, state):
            benches += 1
        if state.slow_since is not None and state.slow_ms is not None:
            recheck = state.recheck_at if state.recheck_at is not None else state.slow_since
            demotions += dst.demote(state.model, now=state.slow_since, slow_ms=state.slow_ms, recheck_at=recheck)
    events, after = 0, 0
    while batch := src.events(after_id=after, limit=PAGE):
        dst.append(batch)
        events += len(batch)
        after = batch[-1].id or after
        if len(batch) < PAGE:
            break
    return CopyReport(benches, demotions, events)


def _copy_bench(dst: Store, state: ModelState) -> bool:
    if state.bench_until is None:
        return False
    began = state.benched_at if state.benched_at is not None else state.bench_until
    dst.bench(
        state.model, now=began, until=state.bench_until, manual=state.manual, reason=state.reason, kind=state.kind
    )
    return True
