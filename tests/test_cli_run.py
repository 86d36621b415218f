"""`llmfail run` through the real CLI: output streams, the --json shape, exit codes, bad configs, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner
from werkzeug import Request, Response

from llmfail.cli import app

from .conftest import CANARY_KEY, Calls, ok, openai_error

runner = CliRunner()

CONFIG = """
defaults: {attempts: 2, backoff: {base: 1ms, max: 2ms}, timeout: 5s}
providers:
  a: {type: openai, base_url: "{url}/a/v1", api_key_env: A_KEY}
  b: {type: openai, base_url: "{url}/b/v1", api_key_env: B_KEY}
chains:
  main: [a/m1, b/m2]
"""


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config's key variables are set (a missing one skips its credential)."""
    monkeypatch.setenv("A_KEY", "key-a-not-a-secret")
    monkeypatch.setenv("B_KEY", "key-b-not-a-secret")


def write_config(tmp_path: Path, server, text: str = CONFIG) -> Path:
    path = tmp_path / "chains.yaml"
    path.write_text(text.replace("{url}", server.url_for("").rstrip("/")))
    return path


def test_run_prints_the_answer_on_stdout_and_one_failover_line_on_stderr(server, tmp_path):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(openai_error(503)))
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("the answer")))
    config = write_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--chain", "main", "--no-stream"])
    assert result.exit_code == 0
    assert result.stdout == "the answer\n"
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines == ["llmfail: a/m1 failed (transient) -> trying b/m2"]


def test_quiet_hides_the_failover_trace(server, tmp_path):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(openai_error(503)))
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("x")))
    config = write_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--quiet", "--no-stream"])
    assert result.exit_code == 0 and result.stderr == ""


def test_run_json_has_exactly_the_documented_shape(server, tmp_path):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(
        Calls(openai_error(429, headers={"retry-after": "600"}))
    )
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(ok("json answer")))
    config = write_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--chain", "main", "--json"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert set(out) == {
        "ok",
        "chain",
        "model",
        "text",
        "failovers",
        "latency_ms",
        "usage",
        "attempts",
        "error",
        "warnings",
    }
    assert out["ok"] is True and out["model"] == "b/m2" and out["text"] == "json answer"
    assert out["failovers"] == 1 and out["error"] is None
    assert out["usage"] == {"input_tokens": 3, "output_tokens": 2}
    assert [set(a) for a in out["attempts"]] == [{"model", "ok", "kind", "status", "latency_ms", "error"}] * 2
    assert [(a["model"], a["ok"], a["kind"], a["status"]) for a in out["attempts"]] == [
        ("a/m1", False, "rate_limited", 429),
        ("b/m2", True, None, None),
    ]


def test_an_exhausted_chain_exits_1_with_the_json_error_and_one_line_on_stderr(server, tmp_path):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(openai_error(500)))
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(openai_error(401, "invalid_api_key")))
    config = write_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["ok"] is False and out["model"] is None
    assert out["error"]["kind"] == "auth" and out["error"]["status"] == 401
    assert "exhausted" in out["error"]["message"]
    assert len(out["attempts"]) == 3
    assert result.stderr.startswith("llmfail: error: chain 'main' exhausted")
    assert "Traceback" not in result.stderr


def test_a_fail_fast_error_exits_1(server, tmp_path):
    server.expect_request("/a/v1/chat/completions").respond_with_handler(
        Calls(openai_error(400, "content_policy_violation", message="blocked by safety"))
    )
    config = write_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi"])
    assert result.exit_code == 1 and "blocked by safety" in result.stderr


def test_a_dash_prompt_is_read_from_stdin(server, tmp_path):
    seen: list[str] = []

    def echo(request: Request) -> Response:
        seen.append(json.loads(request.data)["messages"][-1]["content"])
        return ok("fine")

    server.expect_request("/a/v1/chat/completions").respond_with_handler(echo)
    config = write_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "-", "--system", "be brief"], input="from stdin\n")
    assert result.exit_code == 0 and seen == ["from stdin\n"]


def test_an_unknown_chain_is_a_usage_error_naming_the_chains(server, tmp_path):
    config = write_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--chain", "nope"])
    assert result.exit_code == 2 and "main" in result.stderr


def test_without_any_config_the_embedded_demo_chain_fails_over_offline():
    result = runner.invoke(app, ["run", "hello demo", "--chain", "demo", "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["text"] == "hello demo" and out["failovers"] == 1 and out["attempts"][0]["kind"] == "transient"


BAD_CONFIGS = {
    "unknown key": ("defaults:\n  atempts: 3\nchains:\n  c: [mock/x]\n", 2, "did you mean"),
    "wrong type": ("defaults:\n  attempts: many\nchains:\n  c: [mock/x]\n", 2, "attempts"),
    "negative duration": ("defaults:\n  cooldown: -5s\nchains:\n  c: [mock/x]\n", 2, "negative"),
    "bad duration": ("defaults:\n  timeout: soon\nchains:\n  c: [mock/x]\n", 2, "duration"),
    "unknown provider": ("chains:\n  c:\n    - nope/x\n", 3, "nope"),
    "unknown nested chain": ("chains:\n  c:\n    - chain: ghost\n", 3, "ghost"),
    "cyclic chains": ("chains:\n  a:\n    - chain: b\n  b:\n    - chain: a\n", 5, "cycl"),
    "empty chain": ("chains:\n  c: []\n", 2, "empty"),
    "attempts out of range": ("defaults:\n  attempts: 0\nchains:\n  c: [mock/x]\n", 2, "attempts"),
    "yaml syntax": ("chains:\n  c: [mock/x\n  d: :\n", 0, ""),
    "unknown enum": ("defaults:\n  on_all_benched: panic\nchains:\n  c: [mock/x]\n", 2, "try_all"),
    "entry without provider": ("chains:\n  c:\n    - justamodel\n", 3, "provider"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_a_bad_config_exits_2_with_its_line_and_no_traceback(tmp_path, name):
    text, line, expected = BAD_CONFIGS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["--config", str(path), "run", "hi"])
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("llmfail: error: ") and "bad.yaml:" in first
    if line:
        assert f"bad.yaml:{line}:" in first
    assert expected.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr + result.stdout


def test_a_missing_config_file_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["--config", str(tmp_path / "absent.yaml"), "run", "hi"])
    assert result.exit_code == 2 and "absent.yaml" in result.stderr and "Traceback" not in result.stderr


PLAIN_CANARY = "canary-Zq8xW3vR5tY7uI9oP2"


@pytest.mark.parametrize("key", [CANARY_KEY, PLAIN_CANARY], ids=["vendor-shaped", "plain"])
def test_a_key_echoed_back_by_the_provider_appears_in_no_output_event_or_db_byte(server, tmp_path, key):
    def echo_key(status: int):
        def handler(request: Request) -> Response:
            sent = request.headers.get("authorization", "").removeprefix("Bearer ")
            return openai_error(status, message=f"Incorrect API key provided: {sent}. Key {sent} rejected")

        return handler

    server.expect_request("/a/v1/chat/completions").respond_with_handler(Calls(echo_key(503)))
    server.expect_request("/b/v1/chat/completions").respond_with_handler(Calls(echo_key(401)))
    config = write_config(tmp_path, server)
    db = tmp_path / "secret.db"
    env = {"A_KEY": key, "B_KEY": key, "LLMFAIL_DB": str(db), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    outputs = []
    for args in (["run", "hi", "--json"], ["run", "hi"], ["--debug", "run", "hi", "--no-stream"]):
        proc = subprocess.run(
            [sys.executable, "-m", "llmfail.cli", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 1
        outputs += [proc.stdout, proc.stderr]
    assert any("Incorrect API key provided" in text for text in outputs)  # the message itself is kept
    for text in outputs:
        assert key not in text and key[8:20] not in text
    for path in tmp_path.glob("secret.db*"):
        assert key.encode() not in path.read_bytes(), path.name
