"""Secret canaries (issue 8, item 11): a key never reaches the DB, its WAL, any output, log or screen.

Five canaries, one per shape llmfail must recognise: an OpenAI `sk-…` key, an
Anthropic `sk-ant-…` key, a Gemini `AIza…` key, a proxy token sent as
`Authorization: Bearer …` from a `${VAR}` header, and a key that only ever
appears as `?key=…` in a URL a provider echoes back (llmfail never loaded it,
so only its shape can catch it). The loopback providers echo every credential
they receive in their error bodies, headers and in-stream error events, on the
401, 500, timeout and streaming-error paths. Then every place text goes is
searched for each canary and its first 12 characters: the state DB and its WAL
(raw bytes, freed pages included), stdout/stderr of `run` (`--json`, for
people, `--debug`, `--stream`), `events`, `events --json`, `ls-benched`, the
exception texts the library raises, a log file written at DEBUG by the
`llmfail`, `httpx`, `httpcore` and `aiohttp` loggers, and the dashboard's
event pane.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail.config import Config
from llmfail.engine import Engine
from llmfail.errors import LlmfailError
from llmfail.store.sqlite import SqliteStore

from .conftest import FakeClock, make_config
from .reliability_helpers import files_of, leaks

CANARIES = {
    "OA_KEY": "sk-proj-Cnry1Q2w3E4r5T6y7U8i9O0pAs",  # sk-…
    "AN_KEY": "sk-ant-api03-Cnry2Z9x8C7v6B5n4M3lKj",  # sk-ant-…
    "GE_KEY": "AIzaSyCnry3D4f5G6h7J8k9L0zXcVbNm12",  # AIza…
    "PX_TOKEN": "tok_live_Cnry4Pq8Rs2Tu6Vw0XyZa",  # sent as Authorization: Bearer …
}
URL_CANARY = "Cnry5UrlQueryKey7h3j9k2m4nB"  # only ever seen in an echoed ?key= URL
ALL_CANARIES = [*CANARIES.values(), URL_CANARY]
NEEDLES = ALL_CANARIES + [c[:12] for c in ALL_CANARIES]

CONFIG = """
defaults: {attempts: 2, backoff: {base: 1ms, max: 2ms}, cooldown: 1s, auth_cooldown: 1s,
           timeout: 400ms, first_token_timeout: 400ms, idle_timeout: 400ms, deadline: 20s}
providers:
  oa: {type: openai, base_url: "{url}/oa/v1", api_key_env: OA_KEY}
  an: {type: anthropic, base_url: "{url}/an", api_key_env: AN_KEY}
  ge: {type: gemini, base_url: "{url}/ge", api_key_env: GE_KEY}
  px: {type: openai, base_url: "{url}/px/v1", headers: {Authorization: "Bearer ${PX_TOKEN}"}}
chains:
  all: [oa/m1, an/m2, ge/m3, px/m4]
"""
MODES = ("401", "500", "timeout", "stream-error")


class EchoingProviders:
    """Every provider answers as `mode` says, repeating back whatever credential it was sent."""

    def __init__(self, gate: threading.Event) -> None:
        self.mode = "401"
        self.gate = gate
        self.seen: set[str] = set()

    def __call__(self, request: Request) -> Response:
        sent = [request.headers.get(h, "") for h in ("authorization", "x-api-key", "x-goog-api-key")]
        sent = [s for s in sent if s]
        self.seen.update(sent)
        echo = (
            f"Incorrect API key provided: {' and '.join(sent)}. See "
            f"https://gateway.example/v1/models?key={URL_CANARY}&alt=json for details"
        )
        if self.mode == "timeout":
            self.gate.wait(5)
            return Response("late", status=200)
        if self.mode == "stream-error":
            error = {"error": {"message": echo, "type": "server_error", "code": "server_error"}}
            body = f"data: {json.dumps(error)}\n\nevent: error\ndata: {json.dumps({'type': 'error', **error})}\n\n"
            return Response(body, status=200, content_type="text/event-stream")
        status = int(self.mode)
        body = {
            "error": {
                "message": echo,
                "type": "invalid_request_error" if status == 401 else "server_error",
                "code": "invalid_api_key" if status == 401 else None,
                "status": "UNAUTHENTICATED",
            }
        }
        return Response(
            json.dumps(body),
            status=status,
            content_type="application/json",
            headers={
                "www-authenticate": f'Bearer realm="api", error="invalid_token", token="{sent}"',
                "x-echo-url": f"https://gateway.example/v1?key={URL_CANARY}",
            },
        )


@pytest.fixture
def providers(server: HTTPServer) -> Iterator[EchoingProviders]:
    gate = threading.Event()
    echo = EchoingProviders(gate)
    server.expect_request(re.compile(r"/(oa|an|ge|px)/.*")).respond_with_handler(echo)
    yield echo
    gate.set()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    return CANARIES


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Everything llmfail and the HTTP stack log at DEBUG, written to a file."""
    path = tmp_path / "debug.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    names = ["", "llmfail", "httpx", "httpcore", "aiohttp", "aiohttp.client"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    loggers[0].addHandler(handler)
    yield path
    loggers[0].removeHandler(handler)
    handler.close()
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "modes",
    [
        pytest.param(("401", "stream-error"), id="401-and-stream-error"),
        pytest.param(MODES, id="every-path", marks=pytest.mark.slow),
    ],
)
def test_keys_echoed_on_every_failure_path_reach_no_byte_of_the_db_wal_output_or_debug_log(
    server: HTTPServer,
    providers: EchoingProviders,
    keys: dict[str, str],
    debug_log: Path,
    tmp_path: Path,
    modes: tuple[str, ...],
) -> None:
    config_path = tmp_path / "chains.yaml"
    config_path.write_text(CONFIG.replace("{url}", server.url_for("").rstrip("/")), encoding="utf-8")
    db = tmp_path / "secrets.db"
    watcher = SqliteStore(str(db))  # held open, so the WAL the CLI runs write stays on disk to be searched
    env = {**os.environ, "LLMFAIL_DB": str(db), "LLMFAIL_CONFIG": str(config_path)}
    texts: dict[str, str | bytes] = {}
    try:
        for mode in modes:
            providers.mode = mode
            for args in (
                ["run", "hi", "--chain", "all", "--json"],
                ["run", "hi", "--chain", "all"],
                ["--debug", "run", "hi", "--chain", "all", "--no-stream"],
                ["run", "hi", "--chain", "all", "--stream"],
            ):
                code, out, err = cli(*args, env=env, cwd=tmp_path)
                assert code == 1, (mode, args, err[-1500:])
                texts[f"{mode} {' '.join(args)} stdout"], texts[f"{mode} {' '.join(args)} stderr"] = out, err
            texts.update(in_process(make_config(CONFIG, server), watcher, mode))
        for args in (
            ["events", "--limit", "0"],
            ["events", "--json", "--limit", "0"],
            ["ls-benched"],
            ["ls-benched", "--json"],
            ["--debug", "events", "--json", "--limit", "0"],
        ):
            code, out, err = cli(*args, env=env, cwd=tmp_path)
            assert code == 0, (args, err[-1500:])
            texts[" ".join(args) + " stdout"], texts[" ".join(args) + " stderr"] = out, err
        texts.update({f"file {p.name}": p.read_bytes() for p in files_of(db)})
        assert any(p.name.endswith("-wal") for p in files_of(db)), "the WAL was not there to be searched"
    finally:
        watcher.close()
    texts.update({f"file {p.name} after close": p.read_bytes() for p in files_of(db)})
    texts["debug log"] = debug_log.read_text(encoding="utf-8")

    assert set(CANARIES.values()) <= {s.removeprefix("Bearer ") for s in providers.seen}  # each key was sent
    assert texts["events --json --limit 0 stdout"].count("\n") > 50  # there was plenty to leak
    assert "Incorrect API key provided" in texts["events --limit 0 stdout"]  # the message itself is kept
    assert "httpx INFO HTTP Request: POST" in texts["debug log"]  # the log did record the traffic
    assert leaks(NEEDLES, texts) == []
    print(
        f"\n{len(ALL_CANARIES)} canaries x {len(modes)} failure paths; {len(texts)} outputs, logs and files "
        f"({sum(len(t) for t in texts.values()) // 1024} KiB) searched: 0 matches"
    )


def in_process(config: Config, store: SqliteStore, mode: str) -> dict[str, str]:
    """The library's own view: the errors it raises and the items it streams, as text."""
    engine = Engine(config, store)
    seen: dict[str, str] = {}

    async def both() -> None:
        try:
            try:
                await engine.complete("all", "hi")
            except LlmfailError as error:
                seen[f"{mode} complete error"] = f"{error}\n{error!r}\n{getattr(error, 'hint', '')}"
                seen[f"{mode} complete attempts"] = repr(getattr(error, "attempts", None))
            try:
                async for item in engine.stream("all", "hi"):
                    seen[f"{mode} stream item"] = seen.get(f"{mode} stream item", "") + repr(item)
            except LlmfailError as error:
                seen[f"{mode} stream error"] = f"{error}\n{error!r}\n{error.__cause__!r}"
        finally:
            await engine.aclose()

    asyncio.run(both())
    assert seen, "the library raised nothing"
    return seen


async def test_the_dashboards_event_pane_shows_the_errors_but_never_a_key(
    server: HTTPServer, providers: EchoingProviders, keys: dict[str, str], store: SqliteStore, clock: FakeClock
) -> None:
    from textual.widgets import RichLog

    from llmfail.tui import create_app

    config = make_config(CONFIG, server)
    for mode in ("401", "500"):
        providers.mode = mode
        engine = Engine(config, store)
        try:
            with pytest.raises(LlmfailError):
                await engine.complete("all", "hi")
        finally:
            await engine.aclose()
    clock.now = max(e.ts for e in store.events())
    app = create_app(config, store, clock=clock)
    async with app.run_test(size=(200, 60)) as pilot:
        for _ in range(100):
            lines = [line.text for line in app.query_one("#log", RichLog).lines]
            if any("Incorrect API key provided" in line for line in lines):
                break
            await pilot.pause(0.05)
        screen = app.export_screenshot()
    assert any("Incorrect API key provided" in line for line in lines), lines[-5:]
    assert leaks(NEEDLES, {"event pane": "\n".join(lines), "screen": screen}) == []
