"""The default transport (aiohttp under httpx's API) keeps every failure's meaning."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket

import httpx
import pytest

from llmfail.classify import classify_exception
from llmfail.client import read_body
from llmfail.errors import Kind
from llmfail.transport import AiohttpTransport, DirectClient, default_client, default_transport

from .raw_http import Handler, answers, read_request, serve


def _cookie_server(seen: list[bytes]) -> Handler:
    """Two answers that set a cookie; `seen` gets each request's Cookie header line (b"" if none)."""

    async def cookie(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            head = await read_request(reader)
            seen.append(b"\r\n".join(line for line in head.split(b"\r\n") if line.lower().startswith(b"cookie")))
            writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: lb=1; Path=/\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    return cookie


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
        await read_request(reader)
        writer.close()

    server, url = await serve(hang_up)
    async with server:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(url)
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_a_body_cut_short_is_a_read_error_and_so_transient():
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"choi')
        await writer.drain()
        writer.close()

    server, url = await serve(cut)
    async with server:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(url)
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_a_malformed_answer_is_a_protocol_error_and_so_transient():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await serve(garbage)
    async with server:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(url)
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_answers_keep_their_status_headers_and_body():
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, url = await serve(answer)
    async with server:
        response = await _post(url)
    assert (response.status_code, response.headers["retry-after"], response.content) == (429, "7", b"{}")


async def test_a_cookie_is_sent_back_once_by_httpx_not_twice():
    seen: list[bytes] = []
    server, url = await serve(_cookie_server(seen))
    async with server, httpx.AsyncClient(transport=AiohttpTransport(), timeout=None) as client:
        for _ in range(2):
            await client.post(url, json={})
    assert seen == [b"", b"cookie: lb=1"]


async def test_a_proxy_in_the_environment_keeps_httpx_own_transport_and_client(monkeypatch: pytest.MonkeyPatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(default_transport(), AiohttpTransport)
    async with default_client() as client:
        assert isinstance(client, DirectClient)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert default_transport() is None
    async with default_client() as client:
        assert type(client) is httpx.AsyncClient


@pytest.mark.parametrize("quick", [False, True], ids=["httpx-build", "quick-build"])
async def test_the_direct_client_keeps_cookies_like_httpx_and_sends_them_once(quick: bool):
    seen: list[bytes] = []
    server, url = await serve(_cookie_server(seen))
    async with server, DirectClient(AiohttpTransport()) as client:
        for _ in range(2):
            # A str URL takes httpx's own build_request; an httpx.URL with dict headers the quick one.
            request = (
                client.build_request("POST", httpx.URL(url), headers={"Authorization": "Bearer k"}, json={})
                if quick
                else client.build_request("POST", url, json={})
            )
            response = await client.send(request)
            assert response.content == b"{}"
        assert client.cookies.get("lb") == "1"
    assert seen == [b"", b"cookie: lb=1"]


async def test_the_direct_client_errors_name_their_request_and_requests_are_logged(caplog: pytest.LogCaptureFixture):
    url = f"http://127.0.0.1:{_free_port()}/v1/chat/completions"
    async with DirectClient(AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.send(client.build_request("POST", url, json={}), stream=True)
    assert caught.value.request.url == url
    assert f"(POST {url})" in classify_exception(caught.value).message

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, url = await serve(answer)
    with caplog.at_level("INFO", logger="httpx"):
        async with server, DirectClient(AiohttpTransport()) as client:
            await client.post(url, json={})
    assert f'HTTP Request: POST {url} "HTTP/1.1 200 OK"' in caplog.text


async def test_the_direct_client_uses_the_full_send_for_credentials_in_the_url():
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = b"yes" if b"authorization: basic" in head.lower() else b"no"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(auth), auth))
        await writer.drain()
        writer.close()

    server, url = await serve(answer)
    async with server, DirectClient(AiohttpTransport()) as client:
        response = await client.get(url.replace("http://", "http://user:secret@"))
    assert response.content == b"yes"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer k-123", "Content-Type": "application/json"},
        {"x-api-key": "k-123", "anthropic-version": "2023-06-01"},  # no Content-Type: the client adds it
        {"User-Agent": "mine/1", "accept": "text/event-stream"},  # the adapter's replace the client's defaults
    ],
)
async def test_the_direct_clients_quick_request_is_the_one_httpx_builds(headers: dict[str, str]):
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo ✓"}], "max_tokens": 5}
    url = httpx.URL("http://127.0.0.1:8080/v1/chat/completions?x=1")
    async with (
        DirectClient(httpx.MockTransport(lambda r: httpx.Response(200))) as direct,
        httpx.AsyncClient(timeout=None) as plain,
    ):
        for _ in range(2):  # the second one comes from the merged-headers cache
            quick = direct.build_request("POST", url, headers=headers, json=body)
            reference = plain.build_request("POST", url, headers=headers, json=body)
            assert (quick.method, quick.url, quick.content) == (reference.method, reference.url, reference.content)
            assert quick.headers.raw == reference.headers.raw
            assert quick.extensions == reference.extensions
        direct.headers["User-Agent"] = plain.headers["User-Agent"] = "llmfail/1"  # seen on the next request
        quick = direct.build_request("POST", url, headers=headers, json=body)
        assert quick.headers.raw == plain.build_request("POST", url, headers=headers, json=body).headers.raw


_JSON_ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"a": "\xc3\xa9"}'


async def test_a_whole_body_read_at_once_leaves_the_response_as_aread_does_and_the_connection_pooled():
    connections: list[int] = []
    server, url = await serve(answers(_JSON_ANSWER, _JSON_ANSWER, connections=connections))
    async with server, DirectClient(AiohttpTransport()) as client:
        for _ in range(2):
            response = await client.send(client.build_request("POST", httpx.URL(url), headers={}, json={}), stream=True)
            assert await read_body(response) == b'{"a": "\xc3\xa9"}'
            assert (response.content, response.json(), response.text) == (
                b'{"a": "\xc3\xa9"}',
                {"a": "é"},
                '{"a": "é"}',
            )
            assert response.is_stream_consumed and response.is_closed
            assert response.num_bytes_downloaded == 11
            await response.aclose()  # as the engine does: harmless once read
    assert connections == [1]  # the second request reused the first one's connection


async def test_an_encoded_body_is_still_decoded_by_httpx():
    packed = gzip.compress(b'{"a": 1}')
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (len(packed), packed)
    server, url = await serve(answers(answer))
    async with server, DirectClient(AiohttpTransport()) as client:
        response = await client.send(client.build_request("POST", httpx.URL(url), headers={}, json={}), stream=True)
        assert await read_body(response) == b'{"a": 1}'
    assert response.json() == {"a": 1}


async def test_a_body_cut_short_in_a_whole_read_is_a_read_error_naming_its_request():
    cut = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"choi'
    server, url = await serve(answers(cut))
    async with server, DirectClient(AiohttpTransport()) as client:
        request = client.build_request("POST", httpx.URL(url), headers={}, json={})
        response = await client.send(request, stream=True)
        with pytest.raises(httpx.ReadError) as caught:
            await read_body(response)
        await response.aclose()
    assert caught.value.request is request
    assert classify_exception(caught.value).kind == Kind.TRANSIENT


async def test_a_streamed_body_is_handed_over_as_it_arrives():
    first_seen = asyncio.Event()

    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in (b"data: one\n\n", b"data: two\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.wait_for(first_seen.wait(), 5)  # the second waits until the client has the first
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await serve(sse)
    lines = []
    async with server, DirectClient(AiohttpTransport()) as client:
        response = await client.send(client.build_request("POST", httpx.URL(url), headers={}, json={}), stream=True)
        async for line in response.aiter_lines():
            lines.append(line)
            if line == "data: one":
                first_seen.set()
        await response.aclose()
    assert [line for line in lines if line] == ["data: one", "data: two"]


async def test_headers_reach_the_wire_as_httpx_holds_them():
    seen: list[bytes] = []
    server, url = await serve(answers(_JSON_ANSWER, _JSON_ANSWER, seen=seen))
    async with server, DirectClient(AiohttpTransport()) as client:
        body = {"model": "m", "content": "héllo"}
        await client.post(httpx.URL(url), headers={"X-Name": "héllo".encode()}, json=body)
        await client.post(url, headers=[("x-dup", "1"), ("x-dup", "2")], content=b"{}")
    first, second = (request.partition(b"\r\n\r\n")[0].split(b"\r\n") for request in seen)
    assert first[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"x-name: h\xc3\xa9llo" in first  # UTF-8 bytes as they were, not re-encoded
    assert [line for line in first if line.startswith(b"host:")] == [f"host: {httpx.URL(url).netloc.decode()}".encode()]
    assert b"content-length: %d" % len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()) in first
    assert [line for line in second if line.startswith(b"x-dup")] == [
        b"x-dup: 1",
        b"x-dup: 2",
    ]  # as httpx's own sends them


async def test_httpx_timeouts_a_client_sets_are_kept():
    hung_up = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{")
        await writer.drain()
        await reader.read()  # the rest never comes: the client gives up and hangs up
        writer.close()
        await writer.wait_closed()
        hung_up.set()

    server, url = await serve(stall)
    async with server:
        async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(url, json={})
        await asyncio.wait_for(hung_up.wait(), 5)


async def test_a_url_that_is_not_http_is_an_unsupported_protocol():
    async with DirectClient(AiohttpTransport()) as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/x")
