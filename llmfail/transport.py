"""The engine's default HTTP transport: httpx's API on aiohttp's connection pool.

Why aiohttp: httpx's own async transport (httpcore) costs about 0.8 ms of CPU
per request here and gets slower with concurrency (about 2 ms at 32 requests in
flight), so an engine on it tops out near 400 requests/s on a core. The same
requests through aiohttp cost about a fifth of that (see benchmarks/README.md).
`AiohttpTransport` is an `httpx.AsyncBaseTransport`, so adapters, streaming
parsers, `MockTransport` fakes and injected transports are unchanged.

Why its own class rather than a generic httpx-on-aiohttp adapter: that glue
cost about as much CPU per request as aiohttp itself spends sending one. Here
each request does only what it must:

- **Headers** go over as httpx's raw byte pairs, decoded once, each pair on
  its own line as httpx's own transport sends them (names lowercased, as they
  always went). Not through `httpx.Headers`' str views, which re-check the
  whole set's encoding for every name and value. The converted set is not
  cached: Content-Length differs from body to body, and the conversion is ~1 µs.
- **URLs** go over as `yarl.URL`s made once per distinct URL (`encoded=True`:
  httpx has already percent-encoded them, so the bytes on the wire are httpx's).
- **Timeouts**: the engine times every attempt itself, so its requests carry
  no httpx timeouts and share one timer-less `ClientTimeout`; a request that
  does carry them (a plain `httpx.AsyncClient` on this transport) gets them.
- **The body** is one stream class straight over aiohttp's reader, mapping
  aiohttp's errors itself. It also hands over a whole body in one read, which
  `llmfail.client.read_body` (the engine's whole-answer read) uses instead of
  `Response.aread()`'s four async-generator layers per chunk.

What it keeps:

- **Errors keep their meaning**: refused -> `httpx.ConnectError` ("cannot
  connect to HOST:PORT: reason"), a connection lost or a broken body ->
  `httpx.ReadError`, a malformed answer -> `httpx.RemoteProtocolError`, before
  and while the body is read; never a timeout class for what is not a timeout
  (llmfail would file it as `timeout` instead of `transient`).
- **One cookie jar**: httpx's. aiohttp's session gets a dummy jar, so a cookie
  is never sent twice. Likewise credentials in a URL travel once, as httpx's
  Authorization header (aiohttp refuses a request carrying both).
- **Bodies as httpx sends and reads them**: aiohttp neither compresses a
  request nor decompresses an answer (httpx decodes Content-Encoding), nor
  follows redirects.
- **Proxies as before**: when a proxy is configured in the environment
  (`HTTP(S)_PROXY`, `ALL_PROXY`), `default_transport()` returns None and the
  client keeps httpx's own transport, which applies them and `NO_PROXY` exactly
  as it always did. aiohttp's session ignores the environment.
- **httpx's pool limits and TLS**: 100 connections, idle ones kept 5 s,
  certificates verified with certifi (`httpx.create_ssl_context()`).
- **A thinner `send()`**: `default_client()` is a `DirectClient`
  (`llmfail/client.py`), which skips httpx's auth/redirect/hook machinery.

No retries here: the engine is the one retry loop.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import httpx
from yarl import URL

from .client import DirectClient, WholeBody

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
_NO_TIMEOUT = aiohttp.ClientTimeout()  # every timer off: the engine times each attempt
_MAX_URLS = 256  # distinct URLs kept converted (the engine sends to a few)


def default_transport() -> httpx.AsyncBaseTransport | None:
    """An aiohttp-backed transport, or None (httpx's own) when the environment names a proxy."""
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES):
        return None
    return AiohttpTransport()


def default_client() -> httpx.AsyncClient:
    """The engine's client for network providers: no httpx timeouts, no redirects (the engine times every attempt)."""
    transport = default_transport()
    if transport is None:
        return httpx.AsyncClient(timeout=None, follow_redirects=False)
    return DirectClient(transport)


def _as_httpx(exc: aiohttp.ClientError | TimeoutError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error an aiohttp failure stands for, carrying its request."""
    message = str(exc) or type(exc).__name__
    error: httpx.TransportError
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        error = httpx.UnsupportedProtocol(message)
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):  # only with an httpx connect or pool timeout
        error = httpx.ConnectTimeout(message)
    elif isinstance(exc, TimeoutError):  # only with an httpx read timeout
        error = httpx.ReadTimeout(message)
    elif isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
        error = httpx.ConnectError(message)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp's own text names its TLS setting ("ssl:default") even for a plain-HTTP URL.
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        error = httpx.ConnectError(f"cannot connect to {exc.host}:{exc.port}: {reason}")
    elif isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        error = httpx.ReadError(message)  # refused is above: this is a connection lost, or a broken body
    else:
        error = httpx.RemoteProtocolError(message)  # a malformed answer
    error.request = request
    return error


class _Body(WholeBody):
    """An answer's body straight from aiohttp's reader, its errors mapped as it is read."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request
        # httpx decodes Content-Encoding itself; a body without one is the bytes read.
        self.identity = "Content-Encoding" not in response.headers

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, self._request) from exc

    async def read_whole(self) -> bytes:
        try:
            body = await self._response.read()  # at the end of the body, the connection goes back to the pool
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, self._request) from exc
        self._response.release()  # the response itself done with too: nothing left for `aclose()`
        return body

    async def aclose(self) -> None:
        # As `async with response` ends: an unread body closes the connection rather than pooling it.
        self._response.release()
        try:
            await self._response.wait_for_close()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, self._request) from exc


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent on one aiohttp session (see the module docstring)."""

    def __init__(self) -> None:
        self.ssl_context = httpx.create_ssl_context()  # certifi's roots, as httpx's own transport
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        """The session, made in the running event loop at the first request."""
        connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=5.0, ssl=self.ssl_context)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=_NO_TIMEOUT, auto_decompress=False
        )
        return self._session

    def _url(self, url: httpx.URL) -> URL:
        text = str(url)
        converted = self._urls.get(text)
        if converted is None:
            converted = URL(text, encoded=True)  # httpx's URL is already percent-encoded
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            self._urls[text] = converted
        return converted

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        url = request.url
        raw = request.headers.raw
        if url.userinfo and any(name.lower() == b"authorization" for name, _ in raw):
            # httpx has turned `user:pass@` into the Authorization header; aiohttp refuses both at once.
            request.url = url = url.copy_with(userinfo=b"")
        timeout = _NO_TIMEOUT
        timeouts = request.extensions.get("timeout")
        if timeouts and any(value is not None for value in timeouts.values()):
            timeout = aiohttp.ClientTimeout(
                sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"), connect=timeouts.get("pool")
            )
        data: bytes | httpx.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:  # a streamed upload: aiohttp frames it itself
            data = request.stream  # type: ignore[assignment]
            raw = [(name, value) for name, value in raw if name.lower() != b"transfer-encoding"]
        try:
            response = await session.request(
                request.method,
                self._url(url),
                headers=_aiohttp_headers(raw),
                data=data,
                allow_redirects=False,
                compress=False,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, request) from exc
        extensions = {"http_version": b"HTTP/1.0" if response.version == aiohttp.HttpVersion10 else b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("utf-8", "replace")
        return httpx.Response(
            response.status, headers=response.raw_headers, stream=_Body(response, request), extensions=extensions
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _aiohttp_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """httpx's raw header pairs as aiohttp takes them. Names go lowercased, as `httpx.Headers` lists
    them; bytes are decoded as UTF-8, which aiohttp encodes them back as. A header that is not
    UTF-8 is decoded as latin-1 and so goes out UTF-8-encoded (`caf\\xe9` as `caf\\xc3\\xa9`), as
    it did through httpx-aiohttp; provider APIs take ASCII headers (keys, versions, ids)."""
    try:
        return [(name.decode().lower(), value.decode()) for name, value in raw]
    except UnicodeDecodeError:
        return [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]
