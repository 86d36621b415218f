"""Alerts: benched / panic / exhausted / recovered to webhook and command sinks, one per
(model, type) per window across processes, sent off the request path; failures are events."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail import alerts
from llmfail import events as ev
from llmfail.alerts import Alerter, alert_type, dedup_key, flush_all
from llmfail.config import Alerts, Sink
from llmfail.engine import Engine
from llmfail.errors import ChainExhausted
from llmfail.events import Event
from llmfail.journal import Journal
from llmfail.store.sqlite import SqliteStore

from .conftest import FakeClock


class Hook:
    """A real loopback webhook receiver: records each alert; can hold requests until released."""

    def __init__(self, server: HTTPServer, *, hold: bool = False, delay: float = 10.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.delay = delay
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()
        server.expect_request("/hooks/llm", method="POST").respond_with_handler(self)
        self.url = server.url_for("/hooks/llm")

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.bodies.append(json.loads(request.data))
        self.entered.set()
        self.release.wait(self.delay)
        return Response("ok")

    def alerts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter((b["model"] or f"chain:{b['chain']}", b["alert"]) for b in self.bodies)


def config_text(sinks: str, *, dedup: str = "10m") -> str:
    return f"""
defaults: {{attempts: 1, backoff: {{base: 1ms, max: 1ms}}, cooldown: 30s}}
alerts:
  dedup: {dedup}
  sinks:
{sinks}
providers:
  flaky: {{type: mock, fail: 503}}
chains:
  dead: [flaky/a, flaky/b]
  live: [mock/echo]
"""


def ask(engine: Engine, chain: str = "dead", n: int = 1) -> None:
    async def go() -> None:
        try:
            for _ in range(n):
                try:
                    await engine.complete(chain, "hi")
                except ChainExhausted:
                    pass
        finally:
            await engine.aclose()

    asyncio.run(go())


@pytest.fixture(autouse=True)
def _drained() -> Iterator[None]:
    """No test leaves alerts in flight for the next one."""
    yield
    flush_all(10)


def test_alert_types_and_what_an_alert_is_about() -> None:
    def event(type_: str, **kw: Any) -> Event:
        return Event(type=type_, ts=0.0, **kw)

    assert alert_type(event(ev.BENCHED, model="a/m", kind="timeout")) == "benched"
    assert alert_type(event(ev.BENCHED, model="a/m", kind="manual", data={"manual": True})) is None
    assert alert_type(event(ev.PANIC, chain="c")) == "panic"
    assert alert_type(event(ev.EXHAUSTED, chain="c")) == "exhausted"
    assert alert_type(event(ev.PROBE, model="a/m", data={"ok": True, "recovered": True})) == "recovered"
    assert alert_type(event(ev.PROBE, model="a/m", data={"ok": True, "state": "healthy"})) is None
    assert [alert_type(event(t)) for t in (ev.FAILOVER, ev.REQUEST, ev.ATTEMPT_FAILED, ev.DEMOTED)] == [None] * 4
    assert dedup_key(event(ev.PANIC, chain="prod")) == "chain:prod"
    assert dedup_key(event(ev.BENCHED, chain="prod", model="a/m")) == "a/m"


def test_one_alert_per_model_and_type_per_window(
    make_engine: Callable[..., Engine], server: HTTPServer, clock: FakeClock, store: SqliteStore
) -> None:
    hook = Hook(server)
    engine = make_engine(config_text("    - webhook: '{url}/hooks/llm'"))
    ask(engine, n=3)  # three walks: benches, panics and exhaustions again and again
    clock.advance(60)
    ask(engine)
    assert flush_all(10)
    assert hook.alerts() == Counter(
        {
            ("flaky/a", "benched"): 1,
            ("flaky/b", "benched"): 1,
            ("chain:dead", "exhausted"): 1,
            ("chain:dead", "panic"): 1,
        }
    )
    raised = sum(1 for e in store.events() if alert_type(e))
    assert raised > 4  # the dedup had something to do
    body = next(b for b in hook.bodies if b["alert"] == "benched")
    assert body["summary"].startswith("llmfail: flaky/a benched (transient 503)")
    assert body["event"]["type"] == "benched" and body["event"]["model"] == "flaky/a"
    clock.advance(600)  # the window has passed: the next bench is news again
    ask(engine)
    assert flush_all(10)
    assert hook.alerts()[("flaky/a", "benched")] == 2


def test_a_recovery_is_alerted(
    make_engine: Callable[..., Engine], server: HTTPServer, clock: FakeClock, store: SqliteStore
) -> None:
    hook = Hook(server)
    engine = make_engine(config_text("    - webhook: '{url}/hooks/llm'"))
    store.record_failure("mock/echo", now=clock.now, kind="transient", status=503, bench_for=30.0)
    clock.advance(31)  # the bench ended: the next request probes it, and it answers
    ask(engine, "live")
    assert flush_all(10)
    assert hook.alerts() == Counter({("mock/echo", "recovered"): 1})


def test_a_blocked_webhook_never_holds_up_a_request(
    make_engine: Callable[..., Engine], server: HTTPServer, store: SqliteStore
) -> None:
    hook = Hook(server, hold=True)  # holds every POST for up to 10 s, until released
    engine = make_engine(config_text("    - webhook: '{url}/hooks/llm'", dedup="0s"))
    finished = threading.Event()

    def requests() -> None:
        ask(engine, n=6)  # every walk benches, panics or exhausts: alerts all along
        finished.set()

    worker = threading.Thread(target=requests)
    worker.start()
    try:
        assert hook.entered.wait(5)  # the sender thread is now stuck inside the webhook call...
        assert finished.wait(5)  # ...and all six requests still complete
        assert not hook.release.is_set() and len(hook.bodies) == 1
        assert len(store.events(types=[ev.REQUEST])) == 6
    finally:
        hook.release.set()
        worker.join(10)
    assert flush_all(10)
    assert len(hook.bodies) > 1  # what queued meanwhile is delivered after


def test_failing_sinks_are_logged_as_events_without_their_secrets(
    make_engine: Callable[..., Engine], store: SqliteStore, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: connecting is refused
    engine = make_engine(
        config_text(
            f'    - webhook: http://127.0.0.1:{port}/services/T0/B0/SECRETPATH\n    - command: "echo boom >&2; exit 3"'
        )
    )
    ask(engine)
    assert flush_all(10)
    failures = store.events(types=[ev.ALERT_FAILED])
    details = sorted(e.detail or "" for e in failures)
    assert len(failures) == 2 * 3  # two sinks x (benched a, benched b, exhausted)
    assert any(
        d.startswith(f"benched alert to webhook http://127.0.0.1:{port} failed: ConnectionRefused") for d in details
    ), details
    assert any("command echo failed: OSError: exit status 3: boom" in d for d in details), details
    assert not any("SECRETPATH" in (e.detail or "") + json.dumps(e.data) for e in failures)
    assert {e.data["alert"] for e in failures} == {"benched", "exhausted"}


def test_a_webhook_that_never_answers_times_out_into_an_event(
    make_engine: Callable[..., Engine], store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts, "SINK_TIMEOUT_S", 0.3)
    with socket.socket() as silent:  # accepts connections (the backlog) and never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        engine = make_engine(config_text(f"    - webhook: http://127.0.0.1:{silent.getsockname()[1]}/hook"))
        ask(engine)
        assert flush_all(10)
    failures = store.events(types=[ev.ALERT_FAILED])
    assert failures and all("no answer within 0.3s" in (e.detail or "") for e in failures)


def test_a_command_sink_gets_the_alert_as_json_on_stdin(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    engine = make_engine(config_text(f'    - command: "cat >> {out}; echo >> {out}"'))
    ask(engine)
    assert flush_all(10)
    got = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert sorted(a["alert"] for a in got) == ["benched", "benched", "exhausted"]
    assert {a["model"] for a in got if a["alert"] == "benched"} == {"flaky/a", "flaky/b"}


def test_the_queue_is_bounded_and_the_observer_never_waits(store: SqliteStore) -> None:
    entered, release = threading.Event(), threading.Event()

    def stuck(sink: Sink, body: bytes) -> None:
        entered.set()
        release.wait(10)

    alerter = Alerter(
        Alerts(dedup=0.0, sinks=(Sink(webhook="http://127.0.0.1:9/x"),)), Journal(store), sender=stuck, queue_size=3
    )
    first = Event(type=ev.PANIC, ts=1.0, chain="c")
    alerter(first)
    assert entered.wait(5)
    for i in range(10):  # the sender is stuck: 3 fit in the queue, the rest are dropped, none waits
        alerter(Event(type=ev.PANIC, ts=2.0 + i, chain="c"))
    assert alerter.dropped == 7
    release.set()
    assert alerter.flush(10)


CHILD = """
import sys
from llmfail.cli import main
sys.argv = ["llmfail", "--config", sys.argv[1], "run", "hi", "--chain", "dead", "--json"]
main()
"""


def test_four_processes_send_one_alert_per_model_and_type(server: HTTPServer, tmp_path: Path) -> None:
    hook = Hook(server)
    config = tmp_path / "chains.yaml"
    config.write_text(config_text(f"    - webhook: {hook.url}"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [1] * 4, outcomes  # every request exhausted
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    try:
        raised = [(dedup_key(e), alert_type(e)) for e in store.events() if alert_type(e)]
    finally:
        store.close()
    # Every process exhausted the chain, so that alert was raised four times; how many benches
    # each raised depends on how the four interleaved (a later one may find a model benched).
    assert Counter(raised)[("chain:dead", "exhausted")] == 4
    expected = Counter(dict.fromkeys(set(raised), 1))
    assert hook.alerts() == expected  # each (model, type) exactly once, delivered before exit
    assert {("flaky/a", "benched"), ("flaky/b", "benched"), ("chain:dead", "exhausted")} <= set(expected)


def test_a_short_lived_process_delivers_its_alerts_before_it_exits(server: HTTPServer, tmp_path: Path) -> None:
    """Each POST takes 0.3 s to answer, so the three alerts of one `llmfail run` need about a
    second after the answer is printed: the exit waits for them (at most SINK_TIMEOUT_S)."""
    hook = Hook(server, hold=True, delay=0.3)
    config = tmp_path / "chains.yaml"
    config.write_text(config_text(f"    - webhook: {hook.url}"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(config)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert hook.alerts() == Counter(
        {("flaky/a", "benched"): 1, ("flaky/b", "benched"): 1, ("chain:dead", "exhausted"): 1}
    )


def test_an_engine_observer_sees_the_alert_failed_events(
    make_engine: Callable[..., Engine], store: SqliteStore
) -> None:
    """A failed sink is written through the engine's journal (from the sender thread), so
    `on_event` sees it like any other event."""
    engine = make_engine(config_text('    - command: "exit 3"'))
    seen: list[Event] = []
    engine.on_event(seen.append)
    ask(engine)
    assert flush_all(10)
    failed = [e for e in seen if e.type == ev.ALERT_FAILED]
    assert len(failed) == 3  # benched a, benched b, exhausted
    assert [e.id for e in failed] == [e.id for e in store.events(types=[ev.ALERT_FAILED])]
    assert all("command exit failed: OSError: exit status 3" in (e.detail or "") for e in failed)
