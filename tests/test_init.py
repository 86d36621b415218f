"""`llmfail init`: a starter config from the key variables set and a local Ollama, that `llmfail check` accepts.

A pytest-httpserver stands in for Ollama (found through `$OLLAMA_HOST`, as Ollama's
own tools find it); every other test points `$OLLAMA_HOST` at a closed port, so a
real Ollama on the machine running the tests changes nothing.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner, Result

from llmfail.cli import app
from llmfail.config import load_config
from llmfail.starter import discover, ollama_url

from .conftest import CANARY_KEY
from .wires import Wire

runner = CliRunner()


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def no_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")


def ollama(server: HTTPServer, monkeypatch: pytest.MonkeyPatch, models: list[str]) -> str:
    server.expect_request("/api/tags", method="GET").respond_with_json({"models": [{"name": m} for m in models]})
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("OLLAMA_HOST", url)
    return url


def comments(text: str) -> str:
    """The file's comment lines as one line of text (they are wrapped at 100 columns)."""
    return " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))


def init_and_check(path: Path, *args: str) -> str:
    result = cli("init", str(path), *args)
    assert result.exit_code == 0, result.output
    checked = cli("check", str(path), "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["ok"] is True
    return path.read_text(encoding="utf-8")


def test_with_nothing_found_the_chain_is_the_mock_and_a_run_answers_at_once(tmp_path: Path) -> None:
    text = init_and_check(tmp_path / "chains.yaml")
    assert load_config(tmp_path / "chains.yaml").chain("main").models == ["mock/echo"]
    assert "Found no provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY)" in comments(text)
    result = cli("run", "hello there", "--no-stream")  # ./chains.yaml is found on its own
    assert result.exit_code == 0, result.output
    assert "hello there" in result.stdout


def test_key_variables_set_become_entries_by_name_and_their_values_never_reach_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", CANARY_KEY + "-gemini")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")  # set but empty: no key
    text = init_and_check(tmp_path / "chains.yaml")
    assert CANARY_KEY not in text
    config = load_config(tmp_path / "chains.yaml")
    assert config.chain("main").models == ["openai/gpt-4o", "gemini/gemini-2.5-flash"]
    assert [e.credentials[0].api_key_env for e in config.chain("main").entries] == ["OPENAI_API_KEY", "GEMINI_API_KEY"]
    assert "Found: OPENAI_API_KEY is set; GEMINI_API_KEY is set." in comments(text)


def test_a_local_ollama_is_found_through_its_tags_and_answers_through_the_written_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    url = ollama(httpserver, monkeypatch, ["llama3.2:latest", "qwen2.5:7b"])
    init_and_check(tmp_path / "chains.yaml")
    config = load_config(tmp_path / "chains.yaml")
    assert config.chain("main").models == ["ollama/llama3.2:latest"]
    assert config.providers["ollama"].base_url == url  # not the default port: written down
    httpserver.expect_request("/api/chat", method="POST").respond_with_response(Wire("ollama").answer("from ollama"))
    result = cli("run", "hi", "--no-stream", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["text"] == "from ollama"


def test_cloud_keys_come_before_the_local_ollama(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    ollama(httpserver, monkeypatch, ["llama3.2:latest"])
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_KEY)
    init_and_check(tmp_path / "chains.yaml")
    models = load_config(tmp_path / "chains.yaml").chain("main").models
    assert models == ["anthropic/claude-sonnet-4-5", "ollama/llama3.2:latest"]


def test_an_ollama_without_models_is_mentioned_but_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    ollama(httpserver, monkeypatch, [])
    text = init_and_check(tmp_path / "chains.yaml")
    assert load_config(tmp_path / "chains.yaml").chain("main").models == ["mock/echo"]
    assert "has no model (ollama pull llama3.2, then add it)" in comments(text)


def test_something_answering_that_is_not_ollama_is_not_taken_for_it(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/tags").respond_with_data("<html>router login</html>", content_type="text/html")
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{httpserver.port}")
    assert discover().ollama_models is None


def test_an_existing_file_is_never_replaced_without_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "chains.yaml"
    path.write_text("chains: {mine: [mock/echo]}\n", encoding="utf-8")
    refused = cli("init")
    assert refused.exit_code == 1
    assert "chains.yaml already exists; not replacing it" in refused.stderr
    assert "hint: pass --force to replace it" in refused.stderr
    assert path.read_text(encoding="utf-8") == "chains: {mine: [mock/echo]}\n"
    path.chmod(0o640)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    init_and_check(path, "--force")
    assert load_config(path).chain("main").models == ["openai/gpt-4o"]
    assert path.stat().st_mode & 0o777 == 0o640  # replaced, but with the mode it had
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".db") == [
        "chains.yaml",
        "home",
    ]  # no temp file left


def test_a_refused_init_asks_ollama_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    ollama(httpserver, monkeypatch, ["llama3.2:latest"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chains.yaml").write_text("chains: {mine: [mock/echo]}\n", encoding="utf-8")
    assert cli("init").exit_code == 1
    assert httpserver.log == []


def test_init_creates_missing_directories_and_refuses_a_directory(tmp_path: Path) -> None:
    nested = tmp_path / "conf" / "llmfail" / "chains.yaml"
    init_and_check(nested)
    refused = cli("init", str(tmp_path))
    assert refused.exit_code == 1 and "is a directory" in refused.stderr


@pytest.mark.parametrize(
    ("written", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:9999", "http://127.0.0.1:9999"),
        ("gpu-box:8080", "http://gpu-box:8080"),
        ("https://ollama.internal", "https://ollama.internal:443"),  # a URL's port is its scheme's, as for Ollama
        ("http://gpu-box", "http://gpu-box:80"),
        ("http://gpu-box/", "http://gpu-box:80"),
        ("http://[::1]:7000", "http://[::1]:7000"),
    ],
)
def test_ollama_host_is_read_as_ollama_reads_it(written: str, url: str) -> None:
    assert ollama_url({"OLLAMA_HOST": written}) == url
