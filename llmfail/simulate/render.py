"""A simulation report for people: Rich tables of models, totals, phases, timeline and expectations.

Presentation only, imported by the CLI when it prints for a terminal; the
simulation itself (runner, report, JUnit) never imports Rich.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..durations import format_duration
from ..errors import plural
from .replay import Replay
from .report import Report, Window


def _errors(errors: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(errors)) or "-"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        left = column in ("model", "phase", "name", "faults", "served by", "benched", "expected", "result", "minute")
        table.add_column(column, justify="left" if left else "right", no_wrap=column not in ("errors", "faults"))
    return table


def models_table(report: Report) -> Table:
    table = _table("#", "model", "attempts", "ok", "share", "errors", "benched", title=f"chain {report.chain}")
    for index, (model, figures) in enumerate(report.models.items(), 1):
        table.add_row(
            str(index),
            model,
            str(figures.attempts),
            str(figures.ok),
            _pct(report.share(model)),
            _errors(figures.errors.items()),
            str(figures.benched),
        )
    return table


def totals(report: Report) -> Text:
    style = "green" if report.failed == 0 else "yellow" if report.success_rate >= 0.99 else "red"
    text = Text()
    text.append(f"{report.succeeded}/{report.requests} answered ({_pct(report.success_rate)})", style=f"bold {style}")
    text.append(
        f" · {plural(report.failovers, 'failover')} · latency p50 {report.latency(50):g}ms "
        f"p95 {report.latency(95):g}ms p99 {report.latency(99):g}ms"
        f" · {format_duration(report.simulated_s)} simulated"
    )
    return text


def _by_entry(counts: Counter[str], numbers: dict[str, int], sign: str = "") -> str:
    return " ".join(f"#{numbers.get(m, '?')} {sign}{n}" for m, n in counts.most_common()) or "-"


def phases_table(report: Report, phases: list[Window]) -> Table:
    """Each phase's traffic: who served it and who got benched (entries by their # in the models table)."""
    numbers = {m: i for i, m in enumerate(report.models, 1)}
    table = _table("phase", "from", "to", "faults", "requests", "ok", "served by", "benched", "panics", title="phases")
    for w in phases:
        table.add_row(
            w.name,
            format_duration(w.start_s),
            format_duration(w.end_s),
            "\n".join(w.faults) or "none",
            str(w.requests),
            _pct(w.succeeded / w.requests) if w.requests else "-",
            _by_entry(w.served, numbers),
            _by_entry(w.benched, numbers, "×"),
            str(w.panics),
        )
    return table


def timeline_table(report: Report) -> Table:
    """Which model served each simulated minute (failback shows as the primary coming back).

    Columns are the entries' numbers from the models table, so long model names
    do not squeeze the figures."""
    models = list(report.models)
    table = _table(
        "minute",
        *(f"#{i}" for i in range(1, len(models) + 1)),
        "failed",
        title="timeline (requests answered per minute, by entry #)",
    )
    for w in report.timeline or []:
        top = w.served.most_common(1)[0][0] if w.served else None
        cells = [Text(str(w.served.get(m, 0)), style="bold" if m == top else "dim") for m in models]
        table.add_row(w.name, *cells, Text(str(w.failed), style="red" if w.failed else "dim"))
    return table


def expectations_table(report: Report) -> Table:
    table = _table("name", "expected", "actual", "result", title="expectations")
    for e in report.expectations:
        table.add_row(
            e.name, e.expected, f"{e.actual:g}", Text("pass", style="green") if e.ok else Text("FAIL", style="bold red")
        )
    return table


def render(report: Report) -> RenderableType:
    parts: list[RenderableType] = [models_table(report), Text(), totals(report)]
    if report.phases is not None:
        parts += [Text(), phases_table(report, report.phases)]
    if report.timeline:
        parts += [Text(), timeline_table(report)]
    if report.expectations:
        parts += [Text(), expectations_table(report)]
    return Group(*parts)


@contextmanager
def progress(console: Console) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on `console` while a simulation runs; nothing (None) when it is not a terminal."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), console=console, transient=True) as bar:
        task = bar.add_task("simulate", total=None)

        def update(done: int, total: int) -> None:
            if done == total or done % 64 == 0:  # a repaint per request would cost more than the request
                bar.update(task, completed=done, total=total)

        yield update


# ------------------------------------------------------------------------------- replay: then vs now


def _served(report: Report) -> str:
    return ", ".join(f"{m} {_pct(report.share(m))}" for m, f in report.models.items() if f.ok) or "-"


def _benched(report: Report) -> str:
    return ", ".join(f"{m} ×{f.benched}" for m, f in report.models.items() if f.benched) or "-"


def then_now_table(then: Report, now: Report, thinned: float = 1.0) -> Table:
    """The headline figures side by side: what the log saw, and today's config on the same traffic
    (or on a `thinned` share of it, which the "now" heading says)."""
    heading = "now (current config, simulated)"
    if thinned < 1:
        heading = f"now (current config, simulated on 1 in {1 / thinned:.3g} requests)"
    table = _table("", "then (the log)", heading, title=f"chain {now.chain}: then vs now")
    rows = [
        ("requests", str(then.requests), str(now.requests)),
        ("answered", _pct(then.success_rate), _pct(now.success_rate)),
        ("failovers", str(then.failovers), str(now.failovers)),
        ("latency p50", f"{then.latency(50):g}ms", f"{now.latency(50):g}ms"),
        ("latency p99", f"{then.latency(99):g}ms", f"{now.latency(99):g}ms"),
        ("served by", _served(then), _served(now)),
        ("benches", _benched(then), _benched(now)),
        ("panics", str(sum(w.panics for w in then.phases or ())), str(sum(w.panics for w in now.phases or ()))),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def _then_now(table: Table, pairs: Iterable[tuple[Window, Window]], numbers: dict[str, int], faults: bool) -> Table:
    for then, now in pairs:
        cells = [then.name]
        if faults:
            cells += [format_duration(then.start_s), "\n".join(then.faults) or "none"]
        table.add_row(
            *cells,
            _pct(then.succeeded / then.requests) if then.requests else "-",
            _pct(now.succeeded / now.requests) if now.requests else "-",
            _by_entry(then.served, numbers),
            _by_entry(now.served, numbers),
        )
    return table


def render_replay(result: Replay) -> RenderableType:
    """Then vs now: the headline figures, each phase of the derived scenario, and the timeline of both."""
    then, now = result.then, result.now
    numbers = {m: i for i, m in enumerate(then.models, 1)}
    legend = Text("entries: " + "  ".join(f"#{i} {m}" for m, i in numbers.items()), style="dim")
    phases = _table(
        "phase",
        "from",
        "faults",
        "ok then",
        "ok now",
        "served then",
        "served now",
        title="phases of the derived scenario",
    )
    _then_now(phases, zip(then.phases or (), now.phases or (), strict=False), numbers, faults=True)
    timeline = _table("minute", "ok then", "ok now", "served then", "served now", title="timeline")
    rows = max(len(then.timeline or ()), len(now.timeline or ()))
    empty = [Window(f"{i}", 0.0, 0.0) for i in range(rows)]
    pairs = zip([*(then.timeline or ()), *empty][:rows], [*(now.timeline or ()), *empty][:rows], strict=True)
    _then_now(timeline, pairs, numbers, faults=False)
    return Group(then_now_table(then, now, result.thinned), Text(), legend, Text(), phases, Text(), timeline)
