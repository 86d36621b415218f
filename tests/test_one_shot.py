"""A one-shot `llmfail run`: plain HTTP straight on asyncio (`llmfail.plain_http`) and a quick, clean exit.

The transport is checked against real loopback servers written byte by byte, so
every answer shape (sized, chunked, read to the close, compressed, cut short,
malformed) is exactly what the test says; failures must keep the meaning the
engine gives httpx's own errors.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmfail.classify import classify_exception
from llmfail.errors import Kind
from llmfail.plain_http import PlainHTTPTransport

from .raw_http import answers, read_request, serve


async def _post(url: str, method: str = "POST") -> httpx.Response:
    async with httpx.AsyncClient(transport=PlainHTTPTransport(), timeout=None) as client:
        response = await client.request(method, url, json={"model": "m"} if method == "POST" else None)
        await response.aread()
        return response


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_request_goes_out_as_httpx_builds_it_and_the_answer_comes_back_whole():
    seen: list[bytes] = []
    server, url = await serve(
        answers(b'HTTP/1.1 201 Created\r\nX-Request-Id: abc\r\nContent-Length: 11\r\n\r\n{"ok":true}', seen=seen)
    )
    async with server:
        response = await _post(url + "?api-version=1")
    assert (response.status_code, response.reason_phrase, response.http_version) == (201, "Created", "HTTP/1.1")
    assert response.headers["x-request-id"] == "abc" and response.json() == {"ok": True}
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?api-version=1 HTTP/1.1"
    assert lines[1] == b"Host: " + url.split("/")[2].encode()
    assert b"Content-Length: 13" in lines and body == b'{"model":"m"}'


async def test_a_chunked_answer_arrives_piece_by_piece_as_it_is_sent():
    first_read = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\ndata:\r\n")
        await writer.drain()
        await first_read.wait()  # the second piece only once the client holds the first: really streamed
        writer.write(b"3\r\n ok\r\n0\r\nX-Trailer: t\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await serve(handler)
    async with server, httpx.AsyncClient(transport=PlainHTTPTransport(), timeout=None) as client:
        pieces = []
        async with client.stream("POST", url, json={}) as response:
            async for piece in response.aiter_raw():
                pieces.append(piece)
                first_read.set()
    assert pieces == [b"data:", b" ok"]


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\n\r\nread to the close", b"HTTP/1.0 200 OK\r\nContent-Length: 17\r\n\r\nread to the close"],
)
async def test_an_answer_without_a_length_is_read_to_the_close(answer: bytes):
    server, url = await serve(answers(answer))
    async with server:
        assert (await _post(url)).text == "read to the close"


async def test_a_compressed_answer_is_decoded_by_httpx():
    body = gzip.compress(b'{"choices": []}')
    server, url = await serve(
        answers(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    )
    async with server:
        assert (await _post(url)).json() == {"choices": []}


async def test_informational_answers_are_skipped_and_a_204_has_no_body():
    server, url = await serve(answers(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
    async with server:
        response = await _post(url)
    assert response.status_code == 204 and response.content == b""


async def test_the_connection_is_closed_once_the_answer_is_read():
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        if await reader.read() == b"":  # keep-alive on our side; the client hangs up
            closed.set()
        writer.close()

    server, url = await serve(handler)
    async with server:
        transport = PlainHTTPTransport()
        async with httpx.AsyncClient(transport=transport, timeout=None) as client:
            assert (await client.post(url, json={})).json() == {}
            await asyncio.wait_for(closed.wait(), 5)


async def test_a_refused_connection_is_a_connect_error_naming_the_address_and_so_transient():
    port = _free_port()
    with pytest.raises(httpx.ConnectError, match=f"cannot connect to 127.0.0.1:{port}") as caught:
        await _post(f"http://127.0.0.1:{port}/v1/chat/completions")
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=[
        "closed before answering",
        "body cut short",
        "chunk cut short",
        "not http",
        "bad header",
        "bad length",
        "bad chunk size",
    ],
)
async def test_a_broken_answer_is_a_transport_error_and_so_transient_not_a_timeout(answer: bytes):
    server, url = await serve(answers(answer))
    async with server:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await _post(url)
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_tls_is_not_this_transports_job():
    with pytest.raises(httpx.UnsupportedProtocol):
        await _post("https://127.0.0.1:1/v1/chat/completions")


def test_a_one_shot_run_closes_its_state_db_before_exiting(tmp_path: Path, server):
    """The run skips the exit's garbage collection, so it must close the store itself: SQLite then
    checkpoints and removes its WAL file, leaving one self-contained DB file to copy or VACUUM."""
    server.expect_request("/v1/chat/completions").respond_with_json(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}]}
    )
    config = tmp_path / "chains.yaml"
    config.write_text(f"providers:\n  p: {{type: openai, base_url: '{server.url_for('/v1')}'}}\nchains:\n  c: [p/m1]\n")
    db = tmp_path / "state" / "state.db"
    db.parent.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", "--config", str(config), "--db", str(db), "run", "ping", "--no-stream"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "pong\n")
    assert [p.name for p in db.parent.iterdir()] == ["state.db"]


def test_running_the_app_in_process_leaves_the_callers_garbage_collector_alone(tmp_path: Path, server):
    """The CLI's own process skips collections while loading (`llmfail.cli.main`); a caller running the
    app in-process, like these tests, keeps its collector on and nothing of its frozen."""
    import gc

    from typer.testing import CliRunner

    from llmfail.cli import app

    server.expect_request("/v1/chat/completions").respond_with_json(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}]}
    )
    config = tmp_path / "chains.yaml"
    config.write_text(f"providers:\n  p: {{type: openai, base_url: '{server.url_for('/v1')}'}}\nchains:\n  c: [p/m1]\n")
    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(app, ["--config", str(config), "run", "ping", "--no-stream"])
    assert (result.exit_code, result.stdout) == (0, "pong\n")
    assert gc.isenabled() and gc.get_freeze_count() == frozen
