"""`PlainHTTPTransport`: HTTP/1.1 without TLS straight on asyncio streams, for a process that sends a few requests.

Why: httpx's own transport loads httpcore, h11 and anyio at its first request
(about a tenth of a one-shot `llmfail run`'s start-up, `benchmarks/startup.py`);
asyncio, which the engine runs on anyway, already holds everything plain
HTTP/1.1 needs. `https://` URLs are not handled here (TLS stays with httpx's
transport, see `llmfail.run`).

Deliberately small: one connection per request, closed once its body is read
(a one-shot run sends a handful of requests; a local connect costs less than a
pool's bookkeeping), no timeouts and no retries (the engine times every attempt
and is the one retry loop), no proxies (the caller picks httpx's transport when
the environment names one). The body arrives as it is read, so streaming works;
`Transfer-Encoding: chunked` is decoded here, `Content-Encoding` by httpx as
always. Failures are httpx's errors, as httpx's own transport raises them:
`ConnectError` (refused, unknown host), `WriteError`, `ReadError` (connection
lost), `RemoteProtocolError` (no or a malformed answer, a body cut short).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx

_LIMIT = 1 << 20  # the longest status or header line (and chunk-size line) accepted


class PlainHTTPTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over a fresh asyncio connection per request (`http://` only)."""

    def __init__(self) -> None:
        self._open: set[asyncio.StreamWriter] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"PlainHTTPTransport sends http:// only, not {url.scheme}://")
        port = url.port or 80
        try:
            reader, writer = await asyncio.open_connection(url.host, port, limit=_LIMIT)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {url.host}:{port}: {exc.strerror or exc}") from exc
        self._open.add(writer)
        try:
            await _send(writer, request)
            status, reason, headers = await _read_head(reader)
            if request.method == "HEAD" or status in (204, 304):
                body: AsyncIterator[bytes] = _nothing()
            elif any(name.lower() == b"transfer-encoding" and b"chunked" in value.lower() for name, value in headers):
                body = _chunked(reader)
            else:
                length = next((value for name, value in headers if name.lower() == b"content-length"), None)
                body = _sized(reader, _content_length(length)) if length is not None else _until_closed(reader)
        except BaseException:
            self._close(writer)
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=_Body(body, lambda: self._close(writer)),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()

    async def aclose(self) -> None:
        for writer in list(self._open):
            self._close(writer)


async def _send(writer: asyncio.StreamWriter, request: httpx.Request) -> None:
    body = await request.aread()
    names = {name.lower() for name, _ in request.headers.raw}
    head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
    if body and b"content-length" not in names and b"transfer-encoding" not in names:
        head.append(b"Content-Length: %d\r\n" % len(body))
    head.append(b"\r\n")
    try:
        writer.write(b"".join(head) + body)
        await writer.drain()
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc


async def _line(reader: asyncio.StreamReader, *, first: bool = False) -> bytes:
    """One line; `first`: the answer's first line, where a closed connection means no answer at all."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if first and not exc.partial:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
        raise httpx.RemoteProtocolError("the server closed the connection in the middle of a line") from exc
    except asyncio.LimitOverrunError as exc:
        raise httpx.RemoteProtocolError("the server sent a line longer than 1 MiB") from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The final answer's status, reason and headers (informational 1xx answers are skipped)."""
    while True:
        status_line = await _line(reader, first=True)
        parts = status_line.rstrip(b"\r\n").split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise httpx.RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
        headers: list[tuple[bytes, bytes]] = []
        while (line := await _line(reader)) not in (b"\r\n", b"\n"):
            name, colon, value = line.partition(b":")
            if not colon or not name.strip() or name != name.strip():
                raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
            headers.append((name, value.strip()))
        status = int(parts[1])
        if not 100 <= status < 200 or status == 101:
            return status, parts[2].strip() if len(parts) > 2 else b"", headers


def _content_length(value: bytes) -> int:
    if not value.strip().isdigit():
        raise httpx.RemoteProtocolError(f"malformed Content-Length {value[:40]!r}")
    return int(value)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


async def _read_some(reader: asyncio.StreamReader, most: int) -> bytes:
    try:
        return await reader.read(most)
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


async def _sized(reader: asyncio.StreamReader, length: int) -> AsyncIterator[bytes]:
    while length > 0:
        chunk = await _read_some(reader, min(length, 65536))
        if not chunk:
            raise httpx.RemoteProtocolError(f"the server closed the connection {length} bytes before the body's end")
        length -= len(chunk)
        yield chunk


async def _until_closed(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await _read_some(reader, 65536):
        yield chunk


async def _chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_line = (await _line(reader)).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"malformed chunk size {size_line[:40]!r}") from None
        if size == 0:
            while await _line(reader) not in (b"\r\n", b"\n"):  # trailers: not used by any provider
                pass
            return
        async for piece in _sized(reader, size):
            yield piece
        await _line(reader)  # the CRLF after each chunk


class _Body(httpx.AsyncByteStream):
    """The response body as it arrives; the connection is closed once it is read or the response closed."""

    def __init__(self, chunks: AsyncIterator[bytes], close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._close = close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        finally:
            self._close()

    async def aclose(self) -> None:
        self._close()
