"""Several OS processes walking chains against one state DB at once (SPEC §4)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from llmfail import events as ev
from llmfail.store.sqlite import SqliteStore

from .conftest import Calls, ok, openai_error

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from llmfail.config import parse_config
    from llmfail.engine import Engine
    from llmfail.errors import ChainExhausted
    from llmfail.store.sqlite import SqliteStore

    url, db, worker, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = parse_config(f'''
    defaults: {{attempts: 2, backoff: {{base: 1ms, max: 5ms}}, cooldown: 50ms, timeout: 5s}}
    providers:
      a: {{type: openai, base_url: "{url}/a/v1"}}
      b: {{type: openai, base_url: "{url}/b/v1"}}
    chains:
      main: [a/m1, b/m2]
    ''', "worker.yaml")

    async def main():
        engine = Engine(config, SqliteStore(db))
        answered = 0
        for i in range(n):
            try:
                result = await engine.complete("main", f"{worker}-{i}")
                answered += result.model == "b/m2"
            except ChainExhausted:
                pass
        await engine.aclose()
        print(answered)

    asyncio.run(main())
    """
)


def test_four_processes_failing_over_at_once_lose_no_request_event_and_keep_the_db_intact(server, tmp_path: Path):
    a = Calls(openai_error(400, "context_length_exceeded"), openai_error(503))
    server.expect_request("/a/v1/chat/completions").respond_with_handler(a)
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("b")))
    db = tmp_path / "shared.db"
    SqliteStore(str(db)).close()  # created once, as an operator's first command would
    url = server.url_for("").rstrip("/")
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(db), str(w), "10"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for w in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outputs]
    assert sum(int(out) for out, _ in outputs) == 40  # every request failed over to b and was answered

    store = SqliteStore(str(db))
    requests = store.events(types=[ev.REQUEST])
    assert len(requests) == 40 and all(r.data["ok"] for r in requests)
    assert len({r.request_id for r in requests}) == 40
    failovers = store.events(types=[ev.FAILOVER])
    assert len(failovers) >= 4  # at least each process's first request walked past a
    ids = [e.id for e in store.events()]
    assert ids == sorted(set(ids))
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
