"""One HTTP attempt at an entry, and the reading of its answer or stream.

`Attempts.run` sends one request through the entry's adapter and returns a
whole `Completion`, or raises one classified `ProviderError`: nothing here
retries, benches or writes events — the walk (`llmfail.engine`) decides what a
failure means (`llmfail.decide`). It owns what an attempt needs and reuses
across requests: one adapter per provider, one HTTP client per transport (per
event loop), and the parsed URLs.

Timers (docs/providers.md): `timeout` bounds the connection and the response headers
(for a streamed request `first_token_timeout` too); a stream then has
`first_token_timeout` until its first text and `idle_timeout` between chunks; a
whole answer's body is bounded only by the request's deadline. A timer that
fires because the request's deadline ran out marks the error `DEADLINE_CUT`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import httpx

from .classify import classify_exception, finish_reason_kind
from .client import DirectClient, read_body
from .config import Entry, Policy, ProviderConfig
from .errors import Kind, ProviderError, plural
from .providers import adapter_for
from .providers.base import Adapter, ChatRequest, Completion, Runtime

log = logging.getLogger("llmfail")

#: `ProviderError.code` of an attempt cut short by the request's own deadline: it says
#: nothing about the model, so it is never benched or counted against it.
DEADLINE_CUT = "request_deadline"

#: Hands one piece of streamed text to the caller as it arrives; None for a caller
#: that wants the whole answer.
Hand = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Timed:
    """A completion with the attempt's latency and time to its first text (ms, engine clock)."""

    completion: Completion
    latency_ms: float
    ttft_ms: float


async def _read(response: httpx.Response, seconds: float) -> bytes:
    """A whole body, waited for at most `seconds`. A body already in memory (an in-process
    fake's) cannot stall: reading it skips the timer, a visible share of a simulated request."""
    if isinstance(response.stream, httpx.ByteStream):
        return await response.aread()
    async with asyncio.timeout(seconds):
        return await read_body(response)


class Attempts:
    """Makes attempts; one per engine, so clients and parsed URLs are shared by its requests."""

    def __init__(self, runtime: Runtime, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self._transport = transport
        self._adapters: dict[str, Adapter] = {}
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Prepared once, reused by every request (benchmarks/: parsing them each time showed in profiles).
        self._urls: dict[str, httpx.URL] = {}

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def run(
        self, entry: Entry, api_key: str | None, request: ChatRequest, *, deadline_at: float, hand: Hand | None
    ) -> tuple[Completion, float]:
        """One HTTP try: a whole Completion and when (engine clock) its first text arrived,
        or a classified ProviderError.

        `timeout` bounds the connection and the response headers (for a stream
        `first_token_timeout` too, when shorter); after them a stream is timed
        by `_consume` and a whole answer only by the deadline.
        """
        adapter = self._adapter(entry.provider)
        client = self._client(entry.provider, adapter)
        policy = entry.policy
        if request.default_max_tokens != policy.max_tokens:
            request = replace(request, default_max_tokens=policy.max_tokens)
        if request.extra and not adapter.takes_extra:
            log.debug(
                "llmfail: %s speaks %s: dropped the fields %s",
                entry.model,
                entry.provider.type,
                ", ".join(request.extra),
            )
        url, headers, body = adapter.build(request, entry.wire_model, api_key)
        http_request = client.build_request("POST", self._url(url), headers=headers, json=body)
        # A stream's silence counts from the request: its headers get first_token_timeout at most.
        streamed = request.stream and policy.first_token_timeout < policy.timeout
        limit = policy.first_token_timeout if streamed else policy.timeout
        try:
            async with asyncio.timeout(max(0.0, min(limit, deadline_at - self.clock()))):
                response = await client.send(http_request, stream=True)
        except (httpx.HTTPError, TimeoutError) as exc:
            error = self._timed_out(exc, deadline_at)
            if isinstance(exc, TimeoutError) and error.code != DEADLINE_CUT:
                error.message = (
                    f"no response headers within {limit:g}s ({'first_token_timeout' if streamed else 'timeout'})"
                )
            raise error from None
        try:
            if not 200 <= response.status_code < 300:
                try:
                    raw = await _read(response, max(0.0, min(policy.timeout, deadline_at - self.clock())))
                except (httpx.HTTPError, TimeoutError):
                    raw = b""
                raise adapter.classify(response.status_code, response.headers, raw, now=self.clock())
            first_at: float | None
            if request.stream:
                completion, first_at = await self._consume(adapter, response, policy, deadline_at, hand)
            else:
                try:
                    raw = await _read(response, max(0.0, deadline_at - self.clock()))
                except (httpx.HTTPError, TimeoutError) as exc:
                    raise self._timed_out(exc, deadline_at) from None
                completion, first_at = adapter.read_completion(raw), self.clock()
        finally:
            await response.aclose()
        kind = finish_reason_kind(completion.finish_reason)
        if kind is not None:
            raise ProviderError(
                kind,
                f"answer ended with finish reason {completion.finish_reason!r}",
                status=200,
                code=completion.finish_reason,
                reason=completion.finish_reason,
            )
        return completion, first_at if first_at is not None else self.clock()

    def _timed_out(self, exc: BaseException, deadline_at: float) -> ProviderError:
        """A transport failure classified; a timer that fired because the request's deadline
        ran out (not the entry's own `timeout`) is marked as a deadline cut."""
        if isinstance(exc, (TimeoutError, httpx.TimeoutException)) and deadline_at - self.clock() <= 0.001:
            return ProviderError(Kind.TIMEOUT, "request deadline reached", code=DEADLINE_CUT)
        return classify_exception(exc)

    async def _consume(
        self, adapter: Adapter, response: httpx.Response, policy: Policy, deadline_at: float, hand: Hand | None
    ) -> tuple[Completion, float | None]:
        """Read a stream to its completion signal, handing text to `hand` as it arrives.

        Returns the completion and when (engine clock) its first text arrived.
        Two timers, both `timeout` failures:

        - until the first text, one deadline `first_token_timeout` after the
          headers. Role-only chunks, pings and reasoning do not extend it: a
          model that thinks for minutes needs that knob raised, not a loophole.
        - after it, `idle_timeout` of silence between two chunks.

        The timers run on the event loop's clock (what asyncio.timeout
        measures), not the injectable engine clock: they bound real waiting.
        Ending, stalling or dropping the connection before the completion
        signal is a cut, never a success; after it, only the trailing usage
        chunk is waited for, and a stall or drop there is harmless.

        A malformed event (an adapter's `Chunk.warning`) could hide a piece of
        the text. It fails the attempt (transient) for a caller that wants the
        whole answer, and before any text reached a streaming caller (failover
        is still free); after that it is skipped and noted in the warnings,
        since the text shown cannot be taken back.
        """
        loop = asyncio.get_running_loop()
        first_token_by = loop.time() + policy.first_token_timeout
        chunks = adapter.iter_stream(response)
        parts: list[str] = []
        completion = Completion("")
        first_at: float | None = None
        done = False
        try:
            while not (done and adapter.stream_ends_at_done):
                wait = policy.idle_timeout if (parts or done) else first_token_by - loop.time()
                remaining = deadline_at - self.clock()
                try:
                    async with asyncio.timeout(max(0.0, min(wait, remaining))):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if done:
                        break
                    if remaining < wait:
                        raise ProviderError(
                            Kind.TIMEOUT, "request deadline reached mid-stream", code=DEADLINE_CUT
                        ) from None
                    what = (
                        f"stream stalled mid-answer: nothing for {policy.idle_timeout:g}s"
                        if parts
                        else f"no first token within {policy.first_token_timeout:g}s"
                    )
                    raise ProviderError(Kind.TIMEOUT, what) from None
                except httpx.HTTPError as exc:
                    if done:
                        break
                    raise classify_exception(exc) from None
                if chunk.warning:  # a malformed event, which the adapter could only skip
                    if hand is None or not parts:
                        raise ProviderError(
                            Kind.TRANSIENT,
                            "malformed stream event: skipping it could leave a hole in the answer",
                            status=200,
                        )
                    completion.warnings.append(chunk.warning)
                if chunk.usage:
                    completion.usage = completion.usage.merged(chunk.usage)
                if chunk.finish_reason:
                    completion.finish_reason = chunk.finish_reason
                if chunk.text:
                    if first_at is None:
                        first_at = self.clock()
                    parts.append(chunk.text)
                    if hand is not None:
                        await hand(chunk.text)
                done = done or chunk.done
        finally:
            await chunks.aclose()
        completion.text = "".join(parts)
        if not done:
            raise ProviderError(
                Kind.TRANSIENT, f"stream cut after {plural(len(completion.text), 'character')}", status=200
            )
        return completion, first_at

    # ------------------------------------------------------------------ what attempts reuse

    def _adapter(self, provider: ProviderConfig) -> Adapter:
        adapter = self._adapters.get(provider.name)
        if adapter is None:
            adapter = self._adapters[provider.name] = adapter_for(provider)
        return adapter

    def _client(self, provider: ProviderConfig, adapter: Adapter) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # clients belong to the loop that made them
            self._clients, self._loop = {}, loop
        own = adapter.transport(self.runtime)
        name = provider.name if own is not None else ""
        client = self._clients.get(name)
        if client is None:
            # httpx's own timeouts and retries are off: the engine times and retries.
            transport = own or self._transport
            if transport is None:  # aiohttp under httpx's API: ~4x the throughput (benchmarks/)
                from .transport import default_client

                client = default_client()
            else:
                client = DirectClient(transport)
            self._clients[name] = client
        return client

    def _url(self, url: str) -> httpx.URL:
        """`url` parsed once (the adapters build the same few URLs for every request)."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) < 1024:
                self._urls[url] = parsed
        return parsed
