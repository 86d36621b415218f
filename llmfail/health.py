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
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Entry
    from .store import ModelState


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


def entry_status(entry: Entry | None, states: Mapping[str, ModelState], now: float, *,
                 model: str | None = None) -> EntryStatus:
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
