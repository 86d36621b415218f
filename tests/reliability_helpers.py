"""Worker processes and small tools for the reliability tests (issue 8).

The multi-process tests start real OS processes on one state DB, because the
properties they prove (locking, WAL recovery after `kill -9`, one probe lease
across processes) only exist between processes. Each worker is a role of this
module, run as `python -m tests.reliability_helpers ROLE ARGS...`; it imports
only the store (and the engine where a role needs it), never pytest, so it
starts fast. A worker reports on stdout: one JSON object at the end, or, for the
crash writers, one acknowledgement line per committed write.

Workers start together: each touches `<go>.ready<N>` once connected and waits
for the `<go>` file (`StartLine`); for the probe race the file holds the epoch
second at which every worker fires.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: The model the read-modify-write and crash workers fight over.
SHARED_KEY = "shared/key"

#: A quota day for the read-modify-write workers (any fixed string works).
QUOTA_DAY = "2026-01-01"


# --------------------------------------------------------------------------- parent side


def spawn(role: str, *args: object) -> subprocess.Popen[str]:
    """Start one worker of this module; it imports llmfail from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability_helpers", role, *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class StartLine:
    """Lines workers up: each says it is ready, then all are released by one file."""

    def __init__(self, directory: Path, name: str = "go") -> None:
        self.go = directory / name

    def wait_ready(self, workers: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(Path(f"{self.go}.ready{w}").exists() for w in range(workers)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only some of {workers} workers became ready within {timeout:g}s")
            time.sleep(0.005)

    def release(self, at: float | None = None) -> None:
        """Let the workers go now, or (with `at`) at that epoch second."""
        tmp = self.go.with_suffix(".tmp")
        tmp.write_text(repr(at) if at is not None else "")
        tmp.rename(self.go)  # atomic: a worker never reads a half-written time


def finish(procs: Sequence[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    """Each worker's final JSON report; a worker that failed fails the test with its stderr."""
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"worker exited {proc.returncode}: {err[-3000:]}"
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def integrity(db: Path) -> str:
    """SQLite's own verdict on the file ("ok" when nothing is corrupt)."""
    conn = sqlite3.connect(db)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def files_of(db: Path) -> list[Path]:
    """The DB and whatever SQLite keeps beside it (-wal, -shm, -journal)."""
    return sorted(p for p in db.parent.glob(db.name + "*") if p.is_file())


def leaks(needles: Iterable[str], texts: dict[str, str | bytes]) -> list[str]:
    """'needle in where' for every needle found in any of the named texts or byte blobs."""
    found = []
    for needle in needles:
        for where, text in texts.items():
            hay = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
            if needle.encode() in hay:
                found.append(f"{needle!r} in {where}")
    return found


# --------------------------------------------------------------------------- worker side


def _line_up(go: str, worker: int) -> float | None:
    Path(f"{go}.ready{worker}").touch()
    while not os.path.exists(go):
        time.sleep(0.001)
    text = Path(go).read_text()
    return float(text) if text else None


def _is_busy(error: Exception) -> bool:
    return "locked" in str(error).lower() or "busy" in str(error).lower()


def _append(db: str, worker: str, count: str, go: str) -> dict[str, Any]:
    """`count` events, one transaction each, request_id "w<worker>-<seq>"."""
    from llmfail.errors import StateError
    from llmfail.events import Event
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    _line_up(go, int(worker))
    busy, started = 0, time.perf_counter()
    for seq in range(int(count)):
        try:
            store.append([Event(type="request", ts=time.time(), request_id=f"w{worker}-{seq}", data={"seq": seq})])
        except StateError as error:
            if not _is_busy(error):
                raise
            busy += 1
    store.close()
    return {"busy": busy, "seconds": time.perf_counter() - started}


def _tail(db: str, expected: str, go: str, index: str, timeout: str) -> dict[str, Any]:
    """Follow the log the way `events --follow` does until `expected` rows arrived."""
    from llmfail.actions import EventFilter, follow_events
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    start = store.max_event_id()
    _line_up(go, int(index))
    rows: list[tuple[int, str | None]] = []
    give_up = time.monotonic() + float(timeout)
    for batch in follow_events(store, EventFilter(), start, poll_s=0.002):
        rows += [(e.id or 0, e.request_id) for e in batch]
        if len(rows) >= int(expected) or time.monotonic() > give_up:
            break
    store.close()
    return {"rows": rows}


def _tail_until(db: str, marker: str, go: str, timeout: str) -> dict[str, Any]:
    """Follow the log until the row whose request_id is `marker` arrives."""
    from llmfail.actions import EventFilter, follow_events
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    _line_up(go, 0)
    rows: list[tuple[int, str | None]] = []
    give_up = time.monotonic() + float(timeout)
    for batch in follow_events(store, EventFilter(), 0, poll_s=0.001):
        rows += [(e.id or 0, e.request_id) for e in batch]
        if any(e.request_id == marker for e in batch) or time.monotonic() > give_up:
            break
    store.close()
    return {"rows": rows}


def _churn(db: str, rounds: str, go: str) -> dict[str, Any]:
    """Writer under retention: each round a fresh row, then an old one the pruner deletes.

    The old row is the newest row most of the time, so a pruner deleting it
    frees the highest id: without AUTOINCREMENT the next fresh row would get
    that id again and a follower already past it would never see the row.
    """
    from llmfail.events import Event
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    _line_up(go, 1)
    for seq in range(int(rounds)):
        store.append([Event(type="request", ts=time.time(), request_id=f"fresh-{seq}")])
        store.append([Event(type="retry", ts=1.0, request_id=f"old-{seq}")])
        if seq % 50 == 49:  # let the pruner catch up, so it deletes under the follower however busy the machine
            deadline = time.monotonic() + 20
            while len(store.events(types=["retry"], limit=100)) > 60 and time.monotonic() < deadline:
                time.sleep(0.002)
    store.append([Event(type="request", ts=time.time(), request_id="end")])
    store.close()
    return {}


def _prune(db: str, go: str, stop: str) -> dict[str, Any]:
    """Delete every old row, as often as it can, until `stop` exists."""
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    _line_up(go, 2)
    deleted = rounds = 0
    while not os.path.exists(stop):
        deleted += store.prune(now=time.time(), retention=3600.0, force=True)
        rounds += 1
    store.close()
    return {"deleted": deleted, "rounds": rounds}


def _crash_writer(db: str, worker: str, go: str) -> None:
    """Write until killed; print "e SEQ" / "b SEQ" only after each write committed.

    Events carry request_id "w<worker>-<seq>"; the worker's own bench key
    "crash/m<worker>" is benched at now=seq until seq+1000 with reason
    "w<worker>:<seq>", so a torn row would show fields from two writes.
    """
    from llmfail.events import Event
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    _line_up(go, int(worker))
    seq = 0
    out = sys.stdout
    while True:
        seq += 1
        store.append([Event(type="request", ts=float(seq), request_id=f"w{worker}-{seq}", detail="x" * 200)])
        out.write(f"e {seq}\n")
        out.flush()
        if seq % 3 == 0:
            store.bench(
                f"crash/m{worker}",
                now=float(seq),
                until=seq + 1000.0,
                manual=False,
                reason=f"w{worker}:{seq}",
                kind="transient",
                replace=True,
            )
            out.write(f"b {seq}\n")
            out.flush()
        if seq % 7 == 0:
            store.record_failure(SHARED_KEY, now=float(seq), kind="transient", status=503, bench_for=30.0)


def _rmw(db: str, worker: str, count: str, quota: str, go: str) -> dict[str, Any]:
    """`count` read-modify-writes of one key: a benching failure and a quota take each."""
    from llmfail.errors import StateError
    from llmfail.store.sqlite import SqliteStore

    store = SqliteStore(db)
    _line_up(go, int(worker))
    took = busy = 0
    for _ in range(int(count)):
        try:
            store.record_failure(SHARED_KEY, now=1000.0, kind="transient", status=503, bench_for=30.0)
            took += store.take_quota(SHARED_KEY, day=QUOTA_DAY, limit=int(quota))
        except StateError as error:
            if not _is_busy(error):
                raise
            busy += 1
    store.close()
    return {"took": took, "busy": busy}


PROBE_CONFIG = """
defaults: {{attempts: 3, cooldown: 30s, timeout: 10s, deadline: 30s}}
providers:
  a: {{type: openai, base_url: "{url}/a/v1"}}
  b: {{type: openai, base_url: "{url}/b/v1"}}
chains:
  main: [a/m1, b/m2]
"""


def _probe(db: str, url: str, worker: str, go: str) -> dict[str, Any]:
    """One request at the epoch second written in the go file, on the real clock."""
    from llmfail.config import parse_config
    from llmfail.engine import Engine
    from llmfail.store.sqlite import SqliteStore

    engine = Engine(parse_config(PROBE_CONFIG.format(url=url), "probe.yaml"), SqliteStore(db))
    at = _line_up(go, int(worker))
    assert at is not None
    while time.time() < at:
        time.sleep(max(0.0, min(0.001, at - time.time())))
    fired = time.time()

    async def one() -> str:
        try:
            return (await engine.complete("main", f"worker {worker}")).model
        finally:
            await engine.aclose()

    return {"model": asyncio.run(one()), "late_ms": (fired - at) * 1000}


ROLES: dict[str, Callable[..., dict[str, Any] | None]] = {
    "append": _append,
    "tail": _tail,
    "tail-until": _tail_until,
    "churn": _churn,
    "prune": _prune,
    "crash-writer": _crash_writer,
    "rmw": _rmw,
    "probe": _probe,
}


if __name__ == "__main__":
    report = ROLES[sys.argv[1]](*sys.argv[2:])
    if report is not None:
        print(json.dumps(report))
