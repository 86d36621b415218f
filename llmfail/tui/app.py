"""`llmfail tui`: the incident dashboard, a thin Textual app over `Feed` and `llmfail.actions`.

What it must guarantee during an incident, and how:

- **The truth within a second.** A worker thread calls `Feed.step` every
  POLL_S; a step costs one `PRAGMA data_version` unless another process
  committed, and the screen only paints the `Update` it posts. The UI thread
  never waits on SQLite, so keys and scrolling stay live even when a writer
  holds the DB. On a store that can wait for new events (Redis: `XREAD BLOCK`)
  nothing polls: a second thread waits for the next event and wakes the poll
  thread, which otherwise steps every ROWS_EVERY_S for the sliding window (a
  bench-state change no event announces, such as a probe lease, waits for that).
- **Bounded on a huge log.** The feed reads the newest `keep` events at start
  and then only new ids; the log pane keeps at most `keep` lines.
- **Same actions as the CLI.** `b` and `u` call `bench_model` /
  `unbench_models` (in a thread, since a write may wait for the DB lock), so
  the rows and events are exactly those of `llmfail bench` / `unbench`.
- **Readable at 80x24.** Under WIDE_FROM columns or TALL_FROM rows (an ssh
  session from a phone) the header is one line, the chain selector and the
  sparkline give way (`c` picks the chain), and the table keeps the columns that
  answer "which model, until when, why": state, countdown, last error, how long
  ago. The chains strip (what serves each chain, panic mode) and the newest
  events stay on screen at every size.
- **Honest when the store is gone.** While the shared state cannot be read
  (Redis down or hung, the SQLite file locked or unreadable) the screen keeps
  the last data under a one-line banner saying so (the store's own error, its
  URL without a password) and reads again every ERROR_RETRY_S; the banner goes
  when a read succeeds. `b`/`u` still try the store and show its error: a bench
  the fleet never saw must not look done.
- **Pure reads.** Rendering never writes to the store: reads are pure.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, RichLog, Select, Sparkline, Static
from textual.worker import get_current_worker

from ..actions import FOLLOW_WAIT_S, bench_model, unbench_models
from ..config import Config
from ..durations import format_duration
from ..errors import LlmfailError
from ..events import Event
from ..health import NO_DATA, EntryStatus
from ..output import event_text
from ..store import Store
from .feed import KEEP_EVENTS, ROWS_EVERY_S, WINDOW_S, Feed, LogFilter, Update
from .health import COLUMNS, COMPACT_COLUMNS, STATES, ChainView, HealthRow
from .screens import BenchRequest, BenchScreen, HelpScreen

#: Seconds between two polls of the DB: a commit by any process is on screen well within 1 s.
POLL_S = 0.25

#: Seconds between two tries while the DB cannot be read.
ERROR_RETRY_S = 2.0

#: The Select value for "every chain" (no chain is named "").
ALL_CHAINS = ""

#: From this many columns and rows on, the full layout (chain selector, sparkline, every column);
#: below either, the compact one.
WIDE_FROM = 100
TALL_FROM = 30

#: Lines of the chains strip (one per chain, worst first), compact and full layout.
CHAIN_LINES = (3, 6)

#: The states the header counts, worst first (every state but healthy).
COUNTED = tuple(state for state in STATES if state != EntryStatus.HEALTHY)


class Refreshed(Message):
    """The feed read something new (posted from the poll thread)."""

    def __init__(self, update: Update) -> None:
        super().__init__()
        self.update = update


class PollFailed(Message):
    """A poll failed with a store error (e.g. the DB stayed locked); polling goes on."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class PollRecovered(Message):
    """A poll succeeded after failed ones: the store answers again."""


class Dashboard(App[None]):
    """Model health, the event log and the failover rate of one state DB, live."""

    TITLE = "llmfail"
    ENABLE_COMMAND_PALETTE = False  # every action has a key, listed by `?`

    # Textual declares these without ClassVar, so mypy needs them plain
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (TALL_FROM, "-tall")]

    # The cursor row is a filled bar and the header a muted, underlined line without fill, so
    # the selected row never reads as the header (even when it is the first row).
    CSS = """
    #banner { display: none; height: auto; max-height: 2; padding: 0 1; background: $error; color: $text;
              text-style: bold; }
    #banner.down { display: block; }
    #top { height: 4; }
    #summary { width: 1fr; padding: 0 1; }
    #chain { width: 30; }
    #rate { width: 46; padding: 0 1; }
    #rate-label { height: 1; }
    #sparkline { height: 3; }
    #chains { height: auto; padding: 0 1; }
    #health { height: auto; max-height: 55%; min-height: 3; }
    #health > .datatable--header { background: $surface; color: $text-muted; text-style: bold underline; }
    #health:focus > .datatable--cursor { background: $primary; color: $text; text-style: bold; }
    #health > .datatable--cursor { background: $primary 40%; text-style: bold; }
    #log-title { height: 1; background: $boost; padding: 0 1; }
    #log { height: 1fr; min-height: 3; }
    #filter { display: none; }
    #filter.editing { display: block; }
    Screen.-narrow #top, Screen.-short #top { height: 1; }
    Screen.-narrow #chain, Screen.-short #chain, Screen.-narrow #rate, Screen.-short #rate { display: none; }
    Screen.-narrow #log { overflow-x: hidden; scrollbar-size-vertical: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "bench", "Bench", tooltip="bench the selected model: asks how long and why (Esc cancels)"),
        Binding("u", "unbench", "Unbench", tooltip="unbench the selected model and its credentials"),
        Binding("c", "next_chain", "Chain", tooltip="show the next chain, then all chains again"),
        Binding("p", "pause", "Pause", tooltip="pause / resume the event log (new events are counted)"),
        Binding("slash", "filter", "Filter", tooltip="filter the log by words, or model:X type:X chain:X"),
        Binding("r", "refresh", "Refresh", tooltip="read the state store again now"),
        Binding(
            "s",
            "save_scenario",
            "Scenario",
            tooltip="save the window on screen as a scenario file (llmfail replay), and show its path",
        ),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this list (Esc closes it)"),
        Binding("q", "quit", "Quit", tooltip="leave the dashboard"),
        Binding(
            "escape", "close_filter", "Close filter", show=False, tooltip="close the filter box, keeping the old filter"
        ),
    ]

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        chain: str | None = None,
        window: float = WINDOW_S,
        keep: int = KEEP_EVENTS,
        scenario_dir: str = ".",
    ) -> None:
        super().__init__()
        self.scenario_dir = scenario_dir  # where `s` saves the window as a scenario file
        if chain is not None:
            config.chain(chain)  # a UsageError naming the chains that exist
        self.config = config
        self.store = store
        self.clock = clock
        self.window = window
        self.keep = keep
        self.feed = Feed(config, store, clock=clock, chain=chain, window=window, keep=keep)
        self.chain = chain
        self.rows: list[HealthRow] = []
        self.chain_views: list[ChainView] | None = None  # None until the first read
        self.compact: bool | None = None  # the compact layout is on (None before the first resize)
        self.updates = 0  # updates painted so far (tests and the benchmark wait on it)
        self.first_paint_at: float | None = None  # perf_counter() when the first data was on screen
        self.last_event_id = 0  # the newest event taken into the log pane (shown, or counted while paused)
        self.rate_known = False  # the sparkline has been seeded from the DB
        self.paused = False
        self.log_filter = LogFilter()
        self._buffer: deque[Event] = deque(maxlen=keep)  # what the log pane could show, for refilters
        self._missed = 0  # events that arrived while paused
        self._row_keys: list[str] = []
        self._shown: dict[tuple[str, str], tuple[str, str, object]] = {}  # (model, column) -> what the cell shows
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._force = False
        self._waits: Callable[[int, float], list[Event]] | None = getattr(store, "wait_for_events", None)
        self.unreachable: str | None = None  # the store's error while it cannot be read; None when it answers
        self._read_at: float | None = None  # clock time of the last successful read

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        options = [("all chains", ALL_CHAINS), *((name, name) for name in self.config.chains)]
        yield Static("", id="banner", markup=False)
        with Horizontal(id="top"):
            yield Static("loading…", id="summary", markup=False)
            yield Select(options, value=self.chain or ALL_CHAINS, allow_blank=False, id="chain")
            with Vertical(id="rate"):
                yield Static("failovers per minute, last hour", id="rate-label", markup=False)
                yield Sparkline([0] * 60, id="sparkline")
        yield Static("", id="chains", markup=False)
        yield DataTable(id="health", cursor_type="row", zebra_stripes=True)
        yield Static("", id="log-title", markup=False)
        yield RichLog(id="log", max_lines=self.keep, wrap=False, markup=False, highlight=False)
        yield Input(
            placeholder="filter the log: words match model/type/chain; model:X type:X chain:X "
            "(Enter applies, empty clears, Esc cancels)",
            id="filter",
        )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._layout(self.size.width, self.size.height)
        self.query_one("#health", DataTable).focus()
        self.set_interval(1.0, self._tick)
        self._poll()

    def on_resize(self, event: events.Resize) -> None:
        if self.compact is not None:  # else the widgets may not be there yet: on_mount lays them out
            self._layout(event.size.width, event.size.height)

    def _layout(self, width: int, height: int) -> None:
        """Pick the compact or the full table for this terminal size (the CSS breakpoints do the rest)."""
        compact = width < WIDE_FROM or height < TALL_FROM
        if compact == self.compact:
            return
        self.compact = compact
        table = self.query_one("#health", DataTable)
        table.clear(columns=True)
        for key, label in COMPACT_COLUMNS if compact else COLUMNS:
            table.add_column(label, key=key)
        self._row_keys, self._shown = [], {}
        self._paint_rows()
        self._title_log()

    def on_unmount(self) -> None:
        self._stopping.set()
        self._wake.set()  # let the poll thread see its cancellation at once

    # ------------------------------------------------------------------ polling

    @work(thread=True, exclusive=True, group="poll", name="poll")
    def _poll(self) -> None:
        """Every read the screen needs: one `Feed.step` per POLL_S, the results posted to the UI.

        A store error (the DB unreadable, locked past the busy timeout) is shown once,
        not once per poll, and polling slows to ERROR_RETRY_S until a read succeeds.
        """
        worker = get_current_worker()
        failure: str | None = None
        while not worker.is_cancelled:
            self._wake.clear()  # before taking the flag: a refresh asked meanwhile wakes the wait below
            force, self._force = self._force, False
            try:
                update = self.feed.step(chain=self.chain, force=force)
            except LlmfailError as error:
                if error.message != failure:
                    self.post_message(PollFailed(error.message))
                failure = error.message
                self._wake.wait(ERROR_RETRY_S)
                continue
            self._read_at = self.clock()
            if failure is not None:
                self.post_message(PollRecovered())
            failure = None
            if update is not None:
                self.post_message(Refreshed(update))
            if not self.feed.pending:
                watched = self._waits is not None and not self.feed.rows_stale
                self._wake.wait(ROWS_EVERY_S if watched else POLL_S)

    @work(thread=True, exclusive=True, group="watch", name="watch")
    def _watch(self, wait: Callable[[int, float], list[Event]]) -> None:
        """Wake the poll thread when an event is written after the newest the feed read (the store
        blocks until then, FOLLOW_WAIT_S at a time): no read at all while nothing happens, and at
        most one wake per POLL_S under a stream of writes. A store error wakes the poll too, which
        reports it (a hung server is noticed after FOLLOW_WAIT_S plus the client's timeout)."""
        worker = get_current_worker()
        while not worker.is_cancelled and not self._stopping.is_set():
            try:
                news = wait(self.feed.tail.last_id, FOLLOW_WAIT_S)
            except LlmfailError:
                self._wake.set()
                self._stopping.wait(ERROR_RETRY_S)
                continue
            if news:
                self._wake.set()
                self._stopping.wait(POLL_S)

    def refresh_now(self) -> None:
        """Read everything again at the next poll, which starts at once."""
        self._force = True
        self._wake.set()

    def on_refreshed(self, message: Refreshed) -> None:
        if not self.is_running:  # shutting down: the widgets are being removed
            return
        update = message.update
        if update.rows is not None:
            self.rows = update.rows
            self.chain_views = update.chains
            self._paint_rows()
        self._paint_rate(update)
        self._take_events(update.events, update.skipped)
        self.updates += 1
        if update.first:
            self.call_after_refresh(self.first_painted)
            if self._waits is not None:
                self._watch(self._waits)

    def first_painted(self) -> None:
        """Called once the first data is on screen (the benchmark's stopwatch)."""
        self.first_paint_at = time.perf_counter()

    def on_poll_failed(self, message: PollFailed) -> None:
        """The banner (not a toast, which would fade while the outage lasts); the data stays."""
        self.unreachable = message.message
        read = (
            f"showing the data of {time.strftime('%H:%M:%S', time.localtime(self._read_at))}"
            if self._read_at is not None
            else "nothing read yet"
        )
        what = message.message
        if not what.startswith("cannot reach shared state"):  # e.g. a locked SQLite file: say what it means
            what = f"shared state unreachable: {what}"
        banner = self.query_one("#banner", Static)
        banner.update(f"{what} — {read}")
        banner.add_class("down")

    def on_poll_recovered(self, message: PollRecovered) -> None:
        self.unreachable = None
        self.query_one("#banner", Static).remove_class("down")

    def _tick(self) -> None:
        """Every second: the countdowns and "ago" cells move with the clock."""
        if self.is_running:  # the timer may fire once more while the screens are being removed
            self._paint_rows()

    # ------------------------------------------------------------------ painting

    def _paint_rows(self) -> None:
        """Sync the table with `self.rows` at the clock's `now`: rebuilt when the models or
        their order changed (the cursor stays on its model), else only the cells that changed."""
        table = self.query_one("#health", DataTable)
        now = self.clock()
        shown = {str(column.key.value) for column in table.columns.values()}
        cells = {
            row.model: {key: cell for (key, _), cell in zip(COLUMNS, row.cells(now), strict=True) if key in shown}
            for row in self.rows
        }
        keys = list(cells)
        if keys != self._row_keys:
            selected = self.selected_model()
            table.clear()
            for model, row in cells.items():
                table.add_row(*row.values(), key=model)
            self._row_keys = keys
            if selected in keys:
                table.move_cursor(row=keys.index(selected), animate=False)
        else:
            for model, row in cells.items():
                for column, cell in row.items():
                    if self._shown.get((model, column)) != _look(cell):
                        table.update_cell(model, column, cell, update_width=True)
        self._shown = {(model, column): _look(cell) for model, row in cells.items() for column, cell in row.items()}
        self._paint_summary(now)

    def _paint_summary(self, now: float) -> None:
        """The header: scope and window, then how many models are in which trouble.

        "all healthy" only when every model answered in the window and none is benched,
        slow or probing: a model nothing was asked of counts as `no data`.
        """
        labels = [r.label(now) for r in self.rows]
        counts = [(labels.count(s), s) for s in COUNTED]
        trouble = ", ".join(f"{n} {s}" for n, s in counts if n)
        if not self.rows:
            health: tuple[str, str] = ("no models", "dim")
        elif not trouble:
            health = ("all healthy", "green")
        else:
            only_idle = all(s == NO_DATA for n, s in counts if n)
            health = (trouble, "dim" if only_idle else "bold yellow")
        models = f"{len(self.rows)} model{'s' if len(self.rows) != 1 else ''}: "
        if self.compact:
            scope = self.chain or "all chains"
            text = Text.assemble(("llmfail", "bold"), f" {scope} · {format_duration(self.window)} · ", models, health)
        else:
            scope = f"chain {self.chain}" if self.chain else "all chains"
            text = Text.assemble(
                ("llmfail", "bold"), f" · {scope} · window {format_duration(self.window)}\n", models, health
            )
        self.query_one("#summary", Static).update(text)
        self._paint_chains(now)

    def _rate_note(self) -> str:
        """The compact layout's stand-in for the sparkline: failovers in the last hour."""
        data = self.query_one("#sparkline", Sparkline).data
        if not self.rate_known or data is None:
            return "failovers: reading…"
        total = sum(data)
        return f"{total} failover{'s' if total != 1 else ''} in the last hour"

    def _paint_chains(self, now: float) -> None:
        """The chains strip: one line per chain, worst first, the overflow counted."""
        strip = self.query_one("#chains", Static)
        if self.chain_views is None:
            strip.update(Text("what serves each chain: reading…", style="dim"))
            return
        limit = CHAIN_LINES[0] if self.compact else CHAIN_LINES[1]
        views = self.chain_views
        shown = views if len(views) <= limit else views[: limit - 1]
        width = max((len(v.name) for v in shown), default=0)
        text = Text("\n").join(v.text(now, self.window, width) for v in shown)
        if len(shown) < len(views):
            text.append(f"\n… {len(views) - len(shown)} more chains (c shows one at a time)", style="dim")
        strip.update(text)

    def _paint_rate(self, update: Update) -> None:
        if update.rate is None:
            self.query_one("#rate-label", Static).update("failovers/min, last hour: reading…")
            return
        self.rate_known = True
        total, peak = sum(update.rate), max(update.rate, default=0)
        label = f"failovers/min, last hour: {total} (peak {peak}/min)"
        if update.rate_partial:
            label += " (older minutes partial)"
        self.query_one("#rate-label", Static).update(label)
        self.query_one("#sparkline", Sparkline).data = update.rate
        if self.compact:
            self._title_log()

    def _take_events(self, events: list[Event], skipped: int) -> None:
        if skipped:
            self._buffer.clear()  # the gap would be misleading in a scroll-back
        self._buffer.extend(events)
        if events:
            self.last_event_id = events[-1].id or self.last_event_id
        if self.paused:
            self._missed += len(events) + skipped
            self._title_log()
            return
        log = self.query_one("#log", RichLog)
        if skipped:
            log.write(Text(f"… {skipped} more events (a burst); the newest {len(events)} follow", style="dim"))
        now = self.clock()
        for event in events:
            if self.log_filter.matches(event):
                log.write(event_text(event, now))

    def _rewrite_log(self) -> None:
        """Redraw the log pane from the kept events (after a filter change or a resume): no DB read."""
        log = self.query_one("#log", RichLog)
        log.clear()
        now = self.clock()
        for event in self._buffer:
            if self.log_filter.matches(event):
                log.write(event_text(event, now))

    def _title_log(self) -> None:
        if self.compact:
            parts = ["events, newest last", self._rate_note()]
        else:
            parts = [f"events, newest at the bottom (last {self.keep} kept)"]
        if self.log_filter.text:
            parts.append(f"filter: {self.log_filter.text}")
        if self.paused:
            parts.append(f"PAUSED, {self._missed} new (p resumes)")
        self.query_one("#log-title", Static).update(" · ".join(parts))

    # ------------------------------------------------------------------ selection

    def selected_model(self) -> str | None:
        table = self.query_one("#health", DataTable)
        if not table.row_count or not table.is_valid_row_index(table.cursor_row):
            return None
        return self._row_keys[table.cursor_row] if table.cursor_row < len(self._row_keys) else None

    def on_select_changed(self, message: Select.Changed) -> None:
        value = message.value
        chain = value if isinstance(value, str) and value != ALL_CHAINS else None
        if chain != self.chain:
            self.chain = chain
            self.refresh_now()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a dialog or the help is open, the dashboard's keys do nothing behind it
        (a `u` meant for the dialog must not unbench the selected model); only quit stays."""
        if isinstance(self.screen, ModalScreen) and action != "quit":
            return not any(isinstance(b, Binding) and b.action == action for b in self.BINDINGS)
        return True

    def action_refresh(self) -> None:
        self.refresh_now()

    def action_next_chain(self) -> None:
        """All chains, then each chain in config order, then all chains again (through the selector,
        so the mouse and the key take one path)."""
        order = [ALL_CHAINS, *self.config.chains]
        current = order.index(self.chain) if self.chain in order else 0
        self.query_one("#chain", Select).value = order[(current + 1) % len(order)]

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            keys = [(self.get_key_display(b), b.description, b.tooltip) for b in self._bindings_listed()]
            self.push_screen(HelpScreen(keys))

    def _bindings_listed(self) -> list[Binding]:
        """Every key of the dashboard, as the help screen lists them: the table's moves, then ours."""
        moves = [
            Binding("up,down", "", "Select", key_display="↑ ↓", tooltip="move the highlighted row (b and u act on it)"),
            Binding("pageup,pagedown", "", "Scroll", key_display="PgUp PgDn", tooltip="scroll the table"),
        ]
        return moves + [b for b in self.BINDINGS if isinstance(b, Binding)]

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._missed = 0
            self._rewrite_log()
        self._title_log()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = self.log_filter.text
        box.add_class("editing")
        box.focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id != "filter":
            return
        self.log_filter = LogFilter(message.value.strip())
        self._close_filter()
        self._rewrite_log()
        self._title_log()

    def action_close_filter(self) -> None:
        """Escape while editing the filter: keep the filter as it was."""
        self._close_filter()

    def _close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("editing")
        self.query_one("#health", DataTable).focus()

    def action_bench(self) -> None:
        model = self.selected_model()
        if model is None:
            self.notify("no model selected", severity="warning")
            return

        def done(request: BenchRequest | None) -> None:
            if request is not None:
                self._bench(model, request)

        self.push_screen(BenchScreen(model, self.config.policy.cooldown), done)

    @work(thread=True, group="actions")
    def _bench(self, model: str, request: BenchRequest) -> None:
        try:
            row = bench_model(self.store, self.config, model, request.duration, request.reason, self.clock())
        except LlmfailError as error:
            self.call_from_thread(self.notify, error.message, severity="error", markup=False)
            return
        why = f" ({row.reason})" if row.reason else ""
        self.call_from_thread(self.notify, f"benched {row.model} for {row.remaining}{why}", markup=False)
        self.refresh_now()

    def action_unbench(self) -> None:
        model = self.selected_model()
        if model is None:
            self.notify("no model selected", severity="warning")
            return
        self._unbench(model)

    def action_save_scenario(self) -> None:
        self._save_scenario(self.chain, self.clock())

    @work(thread=True, group="actions")
    def _save_scenario(self, chain: str | None, now: float) -> None:
        """The window on screen, derived like `llmfail replay` does, into ./llmfail-scenario-CHAIN-TIME.yaml."""
        from ..simulate.replay import save_window

        try:
            path = save_window(self.config, self.store, now - self.window, now, chain=chain, folder=self.scenario_dir)
        except (LlmfailError, OSError) as error:
            message = error.message if isinstance(error, LlmfailError) else f"cannot save the scenario: {error}"
            self.call_from_thread(self.notify, message, severity="error", markup=False)
            return
        self.call_from_thread(self.notify, f"scenario saved to {path}", markup=False, timeout=10)

    @work(thread=True, group="actions")
    def _unbench(self, model: str) -> None:
        try:
            done = unbench_models(self.store, [model], self.clock())
        except LlmfailError as error:
            self.call_from_thread(self.notify, error.message, severity="error", markup=False)
            return
        if done.lifted:
            self.call_from_thread(self.notify, f"unbenched {', '.join(done.lifted)}", markup=False)
        else:
            self.call_from_thread(self.notify, f"{model} is not benched", severity="warning", markup=False)
        self.refresh_now()


def _look(cell: Text) -> tuple[str, str, object]:
    """What a cell looks like (text, style, spans), to skip repainting unchanged cells every second."""
    return cell.plain, str(cell.style), tuple(cell.spans)


def create_app(
    config: Config,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    chain: str | None = None,
    window: float = WINDOW_S,
    keep: int = KEEP_EVENTS,
    scenario_dir: str = ".",
) -> Dashboard:
    """The dashboard on `store`, for the `tui` command and the tests alike (clock injected)."""
    return Dashboard(config, store, clock=clock, chain=chain, window=window, keep=keep, scenario_dir=scenario_dir)
