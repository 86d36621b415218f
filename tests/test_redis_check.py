"""`llmfail check` with a Redis URL: it connects and warns about settings that can silently lose state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmfail.cli import app

from .redis_server import RedisServer, free_port, start_server

runner = CliRunner()

#: A config `check` has nothing to say about, so every warning is the server's.
CONFIG = """
providers:
  m: {type: mock}
  n: {type: ollama, base_url: "http://127.0.0.1:9"}
chains:
  demo: [m/echo, n/llama]
"""


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    servers: list[RedisServer] = []

    def run(*args: str) -> RedisServer:
        workdir = tmp_path / f"redis{len(servers)}"
        workdir.mkdir()
        servers.append(start_server(workdir, *args))
        return servers[-1]

    yield run
    for server in servers:
        server.stop()


def check(url: str) -> tuple[int, list[str]]:
    Path("chains.yaml").write_text(CONFIG)
    result = runner.invoke(app, ["--db", url, "check"])
    return result.exit_code, [line for line in result.stdout.splitlines() if "warning:" in line]


def test_a_well_set_server_gives_no_warning(start):
    server = start("--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")
    code, warnings = check(server.url)
    assert code == 0 and warnings == []


def test_an_evicting_server_is_warned_about(start):
    server = start("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru")
    code, warnings = check(server.url)
    assert code == 0
    assert len(warnings) == 1
    assert (
        warnings[0].split("warning: ", 1)[1].startswith(f"shared state {server.url}: maxmemory-policy is allkeys-lru")
    )


def test_a_server_without_persistence_is_warned_about(start):
    server = start("--maxmemory-policy", "noeviction")  # the helper's default: --save '' --appendonly no
    code, warnings = check(server.url)
    assert code == 0 and len(warnings) == 1
    assert f"shared state {server.url}: " in warnings[0] and "keeps nothing on disk" in warnings[0]


def test_rdb_save_points_alone_count_as_persistence(start):
    server = start("--maxmemory-policy", "noeviction", "--save", "900 1")
    assert check(server.url)[1] == []


def test_an_unreachable_server_is_one_warning():
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, warnings = check(url)
    assert code == 0 and len(warnings) == 1
    assert f"cannot reach shared state {url} (" in warnings[0] and warnings[0].endswith("its settings were not checked")


def test_a_password_in_the_url_is_refused_and_never_printed():
    result = runner.invoke(app, ["--db", "redis://:hunter2-secret@127.0.0.1:6390/0", "check"])
    assert result.exit_code == 2
    assert "redis://:***@127.0.0.1:6390/0" in result.stderr and "hunter2" not in result.output
