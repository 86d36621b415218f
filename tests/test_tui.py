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
from llmfail.durations import format_duration
from llmfail.events import Event
from llmfail.store.sqlite import SqliteStore
from llmfail.tui.feed import KEEP_EVENTS, WINDOW_S, Activity, ChainNews, EventTail, Feed, LogFilter
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
    """Let the app run until `condition()` holds; the real seconds it took. Fails at the deadline
    (showing the screen, to see what was there instead)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            screen = "\n".join(strip.text.rstrip() for strip in pilot.app.screen._compositor.render_strips())
            raise AssertionError(f"not on screen after {timeout} s; the screen:\n{screen}")
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
    except Exception:
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
        assert cell(app, "anthropic/claude-sonnet-4-5", "state") == "no data"  # no traffic yet
        assert not any("from-another-process" in line for line in log_lines(app))

        done = subprocess.run(
            [sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(db_path), str(clock.now)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        took = await until(
            pilot,
            lambda: (
                any("from-another-process" in line for line in log_lines(app))
                and cell(app, "anthropic/claude-sonnet-4-5", "state") == "benched"
            ),
        )
        assert took < 1.0
        row = {
            c: cell(app, "anthropic/claude-sonnet-4-5", c)
            for c in ("until", "failures", "benches", "requests", "success", "error")
        }
        assert row == {
            "until": "2m",
            "failures": "1",
            "benches": "1",
            "requests": "1",
            "success": "0.0",
            "error": "rate_limited 429",
        }
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
    from textual.widgets import Input

    from llmfail.tui.screens import BenchScreen

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
    assert (event.model, event.detail, event.benched_until) == (
        "anthropic/claude-sonnet-4-5",
        "provider incident",
        clock.now + 45,
    )
    assert event.data["reason"] == "provider incident" and event.data["manual"] is True and event.data["user"]


async def test_the_bench_modal_takes_a_typed_length_refuses_a_bad_one_and_escape_benches_nothing(
    config: Config, store: SqliteStore, clock: FakeClock
):
    from textual.widgets import Static

    from llmfail.tui.screens import BenchScreen

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
        await until(pilot, lambda: cell(app, "openai/gpt-4o", "until") == "10m")

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
        await until(pilot, lambda: cell(app, "mock/echo", "state") == "no data")  # unbenched, never asked

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
        assert cell(app, "vendor/quiet", "state") == "manual" and cell(app, "vendor/quiet", "until") == "1h"
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
        assert cell(app, "mock/echo", "state") == "no data"
        await pilot.press("r")
        await until(
            pilot,
            lambda: cell(app, "mock/echo", "state") == "benched" and last_line(app).endswith("same-connection"),
            timeout=2.0,
        )  # < ROWS_EVERY_S: r did it


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
        banner = app.query_one("#banner")
        assert not banner.display
        broken["on"] = True
        await until(pilot, lambda: banner.display)
        await pilot.pause(0.5)  # several failed polls: one banner, no toasts
        assert str(banner.render()).startswith(
            "shared state unreachable: the state DB is locked by another process — showing the data of "
        )
        assert notes == [] and app.unreachable == "the state DB is locked by another process"
        broken["on"] = False
        writer.append([Event(type="probe", ts=clock.now, model="openai/gpt-4o", detail="back")])
        await until(pilot, lambda: any(line.endswith("back") for line in log_lines(app)) and not banner.display)


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
    writer.append(
        [
            Event(type="failover", ts=clock.now, chain="prod", model="openai/gpt-4o", next_model="mock/echo"),
            Event(type="retry", ts=clock.now, chain="cheap", model="ollama/llama3.2"),
            Event(type="benched", ts=clock.now, chain="prod", model="mock/echo", kind="transient"),
        ]
    )
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

    writer.append(
        [
            Event(type="failover", ts=clock.now - 3 * 60, chain="prod", model="openai/gpt-4o"),
            Event(type="failover", ts=clock.now - 3 * 60 + 1, chain="cheap", model="ollama/llama3.2"),
            Event(type="failover", ts=clock.now - 2 * 3600, chain="prod", model="openai/gpt-4o"),  # too old
        ]
    )
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


# --------------------------------------------------------------------------- what serves each chain, no data


#: The default window as the screen writes it.
WINDOW = format_duration(WINDOW_S)


def strip(app: Any) -> list[str]:
    return str(app.query_one("#chains").render()).splitlines()


def summary(app: Any) -> str:
    return " ".join(str(app.query_one("#summary").render()).split())


def _request(ts: float, chain: str, model: str | None, rid: str, ok: bool = True, kind: str | None = None) -> Event:
    return Event(
        type="request",
        ts=ts,
        request_id=rid,
        chain=chain,
        model=model,
        kind=kind,
        latency_ms=100.0,
        data={"ok": ok, "answered_by": model, "failovers": 0},
    )


async def test_the_strip_marks_the_entry_answering_each_chain_as_requests_come_in(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    app = app_for(config, store, clock)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert strip(app) == [
            f"prod  no requests in the last {WINDOW} · 3/3 live",
            f"cheap no requests in the last {WINDOW} · 2/2 live",
        ]
        writer.append(
            [
                _request(clock.now - 30, "prod", "openai/gpt-4o", "r1"),
                _request(clock.now - 2, "prod", "anthropic/claude-sonnet-4-5", "r2"),
                _request(clock.now - 1, "cheap", "mock/echo", "r3"),
            ]
        )
        await until(
            pilot,
            lambda: (
                strip(app)
                == [
                    "prod  ▶ anthropic/claude-sonnet-4-5 serving · 2s ago · 3/3 live",
                    "cheap ▶ mock/echo serving · 1s ago · 2/2 live",
                ]
            ),
        )
        writer.append([_request(clock.now, "prod", None, "r4", ok=False, kind="timeout")])
        await until(
            pilot,
            lambda: (
                strip(app)[0]
                == (
                    "prod  ✗ last request failed (timeout) 0s ago · last answer anthropic/claude-sonnet-4-5 2s ago · 3/3 live"
                )
            ),
        )
        clock.advance(16 * 60)  # nothing more: the window moves past the last request
        await until(pilot, lambda: strip(app)[1] == f"cheap no requests in the last {WINDOW} · 2/2 live")


async def test_the_serving_entry_is_found_for_a_quiet_chain_beyond_the_newest_events(
    config: Config, store: SqliteStore, clock: FakeClock
):
    store.append([_request(clock.now - 600, "cheap", "ollama/llama3.2", "old")])
    store.append([Event(type="retry", ts=clock.now, chain="prod", model="openai/gpt-4o") for _ in range(50)])
    app = app_for(config, store, clock, keep=10)  # the request is not among the 10 newest events
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        ago = format_duration(600)
        await until(pilot, lambda: f"cheap ▶ ollama/llama3.2 serving · {ago} ago · 2/2 live" in strip(app))


async def test_panic_mode_shows_when_every_entry_is_benched_and_ends_when_one_answers_normally(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        for model in PROD:
            writer.record_failure(model, now=clock.now, kind="transient", status=503, bench_for=60.0)
        await until(pilot, lambda: strip(app) == ["prod  PANIC  all 3 benched: trying them all"])
        writer.append(
            [
                Event(type="panic", ts=clock.now, request_id="r1", chain="prod"),
                _request(clock.now, "prod", "mock/echo", "r1"),
            ]
        )
        await until(
            pilot, lambda: strip(app) == ["prod  PANIC  all 3 benched: trying them all · ▶ mock/echo serving · 0s ago"]
        )
        clock.advance(61)  # every bench ran out: half-open, live again; the newest request still panicked
        await until(pilot, lambda: strip(app)[0].startswith("prod  PANIC  last request tried benched entries"))
        writer.append([_request(clock.now, "prod", "openai/gpt-4o", "r2")])
        await until(pilot, lambda: strip(app) == ["prod ▶ openai/gpt-4o serving · 0s ago · 3/3 live"])


async def test_a_fresh_db_is_no_data_not_all_healthy_and_all_healthy_needs_answers(
    config: Config, store: SqliteStore, writer: SqliteStore, clock: FakeClock
):
    app = app_for(config, store, clock, chain="cheap")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert "all healthy" not in summary(app)
        assert summary(app).endswith("2 models: 2 no data")
        assert [cell(app, m, "state") for m in ("ollama/llama3.2", "mock/echo")] == ["no data", "no data"]
        writer.append([_request(clock.now, "cheap", "ollama/llama3.2", "r1")])
        await until(pilot, lambda: summary(app).endswith("2 models: 1 no data"))
        assert cell(app, "ollama/llama3.2", "state") == "healthy"
        writer.append([_request(clock.now, "cheap", "mock/echo", "r2")])
        await until(pilot, lambda: summary(app).endswith("2 models: all healthy"))


def test_chain_view_panic_rules():
    from llmfail.tui.health import ChainView

    request = Event(type="request", ts=10.0, request_id="r2", chain="prod", model="a/x", id=20, data={"ok": True})
    own_panic = Event(type="panic", ts=9.0, request_id="r2", chain="prod", id=19)
    old_panic = Event(type="panic", ts=5.0, request_id="r1", chain="prod", id=10)
    in_flight = Event(type="panic", ts=11.0, request_id="r3", chain="prod", id=21)
    benched = (HealthRow("a/x", "benched", bench_until=100.0), HealthRow("a/y", "manual", bench_until=200.0))
    live = (HealthRow("a/x", "healthy"), *benched)
    assert ChainView("prod", benched, "try_all").panic(12.0)  # nothing live: the next request panics
    assert not ChainView("prod", benched, "try_all").panic(100.0)  # a bench ran out: half-open, live
    assert not ChainView("prod", live, "try_all", request, request, old_panic).panic(12.0)  # walked normally since
    assert ChainView("prod", live, "try_all", request, request, own_panic).panic(12.0)  # the newest request panicked
    assert ChainView("prod", live, "try_all", request, request, in_flight).panic(12.0)  # one panicking in flight
    down = ChainView("prod", benched, "fail").text(12.0, 900.0).plain
    assert down == "prod  DOWN  all 2 benched: requests fail"


# --------------------------------------------------------------------------- layout, cursor, keys


async def test_at_80x24_every_model_state_countdown_error_strip_and_newest_events_are_on_screen(
    store: SqliteStore, clock: FakeClock
):
    from textual.widgets import DataTable

    models = [f"mock/model-{i}" for i in range(10)]
    config = parse_config("chains:\n  big: [" + ", ".join(models) + "]\n  small: [mock/echo]\n", "chains.yaml")
    store.record_failure(models[9], now=clock.now, kind="rate_limited", status=429, bench_for=90.0)
    store.append([Event(type="retry", ts=clock.now, chain="big", model=models[0], detail=f"e{i}") for i in range(30)])
    app = app_for(config, store, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.pause(0.1)
        table = app.query_one("#health", DataTable)
        assert [str(c.label) for c in table.columns.values()] == ["model", "state", "ends in", "last error", "ago"]
        assert table.virtual_size.width <= table.scrollable_content_region.width  # no column cut off
        assert table.scrollable_content_region.height >= table.row_count  # every row: no scrolling
        assert cell(app, models[9], "until") == "1m30s" and cell(app, models[9], "error") == "rate_limited 429"
        assert app.query_one("#log").scrollable_content_region.height >= 3
        assert log_lines(app)[-1].endswith("e29")
        assert [line.split()[0] for line in strip(app)] == ["big", "small"]
        await pilot.resize_terminal(160, 45)
        await until(pilot, lambda: len(table.columns) == 11)
        assert cell(app, models[9], "failures") == "1"


async def test_c_steps_through_the_chains_and_back_to_all(config: Config, store: SqliteStore, clock: FakeClock):
    app = app_for(config, store, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("c")
        await until(pilot, lambda: table_models(app) == PROD and summary(app).startswith("llmfail prod ·"))
        await pilot.press("c")
        await until(pilot, lambda: table_models(app) == ["ollama/llama3.2", "mock/echo"])
        await pilot.press("c")
        await until(pilot, lambda: summary(app).startswith("llmfail all chains ·") and len(app.rows) == 4)


async def test_the_selected_first_row_does_not_look_like_the_header(
    config: Config, store: SqliteStore, clock: FakeClock
):
    from textual.widgets import DataTable

    app = app_for(config, store, clock, chain="prod")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.query_one("#health", DataTable)
        assert table.has_focus and table.cursor_row == 0
        width = table.size.width

        def look(y: int) -> set[tuple[Any, bool, bool]]:
            """(background, bold, underline) of every cell of screen line y of the table."""
            strip = table.render_line(y).crop(0, width)
            return {
                (seg.style.bgcolor, bool(seg.style.bold), bool(seg.style.underline))
                for seg in strip
                if seg.style is not None and seg.text.strip()
            }

        header, selected, other = look(0), look(1), look(2)
        assert header and selected and header.isdisjoint(selected)
        assert {bg for bg, _, _ in header}.isdisjoint({bg for bg, _, _ in selected})
        assert {bg for bg, _, _ in selected}.isdisjoint({bg for bg, _, _ in other})


async def test_question_mark_lists_every_key_and_escape_closes_it(config: Config, store: SqliteStore, clock: FakeClock):
    from llmfail.tui.screens import HelpScreen

    app = app_for(config, store, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        lines = [" ".join(line.split()) for line in _screen_text(app)]
        for binding in app.BINDINGS:
            key = app.get_key_display(binding)
            assert any(
                line.startswith(f"│ {key} {binding.description}") or f" {key} {binding.description} " in line
                for line in lines
            ), (key, binding.description, lines)
        assert any("↑ ↓ Select" in line for line in lines)
        await pilot.press("b", "u", "c", "p")  # the dashboard's keys do nothing behind the help
        assert isinstance(app.screen, HelpScreen) and app.chain is None and not app.paused
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("question_mark")  # ? toggles it too
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        assert store.all_states() == []  # keys on the help screen act on nothing behind it


def _screen_text(app: Any) -> list[str]:
    """The screen as text, line by line (what a person would read)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def test_the_tui_command_opens_the_dashboard_on_the_given_db_chain_and_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from typer.testing import CliRunner

    import llmfail.tui
    from llmfail.cli import app as cli_app
    from llmfail.tui.app import Dashboard

    (tmp_path / "chains.yaml").write_text(CONFIG)  # found as ./chains.yaml
    monkeypatch.setattr(llmfail.tui, "missing_terminal", lambda: None)  # CliRunner has no terminal
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


def _tui_without_a_terminal(tmp_path: Path, stdin: Any, stdout: Any, stderr: Any) -> tuple[int, float]:
    """`llmfail tui` in a fresh interpreter with the given streams: its exit code and the seconds it took."""
    (tmp_path / "chains.yaml").write_text(CONFIG)
    start = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", "from llmfail.cli import main; main()", "tui"],
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=tmp_path,
    )
    try:
        code = child.wait(timeout=20)
    finally:
        child.kill()
    return code, time.monotonic() - start


@pytest.mark.parametrize("case", ["stdin from /dev/null, stdout to a file", "stdout into a pipe"])
def test_without_a_terminal_tui_exits_2_at_once_with_a_hint_and_writes_nothing_to_stdout(tmp_path: Path, case: str):
    import os
    import pty

    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        if case.startswith("stdin"):
            with open(os.devnull, "rb") as null:
                code, took = _tui_without_a_terminal(tmp_path, null, out, err)
            stream = "standard input"
        else:  # a real terminal on stdin (so only stdout is wrong), stdout read through a pipe like `| head`
            main, side = pty.openpty()
            read, write = os.pipe()
            try:
                code, took = _tui_without_a_terminal(tmp_path, side, write, err)
                os.close(write)
                with os.fdopen(read, "rb") as pipe:
                    out.write(pipe.read())
            finally:
                os.close(main)
                os.close(side)
            stream = "standard output"
    assert code == 2
    assert took < 5.0  # at once (a fresh interpreter's start-up), not a spin until the timeout
    assert out_path.read_bytes() == b""  # no escape codes in the pipe or file
    lines = err_path.read_text().splitlines()
    assert lines[0] == f"llmfail: error: tui needs a terminal ({stream} is not one)"
    assert "llmfail ls-benched" in lines[1] and "llmfail events --follow" in lines[1]


def test_in_a_real_80x24_terminal_tui_draws_the_dashboard_and_q_quits(tmp_path: Path):
    """The whole path a person takes: a pseudo-terminal of 80x24, the real command, the real keys."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    (tmp_path / "chains.yaml").write_text(CONFIG)
    db = tmp_path / "state.db"
    store = SqliteStore(str(db))
    bench_model(store, parse_config(CONFIG, "chains.yaml"), "mock/echo", 600.0, "drill", time.time())
    store.close()
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from llmfail.cli import main; main()",
            "--db",
            str(db),
            "tui",
            "--chain",
            "prod",
            "--window",
            "5m",
        ],
        stdin=side,
        stdout=side,
        stderr=side,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
    )
    os.close(side)
    seen = b""

    def read_until(wanted: Callable[[bytes], bool], timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while not wanted(seen) and time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    seen += os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    return

    try:
        read_until(lambda out: b"llmfail" in out and b"manual" in out and b"5m" in out, timeout=30)
        assert b"manual" in seen and b"prod" in seen, seen[-2000:]
        os.write(main, b"q")
        assert child.wait(timeout=15) == 0
    finally:
        child.kill()
        child.wait()
        os.close(main)


def test_missing_terminal_names_the_first_stream_that_is_not_one(tmp_path: Path):
    import io
    import os
    import pty

    from llmfail.tui import missing_terminal

    main, side = pty.openpty()
    with os.fdopen(side, "w") as tty:
        assert missing_terminal((("in", tty), ("out", tty))) is None
        assert missing_terminal((("in", tty), ("out", io.StringIO()))) == "out"
        assert missing_terminal((("in", None),)) == "in"
    os.close(main)


# --------------------------------------------------------------------------- plain data (no Textual)


def test_failover_rate_buckets_by_minute_and_forgets_the_hour_before():
    activity = Activity(chain="prod")
    now = 60 * 1000.0 + 30
    activity.add(
        [
            Event(type="failover", ts=now, chain="prod"),
            Event(type="failover", ts=now - 1, chain="prod"),
            Event(type="failover", ts=now - 61, chain="prod"),
            Event(type="failover", ts=now, chain="cheap"),  # another chain
            Event(type="retry", ts=now, chain="prod"),  # not a failover
            Event(type="failover", ts=now - 3601, chain="prod"),  # older than the hour
        ]
    )
    series = activity.series(now)
    assert len(series) == 60 and series[-2:] == [1, 2] and sum(series) == 3
    assert not activity.partial(now)


def test_chain_news_keeps_each_chains_newest_request_answer_and_panic_by_id():
    news = ChainNews()
    news.add(
        [
            Event(type="panic", ts=10.0, chain="prod", id=3),
            Event(type="panic", ts=5.0, chain="prod", id=1),  # older id: seen late, changes nothing
            Event(type="panic", ts=7.0, chain="cheap", id=2),
            Event(type="request", ts=11.0, chain="prod", model="a/x", id=4, data={"ok": True}),
            Event(type="request", ts=12.0, chain="prod", id=5, kind="timeout", data={"ok": False}),
            Event(type="request", ts=13.0, model="a/x", id=6, data={"ok": True}),  # no chain
        ]
    )
    assert {c: e.ts for c, e in news.panic.items()} == {"prod": 10.0, "cheap": 7.0}
    assert news.request["prod"].id == 5 and news.answer["prod"].id == 4 and "cheap" not in news.request
    assert news.panicked_since(["prod"], 10.0) and not news.panicked_since(["cheap"], 8.0)


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
        "a/panic",
        "a/manual",
        "a/benched",
        "a/half",
        "a/slow",
        "a/failing",
        "a/lossy",
        "a/healthy",
    ]
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
        rows.append(
            Event(
                type="request",
                ts=ts,
                request_id=f"r{i:02d}",
                chain="prod",
                model="openai/gpt-4o",
                latency_ms=420.0 + i,
                data={"ok": True, "answered_by": "openai/gpt-4o", "failovers": 0},
            )
        )
    rows += [
        Event(
            type="attempt_failed",
            ts=T0 - 600,
            request_id="r20",
            chain="prod",
            model="openai/gpt-4o",
            kind="transient",
            status=503,
            attempt=1,
            detail="upstream overloaded",
        ),
        Event(type="retry", ts=T0 - 599, request_id="r20", chain="prod", model="openai/gpt-4o", attempt=2),
        Event(
            type="failover",
            ts=T0 - 598,
            request_id="r20",
            chain="prod",
            model="openai/gpt-4o",
            next_model="anthropic/claude-sonnet-4-5",
            kind="transient",
        ),
        Event(
            type="request",
            ts=T0 - 597,
            request_id="r20",
            chain="prod",
            model="anthropic/claude-sonnet-4-5",
            latency_ms=2100.0,
            data={"ok": True, "answered_by": "anthropic/claude-sonnet-4-5", "failovers": 1},
        ),
    ]
    store.append(sorted(rows, key=lambda e: e.ts))


def _bench_auto(store: SqliteStore, model: str, ts: float, until: float, kind: str, status: int) -> None:
    state, _ = store.record_failure(model, now=ts, kind=kind, status=status, bench_for=until - ts, reason="boom")
    store.append(
        [
            Event(
                type="benched",
                ts=ts,
                chain="prod",
                model=model,
                kind=kind,
                status=status,
                benched_until=state.bench_until,
                detail="boom",
                data={"bench_count": state.bench_count},
            )
        ]
    )


def _bench_by_hand(store: SqliteStore, model: str, ts: float, until: float, reason: str) -> None:
    """What `llmfail bench` writes, with a fixed user and host so the picture is the same everywhere."""
    store.bench(model, now=ts, until=until, manual=True, reason=reason, kind="manual")
    store.append(
        [
            Event(
                type="benched",
                ts=ts,
                model=model,
                kind="manual",
                benched_until=until,
                detail=reason,
                data={"user": "alice", "host": "ops1", "reason": reason, "manual": True},
            )
        ]
    )


def _one_benched(store: SqliteStore) -> None:
    """The primary failed and is benched; the next entry answers the newest requests."""
    _fill_traffic(store)
    _bench_auto(store, "openai/gpt-4o", T0 - 20, T0 + 25, "transient", 503)
    store.append(
        [
            Event(
                type="failover",
                ts=T0 - 20,
                request_id="r21",
                chain="prod",
                model="openai/gpt-4o",
                next_model="anthropic/claude-sonnet-4-5",
                kind="transient",
                status=503,
            ),
            Event(
                type="request",
                ts=T0 - 18,
                request_id="r21",
                chain="prod",
                model="anthropic/claude-sonnet-4-5",
                latency_ms=1900.0,
                data={"ok": True, "answered_by": "anthropic/claude-sonnet-4-5", "failovers": 1},
            ),
        ]
    )


def _panic(store: SqliteStore) -> None:
    """Every entry of `prod` benched (one by hand); the newest request walked them all in panic mode."""
    _one_benched(store)
    _bench_auto(store, "anthropic/claude-sonnet-4-5", T0 - 15, T0 + 75, "rate_limited", 429)
    _bench_by_hand(store, "mock/echo", T0 - 10, T0 + 3600, "bad deploy")
    store.append(
        [
            Event(
                type="panic",
                ts=T0 - 5,
                request_id="r30",
                chain="prod",
                detail="every entry is benched: trying them all (on_all_benched: try_all)",
            ),
            Event(
                type="request",
                ts=T0 - 4,
                request_id="r30",
                chain="prod",
                model="mock/echo",
                latency_ms=30.0,
                data={"ok": True, "answered_by": "mock/echo", "failovers": 0},
            ),
        ]
    )


#: The situations the main screen is pinned in (the screen-text script in the report uses them too).
SCENARIOS: dict[str, Callable[[SqliteStore], None]] = {
    "healthy": _fill_traffic,
    "one_benched": _one_benched,
    "panic": _panic,
}


def _snapshot_app(config: Config, db_path: Path, fill: Callable[[SqliteStore], None]) -> Any:
    store = SqliteStore(str(db_path))
    fill(store)
    return app_for(config, store, FakeClock(T0), chain="prod")


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_main_screen(snap_compare: Any, config: Config, db_path: Path, scenario: str, size: tuple[int, int]):
    """The main screen with the clock frozen at T0 and the `prod` chain selected: an ssh session
    from a phone (80x24, the compact layout) and a big terminal (160x45, everything)."""
    app = _snapshot_app(config, db_path, SCENARIOS[scenario])
    assert snap_compare(app, terminal_size=size, run_before=loaded)


@pytest.mark.usefixtures("utc")
def test_every_chain_at_80x24_with_the_help_screen_open(snap_compare: Any, config: Config, db_path: Path):
    """On a fresh DB (no log to scroll behind the dialog: the screen under a modal keeps its last layout)."""
    store = SqliteStore(str(db_path))

    async def help_open(pilot: Any) -> None:
        await loaded(pilot)
        await until(pilot, lambda: pilot.app.query_one("#chains").size.height == 2)
        await pilot.press("question_mark")

    assert snap_compare(app_for(config, store, FakeClock(T0)), terminal_size=(80, 24), run_before=help_open)


# --------------------------------------------------------------------------- s: the window as a scenario


async def test_s_saves_the_window_on_screen_as_a_scenario_and_shows_its_path(
    config: Config, store: SqliteStore, clock: FakeClock, tmp_path: Path
):
    from llmfail.simulate import load_scenario

    rows: list[Event] = []
    for k in range(120):
        t = clock.now - 240 + 2 * k
        failing = 40 <= k < 80
        if failing:
            rows.append(
                Event(
                    ev.ATTEMPT_FAILED,
                    t + 0.1,
                    chain="prod",
                    model=PROD[0],
                    kind="transient",
                    status=503,
                    latency_ms=100,
                )
            )
        model = PROD[1] if failing else PROD[0]
        rows.append(
            Event(
                ev.REQUEST, t + 0.3, chain="prod", model=model, latency_ms=300, data={"ok": True, "answered_by": model}
            )
        )
    store.append(rows)
    app = app_for(config, store, clock, chain="prod", scenario_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("s")
        await until(pilot, lambda: any("scenario saved to" in str(n.message) for n in app._notifications))
        [note] = [n for n in app._notifications if "scenario saved to" in str(n.message)]
    [saved] = list(tmp_path.glob("llmfail-scenario-prod-*.yaml"))
    assert str(saved) in str(note.message)
    scenario = load_scenario(saved)
    assert scenario.chain == "prod"
    assert any(f.fault.what == "503" and f.fault.rate >= 0.9 for p in scenario.phases for f in p.faults)


async def test_s_on_a_window_without_traffic_says_so_and_writes_nothing(
    config: Config, store: SqliteStore, clock: FakeClock, tmp_path: Path
):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    app = app_for(config, store, clock, scenario_dir=str(folder))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("s")
        await until(pilot, lambda: any("no requests between" in str(n.message) for n in app._notifications))
    assert not list(folder.iterdir())


def test_every_key_the_footer_shows_is_in_the_dashboard_docs_key_table():
    from textual.binding import Binding

    from llmfail.tui.app import Dashboard

    table = (Path(__file__).resolve().parent.parent / "docs" / "dashboard.md").read_text(encoding="utf-8")
    shown = {
        b.key_display or {"slash": "/"}.get(b.key, b.key)
        for b in Dashboard.BINDINGS
        if isinstance(b, Binding) and b.show
    }
    missing = sorted(key for key in shown if f"| `{key}` |" not in table)
    assert not missing, f"docs/dashboard.md's key table lacks {missing}"
