"""`Engine.reload(config)`: new requests take the new config, requests in flight keep theirs."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from werkzeug import Request, Response

from llmfail.config import load_config
from llmfail.engine import Engine
from llmfail.store.sqlite import SqliteStore

from .conftest import ok

CONFIG = """
defaults: {attempts: 1}
providers:
  a: {type: openai, base_url: "URL/a/v1"}
  b: {type: openai, base_url: "URL/b/v1"}
chains:
  c: [MODEL]
"""


def write(path: Path, url: str, model: str) -> None:
    path.write_text(CONFIG.replace("URL", url).replace("MODEL", model))


async def test_a_reload_leaves_the_request_in_flight_on_its_config_and_records_config_changed(
    server, store: SqliteStore, tmp_path: Path
):
    arrived, release = threading.Event(), threading.Event()

    def stall(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return ok("old")

    server.expect_request("/a/v1/chat/completions").respond_with_handler(stall)
    server.expect_request("/b/v1/chat/completions").respond_with_response(ok("new"))
    path = tmp_path / "chains.yaml"
    url = server.url_for("").rstrip("/")
    write(path, url, "a/m1")
    engine = Engine(load_config(path), store)
    try:
        in_flight = asyncio.create_task(engine.complete("c", "hi"))
        assert await asyncio.to_thread(arrived.wait, 10)
        write(path, url, "b/m2")
        engine.reload(load_config(path))
        fresh = await engine.complete("c", "hi")
        release.set()
        old = await in_flight
    finally:
        release.set()
        await engine.aclose()
    assert (old.model, old.text) == ("a/m1", "old")
    assert (fresh.model, fresh.text) == ("b/m2", "new")
    [changed] = store.events(types=["config_changed"])
    assert changed.data["reason"] == "config reloaded" and "changed (sha256" in (changed.detail or "")
    assert changed.data["previous_sha256"] != changed.data["sha256"]


async def test_reloading_an_unchanged_file_still_records_that_it_was_reloaded(server, store, tmp_path):
    path = tmp_path / "chains.yaml"
    write(path, server.url_for("").rstrip("/"), "a/m1")
    engine = Engine(load_config(path), store)
    engine.reload(load_config(path))
    [event] = store.events(types=["config_changed"])
    assert event.data["sha256"] == event.data["previous_sha256"]
    assert (event.detail or "").endswith("config reloaded (unchanged)")
