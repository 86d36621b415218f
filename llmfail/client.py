"""`DirectClient`: an `httpx.AsyncClient` with a thin `send()`, for every transport the engine uses.

`AsyncClient.send()` runs every request through auth, redirect, hook and
cookie machinery llmfail never uses (the adapters set the headers; redirects
are off): about a fifth of a request's client-side CPU, and most of the
overhead of `simulate`'s in-process fakes. `DirectClient` hands the request
straight to the transport and keeps what matters: httpx's cookie jar (a
`Set-Cookie` answer is stored and later requests send it), its `HTTP Request:`
INFO log line, errors that carry their request, and the full `send()` whenever
auth, a redirect, an event hook or credentials in the URL are involved.

It lives apart from `transport.py` so in-process fakes get it without
importing aiohttp.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

_httpx_log = logging.getLogger("httpx")  # where httpx's own client logs each request


class DirectClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` whose `send()` goes straight to its transport (see the module docstring)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        super().__init__(transport=transport, timeout=None, follow_redirects=False)
        self._direct = transport

    async def send(self, request: httpx.Request, *, stream: bool = False, auth: Any = httpx.USE_CLIENT_DEFAULT,
                   follow_redirects: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        if (auth is not httpx.USE_CLIENT_DEFAULT or follow_redirects is True or self.auth is not None
                or self.event_hooks["request"] or self.event_hooks["response"] or request.url.userinfo):
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
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            self.cookies.extract_cookies(response)
        _httpx_log.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url, response.http_version,
                        response.status_code, response.reason_phrase)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response
