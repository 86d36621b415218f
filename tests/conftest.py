"""Shared fixtures: a hermetic home, a virtual clock, loopback servers and engines built on them."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from random import Random
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail.config import Config, parse_config
from llmfail.engine import Engine
from llmfail.store import StoreTarget
from llmfail.store.sqlite import SqliteStore

from .backends import BACKENDS

CANARY_KEY = "sk-test-CANARY-7f3a9b2c4d5e6f708192"


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config/state dirs and no real keys or config from the machine."""
    home = tmp_path / "home"
    home.mkdir()
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LLMFAIL_DB", str(tmp_path / "state.db"))
    monkeypatch.delenv("LLMFAIL_CONFIG", raising=False)
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


class FakeClock:
    """Virtual time: `sleep` advances the clock instantly and records how long was asked."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def _session_server() -> Iterator[HTTPServer]:
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(_session_server: HTTPServer) -> Iterator[HTTPServer]:
    """A threaded loopback server (a stalling handler does not block the next request),
    started once per session and cleared after every test."""
    yield _session_server
    _session_server.clear()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(db_path))
    yield s
    s.close()


@pytest.fixture(params=list(BACKENDS))
def new_store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., StoreTarget]:
    """Makes fresh, empty stores of one backend (the test runs once per backend in `tests/backends.py`).

    Call it with no argument for a store under the test's tmp_path, or with a
    directory of your own (the state machine's per-example one).
    """
    factory = BACKENDS[request.param]

    def make(directory: Path | None = None) -> StoreTarget:
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="store-", dir=tmp_path))
        return factory(directory, f"t{uuid.uuid4().hex[:12]}")

    return make


@pytest.fixture
def store_target(new_store_target: Callable[..., StoreTarget]) -> StoreTarget:
    """One fresh store of each backend, as a picklable `StoreTarget` (children open it themselves).
    Its opened form is the `store` fixture of the contract tests (`test_store_contract.py`)."""
    return new_store_target()


def make_config(text: str, server: HTTPServer | None = None) -> Config:
    """A config from YAML where `{url}` stands for the loopback server's base URL."""
    if server is not None:
        text = text.replace("{url}", server.url_for("").rstrip("/"))
    return parse_config(text, "test.yaml")


@pytest.fixture
def make_engine(store: SqliteStore, clock: FakeClock, server: HTTPServer) -> Callable[..., Engine]:
    def build(text: str, **kwargs: Any) -> Engine:
        return Engine(make_config(text, server), store, clock=clock, sleep=clock.sleep, rng=Random(7), **kwargs)

    return build


def openai_answer(text: str = "hello", finish: str | None = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def openai_error(
    status: int,
    code: str | None = None,
    err_type: str = "server_error",
    message: str = "boom",
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


def sse(*objects: object, done: bool = True) -> str:
    lines = [f"data: {json.dumps(o)}\n\n" for o in objects]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines)


def openai_chunk(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text is not None else {}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class Calls:
    """A handler that answers from a script and counts its calls."""

    def __init__(self, *responses: Response | Callable[[Request], Response]) -> None:
        self.responses = list(responses)
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.responses)) - 1
        answer = self.responses[index]
        return answer(request) if callable(answer) and not isinstance(answer, Response) else answer

    @property
    def count(self) -> int:
        return len(self.requests)


def ok(text: str = "hello") -> Response:
    return Response(json.dumps(openai_answer(text)), status=200, content_type="application/json")
