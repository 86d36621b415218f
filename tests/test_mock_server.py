"""`llmfail mock-server`: the fakes on a live loopback port, hit by a real HTTP client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from llmfail.cli import app
from llmfail.errors import UsageError
from llmfail.mock_server import MockServer, protocol_for
from llmfail.simulate import parse_fault_specs

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there mock"}]}

#: Requests per rate check; with a fixed seed the counts are exact, the bounds allow any seed.
N = 400


def serve(*faults: str, **kwargs: object) -> MockServer:
    return MockServer(port=0, faults=parse_fault_specs(faults), seed=kwargs.pop("seed", 11), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def test_a_real_client_gets_429s_at_the_configured_rate_with_retry_after(client):
    with serve("429=0.3") as server:
        statuses = Counter()
        for _ in range(N):
            response = client.post(f"{server.url}/v1/chat/completions", json=CHAT)
            statuses[response.status_code] += 1
            if response.status_code == 429:
                assert response.headers["retry-after"] == "1"
                assert response.json()["error"]["code"] == "rate_limit_exceeded"
            else:
                assert response.json()["choices"][0]["message"]["content"] == "hello there mock"
    assert set(statuses) == {200, 429}
    assert 0.24 <= statuses[429] / N <= 0.36


def test_503s_and_429s_on_one_server_each_come_at_their_own_rate(client):
    with serve("429=0.2", "503=0.3") as server:
        statuses = Counter(client.post(f"{server.url}/v1/chat/completions", json=CHAT).status_code for _ in range(N))
    assert 0.14 <= statuses[429] / N <= 0.26
    assert 0.24 <= statuses[503] / N <= 0.36
    assert statuses[200] == N - statuses[429] - statuses[503]


def _stream_completes(client: httpx.Client, url: str, body: dict[str, object], done_marker: str) -> bool:
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    return done_marker in text


@pytest.mark.parametrize(
    ("path", "body", "done_marker"),
    [
        ("/v1/chat/completions", CHAT, '"finish_reason": "stop"'),
        ("/v1/messages", {"model": "claude", "max_tokens": 50, "messages": CHAT["messages"]}, "message_stop"),
        ("/api/chat", {"model": "llama3.2", "messages": CHAT["messages"]}, '"done": true'),
    ],
    ids=["openai", "anthropic", "ollama"],
)
def test_streams_are_cut_before_their_completion_signal_at_the_configured_rate(client, path, body, done_marker):
    with serve("stream-cut=0.5") as server:
        complete = sum(_stream_completes(client, server.url + path, body, done_marker) for _ in range(N // 2))
    assert 0.40 <= 1 - complete / (N // 2) <= 0.60


def test_gemini_streams_are_cut_too(client):
    body = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
    with serve("stream-cut") as server:
        url = f"{server.url}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        with client.stream("POST", url, json=body) as response:
            text = "".join(response.iter_text())
    assert response.status_code == 200 and "data:" in text and "finishReason" not in text


def test_every_protocol_answers_on_its_own_path_side_by_side(client):
    with serve() as server:
        openai = client.post(f"{server.url}/v1/chat/completions", json=CHAT).json()
        anthropic = client.post(
            f"{server.url}/v1/messages", json={"model": "claude", "max_tokens": 9, "messages": CHAT["messages"]}
        ).json()
        ollama = client.post(
            f"{server.url}/api/chat", json={"model": "llama3.2", "messages": CHAT["messages"], "stream": False}
        ).json()
        gemini = client.post(
            f"{server.url}/v1beta/models/gemini-2.0-flash:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "hi gemini"}]}]},
        ).json()
        missing = client.post(f"{server.url}/v2/nothing", json=CHAT)
    assert openai["choices"][0]["message"]["content"] == "hello there mock"
    assert anthropic["type"] == "message" and anthropic["stop_reason"] == "end_turn"
    assert ollama["done"] is True
    assert gemini["candidates"][0]["content"]["parts"][0]["text"] == "hi gemini"
    assert missing.status_code == 404


def test_529_is_anthropics_overloaded_error(client):
    with serve("529") as server:
        response = client.post(
            f"{server.url}/v1/messages", json={"model": "claude", "max_tokens": 9, "messages": CHAT["messages"]}
        )
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"


def test_a_model_scoped_fault_only_hits_that_model(client):
    with serve("gpt-4o:503") as server:
        hit = client.post(f"{server.url}/v1/chat/completions", json=CHAT)
        spared = client.post(f"{server.url}/v1/chat/completions", json={**CHAT, "model": "gpt-4o-mini"})
    assert hit.status_code == 503 and spared.status_code == 200


def test_reset_drops_the_connection_and_timeout_never_answers(client):
    with serve("reset") as server, pytest.raises(httpx.TransportError):
        client.post(f"{server.url}/v1/chat/completions", json=CHAT)
    with serve("timeout") as server:
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"{server.url}/v1/chat/completions", json=CHAT, timeout=0.3)
        assert time.monotonic() - began < 3


def test_slow_answers_after_the_delay(client):
    with serve("slow:300ms") as server:
        began = time.monotonic()
        response = client.post(f"{server.url}/v1/chat/completions", json=CHAT)
    assert response.status_code == 200 and time.monotonic() - began >= 0.3


def test_a_scenario_switches_faults_on_the_wall_clock(client):
    from llmfail.simulate import parse_scenario

    scenario = parse_scenario(
        {
            "rate": "1/s",
            "duration": "1m",
            "phases": [
                {"at": "0s", "name": "down", "faults": ["gpt-4o:503"]},
                {"at": "400ms", "name": "up"},
            ],
        }
    )
    lines: list[str] = []
    with MockServer(port=0, scenario=scenario, seed=1, log=lines.append) as server:
        down = client.post(f"{server.url}/v1/chat/completions", json=CHAT).status_code
        time.sleep(0.6)
        up = client.post(f"{server.url}/v1/chat/completions", json=CHAT).status_code
        phase = server.phase
    assert (down, up, phase) == (503, 200, "up")
    assert lines == ["phase 'down': gpt-4o:503", "gpt-4o: 503", "phase 'up': no faults", "gpt-4o: ok"]


def test_it_refuses_to_listen_beyond_loopback_unless_allowed():
    with pytest.raises(UsageError, match="loopback only"):
        MockServer(host="0.0.0.0")
    MockServer(host="0.0.0.0", allow_remote=True)  # allowed on purpose: no error
    result = CliRunner().invoke(app, ["mock-server", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "refusing to listen on 0.0.0.0" in result.stderr


def test_bad_fault_specs_exit_2():
    result = CliRunner().invoke(app, ["mock-server", "--fail-rate", "teapot"])
    assert result.exit_code == 2 and "bad --fail-rate 'teapot'" in result.stderr


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/v1/chat/completions", "openai"),
        ("/openai/deployments/x/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/api/chat", "ollama"),
        ("/v1beta/models/gemini-2.0-flash:generateContent", "gemini"),
        ("/v1beta/models/gemini-2.0-flash:streamGenerateContent", "gemini"),
        ("/v1/embeddings", None),
    ],
)
def test_paths_map_to_their_protocol(path, protocol):
    assert protocol_for(path) == protocol


def test_the_command_serves_logs_each_request_and_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfail.cli", "mock-server", "--port", "0", "--fail-rate", "503", "--seed", "1"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert "llmfail mock-server on http://127.0.0.1:" in banner, banner
        url = banner.split(" on ", 1)[1].split(" ", 1)[0]
        base_urls = [proc.stderr.readline().split() for _ in range(4)]
        assert base_urls == [
            ["openai", "base_url:", f"{url}/v1"],
            ["anthropic", "base_url:", url],
            ["ollama", "base_url:", url],
            ["gemini", "base_url:", url],
        ]
        response = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=5)
        assert response.status_code == 503 and json.loads(response.text)["error"]
        assert proc.stderr.readline().strip() == "gpt-4o: 503"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.parametrize("spec", ["openai/gpt-4o:503", "gpt-4o:503"])
def test_a_fault_for_a_model_fires_whether_it_is_written_as_a_config_entry_or_as_the_wire_name(client, spec):
    with serve(spec) as server:
        hit = client.post(f"{server.url}/v1/chat/completions", json=CHAT)
        other = client.post(f"{server.url}/v1/chat/completions", json={**CHAT, "model": "gpt-4o-mini"})
    assert hit.status_code == 503 and other.status_code == 200


def test_the_server_module_never_imports_the_cli_or_its_renderers():
    code = (
        "import sys, llmfail.mock_server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'textual') "
        "or m in ('llmfail.cli', 'llmfail.output', 'llmfail.simulate.render', 'llmfail.engine')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_scenario_429_with_a_wait_reaches_a_real_client_with_that_retry_after(client):
    from llmfail.simulate import parse_scenario

    scenario = parse_scenario(
        {"rate": "1/s", "duration": "1m", "phases": [{"at": "0s", "rate": "0", "faults": ["gpt-4o:429@20s"]}]}
    )
    with MockServer(port=0, scenario=scenario, seed=1) as server:
        response = client.post(f"{server.url}/v1/chat/completions", json=CHAT)
    assert (response.status_code, response.headers["retry-after"]) == (429, "20")
