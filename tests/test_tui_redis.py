"""The dashboard on a Redis store that stops answering: a real `redis-server` of the test's own,
SIGSTOPped (hangs: every call times out) or SIGKILLed (refuses) while the app runs.

The app must keep running with the last data on screen under a one-line banner naming the
store (its password as `***`), `b` and `u` must show the store's error and change nothing,
and the banner must go once the server answers again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from llmfail.actions import bench_model
from llmfail.config import Config
from llmfail.events import Event
from llmfail.tui import app as tui_app
from tests.redis_server import RedisServer, private_redis, redis_namespace
from tests.test_tui import (
    SIZE,
    T0,
    _one_benched,
    app_for,
    cell,
    config,
    loaded,
    log_lines,
    table_models,
    until,
    utc,
)

from .conftest import FakeClock

# fixtures, imported to be found
__all__ = ["config", "private_redis", "redis_namespace", "utc"]

pytest.importorskip("redis")
from llmfail.store.redis import RedisStore

PASSWORD = "tui-s3cret-pw"


def banner_text(app: Any) -> str:
    return str(app.query_one("#banner").render())


async def test_a_paused_redis_keeps_the_last_data_under_a_banner_and_b_and_u_show_the_error(
    config: Config,
    private_redis: Callable[..., RedisServer],
    redis_namespace: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    utc: None,
) -> None:
    from textual.widgets import Input

    from llmfail.tui.screens import BenchScreen

    monkeypatch.setattr(tui_app, "ERROR_RETRY_S", 0.3)
    monkeypatch.setenv("LLMFAIL_REDIS_PASSWORD", PASSWORD)
    server = private_redis("--requirepass", PASSWORD)
    store = RedisStore.from_url(server.url, namespace=redis_namespace)
    bench_model(store, config, "mock/echo", 600.0, "flaky", clock.now)
    store.append([Event(type="probe", ts=clock.now, model="openai/gpt-4o", detail="before the outage")])
    app = app_for(config, store, clock, chain="prod")
    notes: list[tuple[str, str]] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            app.notify = lambda message, severity="information", **kw: notes.append((message, severity))
            banner = app.query_one("#banner")
            assert not banner.display
            models, lines = table_models(app), log_lines(app)
            assert cell(app, "mock/echo", "state") == "manual" and lines[-1].endswith("before the outage")

            server.pause()
            await until(pilot, lambda: banner.display, timeout=10)  # the blocked XREAD times out after 3 s
            shown = f"redis://:***@127.0.0.1:{server.port}/0"
            assert banner_text(app) == (
                f"cannot reach shared state {shown} (no answer within 0.25 s) — showing the data of 08:53:20"
            )
            assert banner.region.height == 1  # one line at this width
            assert table_models(app) == models and log_lines(app) == lines  # the last data stays
            assert cell(app, "mock/echo", "state") == "manual"

            await pilot.press("down", "down")
            assert app.selected_model() == "mock/echo"
            await pilot.press("u")
            await until(pilot, lambda: len(notes) == 1, timeout=5)
            assert notes[0] == (f"cannot reach shared state {shown} (no answer within 0.25 s)", "error")

            await pilot.press("up", "b")
            await until(pilot, lambda: isinstance(app.screen, BenchScreen))
            assert app.screen.query_one("#duration", Input).value == "45s"
            await pilot.press("enter")
            await until(pilot, lambda: len(notes) == 2, timeout=5)
            assert notes[1] == notes[0]
            assert all(PASSWORD not in text for text, _ in notes) and PASSWORD not in banner_text(app)

            server.resume()
            await until(pilot, lambda: not banner.display, timeout=5)
            assert app.unreachable is None
    finally:
        store.close()
    checker = RedisStore.from_url(server.url, namespace=redis_namespace)
    try:  # neither key pretended: the bench is still there, no other was made, no event written
        assert [s.model for s in checker.benches(clock.now)] == ["mock/echo"]
        assert [e.type for e in checker.events()] == ["benched", "probe"]
    finally:
        checker.close()


async def test_an_idle_dashboard_on_redis_waits_in_xread_and_shows_another_hosts_event_within_a_second(
    config: Config, private_redis: Callable[..., RedisServer], redis_namespace: str, clock: FakeClock
) -> None:
    """No poll every POLL_S (a MGET each, 12 in 3 s): one blocking XREAD per FOLLOW_WAIT_S; a row
    another client writes is on screen within a second all the same."""
    import statistics
    import time

    import redis

    server = private_redis()
    admin = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    store = RedisStore.from_url(server.url, namespace=redis_namespace)
    writer = RedisStore.from_url(server.url, namespace=redis_namespace)
    writer.append([Event(type="probe", ts=clock.now, model="openai/gpt-4o", detail="seed")])
    app = app_for(config, store, clock, chain="prod")

    def calls() -> dict[str, int]:
        return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in admin.info("commandstats").items()}

    try:
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.pause(0.3)
            before = calls()
            await pilot.pause(3.0)
            after = calls()
            idle = {name: n - before.get(name, 0) for name, n in after.items() if n != before.get(name, 0)}
            print(f"\ncommands sent by an idle dashboard on Redis in 3 s: {idle}")
            assert idle.get("mget", 0) <= 1 and idle.get("xrange", 0) <= 1  # at most one ROWS_EVERY_S refresh
            assert [c["cmd"] for c in admin.client_list() if c.get("name") == "llmfail-follow"] == ["xread"]

            delays = []
            for n in range(5):
                await pilot.pause(0.1 if n % 2 else 0.6)
                writer.append([Event(type="probe", ts=clock.now, model="openai/gpt-4o", detail=f"row {n}")])
                delays.append(await until(pilot, lambda n=n: log_lines(app)[-1].endswith(f"row {n}")))
            print(
                f"another client's event on the Redis dashboard after: median {statistics.median(delays) * 1000:.0f} ms,"
                f" max {max(delays) * 1000:.0f} ms over {len(delays)} rows"
            )
            assert max(delays) < 1.0
            began = time.monotonic()
        assert time.monotonic() - began < 1.5  # quitting does not wait out a blocking read
    finally:
        store.close()
        writer.close()
        admin.close()


@pytest.mark.usefixtures("utc")
def test_redis_killed_at_80x24_shows_the_banner_over_the_last_data(
    snap_compare: Any, config: Config, private_redis: Callable[..., RedisServer], redis_namespace: str
) -> None:
    """The `one_benched` picture of test_tui, read from Redis, after the server was killed. The store is
    shown under a fixed URL (the port is random) so the picture is the same on every run."""
    server = private_redis()
    connected = RedisStore.from_url(server.url, namespace=redis_namespace)
    _one_benched(connected)  # type: ignore[arg-type]
    store = RedisStore(connected._client, url="redis://cache.internal:6379/0", namespace=redis_namespace)

    async def killed(pilot: Any) -> None:
        await loaded(pilot)
        server.stop()
        # The first failure may be a connection lost under a read; the banner settles on the
        # refused reconnects that follow, which is what the picture shows.
        await until(pilot, lambda: "(connection refused)" in (pilot.app.unreachable or ""), timeout=15)

    try:
        assert snap_compare(
            app_for(config, store, FakeClock(T0), chain="prod"), terminal_size=(80, 24), run_before=killed
        )
    finally:
        store.close()
        connected.close()
