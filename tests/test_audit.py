"""The audit trail: every manual action (bench, unbench) and every config change is an event with
the OS user, the host and a reason; `llmfail events --type benched,unbenched` shows it."""

from __future__ import annotations

import getpass
import json
import os
import socket
from pathlib import Path

from typer.testing import CliRunner, Result

from llmfail import events as ev
from llmfail.audit import audit_config
from llmfail.cli import app
from llmfail.config import load_config
from llmfail.engine import Engine
from llmfail.events import Event
from llmfail.store.sqlite import SqliteStore

runner = CliRunner()

CONFIG = """
defaults: {attempts: 1, backoff: {base: 1ms, max: 1ms}}
providers:
  flaky: {type: mock, fail: 503}
chains:
  demo: [flaky/a, mock/echo]
"""

WHO = {"user": getpass.getuser(), "host": socket.gethostname()}


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def events_json(*args: str) -> list[dict[str, object]]:
    result = cli("events", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_manual_benches_and_unbenches_form_the_audit_trail(tmp_path: Path) -> None:
    (tmp_path / "chains.yaml").write_text(CONFIG, encoding="utf-8")
    assert cli("run", "hi", "--chain", "demo", "--json").exit_code == 0  # flaky/a is benched automatically
    assert cli("bench", "mock/echo", "--for", "10m", "--reason", "vendor incident #42").exit_code == 0
    assert cli("unbench", "mock/echo", "--reason", "vendor says fixed").exit_code == 0
    trail = events_json("--type", "benched,unbenched")
    assert [(e["type"], e["model"]) for e in trail] == [
        ("benched", "flaky/a"),
        ("benched", "mock/echo"),
        ("unbenched", "mock/echo"),
    ]
    automatic, bench, unbench = trail
    assert automatic["kind"] == "transient" and "user" not in automatic["data"]  # the engine, not a person
    assert bench["data"] == {**WHO, "reason": "vendor incident #42", "manual": True}
    assert unbench["data"] == {**WHO, "reason": "vendor says fixed", "manual": True}
    assert unbench["detail"] == "vendor says fixed"
    people = cli("events", "--type", "benched,unbenched")
    assert f"by {WHO['user']}@{WHO['host']}" in people.stdout and "vendor says fixed" in people.stdout


def test_an_unbench_without_a_reason_still_names_who(tmp_path: Path) -> None:
    cli("bench", "a/m", "--for", "1m")
    cli("unbench", "a/m")
    (unbench,) = events_json("--type", "unbenched")
    assert unbench["data"] == {**WHO, "reason": None, "manual": True}


def test_a_changed_config_file_is_an_event_with_who_and_which_file(tmp_path: Path) -> None:
    config = tmp_path / "chains.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    assert cli("run", "hi", "--chain", "demo").exit_code == 0
    assert events_json("--type", "config_changed") == []  # the first sight of a file is no change
    config.write_text(CONFIG.replace("attempts: 1", "attempts: 2"), encoding="utf-8")
    assert cli("run", "hi", "--chain", "demo").exit_code == 0
    assert cli("run", "hi", "--chain", "demo").exit_code == 0  # unchanged since: nothing more
    (changed,) = events_json("--type", "config_changed")
    data = changed["data"]
    assert isinstance(data, dict)
    assert {k: data[k] for k in ("user", "host", "reason", "path")} == {
        **WHO,
        "reason": "config file changed",
        "path": str(config.resolve()),
    }
    assert data["previous_sha256"] != data["sha256"] and len(str(data["sha256"])) == 64
    assert str(config.resolve()) in str(changed["detail"])


def test_only_one_process_records_a_change(tmp_path: Path) -> None:
    path = tmp_path / "chains.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    other = SqliteStore(os.environ["LLMFAIL_DB"])  # a second process's connection
    try:
        assert audit_config(store, load_config(path), 1.0) is None
        path.write_text(CONFIG + "\n# edited\n", encoding="utf-8")
        config = load_config(path)
        recorded = [audit_config(s, config, 2.0) for s in (store, other, store)]
        assert [r is not None for r in recorded] == [True, False, False]
        assert len(store.events(types=[ev.CONFIG_CHANGED])) == 1
    finally:
        store.close()
        other.close()


def test_swap_meta_returns_the_old_value_and_writes_only_on_change(store: SqliteStore) -> None:
    assert store.swap_meta("k", "1") is None
    seen: list[str] = []
    with store._read() as conn:
        conn.set_trace_callback(seen.append)
    try:
        assert store.swap_meta("k", "1") == "1"
    finally:
        with store._read() as conn:
            conn.set_trace_callback(None)
    assert not [sql for sql in seen if "IMMEDIATE" in sql or sql.startswith(("INSERT", "UPDATE"))]
    assert store.swap_meta("k", "2") == "1"
    assert store.swap_meta("k", "2") == "2"
    with store._read() as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'k'").fetchone()[0] == "2"


def test_an_engine_observer_sees_the_config_changed_event(tmp_path: Path) -> None:
    """The audit is made on the engine's first write, through its journal, so an observer
    subscribed right after `Engine(...)` sees it, before the request's own events."""
    path = tmp_path / "chains.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    try:
        assert audit_config(store, load_config(path), 1.0) is None  # the file's first sight
        path.write_text(CONFIG.replace("attempts: 1", "attempts: 2"), encoding="utf-8")
        engine = Engine(load_config(path), store)
        seen: list[Event] = []
        engine.on_event(seen.append)
        assert store.events(types=[ev.CONFIG_CHANGED]) == []  # nothing written before the first write
        engine.complete_sync("demo", "hi")
        assert seen[0].type == ev.CONFIG_CHANGED and seen[0].data["path"] == str(path.resolve())
        assert seen[0].id == store.events(types=[ev.CONFIG_CHANGED])[0].id
        assert [e.type for e in seen].count(ev.CONFIG_CHANGED) == 1 and seen[-1].type == ev.REQUEST
    finally:
        store.close()
