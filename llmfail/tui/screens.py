"""The dashboard's modals: how long and why to bench a model, and the list of keys.

`BenchScreen` only asks; the app performs the bench through `llmfail.actions`,
exactly as `llmfail bench MODEL --for D --reason R` would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ..durations import format_duration, parse_duration


@dataclass(frozen=True)
class BenchRequest:
    """What the operator asked for: a length in seconds and an optional reason."""

    duration: float
    reason: str | None


class BenchScreen(ModalScreen[BenchRequest | None]):
    """Asks the bench length (prefilled with the policy cooldown, like the CLI's default) and
    a reason. Enter in either field benches; Escape cancels. A bad duration is reported in
    place and the dialog stays open, so nothing half-typed gets benched."""

    DEFAULT_CSS = """
    BenchScreen { align: center middle; }
    BenchScreen > #dialog {
        width: 64; height: auto; padding: 1 2;
        border: thick $warning; background: $surface;
    }
    BenchScreen #title { text-style: bold; margin-bottom: 1; }
    BenchScreen #problem { color: $error; height: auto; }
    BenchScreen #buttons { height: auto; margin-top: 1; align-horizontal: right; }
    BenchScreen Button { margin-left: 2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, model: str, default: float) -> None:
        super().__init__()
        self.model = model
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Bench {self.model}", id="title")
            yield Label("for (e.g. 30s, 10m, 2h)")
            yield Input(value=format_duration(self.default), id="duration")
            yield Label("reason (written to the event log)")
            yield Input(placeholder="e.g. provider incident, bad deploy", id="reason")
            yield Static("", id="problem", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Bench", variant="warning", id="bench")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#duration", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "bench":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def submit(self) -> None:
        text = self.query_one("#duration", Input).value
        try:
            duration = parse_duration(text)
        except ValueError as error:
            self.query_one("#problem", Static).update(str(error))
            return
        if duration <= 0:
            self.query_one("#problem", Static).update("a bench must last longer than 0s")
            return
        reason = self.query_one("#reason", Input).value.strip()
        self.dismiss(BenchRequest(duration, reason or None))


class HelpScreen(ModalScreen[None]):
    """Every key of the dashboard with what it does (`?`). The app hands over its own bindings,
    so the list cannot drift from what the keys do. Escape, `?` or `q` closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > #keys {
        width: 84; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        scrollbar-size-vertical: 1;
        border: round $accent; background: $surface;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, keys: Sequence[tuple[str, str, str]]) -> None:
        """`keys`: (key as shown, short description, what it does) per binding."""
        super().__init__()
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False, title="keys (Esc closes)", expand=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(style="dim")
        for key, description, detail in self.keys:
            table.add_row(key, description, detail)
        with VerticalScroll(id="keys"):  # scrolls on a terminal too short for the list
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
