"""Per-model figures (`llmfail.stats`, `llmfail stats`): a hand-counted event log, the engine's
own rows, the chain filter, the window's edges, states, and indexed queries only."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner, Result
from werkzeug import Request, Response

from llmfail import events as ev
from llmfail.cli import app
from llmfail.config import Config, parse_config
from llmfail.engine import Engine
from llmfail.events import Event
from llmfail.stats import ModelStats, model_stats, percentile
from llmfail.store.sqlite import SqliteStore

from .conftest import FakeClock, ok, openai_error

T = 1_760_000_000.0
HOUR = 3600.0

CONFIG = """
providers:
  a: {type: openai, base_url: "http://127.0.0.1:9/v1"}
  b: {type: openai, base_url: "http://127.0.0.1:9/v1"}
  c: {type: openai, base_url: "http://127.0.0.1:9/v1"}
chains:
  prod: [a/m1, b/m2]
  cheap: [b/m2]
  idle: [c/idle]
"""


def answer(ts: float, chain: str, model: str, attempt_ms: float, ttft_ms: float, rid: str) -> Event:
    """A `request` row as the engine writes it for an answered request."""
    return Event(
        type=ev.REQUEST,
        ts=ts,
        request_id=rid,
        chain=chain,
        model=model,
        latency_ms=attempt_ms + 5,
        data={
            "ok": True,
            "answered_by": model,
            "failovers": 0,
            "ttft_ms": ttft_ms + 5,
            "attempt_ms": attempt_ms,
            "attempt_ttft_ms": ttft_ms,
        },
    )


def failed(ts: float, chain: str, model: str, kind: str, status: int | None, rid: str) -> Event:
    return Event(
        type=ev.ATTEMPT_FAILED,
        ts=ts,
        request_id=rid,
        chain=chain,
        model=model,
        kind=kind,
        status=status,
        attempt=1,
        latency_ms=10.0,
    )


def fixture_events() -> list[Event]:
    """The hand-counted log. Window: [T - 1h, T]. Counts per model are in the comments."""
    w = T - HOUR
    return [
        # outside the window: never counted
        answer(w - 1, "prod", "a/m1", 5.0, 1.0, "old"),
        answer(T + 1, "prod", "a/m1", 5.0, 1.0, "future"),
        # r1 (prod): a/m1 fails twice (transient), is benched, fails over; b/m2 answers in 120 ms
        failed(w + 10, "prod", "a/m1", "transient", 503, "r1"),
        Event(type=ev.RETRY, ts=w + 10, request_id="r1", chain="prod", model="a/m1", kind="transient", attempt=2),
        failed(w + 11, "prod", "a/m1", "transient", 503, "r1"),
        Event(
            type=ev.BENCHED,
            ts=w + 11,
            request_id="r1",
            chain="prod",
            model="a/m1",
            kind="transient",
            benched_until=w + 41,
        ),
        Event(
            type=ev.FAILOVER,
            ts=w + 11,
            request_id="r1",
            chain="prod",
            model="a/m1",
            next_model="b/m2",
            kind="transient",
        ),
        answer(w + 12, "prod", "b/m2", 120.0, 40.0, "r1"),
        # r2..r6 (prod): a/m1 answers five times: 200, 400, 100, 300, 1000 ms
        answer(w + 100, "prod", "a/m1", 200.0, 80.0, "r2"),
        answer(w + 200, "prod", "a/m1", 400.0, 90.0, "r3"),
        answer(w + 300, "prod", "a/m1", 100.0, 20.0, "r4"),
        answer(w + 400, "prod", "a/m1", 300.0, 70.0, "r5"),
        answer(w + 500, "prod", "a/m1", 1000.0, 900.0, "r6"),
        # r7 (prod): a/m1 rate limited, fails over; b/m2 times out; the chain is exhausted
        failed(w + 600, "prod", "a/m1", "rate_limited", 429, "r7"),
        Event(
            type=ev.FAILOVER,
            ts=w + 600,
            request_id="r7",
            chain="prod",
            model="a/m1",
            next_model="b/m2",
            kind="rate_limited",
        ),
        failed(w + 601, "prod", "b/m2", "timeout", None, "r7"),
        Event(type=ev.BENCHED, ts=w + 601, request_id="r7", chain="prod", model="b/m2", kind="timeout"),
        Event(type=ev.EXHAUSTED, ts=w + 601, request_id="r7", chain="prod", kind="timeout"),
        Event(
            type=ev.REQUEST,
            ts=w + 601,
            request_id="r7",
            chain="prod",
            kind="timeout",
            data={"ok": False, "answered_by": None},
        ),
        # r8 (cheap): b/m2 answers in 300 ms
        answer(w + 700, "cheap", "b/m2", 300.0, 100.0, "r8"),
        # a half-open probe of a/m1 closes its bench; a failed probe of b/m2 is not a recovery
        Event(
            type=ev.PROBE,
            ts=w + 800,
            request_id="r9",
            chain="prod",
            model="a/m1",
            latency_ms=50.0,
            data={"ok": True, "recovered": True},
        ),
        answer(w + 800, "prod", "a/m1", 50.0, 10.0, "r9"),
        Event(
            type=ev.PROBE,
            ts=w + 900,
            request_id="r10",
            chain="cheap",
            model="b/m2",
            kind="transient",
            status=503,
            data={"ok": False},
        ),
        failed(w + 900, "cheap", "b/m2", "transient", 503, "r10"),
        # an operator benches b/m2 by hand (no chain)
        Event(
            type=ev.BENCHED,
            ts=w + 1000,
            model="b/m2",
            kind="manual",
            detail="incident",
            data={"user": "ops", "host": "box", "reason": "incident", "manual": True},
        ),
        # a row written before `attempt_ms` existed: its own latency and ttft stand in
        Event(
            type=ev.REQUEST,
            ts=w + 1100,
            request_id="r11",
            chain="legacy",
            model="z/old",
            latency_ms=999.0,
            data={"ok": True, "answered_by": "z/old", "ttft_ms": 500.0},
        ),
    ]


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "test.yaml")


@pytest.fixture
def logged(store: SqliteStore) -> SqliteStore:
    store.append(fixture_events())
    return store


def test_figures_match_the_hand_counted_log_exactly(logged: SqliteStore, config: Config) -> None:
    stats = model_stats(logged, since=T - HOUR, now=T, config=config)
    assert {m: s.to_json() for m, s in stats.items()} == {
        "a/m1": {
            "requests": 9,
            "ok": 6,
            "failed": 3,
            "errors": {"rate_limited": 1, "transient": 2},
            "failovers": 2,
            "benched": 1,
            "recoveries": 1,
            "p50_ms": 200.0,
            "p95_ms": 1000.0,
            "state": "healthy",
        },
        "b/m2": {
            "requests": 4,
            "ok": 2,
            "failed": 2,
            "errors": {"timeout": 1, "transient": 1},
            "failovers": 0,
            "benched": 2,
            "recoveries": 0,
            "p50_ms": 120.0,
            "p95_ms": 300.0,
            "state": "healthy",
        },
        "c/idle": {
            "requests": 0,
            "ok": 0,
            "failed": 0,
            "errors": {},
            "failovers": 0,
            "benched": 0,
            "recoveries": 0,
            "p50_ms": None,
            "p95_ms": None,
            "state": "no data",
        },
        "z/old": {
            "requests": 1,
            "ok": 1,
            "failed": 0,
            "errors": {},
            "failovers": 0,
            "benched": 0,
            "recoveries": 0,
            "p50_ms": 999.0,
            "p95_ms": 999.0,
            "state": "healthy",
        },
    }
    # a/m1 answered in 200, 400, 100, 300, 1000, 50 ms -> sorted 50 100 200 300 400 1000:
    # rank ceil(0.5*6)=3 is 200; first tokens 80 90 20 70 900 10 -> p50 rank 3 = 70, p95 rank 6 = 900
    assert (stats["a/m1"].ttft_p50_ms, stats["a/m1"].ttft_p95_ms) == (70.0, 900.0)
    assert (stats["z/old"].ttft_p50_ms, stats["z/old"].last_seen) == (500.0, T - HOUR + 1100)
    assert stats["a/m1"].success_rate == pytest.approx(6 / 9)


def test_a_chain_counts_only_its_own_traffic_but_every_bench(logged: SqliteStore, config: Config) -> None:
    stats = model_stats(logged, since=T - HOUR, now=T, chain=config.chain("prod"), config=config)
    assert list(stats) == ["a/m1", "b/m2"]  # chain order, only its entries
    b = stats["b/m2"]
    # prod traffic only: r1's answer and r7's timeout; both benches (one manual, no chain) count
    assert (b.requests, b.ok, b.failed, dict(b.errors), b.benched) == (2, 1, 1, {"timeout": 1}, 2)
    assert (b.p50_ms, b.p95_ms) == (120.0, 120.0)
    cheap = model_stats(logged, since=T - HOUR, now=T, chain=config.chain("cheap"))["b/m2"]
    assert (cheap.requests, cheap.ok, dict(cheap.errors), cheap.p95_ms) == (2, 1, {"transient": 1}, 300.0)


def test_the_window_edges_are_inclusive_and_nothing_outside_counts(logged: SqliteStore) -> None:
    everything = model_stats(logged, since=0.0, now=T + 10)
    assert everything["a/m1"].ok == 8  # the row before the window and the one after it
    edge = model_stats(logged, since=T - HOUR + 100, now=T - HOUR + 200)
    assert edge["a/m1"].ok == 2 and edge["a/m1"].failed == 0
    assert "b/m2" not in edge  # no event of b/m2 in that window and no config to list it


def test_without_a_config_only_models_with_events_are_listed_by_name(logged: SqliteStore) -> None:
    assert list(model_stats(logged, since=T - HOUR, now=T)) == ["a/m1", "b/m2", "z/old"]


def test_states_come_from_the_shared_state_now(store: SqliteStore, config: Config) -> None:
    store.bench("b/m2", now=T, until=T + 60, manual=True, reason="deploy", kind="manual")
    store.record_failure("a/m1", now=T, kind="timeout", status=None, bench_for=30.0)
    stats = model_stats(store, since=T - HOUR, now=T + 1, config=config)
    assert (stats["a/m1"].state, stats["b/m2"].state, stats["c/idle"].state) == ("benched", "manual", "healthy")
    a = stats["a/m1"]
    assert (a.failures, a.bench_count, a.bench_until, a.last_error_kind) == (1, 1, T + 30, "timeout")
    assert stats["b/m2"].bench_reason == "deploy"
    later = model_stats(store, since=T - HOUR, now=T + 31, config=config)
    assert later["a/m1"].state == "half-open"  # the bench ended; the next request probes it


def test_a_live_model_with_no_request_in_the_window_is_no_data_not_healthy(store: SqliteStore, config: Config) -> None:
    store.append([answer(T - 10, "prod", "a/m1", 100.0, 30.0, "r1")])
    store.bench("b/m2", now=T - 60, until=T + 60, manual=True, reason="deploy", kind="manual")
    store.record_failure("z/gone", now=T - 120, kind="timeout", status=None, bench_for=30.0)  # ended: half-open
    stats = model_stats(store, since=T - HOUR, now=T, config=config)
    assert {m: s.reported_state for m, s in stats.items()} == {
        "a/m1": "healthy",  # answered in the window
        "b/m2": "manual",  # no traffic, but the bench is known: never hidden behind "no data"
        "c/idle": "no data",  # nothing asked of it: its health is unknown
    }
    assert stats["c/idle"].state == "healthy" and stats["c/idle"].to_json()["state"] == "no data"
    half_open = model_stats(
        store,
        since=T - HOUR,
        now=T,
        config=parse_config(
            'providers: {z: {type: openai, base_url: "http://127.0.0.1:9/v1"}}\nchains: {x: [z/gone]}', "t.yaml"
        ),
    )
    assert half_open["z/gone"].reported_state == "half-open"
    idle_window = model_stats(store, since=T - 5, now=T, config=config)
    assert idle_window["a/m1"].reported_state == "no data"  # its answer is older than the window


def test_stats_on_a_fresh_db_reports_no_data_for_every_model_not_all_healthy(tmp_path: Path) -> None:
    (tmp_path / "chains.yaml").write_text(CONFIG, encoding="utf-8")
    SqliteStore(os.environ["LLMFAIL_DB"]).close()
    figures = json.loads(cli("stats", "--json").stdout)
    assert {m: f["state"] for m, f in figures.items()} == {"a/m1": "no data", "b/m2": "no data", "c/idle": "no data"}
    table = cli("stats").stdout
    assert "healthy" not in table
    assert [line.split()[1:3] for line in table.splitlines()[1:]] == [["no", "data"]] * 3


def test_an_entry_is_benched_when_every_credential_is(store: SqliteStore) -> None:
    config = parse_config(
        """
providers:
  a: {type: openai, base_url: "http://127.0.0.1:9/v1"}
chains:
  c:
    - model: a/m1
      credentials: [{api_key_env: K1}, {api_key_env: K2}]
""",
        "test.yaml",
    )
    store.record_failure("a/m1#0", now=T, kind="auth", status=401, bench_for=600.0)
    assert model_stats(store, since=T - 1, now=T, config=config)["a/m1"].state == "healthy"
    store.record_failure("a/m1#1", now=T, kind="auth", status=401, bench_for=600.0)
    assert model_stats(store, since=T - 1, now=T, config=config)["a/m1"].state == "benched"


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0  # rank ceil(2) = 2
    assert percentile([float(v) for v in range(1, 101)], 95) == 95.0
    assert percentile([float(v) for v in range(1, 21)], 95) == 19.0  # rank ceil(19) = 19


def test_stats_queries_only_search_indexes_never_scan_the_log(logged: SqliteStore, config: Config) -> None:
    seen: list[str] = []
    with logged._read() as conn:
        conn.set_trace_callback(seen.append)
    try:
        model_stats(logged, since=T - HOUR, now=T, chain=config.chain("prod"), config=config)
        model_stats(logged, since=T - HOUR, now=T, config=config)
    finally:
        with logged._read() as conn:
            conn.set_trace_callback(None)
    selects = {sql for sql in seen if sql.lstrip().upper().startswith(("SELECT", "WITH")) and "FROM events" in sql}
    assert selects
    with logged._read() as conn:
        plans = {sql: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)] for sql in selects}
    for sql, plan in plans.items():
        reads = [p for p in plan if " events " in f"{p} "]
        # each read of the log is a seek on the model's own index range...
        assert reads and all(re.match(r"SEARCH events USING (COVERING )?INDEX \w+ \(model[=>]", p) for p in reads), (
            sql,
            plan,
        )
        # ...that never touches the table unless it needs `data` (latency samples, recoveries)...
        if "json_extract" not in sql:
            assert all("COVERING INDEX" in p for p in reads), (sql, plan)
        # ...and never sorts the window's rows
        assert not [p for p in plan if "TEMP B-TREE" in p], (sql, plan)


def test_an_old_schema_is_migrated_and_keeps_its_events(db_path: Path) -> None:
    from llmfail.store.sqlite import MIGRATIONS, SCHEMA_VERSION

    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    MIGRATIONS[0](conn)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO events (ts, model, type, chain, data) VALUES (?, 'a/m1', 'request', 'prod', "
        '\'{"ok": true, "attempt_ms": 12.5}\')',
        (T,),
    )
    conn.commit()
    conn.close()
    store = SqliteStore(str(db_path))
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert model_stats(store, since=T - 1, now=T)["a/m1"].p50_ms == 12.5
    finally:
        store.close()


# --------------------------------------------------------------------------- the engine's own rows

ENGINE = """
defaults: {attempts: 1, backoff: {base: 1ms, max: 1ms}, cooldown: 30s}
providers:
  a: {type: openai, base_url: "{url}/a/v1"}
  b: {type: openai, base_url: "{url}/b/v1"}
chains:
  main: [a/m1, b/m2]
"""


def timed(clock: FakeClock, seconds: float, response: Callable[[], Response]) -> Callable[[Request], Response]:
    """A handler that takes `seconds` of virtual time to answer."""

    def handle(request: Request) -> Response:
        clock.advance(seconds)
        return response()

    return handle


def test_per_model_latency_excludes_the_failover_before_the_answer(
    make_engine: Callable[..., Engine], server: HTTPServer, clock: FakeClock, store: SqliteStore
) -> None:
    server.expect_request("/a/v1/chat/completions").respond_with_handler(timed(clock, 1.0, lambda: openai_error(503)))
    server.expect_request("/b/v1/chat/completions").respond_with_handler(timed(clock, 0.25, ok))
    engine = make_engine(ENGINE)
    start = clock.now

    async def go() -> Any:
        try:
            return await engine.complete("main", "hi")
        finally:
            await engine.aclose()

    result = asyncio.run(go())
    assert result.model == "b/m2" and result.latency_ms == pytest.approx(1250)
    (row,) = store.events(types=[ev.REQUEST])
    assert row.data["attempt_ms"] == pytest.approx(250) and row.data["attempt_ttft_ms"] == pytest.approx(250)
    stats = model_stats(store, since=start, now=clock.now, chain=engine.config.chain("main"))
    assert stats["b/m2"].p50_ms == pytest.approx(250)  # not the 1250 ms the caller waited
    assert (stats["a/m1"].requests, stats["a/m1"].failed, stats["a/m1"].failovers, stats["a/m1"].state) == (
        1,
        1,
        1,
        "benched",
    )
    assert isinstance(stats["a/m1"], ModelStats)


# --------------------------------------------------------------------------- `llmfail stats`

runner = CliRunner()


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def shifted_fixture(now: float) -> list[Event]:
    """The hand-counted log moved so its window ends at `now` (the CLI's window ends at the real time).
    The row after the window is dropped: seconds pass before the command reads the log."""
    offset = now - T
    return [replace(e, ts=e.ts + offset) for e in fixture_events() if e.request_id != "future"]


def test_stats_json_matches_the_hand_counted_log(tmp_path: Path) -> None:
    (tmp_path / "chains.yaml").write_text(CONFIG, encoding="utf-8")
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    store.append(shifted_fixture(time.time()))
    store.close()
    result = cli("stats", "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert list(figures) == ["a/m1", "b/m2", "c/idle", "z/old"]
    assert figures["a/m1"] == {
        "requests": 9,
        "ok": 6,
        "failed": 3,
        "errors": {"rate_limited": 1, "transient": 2},
        "failovers": 2,
        "benched": 1,
        "recoveries": 1,
        "p50_ms": 200.0,
        "p95_ms": 1000.0,
        "state": "healthy",
    }
    assert figures["b/m2"] == {
        "requests": 4,
        "ok": 2,
        "failed": 2,
        "errors": {"timeout": 1, "transient": 1},
        "failovers": 0,
        "benched": 2,
        "recoveries": 0,
        "p50_ms": 120.0,
        "p95_ms": 300.0,
        "state": "healthy",
    }
    prod = json.loads(cli("stats", "--chain", "prod", "--json").stdout)
    assert list(prod) == ["a/m1", "b/m2"] and prod["b/m2"]["requests"] == 2
    narrow = json.loads(cli("stats", "--since", "10s", "--json").stdout)
    assert narrow["a/m1"]["requests"] == 0 and "z/old" not in narrow


def test_stats_for_people_is_a_table_and_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "chains.yaml").write_text(CONFIG, encoding="utf-8")
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    store.append(shifted_fixture(time.time()))
    store.bench("b/m2", now=time.time(), until=time.time() + 600, manual=True, reason="deploy", kind="manual")
    store.close()
    result = cli("stats")
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert lines["model"][:4] == ["model", "state", "requests", "success"]
    assert lines["a/m1"][1:4] == ["healthy", "9", "66.7%"]
    assert lines["b/m2"][1] == "manual"
    bad = cli("stats", "--chain", "nope")
    assert bad.exit_code == 2 and "no chain named 'nope'" in bad.stderr
    assert cli("stats", "--since", "soon").exit_code == 2


def test_stats_on_a_machine_without_a_state_db_creates_nothing(tmp_path: Path) -> None:
    result = cli("stats", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {}
    assert not Path(os.environ["LLMFAIL_DB"]).exists()  # a pure read never creates the DB


def test_stats_loads_no_engine_http_client_or_dashboard(tmp_path: Path) -> None:
    from .test_imports import cli_modules, heavy_in

    (tmp_path / "chains.yaml").write_text(CONFIG, encoding="utf-8")
    SqliteStore(os.environ["LLMFAIL_DB"]).close()
    code, modules = cli_modules(tmp_path, "stats", "--json")
    assert code == 0 and "llmfail.stats" in modules
    assert heavy_in(modules) == []


def test_printing_a_wide_table_leaves_the_shared_console_width_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmfail.output import stdout

    # A console made by an earlier test while COLUMNS was set is pinned to that width: start afresh.
    monkeypatch.delenv("COLUMNS", raising=False)
    stdout.cache_clear()
    (tmp_path / "chains.yaml").write_text(CONFIG, encoding="utf-8")
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    store.append(shifted_fixture(time.time()))
    store.close()
    assert cli("stats").exit_code == 0  # wider than 80 columns: printed whole through its own console
    monkeypatch.setenv("COLUMNS", "137")
    assert stdout().width == 137  # still detected, not pinned by the wide print
