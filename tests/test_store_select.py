"""Which store a process uses (`llmfail.store.select`): one rule, tested as a table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmfail.paths import default_state_db
from llmfail.store.select import redact_url, select_store


@dataclass(frozen=True)
class State:
    """A config's `state:` section, as selection reads it."""

    url: str
    password_env: str | None = None
    namespace: str | None = None


SECTION = State("redis://cache:6379/0", password_env="REDIS_PASSWORD", namespace="prod")

# (--db, $LLMFAIL_DB, config state:) -> (target, which rule chose it)
CASES = [
    (None, None, None, "<default>", "default"),
    (None, None, SECTION, "redis://cache:6379/0", "config state.url"),
    (None, "/env/state.db", None, "/env/state.db", "$LLMFAIL_DB"),
    (None, "/env/state.db", SECTION, "/env/state.db", "$LLMFAIL_DB"),
    ("/flag.db", None, None, "/flag.db", "--db"),
    ("/flag.db", "/env/state.db", SECTION, "/flag.db", "--db"),
    ("redis://other:6380", "/env/state.db", SECTION, "redis://other:6380", "--db"),
    ("sqlite:///tmp/x.db", None, SECTION, "sqlite:///tmp/x.db", "--db"),
    (None, "valkey://v:6379", None, "valkey://v:6379", "$LLMFAIL_DB"),
    ("", "", SECTION, "redis://cache:6379/0", "config state.url"),  # empty means unset
]


@pytest.mark.parametrize(("db", "env", "state", "target", "source"), CASES)
def test_precedence_is_db_then_env_then_config_then_default(db, env, state, target, source):
    environ = {"LLMFAIL_DB": env} if env is not None else {}
    chosen = select_store(db, state, environ=environ)
    assert chosen.target == (str(default_state_db()) if target == "<default>" else target)
    assert chosen.source == source
    # the config's password variable and namespace go with whichever URL is chosen
    assert (chosen.password_env, chosen.namespace) == ((None, None) if state is None else ("REDIS_PASSWORD", "prod"))


@pytest.mark.parametrize(
    ("target", "redis", "path"),
    [
        ("/var/lib/state.db", False, Path("/var/lib/state.db")),
        ("sqlite:///var/lib/state.db", False, Path("/var/lib/state.db")),
        ("relative.db", False, Path("relative.db")),
        (":memory:", False, Path(":memory:")),
        ("redis://h:6379/0", True, None),
        ("rediss://h:6380", True, None),
        ("unix:///run/redis.sock", True, None),
        ("valkey://h", True, None),
        ("REDIS://H", True, None),
    ],
)
def test_a_path_or_sqlite_url_is_sqlite_and_the_four_redis_schemes_are_redis(target, redis, path):
    chosen = select_store(target, environ={})
    assert chosen.is_redis is redis
    assert chosen.sqlite_path() == path


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:s3cret@h:6379", "redis://user:***@h:6379"),
        ("rediss://user:p%40ss@h", "rediss://user:***@h"),
        ("redis://user@h", "redis://user@h"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("unix://:pw@/run/redis.sock", "unix://:***@/run/redis.sock"),
        ("/home/me/state@work.db", "/home/me/state@work.db"),
        ("sqlite:///a/b.db", "sqlite:///a/b.db"),
    ],
)
def test_a_url_is_always_shown_with_its_password_redacted(url, shown):
    assert redact_url(url) == shown
    assert select_store(url, environ={}).shown == shown


def test_a_read_never_creates_a_sqlite_file_but_a_server_is_always_asked(tmp_path):
    assert not select_store(str(tmp_path / "none.db"), environ={}).exists()
    assert select_store("redis://127.0.0.1:1", environ={}).exists()


def test_every_command_follows_the_config_state_section_unless_db_or_the_env_says_otherwise(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmfail.cli import app

    runner = CliRunner()
    named, other = tmp_path / "named.db", tmp_path / "other.db"
    (tmp_path / "chains.yaml").write_text(
        f"state: {{url: 'sqlite:///{named}'}}\nproviders:\n  m: {{type: mock}}\nchains:\n  demo: [m/echo]\n"
    )
    monkeypatch.delenv("LLMFAIL_DB")

    def benched(*args: str) -> list[str]:
        result = runner.invoke(app, [*args, "ls-benched", "--json"])
        assert result.exit_code == 0, result.output
        return [row["model"] for row in json.loads(result.stdout)]

    assert runner.invoke(app, ["bench", "m/echo", "--for", "1h"]).exit_code == 0
    assert named.exists() and benched() == ["m/echo"]
    assert runner.invoke(app, ["run", "hi", "--no-stream"]).stdout == "hi\n"  # the engine writes there too
    assert [e.type for e in select_store(str(named), environ={}).open().events()][-1] == "request"
    assert benched("--db", str(other)) == [] and not other.exists()  # --db wins (and a read creates nothing)
    monkeypatch.setenv("LLMFAIL_DB", str(other))
    assert benched() == []  # so does $LLMFAIL_DB
