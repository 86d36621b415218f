"""The engine's default HTTP transport: httpx's API on aiohttp's connection pool.

Why: httpx's own async transport (httpcore) costs about 0.8 ms of CPU per
request here and gets slower with concurrency (about 2 ms at 32 requests in
flight), so an engine on it tops out near 400 requests/s on a core. The same
requests through aiohttp cost about a fifth of that (see benchmarks/README.md).
`httpx-aiohttp` puts aiohttp under an `httpx.AsyncClient`, so adapters,
streaming parsers, `MockTransport` fakes and injected transports are unchanged.

What this module adds on top of `httpx_aiohttp.AiohttpTransport`:

- **Errors keep their meaning.** httpx-aiohttp reports every
  `aiohttp.ClientConnectionError` (refused, reset, server disconnected) as
  `httpx.ConnectTimeout`, which llmfail would file as `timeout` instead of
  `transient`, and lets some aiohttp errors through unmapped. Here
  refused -> `httpx.ConnectError`, a connection lost or a broken body ->
  `httpx.ReadError`, a malformed answer -> `httpx.RemoteProtocolError`, before
  and while the body is read.
- **One cookie jar**: httpx's. aiohttp's session gets a dummy jar, so a cookie
  is never sent twice. Likewise credentials in a URL travel once, as httpx's
  Authorization header (aiohttp refuses a request carrying both).
- **Proxies as before**: when a proxy is configured in the environment
  (`HTTP(S)_PROXY`, `ALL_PROXY`), `default_transport()` returns None and the
  client keeps httpx's own transport, which applies them and `NO_PROXY` exactly
  as it always did.
- **A thinner `send()`**: `default_client()` is a `DirectClient`
  (`llmfail/client.py`), which skips httpx's auth/redirect/hook machinery.

No retries and no timeouts here: the engine is the one retry loop and times
every attempt itself.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport as _AiohttpTransport

from .client import DirectClient

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


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


def _as_httpx(exc: BaseException) -> httpx.TransportError | None:
    """The httpx error an aiohttp failure stands for (None: leave `exc` as it is)."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None else exc
    message = str(cause) or type(cause).__name__
    if isinstance(cause, aiohttp.InvalidURL):
        return None  # already httpx.UnsupportedProtocol
    if isinstance(cause, TimeoutError):  # aiohttp's timers are off; keep whatever says "timeout"
        return None if isinstance(exc, httpx.TimeoutException) else httpx.ReadTimeout(message)
    if isinstance(cause, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
        return httpx.ConnectError(message)
    if isinstance(cause, aiohttp.ClientConnectorError):
        # aiohttp's own text names its TLS setting ("ssl:default") even for a plain-HTTP URL.
        reason = cause.os_error.strerror or str(cause.os_error) or type(cause.os_error).__name__
        return httpx.ConnectError(f"cannot connect to {cause.host}:{cause.port}: {reason}")
    if isinstance(cause, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return httpx.ReadError(message)
    if isinstance(cause, aiohttp.ClientError):
        return httpx.RemoteProtocolError(message)
    return None


class _Body(httpx.AsyncByteStream):
    """The response body, with aiohttp's errors mapped while it is read."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            mapped = _as_httpx(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            mapped = _as_httpx(exc)
            if mapped is None:
                raise
            raise mapped from exc


class AiohttpTransport(_AiohttpTransport):
    """`httpx_aiohttp.AiohttpTransport` with llmfail's error mapping and a single cookie jar."""

    def __init__(self) -> None:
        # httpx's defaults: 100 connections, idle ones kept 5 s; TLS verified with certifi.
        super().__init__(limits=httpx.Limits(max_connections=100, keepalive_expiry=5.0), client=self._session)

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=5.0, ssl=self.ssl_context)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.userinfo and "authorization" in request.headers:
            # httpx has turned `user:pass@` into the Authorization header; aiohttp refuses both at once.
            request.url = request.url.copy_with(userinfo=b"")
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            mapped = _as_httpx(exc)
            if mapped is None:
                raise
            raise mapped from exc
        response.stream = _Body(response.stream)  # type: ignore[arg-type]
        return response
