"""Consoles and emitters: data on stdout, diagnostics on stderr, JSON for machines.

Rich decides colour from the stream itself (NO_COLOR, non-TTY), so `--json`
and pipes get plain text without any flag of ours. Rich's console is imported
only when something is printed for people (~20 ms): `--json` output, which
scripts call in loops, never pays for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from .errors import LlmfailError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .actions import BenchRow, ChainView
    from .events import Event


@cache
def stdout() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True)


@cache
def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def emit_json(obj: Any) -> None:
    """One JSON document (or one line of a JSON-lines stream) on stdout, flushed."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def note(message: str, style: str = "dim") -> None:
    """A diagnostic line for people on stderr (plain text, without loading Rich, when it is not a terminal)."""
    if not sys.stderr.isatty():
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        return
    stderr().print(message, style=style, markup=False)


def warn(message: str) -> None:
    note(f"llmfail: warning: {message}", style="yellow")


def report_error(error: BaseException) -> None:
    """The one clear line (plus a hint) a user sees for an error."""
    from .redact import redact

    message = error.message if isinstance(error, LlmfailError) else f"{type(error).__name__}: {error}"
    stderr().print(f"llmfail: error: {redact(message)}", style="bold red", markup=False)
    hint = getattr(error, "hint", None)
    if hint:
        stderr().print(f"  hint: {redact(hint)}", style="yellow", markup=False)


# --------------------------------------------------------------------------- operator views
# Rendering only: the rows come from `llmfail.actions` and `llmfail.events`, so the
# dashboard can draw the same data its own way.


def local_time(ts: float, now: float) -> str:
    """A time for people, in the local zone: `14:05:31` today, with the date otherwise."""
    from datetime import datetime

    moment = datetime.fromtimestamp(ts).astimezone()
    if moment.date() == datetime.fromtimestamp(now).astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def bench_table(rows: Sequence[BenchRow], now: float) -> Table:
    """`ls-benched` for people: soonest expiry first, as the rows come."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("model", "until", "remaining", "by", "reason", "benches"):
        table.add_column(column, justify="right" if column == "benches" else "left")
    for row in rows:
        table.add_row(
            row.model,
            local_time(row.until, now),
            row.remaining,
            Text("manual", style="magenta") if row.manual else Text("auto", style="yellow"),
            (row.reason or "(no reason given)") if row.manual else (row.kind or ""),
            str(row.bench_count),
        )
    return table


def chains_table(views: Sequence[ChainView]) -> Table:
    """`chains` for people: every chain's flattened entries and which are benched now."""
    from rich.table import Table
    from rich.text import Text

    from .durations import format_duration

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("chain", "#", "model", "status"):
        table.add_column(column)
    for view in views:
        for index, entry in enumerate(view.entries, 1):
            status = Text(entry.status, style=_STATUS_STYLE.get(entry.status, ""))
            if entry.bench is not None:
                why = entry.bench.reason if entry.bench.manual and entry.bench.reason else entry.bench.kind
                status.append(f" {format_duration(entry.bench.remaining_s)}" + (f" ({why})" if why else ""))
            if entry.benched_credentials and not entry.status.is_benched:
                status.append(f" (credentials benched: {', '.join(entry.benched_credentials)})", style="yellow")
            table.add_row(view.name if index == 1 else "", str(index), entry.model, status)
    return table


_STATUS_STYLE = {
    "healthy": "green",
    "slow": "yellow",
    "benched": "bold yellow",
    "manual": "bold magenta",
    "half-open": "cyan",
    "probing": "cyan",
}

#: Colour per event type: failures red, benches yellow, recoveries green, the walk's steps dim.
_EVENT_STYLE = {
    "attempt_failed": "red",
    "retry": "dim",
    "benched": "bold yellow",
    "unbenched": "green",
    "probe": "cyan",
    "failover": "magenta",
    "panic": "bold red",
    "quota_skip": "yellow",
    "fail_fast": "bold red",
    "exhausted": "bold red",
    "stream_interrupted": "red",
}


def event_text(event: Event, now: float) -> Text:
    """One readable, colour-coded line of the event log."""
    from rich.text import Text

    from .durations import format_duration

    style = _EVENT_STYLE.get(event.type, "")
    if event.type == "request":
        style = "green" if event.data.get("ok") else "bold red"
    line = Text()
    line.append(local_time(event.ts, now) + "  ", style="dim")
    line.append(f"{event.type:<18}", style=style)
    parts: list[str] = []
    if event.type == "request":
        parts.append("ok" if event.data.get("ok") else "failed")
        if event.data.get("failovers"):
            parts.append(f"failovers {event.data['failovers']}")
    if event.chain:
        parts.append(f"[{event.chain}]")
    if event.model:
        parts.append(event.model)
    if event.next_model:
        parts.append(f"-> {event.next_model}")
    if event.kind:
        parts.append(event.kind + (f" {event.status}" if event.status is not None else ""))
    elif event.status is not None:
        parts.append(str(event.status))
    if event.attempt is not None:
        parts.append(f"attempt {event.attempt}")
    if event.benched_until is not None:
        parts.append(f"until {local_time(event.benched_until, now)}")
    if event.latency_ms is not None:
        parts.append(format_duration(event.latency_ms / 1000))
    if event.data.get("user"):
        parts.append(f"by {event.data['user']}@{event.data.get('host', '?')}")
    if event.detail:
        parts.append(f"- {event.detail}")
    line.append(" ".join(parts))
    return line
