"""`DirectClient`: an `httpx.AsyncClient` with a thin `send()`, for every transport the engine uses.

`AsyncClient.send()` runs every request through auth, redirect, hook and
cookie machinery llmfail never uses (the adapters set the headers; redirects
are off): about a fifth of a request's client-side CPU, and most of the
overhead of `simulate`'s in-process fakes. `DirectClient` hands the request
straight to the transport and keeps what matters: httpx's cookie jar (a
`Set-Cookie` answer is stored and later requests send it), its `HTTP Request:`
INFO log line, errors that carry their request, and the full `send()` whenever
auth, a redirect, an event hook or credentials in the URL are involved.

`read_body` is `Response.aread()` in one read for a transport stream that
can hand over a whole body at once (`WholeBody`, which `transport.py`'s is):
the engine reads every non-streamed answer through it.

They live apart from `transport.py` so in-process fakes get them without
importing aiohttp.
"""

from __future__ import annotations

import json as _json
import logging
from typing import Any

import httpx

_httpx_log = logging.getLogger("httpx")  # where httpx's own client logs each request
_Base = tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]  # headers before and after Content-Length


class WholeBody(httpx.AsyncByteStream):
    """A response stream that can also hand over its whole body in one read (`read_body`).

    Reading a whole answer through `Response.aread()` walks four async-generator
    layers per chunk (`aiter_bytes`, its decoder, `aiter_raw`, the stream); a
    transport whose stream can read everything at once subclasses this.
    """

    #: No Content-Encoding: the bytes read are the body (otherwise httpx decodes them in `aread`).
    identity: bool = False

    async def read_whole(self) -> bytes:
        """The whole raw body, after which the stream holds nothing open (there is nothing
        left for `aclose()` to do); errors are httpx's, as while iterating."""
        raise NotImplementedError


async def read_body(response: httpx.Response) -> bytes:
    """`await response.aread()`, in one read when the transport's stream offers it.

    The response is left as `aread()` leaves it: its content kept (so
    `.content`, `.text` and `.json()` work), the stream consumed and closed.
    Marking it closed rather than awaiting `aclose()` saves ~5 µs of await
    chain that would find nothing to release.
    """
    stream = response.stream
    if isinstance(stream, WholeBody) and stream.identity and not (response.is_stream_consumed or response.is_closed):
        response.is_stream_consumed = True
        content = await stream.read_whole()
        # What `aread()` sets: httpx keeps the body in `_content` and counts it in `_num_bytes_downloaded`.
        response._content = content
        response._num_bytes_downloaded = len(content)
        response.is_closed = True
        return content
    return await response.aread()


class DirectClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` whose `send()` goes straight to its transport (see the module docstring)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        super().__init__(transport=transport, timeout=None, follow_redirects=False)
        self._direct = transport
        self._merged: dict[tuple[object, ...], _Base | None] = {}

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        cookies: Any = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,
        extensions: Any = None,
    ) -> httpx.Request:
        """The engine's request (an absolute URL, headers, a JSON body) for under half the CPU.

        httpx merges base URL, params and cookie jars per request and then
        re-scans its header list once per default header; here the client's
        headers, the adapter's and `Host` are merged once per distinct set (an
        entry sends the same ones every time) and the body goes in encoded. The
        request is the one httpx builds, header for header in the same order and
        byte for byte (tests/test_transport.py compares them). Anything else,
        and any request once the cookie jar holds a cookie, takes httpx's path.
        """
        base = None
        if (
            json is not None
            and isinstance(url, httpx.URL)
            and isinstance(headers, dict)
            and url.is_absolute_url
            and content is None
            and data is None
            and files is None
            and params is None
            and cookies is None
            and timeout is httpx.USE_CLIENT_DEFAULT
            and extensions is None
            and not self.params
            and not self.base_url.host
            and not self.cookies
        ):
            base = self._base_headers(url, headers)
        if base is None:
            return super().build_request(
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                timeout=timeout,
                extensions=extensions,
            )
        head, tail = base
        body = _json.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        request = httpx.Request(
            method,
            url,
            headers=[*head, (b"Content-Length", str(len(body)).encode()), *tail],
            stream=httpx.ByteStream(body),
            extensions={"timeout": self.timeout.as_dict()},
        )
        request.read()
        return request

    def _base_headers(self, url: httpx.URL, headers: dict[str, str]) -> _Base | None:
        """A JSON POST's headers around its Content-Length, in httpx's order (None: the adapter
        set one httpx computes itself, so httpx's path decides). Keyed by the client's own
        headers too, so changing them is never missed."""
        key = (url.netloc, tuple(headers.items()), tuple(self.headers.raw))
        if key in self._merged:
            return self._merged[key]
        merged = httpx.Headers(self.headers)
        merged.update(headers)
        base: _Base | None = None
        if not any(name in merged for name in ("host", "content-length", "transfer-encoding")):
            tail = [] if "content-type" in merged else [(b"Content-Type", b"application/json")]
            base = ([(b"Host", url.netloc), *merged.raw], tail)
        if len(self._merged) >= 256:
            self._merged.clear()
        self._merged[key] = base
        return base

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        if (
            auth is not httpx.USE_CLIENT_DEFAULT
            or follow_redirects is True
            or self.auth is not None
            or self.event_hooks["request"]
            or self.event_hooks["response"]
            or request.url.userinfo
        ):
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        try:
            response = await self._direct.handle_async_request(request)
        except httpx.RequestError as exc:
            try:
                exc.request  # noqa: B018 - raises RuntimeError when the error has no request yet
            except RuntimeError:
                exc.request = request
            raise
        response.request = request
        if any(name.lower().startswith(b"set-cookie") for name, _ in response.headers.raw):
            self.cookies.extract_cookies(response)
        if _httpx_log.isEnabledFor(logging.INFO):  # its arguments cost more than the call
            _httpx_log.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        if not stream:
            try:
                await read_body(response)
            except BaseException:
                await response.aclose()
                raise
        return response
