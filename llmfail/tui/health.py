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
from ..health import NO_DATA, PANIC_TRIED, EntryStatus, entry_status

if TYPE_CHECKING:
    from ..events import Event
    from ..store import ModelState

#: The states a row can be in, most troubling first (the "by trouble" sort order):
#: `llmfail.stats`'s states (ending with `no data`), after `panic-tried`: benched, yet
#: being tried because every entry of one of its chains was benched (on_all_benched: try_all).
STATES = (PANIC_TRIED, *stats.STATES)

STATE_STYLE: Mapping[str, str] = {
    "panic-tried": "bold white on red",
    "benched": "bold yellow",
    "half-open": "cyan",
    "probing": "cyan",
    "manual": "bold magenta",
    "slow": "yellow",
    "healthy": "green",
    NO_DATA: "dim",
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

#: The columns of a narrow or short terminal (an ssh session from a phone, 80x24): what answers
#: "which model is in trouble, until when, and why" and nothing else, with shorter labels.
COMPACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("state", "state"),
    ("until", "ends in"),
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

    def trouble(self) -> tuple[int, int, float, bool]:
        """Sort key, worst first: state, then consecutive failures, then success rate; among
        equals, a model with no request in the window (`no data`) after one that answered."""
        success = self.success
        return (STATES.index(self.state), -self.failures, 1.0 if success is None else success, not self.requests)

    def label(self, now: float) -> str:
        """The state shown at `now`: `display_state`, and `no data` for a healthy model with no request."""
        return stats.no_data_or(display_state(self.state, self.bench_until, now), self.requests)

    def cells(self, now: float) -> tuple[Text, ...]:
        """The row's cells at `now`, in COLUMNS order (the countdown and "ago" move with `now`)."""
        state = self.label(now)
        remaining = self.bench_until - now if self.bench_until is not None and self.bench_until > now else None
        success = self.success
        error = ""
        if self.last_error_kind or self.last_error_status is not None:
            error = " ".join(str(p) for p in (self.last_error_kind, self.last_error_status) if p is not None)
        return (
            Text(self.model),
            Text(state, style=STATE_STYLE.get(state, "")),
            Text(
                format_duration(remaining) if remaining is not None else DASH,
                justify="right",
                style="bold" if remaining is not None else "dim",
            ),
            _count(self.failures, "red"),
            _count(self.bench_count, "yellow"),
            _count(self.requests, ""),
            _percent(success),
            _count(self.failovers, "magenta"),
            Text(format_duration(self.p50_ms / 1000) if self.p50_ms is not None else DASH, justify="right"),
            Text(error or DASH, style="red" if error else "dim"),
            Text(
                _ago(now, self.last_error_at) if self.last_error_at is not None else DASH,
                justify="right",
                style="" if self.last_error_at is not None else "dim",
            ),
        )


def display_state(state: str, bench_until: float | None, now: float) -> str:
    """The state to show at `now`: a bench whose time ran out between two reads is half-open.

    Rows are re-read every few seconds, but the countdown ticks every second; without
    this a bench would sit at "benched, –" until the next read.
    """
    if (
        state in (EntryStatus.BENCHED, EntryStatus.MANUAL, PANIC_TRIED)
        and bench_until is not None
        and bench_until <= now
    ):
        return EntryStatus.HALF_OPEN
    return state


_LIVE_STATES = frozenset(status.value for status in EntryStatus if status.is_live)


@dataclass(frozen=True)
class ChainView:
    """One chain as the chains strip shows it: what answered its latest requests, and whether
    it is in panic mode.

    "Serving" comes from the event log (the newest `request` rows of the chain), not from
    a guess at the chain order: it is the entry that really answered. Panic mode is on when
    no entry of the chain is live now (the next request walks them all, or fails with
    `on_all_benched: fail`), or when the chain's newest request walked in panic mode (its
    `panic` event belongs to that request, or is newer: a panicking request in flight).
    """

    name: str
    members: tuple[HealthRow, ...]  # the chain's entries as the table has them
    on_all_benched: str  # the policy: "try_all" (panic mode) or "fail"
    last_request: Event | None = None  # the chain's newest `request` row
    last_answer: Event | None = None  # its newest answered one
    last_panic: Event | None = None

    def live(self, now: float) -> int:
        """Entries a request may try at `now` (a bench that ran out since the last read counts as live)."""
        return sum(display_state(row.state, row.bench_until, now) in _LIVE_STATES for row in self.members)

    def panic(self, now: float) -> bool:
        if self.members and not self.live(now):
            return True
        panic, request = self.last_panic, self.last_request
        if panic is None:
            return False
        if request is None:
            return True
        return bool(panic.request_id and panic.request_id == request.request_id) or (panic.id or 0) > (request.id or 0)

    def trouble(self, now: float) -> int:
        """Sort key, worst first: panic, then a failed newest request, then the rest."""
        if self.panic(now):
            return 0
        if self.last_request is not None and not self.last_request.data.get("ok"):
            return 1
        return 2

    def text(self, now: float, window: float, name_width: int = 0) -> Text:
        """One line: `prod  ▶ anthropic/claude-sonnet-4-5 serving · 12s ago · 2/3 live`."""
        line = Text(f"{self.name:<{name_width}} ", style="bold")
        live, entries, panic = self.live(now), len(self.members), self.panic(now)
        if entries and not live:
            if self.on_all_benched == "fail":
                line.append(" DOWN ", style="bold white on red")
                line.append(f" all {entries} benched: requests fail", style="bold red")
            else:
                line.append(" PANIC ", style="bold white on red")
                line.append(f" all {entries} benched: trying them all", style="bold red")
        elif panic:
            line.append(" PANIC ", style="bold white on red")
            line.append(" last request tried benched entries", style="bold red")
        request, answer = self.last_request, self.last_answer
        sep = " · " if panic else ""
        if request is None or now - request.ts > window:
            if not panic:
                line.append(f"no requests in the last {format_duration(window)}", style="dim")
        elif request.data.get("ok"):
            line.append(sep)
            line.append(f"▶ {request.model or '?'}", style="bold green")
            line.append(f" serving · {_ago(now, request.ts)} ago", style="green")
        else:
            line.append(sep)
            line.append(
                f"✗ last request failed ({request.kind or 'error'}) {_ago(now, request.ts)} ago", style="bold red"
            )
            if answer is not None and now - answer.ts <= window:
                line.append(f" · last answer {answer.model or '?'} {_ago(now, answer.ts)} ago", style="yellow")
        if live:
            line.append(f" · {live}/{entries} live", style="dim" if live == entries else "yellow")
        return line


def chain_views(
    chains: Iterable[tuple[str, list[str]]],
    rows: Iterable[HealthRow],
    on_all_benched: str,
    last_request: Mapping[str, Event],
    last_answer: Mapping[str, Event],
    last_panic: Mapping[str, Event],
) -> list[ChainView]:
    """A ChainView per (chain name, its models), its entries taken from the health rows."""
    by_model = {row.model: row for row in rows}
    return [
        ChainView(
            name,
            tuple(by_model[m] for m in models if m in by_model),
            on_all_benched,
            last_request.get(name),
            last_answer.get(name),
            last_panic.get(name),
        )
        for name, models in chains
    ]


def _ago(now: float, ts: float) -> str:
    """How long ago, to the second ("0s", not "350ms": the screen is repainted once a second)."""
    age = now - ts
    return format_duration(age) if age >= 1 else "0s"


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
