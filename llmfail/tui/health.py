"""The rows of the dashboard's model health table, computed without Textual.

The table answers the on-call question "which model is in trouble, and since
when?", so each row carries what the store knows about a model right now (its
bench, consecutive failures, last error) and what the event log says about it
over a rolling window (requests, success rate, failovers away from it, p50).

Keeping this apart from the widgets means the sort order and the wording of
every cell are tested as plain data, and the Textual app only copies cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from .. import stats
from ..durations import format_duration
from ..health import EntryStatus, entry_status

if TYPE_CHECKING:
    from ..store import ModelState

#: The states a row can be in, most troubling first (the "by trouble" sort order):
#: `llmfail.stats`'s states, after `panic-tried`: benched, yet being tried because
#: every entry of one of its chains was benched (on_all_benched: try_all).
PANIC_TRIED = "panic-tried"
STATES = (PANIC_TRIED, *stats.STATES)

STATE_STYLE: Mapping[str, str] = {
    "panic-tried": "bold white on red",
    "benched": "bold yellow",
    "half-open": "cyan",
    "probing": "cyan",
    "manual": "bold magenta",
    "slow": "yellow",
    "healthy": "green",
}

#: (key, label) of each column, in display order; the keys are the DataTable's column keys.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("state", "state"),
    ("until", "benched for"),
    ("failures", "fails"),
    ("benches", "benches"),
    ("requests", "reqs"),
    ("success", "ok %"),
    ("failovers", "failovers"),
    ("p50", "p50"),
    ("error", "last error"),
    ("ago", "ago"),
)

DASH = "–"


@dataclass(frozen=True)
class HealthRow:
    """One model as the health table shows it.

    The window figures (`requests` … `p50_ms`) are None when nothing was
    counted for the model, so an idle model reads "–" rather than "0 %".
    """

    model: str
    state: str  # one of STATES
    bench_until: float | None = None
    failures: int = 0
    bench_count: int = 0
    requests: int = 0
    ok: int = 0
    failovers: int = 0
    p50_ms: float | None = None
    last_error_kind: str | None = None
    last_error_status: int | None = None
    last_error_at: float | None = None

    @classmethod
    def of(cls, figures: stats.ModelStats, state: str | None = None) -> HealthRow:
        """The row of a model `model_stats` reported on (`state` overrides its state)."""
        return cls(
            model=figures.model,
            state=state or figures.state,
            bench_until=figures.bench_until,
            failures=figures.failures,
            bench_count=figures.bench_count,
            requests=figures.requests,
            ok=figures.ok,
            failovers=figures.failovers,
            p50_ms=figures.p50_ms,
            last_error_kind=figures.last_error_kind,
            last_error_status=figures.last_error_status,
            last_error_at=figures.last_error_at,
        )

    @classmethod
    def stored(cls, state: ModelState, now: float) -> HealthRow:
        """The row of a bench key with no traffic in the window (e.g. benched ahead of a deploy,
        or one credential `provider/model#N`): its shared state, no figures."""
        return cls(
            model=state.model,
            state=entry_status(None, {state.model: state}, now, model=state.model),
            bench_until=state.bench_until,
            failures=state.failures,
            bench_count=state.bench_count,
            last_error_kind=state.last_error_kind,
            last_error_status=state.last_error_status,
            last_error_at=state.last_error_at,
        )

    @property
    def success(self) -> float | None:
        """Share of the window's requests this model answered, or None with no request."""
        return self.ok / self.requests if self.requests else None

    def trouble(self) -> tuple[int, int, float]:
        """Sort key, worst first: state, then consecutive failures, then success rate."""
        success = self.success
        return (STATES.index(self.state), -self.failures, 1.0 if success is None else success)

    def cells(self, now: float) -> tuple[Text, ...]:
        """The row's cells at `now`, in COLUMNS order (the countdown and "ago" move with `now`)."""
        state = display_state(self.state, self.bench_until, now)
        remaining = self.bench_until - now if self.bench_until is not None and self.bench_until > now else None
        success = self.success
        error = ""
        if self.last_error_kind or self.last_error_status is not None:
            error = " ".join(str(p) for p in (self.last_error_kind, self.last_error_status) if p is not None)
        return (
            Text(self.model),
            Text(state, style=STATE_STYLE.get(state, "")),
            Text(format_duration(remaining) if remaining is not None else DASH, justify="right",
                 style="bold" if remaining is not None else "dim"),
            _count(self.failures, "red"),
            _count(self.bench_count, "yellow"),
            _count(self.requests, ""),
            _percent(success),
            _count(self.failovers, "magenta"),
            Text(format_duration(self.p50_ms / 1000) if self.p50_ms is not None else DASH, justify="right"),
            Text(error or DASH, style="red" if error else "dim"),
            Text(format_duration(max(0.0, now - self.last_error_at)) if self.last_error_at is not None else DASH,
                 justify="right", style="" if self.last_error_at is not None else "dim"),
        )


def display_state(state: str, bench_until: float | None, now: float) -> str:
    """The state to show at `now`: a bench whose time ran out between two reads is half-open.

    Rows are re-read every few seconds, but the countdown ticks every second; without
    this a bench would sit at "benched, –" until the next read.
    """
    if state in (EntryStatus.BENCHED, EntryStatus.MANUAL, PANIC_TRIED) and bench_until is not None and bench_until <= now:
        return "half-open"
    return state


def _count(value: int, style: str) -> Text:
    return Text(str(value), justify="right", style=style if value else "dim")


def _percent(share: float | None) -> Text:
    if share is None:
        return Text(DASH, justify="right", style="dim")
    style = "green" if share >= 0.99 else "yellow" if share >= 0.9 else "bold red"
    return Text(f"{share * 100:.1f}", justify="right", style=style)


def sort_rows(rows: Iterable[HealthRow], order: list[str] | None) -> list[HealthRow]:
    """Chain order when a chain is selected (`order`), else the most troubled first
    (ties keep the order the rows came in: config order, then models only the DB knows)."""
    if order is not None:
        rank = {model: i for i, model in enumerate(order)}
        return sorted(rows, key=lambda r: (rank.get(r.model, len(rank)), r.model))
    return sorted(rows, key=HealthRow.trouble)
