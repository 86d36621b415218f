"""Operator commands that check what they are told: re-benching keeps the longer bench, typos get a
did-you-mean, `info` says which config and store are used, a missing DB or model is named."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from llmfail import events as ev
from llmfail.cli import app
from llmfail.store.sqlite import SqliteStore

runner = CliRunner()

CONFIG = """
providers:
  a: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: A_KEY}
  b:
    type: openai
    base_url: "http://127.0.0.1:9/b/v1"
chains:
  prod:
    - openai/gpt-4o
    - model: b/m2
      credentials: [{api_key_env: B_KEY_1}, {api_key_env: B_KEY_2}]
    - a/m3
"""


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "chains.yaml"
    path.write_text(textwrap.dedent(CONFIG).lstrip("\n"), encoding="utf-8")
    return path


def open_db() -> SqliteStore:
    return SqliteStore(os.environ["LLMFAIL_DB"])


# --------------------------------------------------------------------------- 13: re-benching


def test_a_shorter_bench_keeps_the_running_one_and_its_reason_and_says_so():
    cli("bench", "openai/gpt-4o", "--for", "10m", "--reason", "bad deploy")
    result = cli("bench", "openai/gpt-4o", "--for", "5m")
    assert result.exit_code == 0
    assert result.stdout.startswith("openai/gpt-4o stays benched until ")
    assert "(bad deploy): a running bench is never shortened (--replace sets the shorter one)" in result.stdout
    (bench,) = open_db().benches(time.time())
    assert bench.reason == "bad deploy" and bench.bench_until is not None and bench.bench_until > time.time() + 550
    assert len(open_db().events(types=[ev.BENCHED])) == 1  # nothing happened, nothing logged


def test_bench_json_of_a_kept_bench_prints_the_running_row_and_notes_it_on_stderr():
    cli("bench", "openai/gpt-4o", "--for", "10m", "--reason", "bad deploy")
    result = cli("bench", "openai/gpt-4o", "--for", "5m", "--json")
    row = json.loads(result.stdout)
    assert row["reason"] == "bad deploy" and row["remaining_s"] > 550
    assert "stays benched" in result.stderr


def test_replace_shortens_a_running_bench_on_purpose():
    cli("bench", "openai/gpt-4o", "--for", "10m", "--reason", "bad deploy")
    result = cli("bench", "openai/gpt-4o", "--for", "5m", "--replace", "--reason", "rolled back")
    assert result.exit_code == 0 and result.stdout.startswith("benched openai/gpt-4o for ")
    (bench,) = open_db().benches(time.time())
    assert bench.reason == "rolled back" and bench.bench_until is not None and bench.bench_until < time.time() + 301


def test_a_longer_bench_extends_the_running_one():
    cli("bench", "openai/gpt-4o", "--for", "5m")
    result = cli("bench", "openai/gpt-4o", "--for", "10m")
    assert result.stdout.startswith("benched openai/gpt-4o for ")
    (bench,) = open_db().benches(time.time())
    assert bench.bench_until is not None and bench.bench_until > time.time() + 550


# --------------------------------------------------------------------------- 14: typos


def test_benching_a_typo_offers_the_nearest_configured_model(tmp_path: Path):
    write_config(tmp_path)
    result = cli("bench", "opneai/gpt-4o", "--for", "1m")
    assert result.exit_code == 0
    assert (
        "no chain in chains.yaml contains opneai/gpt-4o (did you mean openai/gpt-4o?): benched anyway" in result.stderr
    )


@pytest.mark.parametrize("key", ["openai/gpt-4o#abc", "openai/gpt-4o#", "openai/gpt-4o#-1", "openai/gpt-4o#01"])
def test_a_malformed_credential_key_is_exit_2_and_benches_nothing(key: str):
    result = cli("bench", key, "--for", "1m")
    assert result.exit_code == 2 and "is not a credential key" in result.stderr
    assert not Path(os.environ["LLMFAIL_DB"]).exists()


def test_a_credential_key_the_config_does_not_have_is_exit_2_naming_the_ones_it_has(tmp_path: Path):
    write_config(tmp_path)
    single = cli("bench", "openai/gpt-4o#0", "--for", "1m")
    assert single.exit_code == 2
    assert "openai/gpt-4o has no credential #0" in single.stderr
    assert "single credential: bench openai/gpt-4o itself" in single.stderr
    missing = cli("bench", "b/m2#2", "--for", "1m")
    assert missing.exit_code == 2 and "its credential keys: b/m2#0, b/m2#1" in missing.stderr
    assert cli("bench", "b/m2#1", "--for", "1m").exit_code == 0
    assert [s.model for s in open_db().benches(time.time())] == ["b/m2#1"]


# --------------------------------------------------------------------------- 15: which config, which store


def test_info_names_the_config_and_how_it_was_found_the_store_and_the_keys_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write_config(tmp_path)
    monkeypatch.setenv("A_KEY", "sk-not-to-be-printed")
    cli("bench", "a/m3", "--for", "1m")
    result = cli("info", "--json")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert set(out) == {"config", "config_source", "store", "versions", "keys_set"}
    assert out["config"] == "chains.yaml" and out["config_source"] == "./chains.yaml"
    assert out["store"]["url"] == os.environ["LLMFAIL_DB"] and out["store"]["source"] == "$LLMFAIL_DB"
    assert out["store"]["kind"] == "sqlite" and out["store"]["exists"] is True and out["store"]["size_bytes"] > 0
    assert out["keys_set"] == ["A_KEY"]
    assert out["versions"]["llmfail"] and out["versions"]["python"]
    assert "sk-not-to-be-printed" not in result.stdout
    people = cli("info").stdout
    assert "config:   chains.yaml (./chains.yaml)" in people and "keys set: A_KEY (not set: " in people


def test_info_redacts_a_store_urls_password(tmp_path: Path):
    result = cli("--db", "redis://ops:hunter2@cache.internal:6379/0", "info", "--json")
    store = json.loads(result.stdout)["store"]
    assert store == {
        "url": "redis://ops:***@cache.internal:6379/0",
        "kind": "redis",
        "source": "--db",
        "namespace": None,
        "exists": None,
        "size_bytes": None,
    }
    assert "hunter2" not in result.output


@pytest.mark.parametrize("args", [["ls-benched"], ["events"], ["stats"], ["chains"]], ids=" ".join)
def test_a_read_of_a_named_db_file_that_does_not_exist_says_so_and_exits_0(tmp_path: Path, args: list[str]):
    missing = tmp_path / "typo.db"
    result = cli("--db", str(missing), *args)
    assert result.exit_code == 0
    assert f"llmfail: no state DB at {missing} (named by --db): nothing recorded there yet" in result.stderr
    assert not missing.exists()


def test_events_for_a_model_no_chain_has_warns_it_is_unknown(tmp_path: Path):
    write_config(tmp_path)
    cli("bench", "a/m3", "--for", "1m")
    result = cli("events", "--model", "nope/nope")
    assert result.exit_code == 0
    assert "warning: no events for nope/nope, and no chain in chains.yaml contains nope/nope" in result.stderr
    typo = cli("events", "--model", "a/m4")
    assert "did you mean a/m3?" in typo.stderr
    known = cli("events", "--model", "a/m3")
    assert known.stderr == ""


def test_info_says_when_the_state_db_path_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    directory = tmp_path / "a-dir"
    directory.mkdir()
    monkeypatch.setenv("LLMFAIL_DB", str(directory))
    result = cli("info")
    assert result.exit_code == 0
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("store:")]
    assert "a directory, not a state DB" in line and "bytes" not in line
    assert json.loads(cli("info", "--json").stdout)["store"]["size_bytes"] is None


def test_events_for_a_model_without_any_config_says_the_name_cannot_be_checked():
    result = cli("events", "--model", "nope/nope")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no events for nope/nope" in result.stderr and "cannot be checked" in result.stderr


def test_ls_benched_shows_no_reason_rather_than_repeating_manual():
    cli("bench", "mock/echo", "--for", "5m")
    (row,) = [line for line in cli("ls-benched").stdout.splitlines() if "mock/echo" in line]
    assert "(no reason given)" in row and row.count("manual") == 1
