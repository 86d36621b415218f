"""The walk of one request through a chain (SPEC §3): the only retry loop in llmfail.

The engine owns policy and nothing else: the clock, the sleep, the randomness,
the HTTP transport and the state store are injected, so the same code runs
against real providers, loopback test servers, and `simulate`'s virtual time.

    live set -> per entry -> per credential -> per attempt -> classify -> act
                                                                 |
                     retry (backoff / Retry-After) <- rate_limited, transient
                     bench + next entry            <- timeout, exhausted retries
                     bench credential + next cred  <- auth
                     next entry, no bench          <- context_length (and the
                                                      request kinds, by policy)
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from random import Random
from typing import Any

import httpx

from . import events as ev
from .classify import classify_exception, finish_reason_kind
from .config import Chain, Config, Entry, Policy, ProviderConfig
from .errors import (
    REQUEST_KINDS,
    AllBenched,
    ChainExhausted,
    FailFast,
    Kind,
    LlmfailError,
    ProviderError,
    StreamInterrupted,
)
from .events import Event
from .health import EntryStatus, entry_status
from .providers import adapter_for
from .providers.base import Adapter, ChatRequest, Completion, Runtime, Usage
from .redact import env_secret, redact
from .result import Attempt, Restart, Result, StreamItem, Token
from .store import ModelState, Store

log = logging.getLogger("llmfail")

Messages = str | Sequence[Mapping[str, str]]
Emit = Callable[[StreamItem], Awaitable[None]]
Observer = Callable[[Event], None]


#: Slow demotion: the rolling median is over the model's newest SPEED_SAMPLES answers since
#: its last demote/restore decision, and needs SPEED_MIN_SAMPLES of them (a majority), so
#: one slow answer never demotes and one fast answer never restores. A probe decides alone.
SPEED_SAMPLES = 5
SPEED_MIN_SAMPLES = 3


class _DeadlineExceeded(Exception):
    pass


#: `ProviderError.code` of an attempt cut short by the request's own deadline: it says
#: nothing about the model, so it is never benched or counted against it.
DEADLINE_CUT = "request_deadline"


@dataclass(frozen=True)
class Timed:
    """A completion with the attempt's latency and time to its first text (ms, engine clock)."""

    completion: Completion
    latency_ms: float
    ttft_ms: float


@dataclass
class _Walk:
    """The bookkeeping of one request."""

    request_id: str
    chain: str
    start: float
    deadline_at: float
    attempts: list[Attempt] = field(default_factory=list)
    causes: list[ProviderError] = field(default_factory=list)
    failovers: int = 0
    ttft: float | None = None
    shown: list[str] = field(default_factory=list)  # text already handed to a streaming caller
    panic: bool = False
    probe_key: str | None = None
    missing_key: str | None = None  # the key variable of the credential being tried, when unset here
    next_model: str | None = None  # the entry after the one being tried: where a mid-stream restart goes
    first_at: float | None = None  # when the latest attempt's first text arrived (engine clock)
    answer_ms: float | None = None  # the answering attempt's own latency and first-token time:
    answer_ttft_ms: float | None = None  # per-model figures (stats, slow demotion) exclude failover time


def _as_messages(messages: Messages, system: str | None) -> tuple[dict[str, str], ...]:
    msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else [dict(m) for m in messages]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    return tuple(msgs)


def backoff_delay(policy: Policy, attempt: int, rng: Random) -> float:
    """Full jitter: uniform(0, min(max, base * 2**(attempt-1)))."""
    return rng.uniform(0.0, min(policy.backoff.max, policy.backoff.base * 2 ** (attempt - 1)))


async def _read(response: httpx.Response, seconds: float) -> bytes:
    """A whole body, waited for at most `seconds`. A body already in memory (an in-process
    fake's) cannot stall: reading it skips the timer, a visible share of a simulated request."""
    if isinstance(response.stream, httpx.ByteStream):
        return await response.aread()
    async with asyncio.timeout(seconds):
        return await response.aread()


class Engine:
    """Walks chains; one instance per process is enough (it reuses one HTTP client).

    `complete()` returns whole answers; `stream()` hands tokens over as they
    arrive. `complete_sync()` is the same for scripts without an event loop.
    """

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        db_path: str | None = None,
    ) -> None:
        if store is None:
            from .store import open_store

            store = open_store(db_path)
        self.config = config
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or Random()
        self.runtime = Runtime(clock, sleep, self.rng)
        self._transport = transport
        self._adapters: dict[str, Adapter] = {}
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observers: list[Observer] = []
        if config.alerts.sinks:  # an observer that only queues: sending happens on its own thread
            from .alerts import Alerter

            self.on_event(Alerter(config.alerts, store))
        try:  # the audit trail: a config file that changed since this DB last saw it is an event
            from .actions import audit_config

            audit_config(store, config, clock())
        except LlmfailError:
            log.warning("llmfail: recording the config's hash failed", exc_info=True)
        self._holder = f"{socket.gethostname()}:{os.getpid()}"
        # Prepared once, reused by every request (benchmarks/: parsing them each time showed in profiles).
        self._urls: dict[str, httpx.URL] = {}
        self._keys: dict[str, tuple[Chain, list[str]]] = {}
        # Retention: this process offers to prune when it first writes and then hourly;
        # the store keeps the once-an-hour limit across every process sharing the file.
        self._prune_at = float("-inf")

    # ------------------------------------------------------------------ public API

    def on_event(self, callback: Observer) -> Callable[[], None]:
        """Call `callback(event)` for every event this engine writes; returns an unsubscribe."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback)

    async def complete(
        self,
        chain: str,
        messages: Messages,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = False,
    ) -> Result:
        """The whole answer from the first entry that finishes one; never a truncated answer.

        `stream=True` asks providers to stream (the answer is still collected),
        which makes the stream timeouts apply.
        """
        request = ChatRequest(_as_messages(messages, system), max_tokens, temperature, stream)
        return await self._walk(self.config.chain(chain), request, None)

    async def stream(
        self,
        chain: str,
        messages: Messages,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Tokens as they arrive (and `Restart` markers under mid_stream: restart).

        Failover is invisible until the first token is handed over; after that
        a failure raises `StreamInterrupted` or restarts, as the policy says.
        The final `Result` is the generator's last item.
        """
        request = ChatRequest(_as_messages(messages, system), max_tokens, temperature, True)
        queue: asyncio.Queue[StreamItem | Result | BaseException] = asyncio.Queue()

        async def emit(item: StreamItem) -> None:
            queue.put_nowait(item)

        async def produce() -> None:
            try:
                queue.put_nowait(await self._walk(self.config.chain(chain), request, emit))
            except BaseException as exc:  # handed to the consumer, re-raised there
                queue.put_nowait(exc)

        task = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
                if isinstance(item, Result):
                    return
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - cancellation of our own task
                    pass

    def complete_sync(self, chain: str, messages: Messages, **kwargs: Any) -> Result:
        """`complete()` for code without an event loop."""
        return asyncio.run(self._complete_and_close(chain, messages, **kwargs))

    async def _complete_and_close(self, chain: str, messages: Messages, **kwargs: Any) -> Result:
        try:
            return await self.complete(chain, messages, **kwargs)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def attempt_once(self, entry: Entry, request: ChatRequest, api_key: str | None) -> Timed:
        """One attempt at `entry` outside any walk, for health checks (`llmfail.probe`).

        The same adapter, client and timers as a request's attempt, so a probe
        measures what a request would meet; but no retry, no bench, no event:
        the caller decides what the outcome means. The whole attempt is bounded
        by the entry's `timeout`. Raises the classified ProviderError.
        """
        began = self.clock()
        w = _Walk(os.urandom(8).hex(), "", began, began + entry.policy.timeout)
        completion = await self._attempt(entry, api_key, request, w, None)
        ended = self.clock()
        first = w.first_at if w.first_at is not None else ended
        return Timed(completion, (ended - began) * 1000, (first - began) * 1000)

    # ------------------------------------------------------------------ events & state

    def _emit(self, event: Event) -> Event:
        (event_id,) = self.store.append([event])
        if event.ts >= self._prune_at:
            self._prune_at = event.ts + 3600.0
            try:
                self.store.prune(now=event.ts, retention=self.config.policy.retention)
            except LlmfailError:  # housekeeping must never fail a request
                log.warning("llmfail: pruning old events failed", exc_info=True)
        stored = event.with_id(event_id)
        for observer in list(self._observers):
            try:
                observer(stored)
            except Exception:  # an observer must never break a request
                log.exception("llmfail event observer failed")
        return stored

    def _event(self, w: _Walk, type_: str, model: str | None = None, **fields: Any) -> Event:
        return self._emit(Event(type=type_, ts=self.clock(), request_id=w.request_id, chain=w.chain, model=model, **fields))

    def _record_failure(self, key: str, err: ProviderError, policy: Policy, w: _Walk, *,
                        bench_for: float | None, min_until: float | None = None, factor: float | None = None) -> None:
        """Count a health failure; with `bench_for`, bench `key` and say so in an event — unless a bench
        began after this walk read the states (`w.start`): its retries never saw it, so their failures
        are stale news and bench nothing more."""
        state, benched = self.store.record_failure(
            key, now=self.clock(), kind=str(err.kind), status=err.status, bench_for=bench_for,
            factor=policy.max_cooldown_factor if factor is None else factor, min_until=min_until,
            reason=err.message, began=w.start,
        )
        if benched:
            self._event(w, ev.BENCHED, key, kind=str(err.kind), status=err.status,
                        benched_until=state.bench_until, detail=err.message,
                        data={"bench_count": state.bench_count, "probe": w.probe_key == key})

    # ------------------------------------------------------------------ HTTP plumbing

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
                from .client import DirectClient

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

    def _bench_keys(self, chain: Chain) -> list[str]:
        """Every bench key of `chain` (entries and their credentials), computed once per chain."""
        cached = self._keys.get(chain.name)
        if cached is None or cached[0] is not chain:
            keys = list(dict.fromkeys(k for e in chain.entries for k in e.bench_keys()))
            cached = self._keys[chain.name] = (chain, keys)
        return cached[1]

    def _remaining(self, w: _Walk) -> float:
        return w.deadline_at - self.clock()

    async def _attempt(self, entry: Entry, api_key: str | None, request: ChatRequest, w: _Walk,
                       emit: Emit | None) -> Completion:
        """One HTTP try: a whole Completion, or a classified ProviderError.

        `timeout` bounds the connection and the response headers; after them a
        stream is timed by `_consume` and a whole answer only by the deadline.
        """
        adapter = self._adapter(entry.provider)
        client = self._client(entry.provider, adapter)
        policy = entry.policy
        if request.default_max_tokens != policy.max_tokens:
            request = replace(request, default_max_tokens=policy.max_tokens)
        url, headers, body = adapter.build(request, entry.wire_model, api_key)
        http_request = client.build_request("POST", self._url(url), headers=headers, json=body)
        try:
            async with asyncio.timeout(max(0.0, min(policy.timeout, self._remaining(w)))):
                response = await client.send(http_request, stream=True)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._timed_out(exc, w) from None
        try:
            if not 200 <= response.status_code < 300:
                try:
                    raw = await _read(response, max(0.0, min(policy.timeout, self._remaining(w))))
                except (httpx.HTTPError, TimeoutError):
                    raw = b""
                raise adapter.classify(response.status_code, response.headers, raw, now=self.clock())
            if request.stream:
                completion, first_at = await self._consume(adapter, response, policy, w, emit)
            else:
                try:
                    raw = await _read(response, max(0.0, self._remaining(w)))
                except (httpx.HTTPError, TimeoutError) as exc:
                    raise self._timed_out(exc, w) from None
                completion, first_at = adapter.read_completion(raw), self.clock()
        finally:
            await response.aclose()
        kind = finish_reason_kind(completion.finish_reason)
        if kind is not None:
            raise ProviderError(kind, f"answer ended with finish reason {completion.finish_reason!r}",
                                status=200, code=completion.finish_reason, reason=completion.finish_reason)
        w.first_at = first_at if first_at is not None else self.clock()
        if w.ttft is None:  # a collecting caller: the answering attempt's first token
            w.ttft = w.first_at - w.start
        return completion

    def _timed_out(self, exc: BaseException, w: _Walk) -> ProviderError:
        """A transport failure classified; a timer that fired because the request's deadline
        ran out (not the entry's own `timeout`) is marked as a deadline cut."""
        if isinstance(exc, (TimeoutError, httpx.TimeoutException)) and self._remaining(w) <= 0.001:
            return ProviderError(Kind.TIMEOUT, "request deadline reached", code=DEADLINE_CUT)
        return classify_exception(exc)

    async def _consume(self, adapter: Adapter, response: httpx.Response, policy: Policy, w: _Walk,
                       emit: Emit | None) -> tuple[Completion, float | None]:
        """Read a stream to its completion signal, handing text to `emit` as it arrives.

        Returns the completion and when (engine clock) its first text arrived.
        Two timers, both `timeout` failures (SPEC §3 table):

        - until the first text, one deadline `first_token_timeout` after the
          headers. Role-only chunks, pings and reasoning do not extend it: a
          model that thinks for minutes needs that knob raised, not a loophole.
        - after it, `idle_timeout` of silence between two chunks.

        The timers run on the event loop's clock (what asyncio.timeout
        measures), not the injectable engine clock: they bound real waiting.
        Ending, stalling or dropping the connection before the completion
        signal is a cut, never a success; after it, only the trailing usage
        chunk is waited for, and a stall or drop there is harmless.
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
                remaining = self._remaining(w)
                try:
                    async with asyncio.timeout(max(0.0, min(wait, remaining))):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if done:
                        break
                    if remaining < wait:
                        raise ProviderError(Kind.TIMEOUT, "request deadline reached mid-stream",
                                            code=DEADLINE_CUT) from None
                    what = (f"stream stalled mid-answer: nothing for {policy.idle_timeout:g}s" if parts
                            else f"no first token within {policy.first_token_timeout:g}s")
                    raise ProviderError(Kind.TIMEOUT, what) from None
                except httpx.HTTPError as exc:
                    if done:
                        break
                    raise classify_exception(exc) from None
                if chunk.warning:
                    completion.warnings.append(chunk.warning)
                if chunk.usage:
                    completion.usage = completion.usage.merged(chunk.usage)
                if chunk.finish_reason:
                    completion.finish_reason = chunk.finish_reason
                if chunk.text:
                    if first_at is None:
                        first_at = self.clock()
                    parts.append(chunk.text)
                    if emit is not None:
                        if w.ttft is None:  # a streaming caller: the first token it was handed
                            w.ttft = self.clock() - w.start
                        w.shown.append(chunk.text)
                        await emit(Token(chunk.text))
                done = done or chunk.done
        finally:
            await chunks.aclose()
        completion.text = "".join(parts)
        if not done:
            raise ProviderError(Kind.TRANSIENT, "stream cut before its completion signal", status=200)
        return completion, first_at

    # ------------------------------------------------------------------ the walk

    async def _walk(self, chain: Chain, request: ChatRequest, emit: Emit | None) -> Result:
        policy = self.config.policy
        start = self.clock()
        w = _Walk(os.urandom(8).hex(), chain.name, start, start + policy.deadline)
        states = self.store.states(self._bench_keys(chain))
        plan = [e for e in chain.entries if entry_status(e, states, start).is_live]
        if not plan:
            # soonest end first; on a tie, chain order (states() keeps the order of the keys asked for)
            benched = sorted((s for s in states.values() if s.bench_until is not None), key=lambda s: s.bench_until or 0)
            if policy.on_all_benched == "fail":
                first = benched[0] if benched else None
                raise self._finish_error(w, AllBenched(chain.name, first.bench_until if first else None,
                                                       first.model if first else None))
            w.panic = True
            plan = list(chain.entries)
            self._event(w, ev.PANIC, detail="every entry is benched: trying them all (on_all_benched: try_all)")
        else:
            plan = self._fast_first(plan, states, start)
        try:
            for index, entry in enumerate(plan):
                w.next_model = plan[index + 1].model if index + 1 < len(plan) else None
                completion = await self._try_entry(entry, request, w, emit, states)
                if completion is not None:
                    result = self._succeed(w, entry, completion)
                    self._note_speed(entry, states.get(entry.model), w.answer_ttft_ms, w.chain, w.request_id)
                    return result
                if index + 1 < len(plan) and self._remaining(w) > 0:
                    w.failovers += 1
                    self._event(w, ev.FAILOVER, entry.model, next_model=plan[index + 1].model,
                                kind=str(w.causes[-1].kind) if w.causes else None)
        except _DeadlineExceeded:
            pass
        except FailFast as err:
            self._event(w, ev.FAIL_FAST, err.model, kind=str(err.kind), status=err.status, detail=err.message)
            raise self._finish_error(w, err) from None
        except asyncio.CancelledError:
            self._cancelled(w)
            raise
        except KeyboardInterrupt:
            self._cancelled(w)
            raise
        if self._remaining(w) <= 0:
            w.causes.append(ProviderError(Kind.TIMEOUT, f"request deadline of {policy.deadline:g}s exceeded"))
        error = ChainExhausted(chain.name, w.causes)
        self._event(w, ev.EXHAUSTED, kind=str(error.kind) if error.kind else None, status=error.status,
                    detail=error.message)
        raise self._finish_error(w, error)

    def _fast_first(self, plan: list[Entry], states: Mapping[str, ModelState], now: float) -> list[Entry]:
        """Slow demotion: demoted entries (on_slow: demote) go after the others, in chain order.

        Once per `cooldown` one request (across processes: a claim in the state DB)
        tries a demoted entry in its own place instead, so a model that became
        fast again is measured and restored even when nothing fails over to it.
        """
        slow = {
            id(e) for e in plan
            if e.policy.on_slow == "demote" and (s := states.get(e.model)) is not None and s.is_demoted
            and not (s.recheck_at is not None and s.recheck_at <= now
                     and self.store.claim_recheck(e.model, now=now, next_at=now + e.policy.cooldown))
        }
        if not slow:
            return plan
        return [e for e in plan if id(e) not in slow] + [e for e in plan if id(e) in slow]

    def note_probe_speed(self, entry: Entry, ttft_ms: float) -> None:
        """A probe's answer time decides slowness on its own (`llmfail probe`)."""
        self._note_speed(entry, self.store.states([entry.model]).get(entry.model), ttft_ms, None, None, probe=True)

    def _note_speed(self, entry: Entry, state: ModelState | None, ttft_ms: float | None, chain: str | None,
                    request_id: str | None, *, probe: bool = False) -> None:
        """Demote or restore `entry` after an answer: the rolling median of its recent first-token
        times (or a probe's alone) against `slow_threshold`; one event per change.

        An answer that agrees with the model's current state cannot flip it, so the
        common case (a fast answer from a fast model) costs no query at all. Like
        every piece of housekeeping here, a failure is logged, never raised.
        """
        policy = entry.policy
        demoted = state is not None and state.is_demoted
        threshold_ms = policy.slow_threshold * 1000
        if policy.on_slow != "demote" or ttft_ms is None or (ttft_ms > threshold_ms) == demoted:
            return
        try:
            samples = [ttft_ms] if probe else self.store.recent_ttfts(
                entry.model, after=state.speed_at if state else None, limit=SPEED_SAMPLES)
            if len(samples) < (1 if probe else SPEED_MIN_SAMPLES):
                return
            median = statistics.median(samples)
            if (median > threshold_ms) == demoted:
                return
            now = self.clock()
            changed = (self.store.restore(entry.model, now=now, fast_ms=median) if demoted else
                       self.store.demote(entry.model, now=now, slow_ms=median, recheck_at=now + policy.cooldown))
            if changed:
                self._emit(Event(
                    type=ev.RESTORED if demoted else ev.DEMOTED, ts=now, request_id=request_id, chain=chain,
                    model=entry.model, latency_ms=round(median, 1),
                    detail=(f"first token in {median:.0f} ms " + ("within" if demoted else "above")
                            + f" slow_threshold {threshold_ms:.0f} ms"),
                    data={"threshold_ms": threshold_ms, "samples": len(samples),
                          "source": "probe" if probe else "requests"},
                ))
        except LlmfailError:
            log.warning("llmfail: recording %s's speed failed", entry.model, exc_info=True)

    def _cancelled(self, w: _Walk) -> None:
        """Cancellation benches nothing; it only releases a probe lease and notes the outcome."""
        if w.probe_key:
            self.store.release_probe(w.probe_key, holder=self._probe_holder(w))
        self._request_event(w, ok=False, kind=Kind.CANCELLED)

    def _succeed(self, w: _Walk, entry: Entry, completion: Completion) -> Result:
        latency_ms = (self.clock() - w.start) * 1000
        result = Result(
            text=completion.text, model=entry.model, chain=w.chain, request_id=w.request_id,
            failovers=w.failovers, latency_ms=latency_ms,
            ttft_ms=w.ttft * 1000 if w.ttft is not None else None, usage=completion.usage,
            attempts=w.attempts, warnings=completion.warnings, panic=w.panic,
        )
        self._request_event(w, ok=True, model=entry.model, usage=completion.usage)
        return result

    def _request_event(self, w: _Walk, *, ok: bool, model: str | None = None, kind: str | None = None,
                       status: int | None = None, usage: Usage | None = None) -> None:
        self._event(
            w, ev.REQUEST, model, kind=kind, status=status, latency_ms=(self.clock() - w.start) * 1000,
            data={
                "ok": ok, "answered_by": model, "failovers": w.failovers,
                "ttft_ms": round(w.ttft * 1000, 1) if w.ttft is not None else None,
                "attempts": len(w.attempts), "panic": w.panic,
                "usage": usage.to_json() if usage else None,
                "attempt_ms": round(w.answer_ms, 1) if w.answer_ms is not None else None,
                "attempt_ttft_ms": round(w.answer_ttft_ms, 1) if w.answer_ttft_ms is not None else None,
            },
        )

    def _finish_error(self, w: _Walk, error: LlmfailError) -> LlmfailError:
        error.attempts = w.attempts
        error.request_id = w.request_id
        error.latency_ms = (self.clock() - w.start) * 1000
        kind = getattr(error, "kind", None)
        self._request_event(w, ok=False, kind=str(kind) if kind else None, status=getattr(error, "status", None))
        return error

    async def _try_entry(self, entry: Entry, request: ChatRequest, w: _Walk, emit: Emit | None,
                         states: Mapping[str, ModelState]) -> Completion | None:
        """Every credential and attempt of one entry; None when the walk should move on."""
        policy = entry.policy
        now = self.clock()
        state = states.get(entry.model)
        probe = not w.panic and state is not None and state.is_half_open(now)
        # The lease covers the whole probe (at most the rest of the request's deadline) and is
        # held per request, so concurrent requests of one process do not all probe.
        if probe and not self.store.claim_probe(entry.model, now=now, lease=self._remaining(w) + 5.0,
                                                holder=self._probe_holder(w)):
            fresh = self.store.states([entry.model]).get(entry.model)
            if fresh is not None and (fresh.is_benched(now) or fresh.is_half_open(now)):
                return None  # another request is probing it, or its probe failed
            probe = False  # closed by another process's probe since this walk began
        if probe:
            w.probe_key = entry.model
        if entry.daily_quota is not None:
            day = datetime.fromtimestamp(now, UTC).date().isoformat()
            if not self.store.take_quota(entry.model, day=day, limit=entry.daily_quota):
                err = ProviderError(Kind.QUOTA, f"daily quota of {entry.daily_quota} requests reached", model=entry.model)
                w.causes.append(err)
                self._event(w, ev.QUOTA_SKIP, entry.model, kind=str(Kind.QUOTA), detail=err.message)
                return None
        try:
            for index, credential in enumerate(entry.credentials):
                key = entry.bench_key(index)
                if key != entry.model and not w.panic and (s := states.get(key)) and s.is_benched(now):
                    continue
                api_key = env_secret(credential.api_key_env) if credential.api_key_env else None
                w.missing_key = credential.api_key_env if credential.api_key_env and api_key is None else None
                outcome = await self._try_credential(entry, key, api_key, request, w, emit, probe)
                if isinstance(outcome, Completion):
                    return outcome
                if outcome != "next-credential":
                    return None
            if len(entry.credentials) > 1 and w.causes:  # every credential is dead: bench the entry
                now = self.clock()
                if entry_status(entry, self.store.states(entry.credential_keys()), now) == EntryStatus.BENCHED:
                    self._record_failure(entry.model, w.causes[-1], policy, w, bench_for=policy.auth_cooldown,
                                         factor=1.0)
            return None
        finally:
            if w.probe_key == entry.model:
                self.store.release_probe(entry.model, holder=self._probe_holder(w))
                w.probe_key = None

    def _probe_holder(self, w: _Walk) -> str:
        return f"{self._holder}:{w.request_id}"

    async def _try_credential(self, entry: Entry, key: str, api_key: str | None, request: ChatRequest,
                              w: _Walk, emit: Emit | None, probe: bool) -> Completion | str:
        """Attempts with one credential: a Completion, or where to go next."""
        # A probe is one attempt; so is each entry in panic mode, where every entry is known to be
        # failing: retrying them all would multiply a full outage's traffic by `attempts`.
        attempts = 1 if probe or w.panic else entry.policy.attempts
        for attempt in range(1, attempts + 1):
            if self._remaining(w) <= 0:
                raise _DeadlineExceeded
            began = self.clock()
            try:
                completion = await self._attempt(entry, api_key, request, w, emit)
            except ProviderError as err:
                partial = "".join(w.shown) if w.shown else None
                decision = self._after_failure(entry, key, err, attempt, attempts, began, w, partial)
                if partial is not None:  # tokens already reached the caller
                    return await self._mid_stream(entry, err, partial, w, emit)
                if isinstance(decision, str):
                    return decision
                wait = min(decision, max(0.0, self._remaining(w)))
                self._event(w, ev.RETRY, entry.model, kind=str(err.kind), status=err.status, attempt=attempt + 1,
                            detail=f"waiting {wait:.3f}s", data={"wait_s": round(wait, 3)})
                await self.sleep(wait)
                continue
            latency = (self.clock() - began) * 1000
            w.answer_ms = latency
            w.answer_ttft_ms = ((w.first_at if w.first_at is not None else self.clock()) - began) * 1000
            w.attempts.append(Attempt(entry.model, True, latency_ms=latency))
            previous = self.store.record_success(entry.model, now=self.clock())
            if key != entry.model:
                self.store.record_success(key, now=self.clock())
            if probe or (previous is not None and previous.bench_until is not None and not previous.manual):
                self._event(w, ev.PROBE, entry.model, latency_ms=latency, data={"ok": True, "recovered": True})
            return completion
        return "next-entry"

    def _after_failure(self, entry: Entry, key: str, err: ProviderError, attempt: int, attempts: int,
                       began: float, w: _Walk, partial: str | None) -> float | str:
        """Classify-and-act (SPEC §3 table): seconds to wait before a retry, or where to go next."""
        policy = entry.policy
        err.model = entry.model
        err.message = redact(err.message) or ""
        latency = (self.clock() - began) * 1000
        w.attempts.append(Attempt(entry.model, False, str(err.kind), err.status, latency, err.message))
        w.causes.append(err)
        self._event(w, ev.ATTEMPT_FAILED, entry.model, kind=str(err.kind), status=err.status, attempt=attempt,
                    latency_ms=latency, detail=err.message,
                    data={"credential": key} if key != entry.model else {})
        if w.probe_key == entry.model:
            self._event(w, ev.PROBE, entry.model, kind=str(err.kind), status=err.status, latency_ms=latency,
                        data={"ok": False})
        kind = err.kind
        if err.code == DEADLINE_CUT:  # the request ran out of time, not the model
            return "next-entry"
        if kind in REQUEST_KINDS:
            if (kind == Kind.INVALID_REQUEST and policy.on_invalid_request == "fail") or (
                kind == Kind.CONTENT_FILTER and policy.on_content_filter == "fail"
            ):
                raise FailFast.from_error(err)
            return "next-entry"
        if kind == Kind.AUTH:
            if w.missing_key:  # sent without a key because this process lacks the variable:
                err.hint = err.hint or f"{w.missing_key} is not set in this environment"  # not a shared verdict
                return "next-credential"
            self._record_failure(key, err, policy, w, bench_for=policy.auth_cooldown, factor=1.0)
            return "next-credential"
        if kind == Kind.TIMEOUT:
            if err.should_retry is True and attempt == 1 and attempts > 1 and partial is None:
                # the server says this one is worth repeating (`x-should-retry: true`): one retry
                self._record_failure(entry.model, err, policy, w, bench_for=None)
                return backoff_delay(policy, attempt, self.rng)
            self._record_failure(entry.model, err, policy, w, bench_for=policy.cooldown)
            return "next-entry"
        # rate_limited and transient: retry while allowed, then bench
        # (a 503/529 with Retry-After is honoured like a 429's: up to max_retry_wait)
        wait = err.retry_after
        too_long = wait is not None and wait > policy.max_retry_wait
        if too_long or attempt >= attempts or err.should_retry is False or partial is not None:
            now = self.clock()
            floor = max(now + (wait or 0.0), err.reset_at or 0.0) if wait is not None or err.reset_at else None
            self._record_failure(entry.model, err, policy, w, bench_for=policy.cooldown, min_until=floor)
            return "next-entry"
        self._record_failure(entry.model, err, policy, w, bench_for=None)
        delay = wait if wait is not None else backoff_delay(policy, attempt, self.rng)
        if delay >= self._remaining(w):  # the retry could not happen in time: try the next entry
            return "next-entry"
        return delay

    async def _mid_stream(self, entry: Entry, err: ProviderError, partial: str, w: _Walk,
                          emit: Emit | None) -> str:
        """A failure after the first token: StreamInterrupted, or a restart on the next entry.

        With no entry left to restart on, the caller gets StreamInterrupted and
        keeps the partial text: a restart marker with nothing after it would
        discard what was shown for a bare "exhausted".
        """
        if entry.policy.mid_stream == "restart" and emit is not None and w.next_model is not None:
            w.shown.clear()
            await emit(Restart(entry.model, w.next_model, err))
            self._event(w, ev.STREAM_INTERRUPTED, entry.model, kind=str(err.kind), status=err.status,
                        detail=err.message, data={"action": "restart", "partial_chars": len(partial)})
            return "next-entry"
        self._event(w, ev.STREAM_INTERRUPTED, entry.model, kind=str(err.kind), status=err.status,
                    detail=err.message, data={"action": "error", "partial_chars": len(partial)})
        raise self._finish_error(w, StreamInterrupted(entry.model, partial, err))
