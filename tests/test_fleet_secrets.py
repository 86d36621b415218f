"""Secrets on a fleet: the Redis password and a provider key reach no output and no Redis key or value.

The server runs with `--requirepass`; the password is in an environment
variable named by the config's `state.password_env`. The provider echoes the key
it received in its error body (the worst case), so the key is in every failure
the engine sees. Then every command's stdout/stderr (with and without
`--debug`, healthy and while the server hangs) and every key and value in the
test's namespace (SCAN, each read by its type) are searched for both secrets
and for their first 12 characters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .redis_server import RedisServer, start_server

pytest.importorskip("redis")

REDIS_PASSWORD = "rds-Cnry8Hq2Lp5Wm3Zt7Vb1"
PROVIDER_KEY = "sk-proj-FleetCnry4Tz8Qw2Er6Ty0Ui"
NEEDLES = [REDIS_PASSWORD, PROVIDER_KEY, REDIS_PASSWORD[:12], PROVIDER_KEY[:12]]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_server(tmp_path, "--requirepass", REDIS_PASSWORD)
    yield server
    server.stop()


def echo_key(request: Request) -> Response:
    """A provider that puts the credential it received in its 401 error."""
    body = {"error": {"message": f"invalid api key {request.headers.get('Authorization')}", "type": "auth"}}
    return Response(json.dumps(body), status=401, content_type="application/json")


def answer(request: Request) -> Response:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    return Response(json.dumps(body), content_type="application/json")


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def redis_contents(url: str, namespace: str) -> str:
    """Every key of the namespace and every value under it, read by type, as one text."""
    import redis as redis_py

    client = redis_py.Redis.from_url(url, password=REDIS_PASSWORD, decode_responses=True)
    parts: list[Any] = []
    for key in client.scan_iter(match="{llmfail:" + namespace + "}*", count=1000):
        kind = client.type(key)
        parts.append(key)
        if kind == "string":
            parts.append(client.get(key))
        elif kind == "hash":
            parts.append(client.hgetall(key))
        elif kind == "set":
            parts.append(sorted(client.smembers(key)))
        elif kind == "zset":
            parts.append(client.zrange(key, 0, -1, withscores=True))
        elif kind == "list":
            parts.append(client.lrange(key, 0, -1))
        elif kind == "stream":
            parts.append(client.xrange(key))
        else:
            raise AssertionError(f"unexpected key type {kind} for {key}")
    client.close()
    assert len(parts) > 10, "the namespace should hold the run's state"
    return json.dumps(parts, default=str)


def test_no_secret_reaches_any_output_or_any_redis_key_or_value(redis, server: HTTPServer, tmp_path):
    server.expect_request("/bad/v1/chat/completions").respond_with_handler(echo_key)
    server.expect_request("/good/v1/chat/completions").respond_with_handler(answer)
    namespace = "secrets-" + uuid.uuid4().hex[:8]
    base = server.url_for("").rstrip("/")
    config = tmp_path / "chains.yaml"
    config.write_text(f"""
state: {{url: "{redis.url}", password_env: FLEET_REDIS_PW, namespace: {namespace}}}
defaults: {{attempts: 1, timeout: 5s}}
providers:
  bad: {{type: openai, base_url: "{base}/bad/v1", api_key_env: FLEET_KEY}}
  good: {{type: openai, base_url: "{base}/good/v1", api_key_env: FLEET_KEY}}
chains:
  main: [bad/m1, good/m2]
""")
    env = {**os.environ, "FLEET_REDIS_PW": REDIS_PASSWORD, "FLEET_KEY": PROVIDER_KEY, "LLMFAIL_CONFIG": str(config)}
    env.pop("LLMFAIL_DB")  # the config's state: names the store

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmfail.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    outputs: list[subprocess.CompletedProcess[str]] = []
    for debug in ([], ["--debug"]):
        outputs += [
            cli(*debug, "run", "hi", "--no-stream"),
            cli(*debug, "run", "hi", "--json"),
            cli(*debug, "bench", "good/m2", "--for", "1s", "--reason", "secrets test"),
            cli(*debug, "ls-benched", "--json"),
            cli(*debug, "events", "--json", "--limit", "0"),
            cli(*debug, "events"),
            cli(*debug, "stats", "--json"),
            cli(*debug, "check"),
        ]
    assert [o.returncode for o in outputs[:2]] == [0, 0], outputs[0].stderr
    assert '"answered_by": "good/m2"' in outputs[4].stdout or "good/m2" in outputs[4].stdout
    wrong = {**env, "FLEET_REDIS_PW": "not-the-password"}  # a refused password: the error names no secret
    outputs.append(
        subprocess.run(
            [sys.executable, "-m", "llmfail.cli", "ls-benched"],
            env=wrong,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert outputs[-1].returncode == 1 and "refused" in outputs[-1].stderr
    redis.pause()  # while the server hangs: the degraded warning and the operator error
    try:
        outputs += [cli("run", "hi", "--no-stream"), cli("--debug", "run", "hi", "--no-stream"), cli("ls-benched")]
    finally:
        redis.resume()
    assert "shared state unavailable (cannot reach shared state redis://:***@127.0.0.1:" in outputs[-3].stderr
    assert outputs[-1].returncode == 1

    for done in outputs:
        assert leaks(done.stdout + done.stderr) == [], (done.args, done.stdout, done.stderr)
    assert leaks(redis_contents(redis.url, namespace)) == []
