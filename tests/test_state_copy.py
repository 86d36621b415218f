"""`llmfail state copy SRC DST`: benches (every state) and the event log move between stores."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmfail import events as ev
from llmfail.cli import app
from llmfail.config import StateConfig
from llmfail.events import Event
from llmfail.store import Store
from llmfail.store.select import select_store

from .redis_server import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # fixtures, imported to be found

runner = CliRunner()
NOW = 1_760_000_000.0

#: name -> the target (a path or URL) of a fresh, empty store of that kind
TARGETS: dict[str, Callable[[Path, str, str], str]] = {
    "sqlite": lambda tmp, url, name: str(tmp / f"{name}.db"),
    "sqlite-url": lambda tmp, url, name: f"sqlite:///{tmp / (name + '-url.db')}",
    "redis": lambda tmp, url, name: url.replace("redis://", "valkey://") if name == "src" else url,
}


@pytest.fixture
def namespace(tmp_path: Path, redis_url: str) -> StateConfig:
    """A config naming a namespace of this test's own: `state copy` and the test open Redis in it."""
    section = StateConfig(url=redis_url, namespace="copy-" + uuid.uuid4().hex[:10])
    (tmp_path / "chains.yaml").write_text(
        f"state: {{url: {section.url}, namespace: {section.namespace}}}\n"
        "providers:\n  m: {type: mock}\nchains:\n  demo: [m/echo]\n"
    )
    return section


def opened(target: str, section: StateConfig) -> Store:
    return select_store(target, section, environ={}).open()


def seed(store: Store) -> list[Event]:
    """A source with every kind of bench state and a log of events at distinct times."""
    store.bench("a/manual", now=NOW - 10, until=NOW + 3600, manual=True, reason="deploy at 14:00", kind=None)
    store.record_failure("b/auto", now=NOW - 5, kind="rate_limited", status=429, bench_for=600.0)
    store.record_failure("c/half-open", now=NOW - 900, kind="transient", status=503, bench_for=60.0)
    store.record_failure("d/only-failed", now=NOW - 1, kind="transient", status=500, bench_for=None)
    store.demote("e/slow", now=NOW - 30, slow_ms=4200.0, recheck_at=NOW + 270)
    written = [
        Event(
            type=ev.ATTEMPT_FAILED,
            ts=NOW - 900 + i,
            request_id=f"r{i}",
            chain="main",
            model="c/half-open",
            kind="transient",
            status=503,
            detail=f"boom {i}",
            data={"n": i},
        )
        for i in range(2500)  # more than one page
    ] + [
        Event(
            type=ev.REQUEST,
            ts=NOW - 1,
            request_id="last",
            chain="main",
            model="b/auto",
            latency_ms=12.5,
            data={"ok": True, "answered_by": "b/auto"},
        )
    ]
    store.append(written)
    return written


PAIRS = [("sqlite", "redis"), ("redis", "sqlite"), ("sqlite", "sqlite-url"), ("redis", "redis")]


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS, ids="->".join)
def test_copy_moves_every_bench_state_and_the_event_log_in_order_with_its_timestamps(
    tmp_path, namespace, redis_url, src_kind, dst_kind
):
    src_target, dst_target = (
        TARGETS[src_kind](tmp_path, redis_url, "src"),
        TARGETS[dst_kind](tmp_path, redis_url, "dst"),
    )
    extra = []
    dst_section = namespace
    if src_kind == dst_kind == "redis":  # one server, two namespaces: the config's is the source's
        dst_section = StateConfig(url=redis_url, namespace=namespace.namespace + "-to")
        extra = ["--dst-namespace", dst_section.namespace]
    src = opened(src_target, namespace)
    written = seed(src)
    result = runner.invoke(app, ["state", "copy", src_target, dst_target, "--json", *extra])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"benches": 3, "demotions": 1, "events": len(written)}

    dst = opened(dst_target, dst_section)
    copied = {s.model: s for s in dst.all_states()}
    original = {s.model: s for s in src.all_states()}
    for model in ("a/manual", "b/auto", "c/half-open"):
        for field in ("bench_until", "benched_at", "manual", "reason", "kind"):
            assert getattr(copied[model], field) == getattr(original[model], field), (model, field)
    assert copied["c/half-open"].is_half_open(NOW) and [s.model for s in dst.benches(NOW)] == ["b/auto", "a/manual"]
    assert copied["e/slow"].is_demoted and copied["e/slow"].slow_ms == 4200.0
    assert "d/only-failed" not in copied  # no bench, no demotion: nothing to carry

    events = dst.events()
    assert [
        (e.type, e.ts, e.request_id, e.model, e.kind, e.status, e.detail, e.latency_ms, e.data) for e in events
    ] == [(e.type, e.ts, e.request_id, e.model, e.kind, e.status, e.detail, e.latency_ms, e.data) for e in src.events()]
    assert [e.id for e in events] == sorted({e.id for e in events})  # ids increasing, none repeated


def test_copy_refuses_a_destination_that_already_holds_state_unless_forced(tmp_path):
    src_path, dst_path = str(tmp_path / "src.db"), str(tmp_path / "dst.db")
    seed(select_store(src_path, environ={}).open())
    dst = select_store(dst_path, environ={}).open()
    dst.append([Event(type=ev.REQUEST, ts=NOW - 5000, request_id="theirs")])
    dst.bench("a/manual", now=NOW, until=NOW + 7200, manual=True, reason="longer", kind=None)

    refused = runner.invoke(app, ["state", "copy", src_path, dst_path])
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[0] == (
        f"llmfail: error: {dst_path} already holds events or benches; nothing was copied"
    )
    assert [e.request_id for e in dst.events()] == ["theirs"]

    forced = runner.invoke(app, ["state", "copy", src_path, dst_path, "--force"])
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith(
        f"copied 3 bench(es), 1 demotion(s) and 2501 event(s) from {src_path} to {dst_path}"
    )
    assert dst.events()[0].request_id == "theirs" and len(dst.events()) == 2502
    assert dst.states(["a/manual"])["a/manual"].bench_until == NOW + 7200  # never shortened by the copy


def test_copy_from_a_missing_file_or_onto_itself_is_a_usage_error(tmp_path):
    missing = runner.invoke(app, ["state", "copy", str(tmp_path / "none.db"), str(tmp_path / "dst.db")])
    assert missing.exit_code == 2 and "no state DB at" in missing.stderr
    assert not (tmp_path / "dst.db").exists() and not (tmp_path / "none.db").exists()
    same = runner.invoke(app, ["state", "copy", str(tmp_path / "x.db"), f"sqlite:///{tmp_path / 'x.db'}"])
    assert same.exit_code == 2 and "the same store" in same.stderr
    url = "redis://127.0.0.1:9/0"
    same_redis = runner.invoke(app, ["state", "copy", url, url.replace("redis:", "valkey:")])
    assert same_redis.exit_code == 2 and "the same store" in same_redis.stderr
    assert runner.invoke(app, ["state", "copy", url, url, "--dst-namespace", "b"]).exit_code == 1  # none there
