"""What every command shares: global options anywhere, one error style, help with examples, completion, wording."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from llmfail.cli import app, hoist_global_options
from llmfail.durations import format_duration

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
providers:
  a: {type: openai, base_url: "http://127.0.0.1:9/v1"}
chains:
  only: [a/m1, mock/echo]
"""


def cli(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


def write_config(path: Path, text: str = CONFIG) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


LLMFAIL = str(Path(sys.executable).parent / "llmfail")  # the console script: completion keys on its name


def commands() -> list[str]:
    from typer.main import get_command

    return sorted(get_command(app).commands)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- 16: global options after the command


def test_config_after_the_command_is_the_same_as_before_it(tmp_path: Path):
    config = write_config(tmp_path / "elsewhere.yaml")
    result = cli("chains", "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)) == ["only"]
    assert cli("chains", f"--config={config}", "--json").stdout == result.stdout


def test_db_and_debug_after_the_command_are_accepted(tmp_path: Path):
    result = cli("bench", "mock/echo", "--for", "1m", "--db", str(tmp_path / "other.db"), "--debug")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "other.db").exists()


def test_debug_after_the_command_shows_the_traceback(tmp_path: Path):
    write_config(tmp_path / "chains.yaml", "chains:\n  c: [mock/echo]\n")
    plain = cli("run", "hi", "--chain", "nope")
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    debug = runner.invoke(app, ["run", "hi", "--chain", "nope", "--debug"])
    assert debug.exception is not None and "nope" in str(debug.exception)


def test_a_prompt_after_double_dash_is_never_taken_for_an_option():
    argv = ["run", "--no-stream", "--", "--debug"]
    assert hoist_global_options(argv, {"run"}) == argv
    assert hoist_global_options(["run", "x", "--db", "f.db", "--debug"], {"run"}) == [
        "--db",
        "f.db",
        "--debug",
        "run",
        "x",
    ]
    assert hoist_global_options(["--config", "run", "run", "x"], {"run"}) == ["--config", "run", "run", "x"]


# --------------------------------------------------------------------------- 17: shell completion


def test_shell_completion_is_on_and_completes_command_names(tmp_path: Path):
    env = {**os.environ, "_LLMFAIL_COMPLETE": "complete_bash", "COMP_WORDS": "llmfail ben", "COMP_CWORD": "1"}
    done = subprocess.run([LLMFAIL], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.split() == ["bench"]
    help_text = cli("--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_install_completion_writes_the_bash_script(tmp_path: Path):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    done = subprocess.run(
        [LLMFAIL, "--install-completion", "bash"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "_LLMFAIL_COMPLETE" in (tmp_path / ".bash_completions" / "llmfail.sh").read_text()


# --------------------------------------------------------------------------- 18: one error style


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "hi", "--max-tokens", "0"], "llmfail: error: invalid value for '--max-tokens'"),
        (["chains", "--nope"], "llmfail: error: no such option: --nope"),
        (["bench"], "llmfail: error: missing argument 'MODEL'"),
        (["nosuchcommand"], "llmfail: error: no such command 'nosuchcommand'"),
    ],
)
def test_clicks_usage_errors_read_like_ours_with_a_hint_and_exit_2(args: list[str], message: str):
    result = cli(*args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(message), result.stderr
    assert re.fullmatch(r"  hint: `llmfail( \S+)? --help` lists the (commands and )?options", lines[1])
    assert len(lines) == 2 and "Error:" not in result.stderr and "Usage:" not in result.stderr


def test_no_arguments_still_prints_the_help():
    result = cli()
    assert result.exit_code == 2 and "Commands:" in result.output


@pytest.mark.parametrize(
    "seconds, text",
    [
        (30 * 86400, "30d"),
        (86400 + 4 * 3600, "1d4h"),
        (7200, "2h"),
        (3900, "1h5m"),
        (600, "10m"),
        (90, "1m30s"),
        (5, "5s"),
        (0.25, "250ms"),
    ],
)
def test_durations_leave_out_a_zero_second_unit(seconds: float, text: str):
    assert format_duration(seconds) == text


def test_counts_are_singular_for_one(tmp_path: Path):
    write_config(tmp_path / "chains.yaml", "chains:\n  c: [mock/echo, mock/other]\n")
    assert cli("check").stdout.strip().endswith("ok (1 chain, 2 entries, 1 warning)")
    report = cli("simulate", "--chain", "c", "--fail-rate", "429", "--requests", "1")
    assert "· 1 failover ·" in report.stdout


def test_a_refused_plain_http_connection_does_not_mention_tls(tmp_path: Path):
    """On the engine's default transport (aiohttp, whose own text says `ssl:default`) and on `run`'s."""
    import asyncio

    from llmfail import Engine
    from llmfail.config import parse_config
    from llmfail.errors import ChainExhausted
    from llmfail.store.sqlite import SqliteStore

    text = """
        defaults: {attempts: 1}
        providers:
          a: {type: openai, base_url: "http://127.0.0.1:9/v1"}
        chains:
          c: [a/m1]
        """
    engine = Engine(parse_config(textwrap.dedent(text)), SqliteStore(str(tmp_path / "lib.db")))

    async def ask() -> str:
        try:
            await engine.complete("c", "hi")
        except ChainExhausted as error:
            return str(error)
        finally:
            await engine.aclose()
        raise AssertionError("port 9 answered")

    library = asyncio.run(ask())
    assert "cannot connect to 127.0.0.1:9" in library and "ssl" not in library.lower()
    write_config(tmp_path / "chains.yaml", text)
    result = cli("run", "hi", "--no-stream")
    assert result.exit_code == 1 and "ssl" not in result.stderr.lower()


def test_dash_n_means_the_number_of_events_and_simulate_spells_requests_out():
    assert "-n, --limit" in cli("events", "--help").stdout
    simulate = cli("simulate", "--help").stdout
    assert "--requests" in simulate and "-n" not in re.findall(r"-\w\b", simulate)
    assert cli("simulate", "-n", "5").exit_code == 2


@pytest.mark.parametrize("command", commands())
def test_every_option_has_help_text_and_every_command_an_example(command: str):
    from typer.main import get_command

    click_command = get_command(app).commands[command]  # type: ignore[attr-defined]
    missing = [
        p.name for p in click_command.params if getattr(p, "help", None) in (None, "") and p.param_type_name == "option"
    ]
    assert missing == []
    text = cli(command, "--help").stdout
    assert "Examples:" in text and f"llmfail {command}" in text.split("Examples:")[1]


def test_check_json_reports_a_good_config(tmp_path: Path):
    write_config(tmp_path / "chains.yaml", "chains:\n  c: [mock/echo]\n")
    result = cli("check", "--json")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out == {
        "config": "chains.yaml",
        "ok": True,
        "chains": 1,
        "entries": 1,
        "problems": [],
        "warnings": [{"where": "chains.yaml:2:7", "message": out["warnings"][0]["message"]}],
    }
    assert "every entry is on provider mock" in out["warnings"][0]["message"]


def test_check_json_lists_every_problem_and_exits_2(tmp_path: Path):
    write_config(tmp_path / "chains.yaml", "chains:\n  c: [nowhere/m]\n  d: []\n")
    result = cli("check", "--json")
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out["ok"] is False and len(out["problems"]) == 2
    assert set(out["problems"][0]) == {"file", "line", "column", "path", "message"}
    assert out["problems"][0]["line"] == 2


# --------------------------------------------------------------------------- 20: no README pointers, a LICENSE


def test_no_help_text_or_hint_points_at_the_readme():
    sources = [p for p in (ROOT / "llmfail").rglob("*.py")]
    offenders = [str(p) for p in sources if re.search(r"README[^\n]*##|## \w+` in the README", p.read_text())]
    assert offenders == []
    assert "README" not in cli("simulate", "--help").stdout
    assert (ROOT / "docs" / "scenarios.md").is_file()


def test_the_license_file_is_the_mit_license_pyproject_names():
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
