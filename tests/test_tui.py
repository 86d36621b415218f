"""The incident dashboard: live on a real SQLite DB written by other processes, acting like the CLI.

Pilot tests drive the real app (`create_app`, the factory the `tui` command uses)
on a real state DB; waits poll the screen up to a deadline, never sleep on luck.
Snapshot tests pin the main screen for three situations with a fixed clock, a
fixed DB and a fixed terminal size.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfail import events as ev
from llmfail.actions import bench_model
from llmfail.config import Config, parse_config
from llmfail.events import Event
from llmfail.store.sqlite import SqliteStore
from llmfail.tui.feed import KEEP_EVENTS, Activity, EventTail, Feed, LogFilter
from llmfail.tui.health import HealthRow, display_state, sort_rows

from .conftest import FakeClock

CONFIG = """
defaults: {cooldown: 45s}
chains:
  prod: [openai/gpt-4o, anthropic/claude-sonnet-4-5, mock/echo]
  cheap: [ollama/llama3.2, mock/echo]
"""

PROD = ["openai/gpt-4o", "anthropic/claude-sonnet-4-5", "mock/echo"]
SIZE = (130, 36)


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "chains.yaml")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen are local: pin the zone so the log lines read the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def writer(db_path: Path, store: SqliteStore) -> Iterator[SqliteStore]:
    """A second connection, as another process would have: its commits move the app's data_version."""
    other = SqliteStore(str(db_path))
    yield other
    other.close()


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Let the app run until `condition()` holds; the real seconds it took. Fails at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not on screen after {timeout} s")
        await pilot.pause(0.02)
    return time.monotonic() - start


def log_lines(app: Any) -> list[str]:
    from textual.widgets import RichLog

    return [line.text.rstrip() for line in app.query_one("#log", RichLog).lines]


def last_line(app: Any) -> str:
    lines = log_lines(app)
    return lines[-1] if lines else ""


def cell(app: Any, model: str, column: str) -> str:
    from textual.widgets import DataTable

    table = app.query_one("#health", DataTable)
    try:
        return table.get_cell(model, column).plain
    except Exception:  # noqa: BLE001 - the row is not there (yet)
        return ""


def table_models(app: Any) -> list[str]:
    return [row.model for row in app.rows]


def app_for(config: Config, store: SqliteStore, clock: FakeClock, **kwargs: Any) -> Any:
    from llmfail.tui import create_app

    return create_app(config, store, clock=clock, **kwargs)


async def loaded(pilot: Any) -> None:
    """Wait for the first data and the sparkline's seed (its second poll) to be on screen."""
    await until(pilot, lambda: pilot.app.updates >= 1 and pilot.app.rate_known)


# --------------------------------------------------------------------------- live updates


WRITE_FROM_ANOTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from llmfail.events import Event
    from llmfail.store.sqlite import SqliteStore

    db, now = sys.argv[1], float(sys.argv[2])
    store = SqliteStore(db)
    state, _ = store.record_failure("anthropic/claude-sonnet-4-5", now=now, kind="rate_limited", status=429,
                                 bench_for=120.0, reason="slow down")
    store.append([
        Event(type="attempt_failed", ts=now, chain="prod", model="anthropic/claude-sonnet-4-5",
              kind="rate_limited", status=429, attempt=1, detail="slow down"),
        Event(type="benched", ts=now, chain="prod", model="anthropic/claude-sonnet-4-5", kind="rate_limited",
              status=429, benched_until=state.bench_until, detail="from-another-process"),
    ])
    store.close()
    """
)


async def test_events_written_by_another_process_are_on_screen_within_a_second(
    config: Config, store: SqliteStore, db_path: Path, clock: FakeClock
):
    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert cell(app, "anthropic/claude-sonnet-4-5", "state") == "healthy"
        assert not any("from-another-process" in line for line in log_lines(app))

        done = subprocess.run([sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(db_path), str(clock.now)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        took = await until(pilot, lambda: any("from-another-process" in line for line in log_lines(app))
                           and cell(app, "anthropic/claude-sonnet-4-5", "state") == "benched")
        assert took < 1.0
        row = {c: cell(app, "anthropic/claude-sonnet-4-5", c)
               for c in ("until", "failures", "benches", "requests", "success", "error")}
        assert row == {"until": "2m0s", "failures": "1", "benches": "1", "requests": "1", "success": "0.0",
                       "error": "rate_limited 429"}
        assert log_lines(app)[-1].split()[1] == "benched"  # newest at the bottom


async def test_the_log_starts_from_the_newest_rows_and_then_follows_by_id(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    writer.append([Event(type="retry", ts=clock.now, model="openai/gpt-4o", detail=f"old-{i}") for i in range(30)])
    calls: list[dict[str, Any]] = []
    real_events = store.events

    def spy(**query: Any) -> list[Event]:
        calls.append(query)
        return real_events(**query)

    store.events = spy  # type: ignore[method-assign]
    app = app_for(config, store, clock, keep=5)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert [line.rsplit("- ", 1)[-1] for line in log_lines(app)] == [f"old-{i}" for i in range(25, 30)]
        log_reads = [c for c in calls if c.get("types") is None]
        assert log_reads[0] == {"model": None, "chain": None, "since": None, "types": None, "limit": 5, "newest": True}
        assert all(c["after_id"] >= 30 for c in log_reads[1:])  # then only what is new

        calls.clear()
        await pilot.pause(0.8)  # idle DB: three polls, no query of the log at all
        assert [c for c in calls if c.get("types") is None] == []

        writer.append([Event(type="retry", ts=clock.now, model="openai/gpt-4o", detail="new-1")])
        await until(pilot, lambda: last_line(app).endswith("new-1"))
        follow = [c for c in calls if c.get("types") is None]
        assert follow and all(c["after_id"] >= 30 for c in follow)
        assert len(log_lines(app)) == 5  # at most `keep` lines


# --------------------------------------------------------------------------- actions


async def test_b_and_the_modal_bench_the_selected_model_like_the_cli(
    config: Config, store: SqliteStore, clock: FakeClock
):
    from llmfail.tui.screens import BenchScreen
    from textual.widgets import Input

    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("down")
        assert app.selected_model() == "anthropic/claude-sonnet-4-5"
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BenchScreen))
        assert app.screen.query_one("#duration", Input).value == "45s"  # the policy cooldown
        await pilot.press("tab", *"provider incident", "enter")
        await until(pilot, lambda: cell(app, "anthropic/claude-sonnet-4-5", "state") == "manual")

    state = store.states(["anthropic/claude-sonnet-4-5"])["anthropic/claude-sonnet-4-5"]
    assert (state.manual, state.reason, state.bench_until) == (True, "provider incident", clock.now + 45)
    [event] = store.events(types=[ev.BENCHED])
    assert (event.model, event.detail, event.benched_until) == ("anthropic/claude-sonnet-4-5", "provider incident",
                                                                 clock.now + 45)
    assert event.data["reason"] == "provider incident" and event.data["manual"] is True and event.data["user"]


async def test_the_bench_modal_takes_a_typed_length_refuses_a_bad_one_and_escape_benches_nothing(
    config: Config, store: SqliteStore, clock: FakeClock
):
    from llmfail.tui.screens import BenchScreen
    from textual.widgets import Static

    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BenchScreen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, BenchScreen))
        assert store.all_states() == [] and store.events() == []

        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BenchScreen))
        await pilot.press(*"soon", "enter")  # the prefilled text is selected: typing replaces it
        assert isinstance(app.screen, BenchScreen)
        assert "expected a duration" in str(app.screen.query_one("#problem", Static).render())
        assert store.all_states() == []
        await pilot.press("ctrl+a", "ctrl+k", *"10m", "enter")
        await until(pilot, lambda: cell(app, "openai/gpt-4o", "until") == "10m0s")

    state = store.states(["openai/gpt-4o"])["openai/gpt-4o"]
    assert (state.manual, state.reason, state.bench_until) == (True, None, clock.now + 600)


async def test_u_unbenches_the_selected_model_like_the_cli(config: Config, store: SqliteStore, clock: FakeClock):
    bench_model(store, config, "mock/echo", 300.0, "flaky", clock.now)
    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert cell(app, "mock/echo", "state") == "manual"
        await pilot.press("down", "down")
        assert app.selected_model() == "mock/echo"
        await pilot.press("u")
        await until(pilot, lambda: cell(app, "mock/echo", "state") == "healthy")

    assert store.benches(clock.now) == []
    [event] = store.events(types=[ev.UNBENCHED])
    assert event.model == "mock/echo" and event.data["manual"] is True and event.data["user"]


async def test_the_countdown_ticks_down_with_the_clock_and_ends_half_open(
    config: Config, store: SqliteStore, clock: FakeClock
):
    store.record_failure("openai/gpt-4o", now=clock.now, kind="transient", status=503, bench_for=90.0)
    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert cell(app, "openai/gpt-4o", "until") == "1m30s"
        clock.advance(31)
        await until(pilot, lambda: cell(app, "openai/gpt-4o", "until") == "59s", timeout=3)
        assert cell(app, "openai/gpt-4o", "ago") == "31s"
        clock.advance(60)
        await until(pilot, lambda: cell(app, "openai/gpt-4o", "state") == "half-open", timeout=3)
        assert cell(app, "openai/gpt-4o", "until") == "–"


# --------------------------------------------------------------------------- table, selector, log controls


async def test_every_chain_is_sorted_by_trouble_and_a_chain_in_its_own_order(
    config: Config, store: SqliteStore, clock: FakeClock
):
    from textual.widgets import Select

    store.record_failure("mock/echo", now=clock.now, kind="transient", status=500, bench_for=60.0)
    store.record_failure("ollama/llama3.2", now=clock.now, kind="timeout", status=None, bench_for=None)
    bench_model(store, config, "vendor/next-model", 600.0, "ahead of a deploy", clock.now)
    app = app_for(config, store, clock)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        # manual first, then benched (llmfail.stats' order), failures among the healthy, then config order
        assert table_models(app) == ["vendor/next-model", "mock/echo", "ollama/llama3.2", *PROD[:2]]
        app.query_one("#chain", Select).value = "cheap"
        await until(pilot, lambda: table_models(app) == ["ollama/llama3.2", "mock/echo"])
        app.query_one("#chain", Select).value = "prod"
        await until(pilot, lambda: table_models(app) == PROD)


async def test_the_window_figures_are_model_stats_over_the_last_15_minutes(
    config: Config, store: SqliteStore, clock: FakeClock
):
    from llmfail.stats import model_stats

    clock.now = T0
    _fill_traffic(store)
    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        shown = {c: cell(app, "openai/gpt-4o", c) for c in ("requests", "success", "failovers", "p50")}
        # 6 answers in the window (the older 6 fall outside 15 min) + 1 failed attempt; p50 of 426..431 ms
        assert shown == {"requests": "7", "success": "85.7", "failovers": "1", "p50": "428ms"}
        figures = model_stats(store, since=T0 - 900, now=T0, chain=config.chain("prod"), config=config)
        assert [app.rows[i].model for i in range(3)] == list(figures) == PROD
        assert cell(app, "anthropic/claude-sonnet-4-5", "p50") == "2s"


async def test_a_bench_with_no_traffic_in_the_window_is_still_listed(
    config: Config, store: SqliteStore, clock: FakeClock
):
    store.bench("vendor/quiet", now=clock.now - 3600, until=clock.now + 3600, manual=True, reason="old", kind="manual")
    store.record_failure("openai/gpt-4o#1", now=clock.now - 1800, kind="auth", status=401, bench_for=3600.0)
    app = app_for(config, store, clock)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert cell(app, "vendor/quiet", "state") == "manual" and cell(app, "vendor/quiet", "until") == "1h0m"
        assert cell(app, "openai/gpt-4o#1", "state") == "benched"
        assert cell(app, "openai/gpt-4o#1", "error") == "auth 401"


async def test_a_benched_model_its_chain_tries_in_panic_mode_reads_panic_tried(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    store.record_failure("openai/gpt-4o", now=clock.now - 30, kind="transient", status=503, bench_for=120.0)
    store.record_failure("ollama/llama3.2", now=clock.now - 30, kind="timeout", status=None, bench_for=120.0)
    app = app_for(config, store, clock)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert cell(app, "openai/gpt-4o", "state") == "benched"
        writer.append([Event(type="panic", ts=clock.now, chain="prod", detail="every entry is benched")])
        await until(pilot, lambda: cell(app, "openai/gpt-4o", "state") == "panic-tried")
        assert cell(app, "ollama/llama3.2", "state") == "benched"  # its chain (cheap) did not panic
        assert table_models(app)[0] == "openai/gpt-4o"


async def test_r_rereads_what_this_very_connection_wrote(config: Config, store: SqliteStore, clock: FakeClock):
    """Writes through the app's own connection do not move `data_version`; `r` reads them anyway."""
    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        store.record_failure("mock/echo", now=clock.now, kind="transient", status=500, bench_for=60.0)
        store.append([Event(type="benched", ts=clock.now, model="mock/echo", detail="same-connection")])
        await pilot.pause(0.6)
        assert cell(app, "mock/echo", "state") == "healthy"
        await pilot.press("r")
        await until(pilot, lambda: cell(app, "mock/echo", "state") == "benched"
                    and last_line(app).endswith("same-connection"), timeout=2.0)  # < ROWS_EVERY_S: r did it


async def test_an_unreadable_db_is_reported_once_and_the_screen_recovers_when_it_reads_again(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    from llmfail.errors import StateError
    from llmfail.tui import app as tui_app

    monkeypatch.setattr(tui_app, "ERROR_RETRY_S", 0.05)
    broken = {"on": False}
    real_version = store.change_token

    def data_version() -> int:
        if broken["on"]:
            raise StateError("the state DB is locked by another process")
        return real_version()

    store.change_token = data_version  # type: ignore[method-assign]
    app = app_for(config, store, clock)
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.notify = lambda message, **kwargs: notes.append(message)  # type: ignore[method-assign]
        broken["on"] = True
        await pilot.pause(0.5)  # several failed polls
        assert notes == ["the state DB is locked by another process"]
        broken["on"] = False
        writer.append([Event(type="probe", ts=clock.now, model="openai/gpt-4o", detail="back")])
        await until(pilot, lambda: any(line.endswith("back") for line in log_lines(app)))


async def test_p_pauses_the_log_and_resuming_shows_what_arrived(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    app = app_for(config, store, clock)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("p")
        seen = app.updates
        writer.append([Event(type="probe", ts=clock.now, model="openai/gpt-4o", detail="while-paused")])
        await until(pilot, lambda: app.updates > seen)
        assert not any("while-paused" in line for line in log_lines(app))
        assert "PAUSED, 1 new" in str(app.query_one("#log-title").render())
        await pilot.press("p")
        assert log_lines(app)[-1].endswith("while-paused")


async def test_slash_filters_the_log_by_model_type_or_chain(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    writer.append([
        Event(type="failover", ts=clock.now, chain="prod", model="openai/gpt-4o", next_model="mock/echo"),
        Event(type="retry", ts=clock.now, chain="cheap", model="ollama/llama3.2"),
        Event(type="benched", ts=clock.now, chain="prod", model="mock/echo", kind="transient"),
    ])
    app = app_for(config, store, clock)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert len(log_lines(app)) == 3
        await pilot.press("slash", *"chain:prod type:bench", "enter")
        assert [line.split()[1] for line in log_lines(app)] == ["benched"]
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"llama", "escape")  # escape keeps the filter
        assert [line.split()[1] for line in log_lines(app)] == ["benched"]
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"llama", "enter")
        assert [line.split()[1] for line in log_lines(app)] == ["retry"]
        await pilot.press("slash", "ctrl+a", "ctrl+k", "enter")
        assert len(log_lines(app)) == 3
        writer.append([Event(type="probe", ts=clock.now, model="openai/gpt-4o")])
        await until(pilot, lambda: len(log_lines(app)) == 4)


async def test_the_sparkline_counts_failovers_per_minute_of_the_last_hour(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    from textual.widgets import Select, Sparkline

    writer.append([
        Event(type="failover", ts=clock.now - 3 * 60, chain="prod", model="openai/gpt-4o"),
        Event(type="failover", ts=clock.now - 3 * 60 + 1, chain="cheap", model="ollama/llama3.2"),
        Event(type="failover", ts=clock.now - 2 * 3600, chain="prod", model="openai/gpt-4o"),  # too old
    ])
    app = app_for(config, store, clock)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        data = list(app.query_one("#sparkline", Sparkline).data or [])
        assert len(data) == 60 and sum(data) == 2 and data[-4:] == [2, 0, 0, 0]  # three minutes ago
        writer.append([Event(type="failover", ts=clock.now, chain="prod", model="openai/gpt-4o")])
        await until(pilot, lambda: (app.query_one("#sparkline", Sparkline).data or [0])[-1] == 1)
        await pilot.press("r")
        app.query_one("#chain", Select).value = "cheap"
        await until(pilot, lambda: sum(app.query_one("#sparkline", Sparkline).data or []) == 1)


def test_the_tui_command_opens_the_dashboard_on_the_given_db_chain_and_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from typer.testing import CliRunner

    from llmfail.cli import app as cli_app
    from llmfail.tui.app import Dashboard

    (tmp_path / "chains.yaml").write_text(CONFIG)  # found as ./chains.yaml
    opened: dict[str, Any] = {}

    def run(self: Dashboard, *args: Any, **kwargs: Any) -> None:
        opened.update(chain=self.chain, window=self.window, db=getattr(self.store, "path", None))

    monkeypatch.setattr(Dashboard, "run", run)
    other = str(tmp_path / "other.db")
    result = CliRunner().invoke(cli_app, ["--db", other, "tui", "--chain", "cheap", "--window", "5m"])
    assert result.exit_code == 0, result.output
    assert opened == {"chain": "cheap", "window": 300.0, "db": other}
    result = CliRunner().invoke(cli_app, ["tui", "--window", "soon"])
    assert result.exit_code == 2 and "--window" in result.output


# --------------------------------------------------------------------------- plain data (no Textual)


def test_failover_rate_buckets_by_minute_and_forgets_the_hour_before():
    activity = Activity(chain="prod")
    now = 60 * 1000.0 + 30
    activity.add([
        Event(type="failover", ts=now, chain="prod"),
        Event(type="failover", ts=now - 1, chain="prod"),
        Event(type="failover", ts=now - 61, chain="prod"),
        Event(type="failover", ts=now, chain="cheap"),  # another chain
        Event(type="retry", ts=now, chain="prod"),  # not a failover
        Event(type="failover", ts=now - 3601, chain="prod"),  # older than the hour
    ])
    series = activity.series(now)
    assert len(series) == 60 and series[-2:] == [1, 2] and sum(series) == 3
    assert not activity.partial(now)


def test_activity_remembers_each_chains_latest_panic():
    activity = Activity()
    activity.add([Event(type="panic", ts=10.0, chain="prod"), Event(type="panic", ts=5.0, chain="prod"),
                  Event(type="panic", ts=7.0, chain="cheap")])
    assert activity.panics == {"prod": 10.0, "cheap": 7.0}
    assert activity.panicked_since(["prod"], 10.0) and not activity.panicked_since(["cheap"], 8.0)


def test_a_burst_larger_than_the_log_keeps_only_the_newest_rows(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    feed = Feed(config, store, clock=clock, keep=10)
    first = feed.step(chain=None)
    assert first is not None and first.first and first.events == [] and first.rate is None and feed.pending
    seeded = feed.step(chain=None)  # the sparkline's seed comes second, so the first paint is quick
    assert seeded is not None and seeded.rate == [0] * 60 and not feed.pending
    writer.append([Event(type="failover", ts=clock.now, chain="prod", detail=str(i)) for i in range(2500)])
    update = feed.step(chain=None)
    assert update is not None
    assert [e.detail for e in update.events] == [str(i) for i in range(2490, 2500)] and update.skipped == 2490
    assert update.rate[-1] == 2500  # every failover reached the sparkline
    assert feed.step(chain=None) is None  # nothing new: no update


def test_under_a_stream_of_writes_the_log_follows_every_poll_and_the_rows_twice_a_second(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    ticks = FakeClock(0.0)
    feed = Feed(config, store, clock=clock, monotonic=ticks)
    assert feed.step(chain=None) is not None and feed.step(chain=None) is not None  # first paint, seed
    writer.record_failure("openai/gpt-4o", now=clock.now, kind="transient", status=503, bench_for=60.0)
    writer.append([Event(type="benched", ts=clock.now, model="openai/gpt-4o", detail="one")])
    ticks.advance(0.25)
    update = feed.step(chain=None)
    assert update is not None and [e.detail for e in update.events] == ["one"] and update.rows is None
    ticks.advance(0.25)  # nothing new written, but the rows owe the last write
    update = feed.step(chain=None)
    assert update is not None and update.events == [] and update.rows is not None
    assert [r.state for r in update.rows if r.model == "openai/gpt-4o"] == ["benched"]
    ticks.advance(0.25)
    assert feed.step(chain=None) is None  # idle: no query, no update
    ticks.advance(5.0)
    update = feed.step(chain=None)  # the window slides: rows again, no log read
    assert update is not None and update.rows is not None and update.events == []


def test_the_log_filter_ands_words_and_matches_fields_by_substring():
    event = Event(type="benched", ts=0, chain="prod", model="openai/gpt-4o")
    assert LogFilter("").matches(event)
    assert LogFilter("gpt-4o").matches(event) and LogFilter("PROD bench").matches(event)
    assert LogFilter("model:openai type:benched chain:prod").matches(event)
    assert not LogFilter("model:prod").matches(event)
    assert not LogFilter("gpt-4o cheap").matches(event)


def test_a_bench_that_ran_out_between_two_reads_shows_half_open():
    assert display_state("benched", 100.0, 99.0) == "benched"
    assert display_state("manual", 100.0, 100.0) == "half-open"
    assert display_state("healthy", None, 100.0) == "healthy"


def test_rows_sort_worst_first_or_in_chain_order():
    rows = [
        HealthRow("a/healthy", "healthy"),
        HealthRow("a/failing", "healthy", failures=3),
        HealthRow("a/benched", "benched"),
        HealthRow("a/half", "half-open"),
        HealthRow("a/manual", "manual"),
        HealthRow("a/panic", "panic-tried"),
        HealthRow("a/lossy", "healthy", requests=10, ok=5),
        HealthRow("a/slow", "slow"),
    ]
    assert [r.model for r in sort_rows(rows, None)] == [
        "a/panic", "a/manual", "a/benched", "a/half", "a/slow", "a/failing", "a/lossy", "a/healthy"]
    order = ["a/healthy", "a/manual", "a/panic"]
    assert [r.model for r in sort_rows(rows[:1] + rows[4:6], order)] == order


def test_the_tail_reads_the_newest_rows_once(store: SqliteStore, writer: SqliteStore):
    writer.append([Event(type="retry", ts=float(i)) for i in range(7)])
    tail = EventTail(store, keep=3)
    assert [e.ts for e in tail.start()] == [4.0, 5.0, 6.0]
    assert list(tail.batches()) == []
    writer.append([Event(type="retry", ts=7.0)])
    assert [[e.ts for e in b] for b in tail.batches()] == [[7.0]]
    assert KEEP_EVENTS >= 100


# --------------------------------------------------------------------------- snapshots

T0 = 1_760_000_000.0  # the FakeClock's start: 2025-10-09 08:53:20 UTC


def _fill_traffic(store: SqliteStore) -> None:
    """Half an hour of traffic on `prod`: answers, a retry, failovers minutes apart."""
    rows: list[Event] = []
    for i in range(12):
        ts = T0 - 1800 + i * 150
        rows.append(Event(type="request", ts=ts, request_id=f"r{i:02d}", chain="prod", model="openai/gpt-4o",
                          latency_ms=420.0 + i, data={"ok": True, "answered_by": "openai/gpt-4o", "failovers": 0}))
    rows += [
        Event(type="attempt_failed", ts=T0 - 600, request_id="r20", chain="prod", model="openai/gpt-4o",
              kind="transient", status=503, attempt=1, detail="upstream overloaded"),
        Event(type="retry", ts=T0 - 599, request_id="r20", chain="prod", model="openai/gpt-4o", attempt=2),
        Event(type="failover", ts=T0 - 598, request_id="r20", chain="prod", model="openai/gpt-4o",
              next_model="anthropic/claude-sonnet-4-5", kind="transient"),
        Event(type="request", ts=T0 - 597, request_id="r20", chain="prod", model="anthropic/claude-sonnet-4-5",
              latency_ms=2100.0, data={"ok": True, "answered_by": "anthropic/claude-sonnet-4-5", "failovers": 1}),
    ]
    store.append(sorted(rows, key=lambda e: e.ts))


def _bench_auto(store: SqliteStore, model: str, ts: float, until: float, kind: str, status: int) -> None:
    state, _ = store.record_failure(model, now=ts, kind=kind, status=status, bench_for=until - ts, reason="boom")
    store.append([Event(type="benched", ts=ts, chain="prod", model=model, kind=kind, status=status,
                        benched_until=state.bench_until, detail="boom", data={"bench_count": state.bench_count})])


def _bench_by_hand(store: SqliteStore, model: str, ts: float, until: float, reason: str) -> None:
    """What `llmfail bench` writes, with a fixed user and host so the picture is the same everywhere."""
    store.bench(model, now=ts, until=until, manual=True, reason=reason, kind="manual")
    store.append([Event(type="benched", ts=ts, model=model, kind="manual", benched_until=until, detail=reason,
                        data={"user": "alice", "host": "ops1", "reason": reason, "manual": True})])


def _snapshot_app(config: Config, db_path: Path, fill: Callable[[SqliteStore], None]) -> Any:
    store = SqliteStore(str(db_path))
    fill(store)
    return app_for(config, store, FakeClock(T0), chain="prod")


@pytest.mark.usefixtures("utc")
class TestMainScreen:
    """The main screen at 130x36, the clock frozen at T0, the `prod` chain selected."""

    def test_all_healthy(self, snap_compare: Any, config: Config, db_path: Path):
        app = _snapshot_app(config, db_path, _fill_traffic)
        assert snap_compare(app, terminal_size=SIZE, run_before=loaded)

    def test_one_model_benched(self, snap_compare: Any, config: Config, db_path: Path):
        def fill(store: SqliteStore) -> None:
            _fill_traffic(store)
            _bench_auto(store, "openai/gpt-4o", T0 - 20, T0 + 25, "transient", 503)

        app = _snapshot_app(config, db_path, fill)
        assert snap_compare(app, terminal_size=SIZE, run_before=loaded)

    def test_all_benched(self, snap_compare: Any, config: Config, db_path: Path):
        def fill(store: SqliteStore) -> None:
            _fill_traffic(store)
            _bench_auto(store, "openai/gpt-4o", T0 - 20, T0 + 25, "transient", 503)
            _bench_auto(store, "anthropic/claude-sonnet-4-5", T0 - 15, T0 + 75, "rate_limited", 429)
            _bench_by_hand(store, "mock/echo", T0 - 10, T0 + 3600, "bad deploy")
            store.append([Event(type="panic", ts=T0 - 5, request_id="r30", chain="prod",
                                detail="every entry is benched: trying them all (on_all_benched: try_all)")])

        app = _snapshot_app(config, db_path, fill)
        assert snap_compare(app, terminal_size=SIZE, run_before=loaded)
