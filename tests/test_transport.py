"""The default transport (aiohttp under httpx's API) keeps every failure's meaning (SPEC §3)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from llmfail.classify import classify_exception
from llmfail.errors import Kind
from llmfail.transport import AiohttpTransport, default_transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions"


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    await reader.readexactly(length)


async def _post(url: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=None) as client:
        response = await client.post(url, json={"model": "m"})
        await response.aread()
        return response


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_refused_connection_is_a_connect_error_and_so_transient():
    with pytest.raises(httpx.ConnectError) as caught:
        await _post(f"http://127.0.0.1:{_free_port()}/v1/chat/completions")
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_a_connection_closed_before_the_answer_is_transient_not_a_timeout():
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    server, url = await _serve(hang_up)
    async with server:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(url)
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_a_body_cut_short_is_a_read_error_and_so_transient():
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"choi")
        await writer.drain()
        writer.close()

    server, url = await _serve(cut)
    async with server:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(url)
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_a_malformed_answer_is_a_protocol_error_and_so_transient():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await _serve(garbage)
    async with server:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(url)
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_answers_keep_their_status_headers_and_body():
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, url = await _serve(answer)
    async with server:
        response = await _post(url)
    assert (response.status_code, response.headers["retry-after"], response.content) == (429, "7", b"{}")


async def test_a_cookie_is_sent_back_once_by_httpx_not_twice():
    seen: list[bytes] = []

    async def cookie(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            await reader.readexactly(length)
            seen.append(b"\r\n".join(line for line in head.split(b"\r\n") if line.lower().startswith(b"cookie")))
            writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: lb=1; Path=/\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server, url = await _serve(cookie)
    async with server, httpx.AsyncClient(transport=AiohttpTransport(), timeout=None) as client:
        for _ in range(2):
            await client.post(url, json={})
    assert seen == [b"", b"cookie: lb=1"]


def test_a_proxy_in_the_environment_keeps_httpx_own_transport(monkeypatch: pytest.MonkeyPatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(default_transport(), AiohttpTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert default_transport() is None
