"""`llmfail serve` through the official `openai` SDK: a real server process, loopback fakes behind it.

One server process is shared by the module (each start costs ~0.5 s); every test uses
chains of its own, on providers of its own, so benches made by one test never touch
another. The SIGTERM test starts a second process, since it stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llmfail.fakes.protocols import PROTOCOLS
from llmfail.store.sqlite import SqliteStore

from .serve_process import ServeProcess

CLIENT_KEY = "client-key-1"
ADMIN_TOKEN = "admin-token-7"
PROVIDER_KEY = "sk-provider-SECRET-42"

PROVIDERS = {
    # name: (type, path under the fake server)
    "plain": ("openai", "/plain/v1"),
    "streamer": ("openai", "/streamer/v1"),
    "down": ("openai", "/down/v1"),
    "backup": ("openai", "/backup/v1"),
    "limited": ("openai", "/limited/v1"),
    "spare": ("openai", "/spare/v1"),
    "cutter": ("openai", "/cutter/v1"),
    "after-cut": ("openai", "/after-cut/v1"),
    "gone1": ("openai", "/gone1/v1"),
    "gone2": ("openai", "/gone2/v1"),
    "manual": ("openai", "/manual/v1"),
    "manual-spare": ("openai", "/manual-spare/v1"),
    "slow": ("openai", "/slow/v1"),
    "watched": ("openai", "/watched/v1"),
    "dash": ("openai", "/dash/v1"),
    "trickle": ("openai", "/trickle/v1"),
    "ant": ("anthropic", "/ant"),
    "gem": ("gemini", "/gem"),
    "oll": ("ollama", "/oll"),
}

CHAINS = {
    "plain": ["plain/m"],
    "streamed": ["streamer/m"],
    "failover": ["down/m", "backup/m"],
    "limited": ["limited/m", "spare/m"],
    "cut": ["cutter/m", "after-cut/m"],
    "gone": ["gone1/m", "gone2/m"],
    "manual": ["manual/m", "manual-spare/m"],
    "slow": ["slow/m"],
    "watched": ["watched/m"],
    "dash": ["dash/m"],
    "trickle": ["trickle/m"],
    "anthropic": ["ant/claude"],
    "gemini": ["gem/gemini-2.5-flash"],
    "ollama": ["oll/llama3.2"],
}

PATHS = {"openai": "/chat/completions", "anthropic": "/v1/messages", "ollama": "/api/chat"}


def config_text(url: str, extra_chains: str = "") -> str:
    lines = [
        "defaults: {attempts: 1, cooldown: 5m, on_all_benched: fail, backoff: {base: 1ms, max: 2ms}}",
        "providers:",
    ]
    for name, (type_, path) in PROVIDERS.items():
        lines.append(f"  {name}: {{type: {type_}, base_url: '{url}{path}', api_key_env: FAKE_PROVIDER_KEY}}")
    lines.append("chains:")
    for name, entries in CHAINS.items():
        lines.append(f"  {name}: [{', '.join(entries)}]")
    return "\n".join(lines) + "\n" + extra_chains


def child_env(home: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFAIL_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "c"), XDG_STATE_HOME=str(home / "s"), **more)
    env["FAKE_PROVIDER_KEY"] = PROVIDER_KEY
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _session_server: HTTPServer) -> Iterator[ServeProcess]:
    home = tmp_path_factory.mktemp("serve")
    config = home / "chains.yaml"
    config.write_text(config_text(_session_server.url_for("").rstrip("/")))
    env = child_env(home, LLMFAIL_SERVE_KEYS=f"other-key, {CLIENT_KEY}", LLMFAIL_ADMIN_TOKEN=ADMIN_TOKEN)
    process = ServeProcess(config, home / "state.db", home / "serve.log", env=env).start()
    yield process
    assert process.stop() == 0


@pytest.fixture
def client(served: ServeProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def events(served: ServeProcess, **query: Any) -> list[Any]:
    store = SqliteStore(str(served.db))
    try:
        return store.events(**query)
    finally:
        store.close()


def outcome_rows(served: ServeProcess, chain: str) -> list[Any]:
    """The chain's `request` rows, once there is one (polled: the server writes it when the walk ends)."""
    deadline = time.monotonic() + 10
    while not (rows := events(served, types=["request"], chain=chain)):
        assert time.monotonic() < deadline, served.stderr()
        time.sleep(0.02)
    return rows


def cli(served: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """An llmfail command in another process, on the server's config and state store."""
    command = [sys.executable, "-m", "llmfail.cli", "--config", str(served.config), "--db", str(served.db), *args]
    return subprocess.run(command, env=served.env, capture_output=True, text=True, timeout=60)


def path(provider: str) -> str:
    type_, base = PROVIDERS[provider]
    if type_ == "gemini":
        return f"{base}/v1beta/models/gemini-2.5-flash:generateContent"
    return base + PATHS[type_]


def answers(server: HTTPServer, provider: str, text: str = "hello") -> None:
    type_ = PROVIDERS[provider][0]
    server.expect_request(path(provider)).respond_with_json(PROTOCOLS[type_]().answer(text, "m", (7, 3)))


def streams(server: HTTPServer, provider: str, text: str, *, cut: bool = False) -> None:
    type_ = PROVIDERS[provider][0]
    protocol = PROTOCOLS[type_]()
    url = path(provider).replace(":generateContent", ":streamGenerateContent")
    server.expect_request(url).respond_with_data(
        b"".join(protocol.stream_events(text, "m", (7, 3), cut)), content_type=protocol.stream_content_type
    )


def fails(server: HTTPServer, provider: str, status: int) -> None:
    headers, body = PROTOCOLS["openai"]().error(status)
    headers.pop("retry-after", None)
    server.expect_request(path(provider)).respond_with_json(body, status=status, headers=headers)


def calls(server: HTTPServer, provider: str) -> int:
    return sum(1 for request, _ in server.log if request.path.startswith(PROVIDERS[provider][1] + "/"))


def ask(client: openai.OpenAI, chain: str, **kwargs: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=chain, messages=[{"role": "user", "content": "hi there"}], **kwargs
    )


# --------------------------------------------------------------------------- answers


def test_a_plain_completion_comes_back_in_openai_shape_with_the_llmfail_headers(client, server):
    answers(server, "plain", "hello from the fake")
    raw = ask(client, "plain", max_tokens=50, temperature=0.2, stop=["END"], user="u-1", seed=7)
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello from the fake"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "plain/m"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 3)
    assert raw.headers["x-llmfail-model"] == "plain/m"
    assert raw.headers["x-llmfail-failovers"] == "0"
    assert len(raw.headers["x-llmfail-request-id"]) == 16
    sent = json.loads(server.log[-1][0].get_data())
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.2 and sent["stop"] == ["END"]
    assert sent["user"] == "u-1" and sent["seed"] == 7  # an extra field reaches an OpenAI-protocol entry
    assert server.log[-1][0].headers["Authorization"] == f"Bearer {PROVIDER_KEY}"  # the server's key, not the client's


def test_a_streamed_completion_arrives_as_chunks_ending_with_usage(client, server):
    streams(server, "streamer", "one two three four")
    stream = client.chat.completions.create(
        model="streamed",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert {c.model for c in chunks} == {"streamer/m"}


def test_a_failover_is_visible_in_the_answering_model_header(client, server):
    fails(server, "down", 503)
    answers(server, "backup", "from the backup")
    raw = ask(client, "failover")
    assert raw.parse().choices[0].message.content == "from the backup"
    assert raw.headers["x-llmfail-model"] == "backup/m"
    assert raw.headers["x-llmfail-failovers"] == "1"


def test_a_rate_limited_primary_is_benched_and_skipped_by_the_next_request(client, served, server):
    fails(server, "limited", 429)
    answers(server, "spare")
    assert ask(client, "limited").headers["x-llmfail-model"] == "spare/m"
    assert ask(client, "limited").headers["x-llmfail-model"] == "spare/m"
    assert calls(server, "limited") == 1  # benched after the first 429: the second request skipped it
    assert [e.kind for e in events(served, types=["benched"], model="limited/m")] == ["rate_limited"]


def test_a_stream_cut_after_its_first_tokens_raises_in_the_sdk_instead_of_ending_short(client, server):
    streams(server, "cutter", "alpha beta gamma delta", cut=True)
    answers(server, "after-cut")
    stream = client.chat.completions.create(model="cut", messages=[{"role": "user", "content": "go"}], stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "alpha beta "  # what the cut stream had sent
    assert "stream cut" in str(caught.value.message)
    assert calls(server, "after-cut") == 0  # mid_stream: error never falls over once text was sent


def test_an_unknown_chain_is_a_404_model_not_found_that_lists_the_chains(client):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client, "no-such-chain")
    error = caught.value.body
    assert error["code"] == "model_not_found" and "plain" in error["chains"]


def test_a_chain_whose_entries_are_all_benched_answers_503_with_retry_after(client, served, server):
    for model in CHAINS["gone"]:
        bench = cli(served, "bench", model, "--for", "5m", "--reason", "test")
        assert bench.returncode == 0, bench.stderr
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client.with_options(max_retries=2), "gone")
    response = caught.value.response
    assert response.status_code == 503 and caught.value.body["code"] == "all_benched"
    assert 290 <= int(response.headers["Retry-After"]) <= 300
    served.wait_for("chain=gone ")  # the access line is written just after the answer
    assert served.stderr().count("chain=gone ") == 1  # x-should-retry: false, so the SDK did not retry
    assert calls(server, "gone1") + calls(server, "gone2") == 0


def test_a_bench_made_with_the_cli_in_another_process_is_honoured_on_the_next_request(client, served, server):
    answers(server, "manual")
    answers(server, "manual-spare", "spare answer")
    assert ask(client, "manual").headers["x-llmfail-model"] == "manual/m"
    assert cli(served, "bench", "manual/m", "--for", "10m").returncode == 0
    assert ask(client, "manual").headers["x-llmfail-model"] == "manual-spare/m"
    assert calls(server, "manual") == 1


# --------------------------------------------------------------------------- other protocols


@pytest.mark.parametrize("chain, provider", [("anthropic", "ant"), ("gemini", "gem"), ("ollama", "oll")])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_gemini_and_ollama_answers_reach_the_sdk_in_openai_shape(client, server, chain, provider, stream):
    text = f"a {chain} answer"
    if stream:
        streams(server, provider, text)
        chunks = list(
            client.chat.completions.create(
                model=chain,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7
    else:
        answers(server, provider, text)
        completion = ask(client, chain, stop=["END"], seed=3).parse()
        assert completion.choices[0].message.content == text
        assert completion.choices[0].finish_reason == "stop"
        assert completion.model == CHAINS[chain][0]
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 3)
        sent = json.loads(server.log[-1][0].get_data())
        assert "seed" not in json.dumps(sent)  # an OpenAI-only field is dropped for other protocols
        assert "END" in json.dumps(sent)  # stop reaches each protocol's own field


# --------------------------------------------------------------------------- keys and the admin API


def test_without_a_client_key_the_gateway_answers_401(served):
    for key in ("", "wrong-key"):
        with openai.OpenAI(base_url=served.url + "/v1", api_key=key or "x", max_retries=0) as bare:
            keyless = bare.with_options(default_headers={"Authorization": ""}) if not key else bare
            with pytest.raises(openai.AuthenticationError):
                keyless.models.list()
    assert httpx.get(served.url + "/healthz").status_code == 200  # health checks need no key


def test_the_models_endpoint_lists_the_chains(client):
    assert {m.id for m in client.models.list()} >= set(CHAINS)


def test_the_admin_api_benches_lists_unbenches_and_shows_events_only_with_its_token(served):
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        check_admin_api(served, admin)


def check_admin_api(served: ServeProcess, admin: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert httpx.get(served.url + "/admin/benches", headers=headers).status_code == 401
    row = admin.post(
        "/admin/bench", json={"model": "watched/m", "for": "2m", "reason": "drill"}, headers={"X-Llmfail-User": "ana"}
    )
    assert row.status_code == 200 and row.json()["model"] == "watched/m" and row.json()["reason"] == "drill"
    assert "watched/m" in [b["model"] for b in admin.get("/admin/benches").json()]
    assert admin.delete("/admin/bench/watched/m").json() == {"unbenched": ["watched/m"]}
    assert "watched/m" not in [b["model"] for b in admin.get("/admin/benches").json()]
    recent = admin.get("/admin/events", params={"since": "1m", "model": "watched/m"}).json()["events"]
    assert [e["type"] for e in recent] == ["benched", "unbenched"]
    assert recent[0]["data"]["user"] == "ana" and recent[0]["data"]["reason"] == "drill"
    assert admin.post("/admin/bench", json={"model": "watched/m", "for": "soon"}).status_code == 400


# --------------------------------------------------------------------------- operations


async def test_a_client_that_disconnects_cancels_its_upstream_request_and_benches_nothing(served, server):
    release, arrived = threading.Event(), threading.Event()

    def stall(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return Response(json.dumps(PROTOCOLS["openai"]().answer("late", "m", (1, 1))), content_type="application/json")

    server.expect_request(path("slow")).respond_with_handler(stall)
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=CLIENT_KEY, max_retries=0) as impatient:
        asking = asyncio.create_task(
            impatient.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}])
        )
        try:
            assert await asyncio.to_thread(arrived.wait, 10)  # the gateway is waiting on the upstream
            asking.cancel()  # the client gives up: its connection closes
            with pytest.raises(asyncio.CancelledError):
                await asking
            rows = await asyncio.to_thread(outcome_rows, served, "slow")
        finally:
            release.set()
    assert [(r.kind, r.data["ok"]) for r in rows] == [("cancelled", False)]
    assert events(served, types=["benched", "attempt_failed"], model="slow/m") == []


def test_a_client_that_leaves_a_stream_midway_cancels_it_and_benches_nothing(served, client, server):
    release = threading.Event()
    first, rest = PROTOCOLS["openai"]().stream_events("early words later", "m", (1, 1), False)[1:2], b""

    def trickle(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            yield from first
            release.wait(10)  # the rest of the answer never comes while the client is there
            yield rest

        return Response(body(), content_type="text/event-stream")

    server.expect_request(path("trickle")).respond_with_handler(trickle)
    try:
        stream = client.chat.completions.create(
            model="trickle", messages=[{"role": "user", "content": "x"}], stream=True
        )
        assert next(iter(stream)).choices[0].delta.content == "early "
        stream.close()
        rows = outcome_rows(served, "trickle")
    finally:
        release.set()
    assert [(r.kind, r.data["ok"]) for r in rows] == [("cancelled", False)]
    assert events(served, types=["benched", "attempt_failed", "stream_interrupted"], model="trickle/m") == []


def test_the_servers_requests_appear_in_events_follow(served, client, server):
    follower = subprocess.Popen(
        [sys.executable, "-m", "llmfail.cli", "--db", str(served.db)]
        + ["events", "--follow", "--json", "--chain", "plain", "--type", "request", "--limit", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=served.env,
    )
    try:
        answers(server, "plain", "followed")
        request_id = ask(client, "plain").headers["x-llmfail-request-id"]
        assert follower.stdout is not None
        for line in follower.stdout:  # ends when the follower is killed: the test's timeout guards it
            if json.loads(line)["request_id"] == request_id:
                break
    finally:
        follower.kill()
        follower.wait()
        if follower.stdout is not None:
            follower.stdout.close()


def test_sighup_reloads_the_config_and_a_broken_one_keeps_the_old(served, client, server):
    original = served.config.read_text()
    try:
        served.config.write_text(original + "  added: [plain/m]\n")
        served.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "added" not in {m.id for m in client.models.list()}:
            assert time.monotonic() < deadline, served.stderr()
            time.sleep(0.02)
        assert [e.data["reason"] for e in events(served, types=["config_changed"])] == ["config reloaded"]
        served.config.write_text(original + "  broken: [plain/m]\n  oops: 3\n")
        served.signal(signal.SIGHUP)
        problem = served.wait_for(r"chains\.yaml:(\d+):(\d+): chains\.oops")
        assert int(problem.group(1)) == original.count("\n") + 2
        answers(server, "plain", "still served")
        assert ask(client, "added").parse().choices[0].message.content == "still served"
    finally:
        served.config.write_text(original)


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(tmp_path, server):
    config = tmp_path / "chains.yaml"
    config.write_text(config_text(server.url_for("").rstrip("/")))
    process = ServeProcess(config, tmp_path / "state.db", tmp_path / "serve.log", env=child_env(tmp_path))
    process.start()
    arrived, release = threading.Event(), threading.Event()

    def stall(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return Response(
            json.dumps(PROTOCOLS["openai"]().answer("drained", "m", (1, 1))), content_type="application/json"
        )

    server.expect_request(path("slow")).respond_with_handler(stall)
    sdk = openai.OpenAI(base_url=process.url + "/v1", api_key="x", max_retries=0, timeout=10)
    answers_: list[Any] = []
    asker = threading.Thread(
        target=lambda: answers_.append(
            sdk.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}])
        )
    )
    try:
        asker.start()
        assert arrived.wait(10)
        process.signal(signal.SIGTERM)
        process.wait_for("stopping; 1 request")
        deadline = time.monotonic() + 10
        while True:  # the listening socket closes first: new connections are refused
            try:
                httpx.get(process.url + "/healthz", timeout=1)
            except httpx.ConnectError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        release.set()
        asker.join(10)
        assert process.proc is not None and process.proc.wait(10) == 0
    finally:
        sdk.close()
        release.set()
        if process.proc and process.proc.poll() is None:
            process.proc.kill()
    assert answers_[0].choices[0].message.content == "drained"


def test_readyz_is_503_while_the_state_store_is_unreachable_and_healthz_stays_200(tmp_path, server):
    config = tmp_path / "chains.yaml"
    config.write_text(config_text(server.url_for("").rstrip("/")))
    unreachable = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
    process = ServeProcess(config, unreachable, tmp_path / "serve.log", env=child_env(tmp_path)).start()
    try:
        assert httpx.get(process.url + "/healthz").status_code == 200
        ready = httpx.get(process.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["store"].startswith("unreachable")
        assert "other machines" not in process.stderr()  # loopback without client keys: no warning
    finally:
        assert process.stop() == 0


def test_serving_beyond_loopback_without_client_keys_warns_that_anyone_can_spend_the_provider_keys(tmp_path):
    config = tmp_path / "chains.yaml"
    config.write_text(config_text("http://127.0.0.1:9"))
    process = ServeProcess(
        config, tmp_path / "state.db", tmp_path / "serve.log", env=child_env(tmp_path), args=("--host", "0.0.0.0")
    )
    process.start()
    try:
        process.wait_for("0.0.0.0 is reachable from other machines and no client key is required")
    finally:
        assert process.stop() == 0


def test_a_port_already_taken_is_a_one_line_usage_error(tmp_path):
    config = tmp_path / "chains.yaml"
    config.write_text(config_text("http://127.0.0.1:9"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-m", "llmfail.cli", "--config", str(config), "--db", str(tmp_path / "state.db")]
        done = subprocess.run(
            [*command, "serve", "--port", port], env=child_env(tmp_path), capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == f"llmfail: error: cannot listen on 127.0.0.1:{port}: address already in use"


async def test_the_servers_requests_appear_on_the_dashboard(served, client, server):
    from llmfail.config import load_config
    from llmfail.tui import create_app

    from .test_tui import SIZE, cell, loaded, until

    answers(server, "dash", "seen")
    store = SqliteStore(str(served.db))
    app = create_app(load_config(served.config), store, chain="dash")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            assert cell(app, "dash/m", "requests") in ("", "0")
            await asyncio.to_thread(ask, client, "dash")
            await until(pilot, lambda: cell(app, "dash/m", "requests") == "1")
            assert cell(app, "dash/m", "state") == "healthy"
    finally:
        store.close()
