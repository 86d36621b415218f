"""The walk of one request through a chain (docs/concepts.md): the only retry loop in llmfail.

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

The walk is here; its parts live apart: one HTTP attempt and the reading of its
stream in `llmfail.attempt` (`Attempts`), the pure after-failure decision in
`llmfail.decide` (`decide()` -> `Decision`), and the shared-health side —
probe leases, outcome records, credential roll-up, slow demotion — in
`llmfail.health` (`HealthTracker`). Every event leaves through `Engine._emit`,
into `self.journal`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from random import Random
from typing import TYPE_CHECKING, Any

import httpx

from . import events as ev
from .attempt import DEADLINE_CUT, Attempts, Hand, Timed
from .config import Chain, Config, Entry, Policy
from .decide import Action, Blame, Decision, Failure, decide
from .errors import (
    AllBenched,
    ChainExhausted,
    FailFast,
    Kind,
    LlmfailError,
    ProviderError,
    StateError,
    StreamInterrupted,
    UsageError,
)
from .events import Event
from .health import HealthTracker, Turn, entry_status
from .journal import Journal, Observer
from .providers.base import ChatRequest, Completion, Runtime, Usage
from .redact import env_secret, redact
from .result import Attempt, Restart, Result, StreamItem, Token
from .store import ModelState, Store

if TYPE_CHECKING:
    from .actions import BenchRow

log = logging.getLogger("llmfail")

Messages = str | Sequence[Mapping[str, str]]
Emit = Callable[[StreamItem], Awaitable[None]]


class _DeadlineExceeded(Exception):
    pass


@dataclass(frozen=True)
class _Leaving:
    """An entry the walk left and has not reported yet.

    The failover (and, under mid_stream: restart, the restart marker) is written
    only when the next entry is really tried, so it never names an entry that is
    then skipped for its quota or another request's probe lease.
    """

    model: str
    cause: ProviderError | None
    partial: str | None = None  # a restart is pending: the text shown, dropped once the next entry starts


@dataclass
class _Walk:
    """The bookkeeping of one request."""

    request_id: str
    chain: str
    start: float
    deadline_at: float
    policy: Policy  # the defaults of the config the request started on (a reload mid-walk changes nothing)
    attempts: list[Attempt] = field(default_factory=list)
    causes: list[ProviderError] = field(default_factory=list)
    failovers: int = 0
    ttft: float | None = None
    shown: list[str] = field(default_factory=list)  # text already handed to a streaming caller
    panic: bool = False
    probe_key: str | None = None
    missing_key: str | None = None  # the key variable of the credential being tried, when unset here
    leaving: _Leaving | None = None  # the entry left, until the next one is really tried
    answer_ms: float | None = None  # the answering attempt's own latency and first-token time:
    answer_ttft_ms: float | None = None  # per-model figures (stats, slow demotion) exclude failover time
    emit: Emit | None = None  # a streaming caller's items (None: the caller wants the whole answer)
    hand: Hand | None = None  # hands text to that caller as Tokens
    current: str | None = None  # the entry being tried: named on the Tokens it sends


def _request(
    messages: Messages,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stream: bool,
    stop: Sequence[str] | str | None,
    user: str | None,
    extra: Mapping[str, Any] | None,
) -> ChatRequest:
    msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else [dict(m) for m in messages]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    return ChatRequest(tuple(msgs), max_tokens, temperature, stream, stop=stops, user=user, extra=dict(extra or {}))


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
        from .store.guard import guard_store

        # Behind a breaker: a store that is locked, unreachable or cannot even be opened never fails a request.
        self._guard = store = guard_store(store, db_path, config.state, clock=clock)
        self.config = config
        self.store: Store = store
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or Random()
        self.runtime = Runtime(clock, sleep, self.rng)
        self._attempts = Attempts(self.runtime, transport)
        # Every event this engine (and its operator API, probes and alerts) writes goes through
        # one journal, which runs the observers and offers retention pruning hourly.
        self.journal = Journal(self.store, clock=clock, retention=config.policy.retention)
        self._alerter = self._subscribe_alerts(config)
        # The config audit waits for the first write, so observers subscribed after construction see it.
        self._audited = False
        from .audit import config_digest

        self._digest = config_digest(config)  # the file as loaded: what the deferred audit records
        self.journal.before_next_write(self._audit_config)
        self.health = HealthTracker(self.store, clock, self.journal)
        self._keys: dict[str, tuple[Chain, list[str]]] = {}

    # ------------------------------------------------------------------ public API

    def on_event(self, callback: Observer) -> Callable[[], None]:
        """Call `callback(event)` for every event this engine writes; returns an unsubscribe.

        Every event means every one written through `self.journal`: the requests' events,
        `bench`/`unbench` made through this engine, `llmfail.probe` results, failed alerts
        and the config audit. Events other processes write (an operator's `llmfail bench`)
        are in the store, not in this process: follow them with `llmfail events --follow`.
        Observers run in the writing thread, before the request that made the event returns:
        `alert_failed` comes from the alert sender's thread; a request's events come from the
        event loop once the walk next waits, or from whichever thread writes next (SQLite), or
        from the journal's writer thread (Redis), run in the context (`contextvars`) of the code
        that made them; see `llmfail.journal`.
        """
        return self.journal.subscribe(callback)

    async def complete(
        self,
        chain: str,
        messages: Messages,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = False,
        stop: Sequence[str] | str | None = None,
        user: str | None = None,
        extra: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> Result:
        """The whole answer from the first entry that finishes one; never a truncated answer.

        `stream=True` asks providers to stream (the answer is still collected),
        which makes the stream timeouts apply. `stop` and `user` reach every entry in its
        protocol's own fields; `extra` holds further OpenAI Chat Completions fields, sent to
        OpenAI-protocol entries only. `request_id` names the request in its events (default:
        a random one), so a caller can quote it before the answer is in.
        """
        request = _request(messages, system, max_tokens, temperature, stream, stop, user, extra)
        return await self._walk(self.config, chain, request, None, request_id)

    async def stream(
        self,
        chain: str,
        messages: Messages,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | str | None = None,
        user: str | None = None,
        extra: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[StreamItem | Result]:
        """Tokens as they arrive (and `Restart` markers under mid_stream: restart).

        Failover is invisible until the first token is handed over; after that
        a failure raises `StreamInterrupted` or restarts, as the policy says.
        The final `Result` is the generator's last item. Each `Token` names the
        entry that sent it. The other arguments are `complete()`'s.
        """
        request = _request(messages, system, max_tokens, temperature, True, stop, user, extra)
        config = self.config  # the request runs on the config of the moment it was made
        queue: asyncio.Queue[StreamItem | Result | BaseException] = asyncio.Queue()

        async def emit(item: StreamItem) -> None:
            queue.put_nowait(item)

        async def produce() -> None:
            try:
                queue.put_nowait(await self._walk(config, chain, request, emit, request_id))
            except BaseException as exc:  # handed to the consumer, re-raised there
                queue.put_nowait(exc)

        task = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Result):
                    return
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # the cancellation of our own task
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
        await self._attempts.aclose()
        self.journal.flush()

    def reload(self, config: Config) -> None:
        """Use `config` for every request that starts from now on; a `config_changed` event records it.

        Requests already walking finish on the config they started with (each keeps its own
        chain, entries and policies), so a reload never drops or reroutes one. Benches, probe
        leases and the event log live in the store and carry over. The store itself is kept:
        a changed `state:` section needs a restart to take effect (a warning says so). Alert
        sinks are rebuilt from the new config.
        """
        old = self.config
        self._audit_config()  # the config it replaces is recorded first, as the baseline of the change
        if config.state != old.state:
            log.warning("llmfail: the config's state: section changed; the store in use is kept until a restart")
        self.config = config
        self._keys.clear()
        self.journal.retention = config.policy.retention
        if config.alerts != old.alerts:
            if self._alerter is not None:
                self._alerter()
            self._alerter = self._subscribe_alerts(config)
        from .audit import audit_config

        try:
            audit_config(self.store, config, self.clock(), journal=self.journal, reason="config reloaded", always=True)
        except LlmfailError:  # the new config is in use: a store that cannot record it only loses the event
            log.warning("llmfail: recording the config reload failed", exc_info=True)

    async def attempt_once(self, entry: Entry, request: ChatRequest, api_key: str | None) -> Timed:
        """One attempt at `entry` outside any walk, for health checks (`llmfail.probe`).

        The same adapter, client and timers as a request's attempt, so a probe
        measures what a request would meet; but no retry, no bench, no event:
        the caller decides what the outcome means. The whole attempt is bounded
        by the entry's `timeout`. Raises the classified ProviderError.
        """
        began = self.clock()
        completion, first_at = await self._attempts.run(
            entry, api_key, request, deadline_at=began + entry.policy.timeout, hand=None
        )
        return Timed(completion, (self.clock() - began) * 1000, (first_at - began) * 1000)

    # ------------------------------------------------------------------ operator API
    # The same actions as `llmfail bench` / `unbench` / `ls-benched` (one code path, in
    # `llmfail.actions`), written through this engine's journal so its observers see them.

    def bench(
        self,
        model: str,
        for_: float | str | None = None,
        reason: str | None = None,
        replace: bool = False,
        *,
        who: Mapping[str, str] | None = None,
    ) -> BenchRow:
        """Bench `model` by hand (every process sharing the store skips it) and return the bench.

        `for_` is seconds or a duration like "10m" (default: the model's cooldown in the config).
        Only `unbench` or expiry ends a manual bench; the event records `reason` and the OS user.
        A running bench is never shortened unless `replace=True`: without it, a longer bench that
        is already running is kept (and returned, so `.until` is later than asked, and no event
        is written). `who` names the caller in the event (default: the OS user and host).
        """
        from .actions import bench_model
        from .durations import parse_duration

        try:
            seconds = parse_duration(for_) if for_ is not None else None
        except ValueError as error:
            raise UsageError(f"bench {model}: {error}", hint='pass for_ as seconds or a duration like "10m"') from None
        return bench_model(
            self.store,
            self.config,
            model,
            seconds,
            reason,
            self.clock(),
            replace=replace,
            journal=self.journal,
            who=who,
        )

    def unbench(self, *models: str, reason: str | None = None, who: Mapping[str, str] | None = None) -> list[str]:
        """Lift the benches of `models` (and their credentials' `provider/model#N`); returns the keys
        lifted, so a model that was not benched is simply absent.

        Naming no model is a UsageError rather than "lift everything": an empty `*selection`
        must never clear every bench by accident. Lift all with `unbench(*(b.model for b in benches()))`.
        """
        from .actions import unbench_models

        if not models:
            raise UsageError(
                "unbench: name at least one model",
                hint="to lift every bench: engine.unbench(*(b.model for b in engine.benches()))",
            )
        return unbench_models(self.store, models, self.clock(), reason, journal=self.journal, who=who).lifted

    def benches(self) -> list[BenchRow]:
        """The running benches (any process's), soonest end first: `.model`, `.until` (epoch s),
        `.remaining_s`, `.manual`, `.reason`, `.kind`, `.bench_count`. A pure read."""
        from .actions import list_benches

        return list_benches(self.store, self.clock())

    def is_benched(self, model: str) -> bool:
        """Whether requests skip `model` now: its own bench, or, for an entry of the config, every
        one of its credentials benched. A model past its bench (half-open) is not benched. Pure read.

        Like `benches()`, it reads the shared state or raises `StateError`: an operator's
        question is never answered from a request's fallback snapshot."""
        entry = next((e for e in self.config.entries() if e.model == model), None)
        now = self.clock()
        running = {state.model: state for state in self.store.benches(now)}
        return entry_status(entry, running, now, model=model).is_benched

    # ------------------------------------------------------------------ events & state

    def _emit(self, event: Event) -> None:
        self.journal.post(event)  # the walk awaits `settled()` before it returns

    def _subscribe_alerts(self, config: Config) -> Callable[[], None] | None:
        """The config's alert sinks as an observer that only queues (sending happens on its own
        thread); returns its unsubscribe, or None without sinks."""
        if not config.alerts.sinks:
            return None
        from .alerts import Alerter

        return self.on_event(Alerter(config.alerts, self.journal))

    def _audit_config(self) -> None:
        """A config file that changed since this state DB last saw it is a `config_changed` event.

        Done just before the engine's first write rather than in `__init__`, so observers
        subscribed right after construction see it too (or by `reload`, if that comes first).
        """
        if self._audited:
            return
        self._audited = True
        try:
            from .audit import audit_config

            audit_config(self.store, self.config, self.clock(), journal=self.journal, digest=self._digest)
        except LlmfailError:
            log.warning("llmfail: recording the config's hash failed", exc_info=True)

    def _event(self, w: _Walk, type_: str, model: str | None = None, **fields: Any) -> None:
        self._emit(Event(type=type_, ts=self.clock(), request_id=w.request_id, chain=w.chain, model=model, **fields))

    # ------------------------------------------------------------------ the walk

    def _bench_keys(self, chain: Chain) -> list[str]:
        """Every bench key of `chain` (entries and their credentials), computed once per chain."""
        cached = self._keys.get(chain.name)
        if cached is None or cached[0] is not chain:
            keys = list(dict.fromkeys(k for e in chain.entries for k in e.bench_keys()))
            cached = self._keys[chain.name] = (chain, keys)
        return cached[1]

    def _remaining(self, w: _Walk) -> float:
        return w.deadline_at - self.clock()

    def _hand(self, w: _Walk, emit: Emit) -> Hand:
        """What streamed text goes through on its way to the caller: the walk notes what was
        shown (a later failure is then mid-stream) and when the caller saw its first token."""

        async def hand(text: str) -> None:
            if w.ttft is None:
                w.ttft = self.clock() - w.start
            w.shown.append(text)
            await emit(Token(text, w.current, w.failovers))

        return hand

    async def _walk(
        self, config: Config, name: str, request: ChatRequest, emit: Emit | None, request_id: str | None
    ) -> Result:
        chain = config.chain(name)
        start = self.clock()
        policy = config.policy
        w = _Walk(request_id or os.urandom(8).hex(), chain.name, start, start + policy.deadline, policy)
        if emit is not None:
            w.emit, w.hand = emit, self._hand(w, emit)
        try:
            result = await self._walk_chain(chain, request, w)
        except StateError as error:  # the store failed mid-walk: the request still gets its outcome row
            raise self._finish_error(w, error) from None
        finally:
            await self.journal.settled()  # its events are stored and observed before it returns
        # Asked after its events are stored: a store that failed on them is part of the warning.
        if (degraded := self._guard.warning_since(w.start)) is not None:
            result.warnings.append(degraded)
        return result

    async def _walk_chain(self, chain: Chain, request: ChatRequest, w: _Walk) -> Result:
        policy = w.policy
        start = w.start
        states = self.store.states(self._bench_keys(chain))
        plan = [e for e in chain.entries if entry_status(e, states, start).is_live]
        if not plan:
            # soonest end first; on a tie, chain order (states() keeps the order of the keys asked for)
            benched = sorted(
                (s for s in states.values() if s.bench_until is not None), key=lambda s: s.bench_until or 0
            )
            if policy.on_all_benched == "fail":
                first = benched[0] if benched else None
                raise self._finish_error(
                    w, AllBenched(chain.name, first.bench_until if first else None, first.model if first else None)
                )
            w.panic = True
            plan = list(chain.entries)
            self._event(w, ev.PANIC, detail="every entry is benched: trying them all (on_all_benched: try_all)")
        else:
            plan = self.health.fast_first(plan, states, start)
        try:
            for entry in plan:
                completion = await self._try_entry(entry, request, w, states)
                if completion is not None:
                    result = self._succeed(w, entry, completion)
                    self.health.note_speed(
                        entry, states.get(entry.model), w.answer_ttft_ms, request_id=w.request_id, chain=w.chain
                    )
                    return result
                if w.leaving is None:
                    w.leaving = _Leaving(entry.model, w.causes[-1] if w.causes else None)
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
        leaving = w.leaving
        if leaving is not None and leaving.partial is not None and leaving.cause is not None:
            # a restart was pending, but no entry was left to restart on: keep what was shown
            raise self._interrupted(w, leaving.model, leaving.partial, leaving.cause)
        if self._remaining(w) <= 0:
            w.causes.append(ProviderError(Kind.TIMEOUT, f"request deadline of {policy.deadline:g}s exceeded"))
        error = ChainExhausted(chain.name, w.causes)
        self._event(
            w, ev.EXHAUSTED, kind=str(error.kind) if error.kind else None, status=error.status, detail=error.message
        )
        raise self._finish_error(w, error)

    def note_probe_speed(self, entry: Entry, ttft_ms: float) -> None:
        """A probe's answer time decides slowness on its own (`llmfail probe`)."""
        self.health.note_speed(entry, self.store.states([entry.model]).get(entry.model), ttft_ms, probe=True)

    def _cancelled(self, w: _Walk) -> None:
        """Cancellation benches nothing; it only releases a probe lease and notes the outcome."""
        if w.probe_key:
            self.health.release_probe(w.probe_key, w.request_id)
        self._request_event(w, ok=False, kind=Kind.CANCELLED)

    def _succeed(self, w: _Walk, entry: Entry, completion: Completion) -> Result:
        latency_ms = (self.clock() - w.start) * 1000
        unwritten = self._request_event(w, ok=True, model=entry.model, usage=completion.usage)
        warnings = list(completion.warnings)
        if unwritten is not None:  # the answer is in hand: a store failure must not lose it
            warnings.append(f"this request's outcome row could not be written to the state store: {unwritten}")
        return Result(
            text=completion.text,
            model=entry.model,
            chain=w.chain,
            request_id=w.request_id,
            failovers=w.failovers,
            latency_ms=latency_ms,
            ttft_ms=w.ttft * 1000 if w.ttft is not None else None,
            usage=completion.usage,
            attempts=w.attempts,
            warnings=warnings,
            panic=w.panic,
            finish_reason=completion.finish_reason,
        )

    def _request_event(
        self,
        w: _Walk,
        *,
        ok: bool,
        model: str | None = None,
        kind: str | None = None,
        status: int | None = None,
        usage: Usage | None = None,
        detail: str | None = None,
    ) -> str | None:
        """Write the request's outcome row (every request has exactly one). Never raises: it
        ends the walk, whose own outcome matters more; a failure is logged and its reason returned."""
        try:
            self._event(
                w,
                ev.REQUEST,
                model,
                kind=kind,
                status=status,
                latency_ms=(self.clock() - w.start) * 1000,
                detail=detail,
                data={
                    "ok": ok,
                    "answered_by": model,
                    "failovers": w.failovers,
                    "ttft_ms": round(w.ttft * 1000, 1) if w.ttft is not None else None,
                    "attempts": len(w.attempts),
                    "panic": w.panic,
                    "usage": usage.to_json() if usage else None,
                    "attempt_ms": round(w.answer_ms, 1) if w.answer_ms is not None else None,
                    "attempt_ttft_ms": round(w.answer_ttft_ms, 1) if w.answer_ttft_ms is not None else None,
                },
            )
        except LlmfailError as exc:
            log.warning("llmfail: request %s: its outcome row could not be written: %s", w.request_id, exc.message)
            return exc.message
        return None

    def _finish_error(self, w: _Walk, error: LlmfailError) -> LlmfailError:
        error.attempts = w.attempts
        error.request_id = w.request_id
        error.latency_ms = (self.clock() - w.start) * 1000
        kind = getattr(error, "kind", None)
        self._request_event(
            w,
            ok=False,
            kind=str(kind) if kind else None,
            status=getattr(error, "status", None),
            detail=error.message if isinstance(error, StateError) else None,
        )
        return error

    async def _try_entry(
        self, entry: Entry, request: ChatRequest, w: _Walk, states: Mapping[str, ModelState]
    ) -> Completion | None:
        """Every credential and attempt of one entry; None when the walk should move on."""
        now = self.clock()
        turn = (
            Turn.REGULAR
            if w.panic
            else self.health.turn(
                entry, states.get(entry.model), now=now, lease=self._remaining(w) + 5.0, request_id=w.request_id
            )
        )
        if turn is Turn.SKIP:
            return None
        if turn is Turn.PROBE:
            w.probe_key = entry.model
        try:
            if entry.daily_quota is not None:
                day = datetime.fromtimestamp(now, UTC).date().isoformat()
                if not self.store.take_quota(entry.model, day=day, limit=entry.daily_quota):
                    why = (
                        "daily quota unknown while shared state is unavailable"
                        if self._guard.degraded
                        else f"daily quota of {entry.daily_quota} requests reached"
                    )
                    err = ProviderError(Kind.QUOTA, why, model=entry.model)
                    w.causes.append(err)
                    self._event(w, ev.QUOTA_SKIP, entry.model, kind=str(Kind.QUOTA), detail=err.message)
                    return None
            for index, credential in enumerate(entry.credentials):
                key = entry.bench_key(index)
                if key != entry.model and not w.panic and (s := states.get(key)) and s.is_benched(now):
                    continue
                api_key = env_secret(credential.api_key_env) if credential.api_key_env else None
                w.missing_key = credential.api_key_env if credential.api_key_env and api_key is None else None
                outcome = await self._try_credential(entry, key, api_key, request, w, turn is Turn.PROBE)
                if isinstance(outcome, Completion):
                    return outcome
                if outcome is not Action.NEXT_CREDENTIAL:
                    return None
            if w.causes:  # every credential failed: with none left, the entry is benched too
                self.health.roll_up(
                    entry,
                    w.causes[-1],
                    began=w.start,
                    request_id=w.request_id,
                    chain=w.chain,
                    probe=w.probe_key == entry.model,
                )
            return None
        finally:
            if w.probe_key == entry.model:
                self.health.release_probe(entry.model, w.request_id)
                w.probe_key = None

    async def _try_credential(
        self, entry: Entry, key: str, api_key: str | None, request: ChatRequest, w: _Walk, probe: bool
    ) -> Completion | Action:
        """Attempts with one credential: a Completion, or where to go next."""
        # A probe is one attempt; so is each entry in panic mode, where every entry is known to be
        # failing: retrying them all would multiply a full outage's traffic by `attempts`.
        attempts = 1 if probe or w.panic else entry.policy.attempts
        for attempt in range(1, attempts + 1):
            if self._remaining(w) <= 0:
                raise _DeadlineExceeded
            if w.leaving is not None:
                await self._move_on(w, entry)
            began = self.clock()
            w.current = entry.model
            try:
                completion, first_at = await self._attempts.run(
                    entry, api_key, request, deadline_at=w.deadline_at, hand=w.hand
                )
            except ProviderError as err:
                partial = "".join(w.shown) if w.shown else None
                decision = self._after_failure(entry, key, err, attempt, attempts, began, w, partial)
                if decision.action is Action.FAIL_FAST:
                    raise FailFast.from_error(err, partial) from None
                if partial is not None:  # tokens already reached the caller
                    return self._mid_stream(entry, err, partial, w)
                if decision.action is not Action.RETRY:
                    return decision.action
                self._event(
                    w,
                    ev.RETRY,
                    entry.model,
                    kind=str(err.kind),
                    status=err.status,
                    attempt=attempt + 1,
                    detail=f"waiting {decision.wait:.3f}s",
                    data={"wait_s": round(decision.wait, 3)},
                )
                await self.sleep(decision.wait)
                continue
            if w.ttft is None:  # a collecting caller: the answering attempt's first token
                w.ttft = first_at - w.start
            latency = (self.clock() - began) * 1000
            w.answer_ms = latency
            w.answer_ttft_ms = (first_at - began) * 1000
            w.attempts.append(Attempt(entry.model, True, latency_ms=latency))
            self.health.record_success(
                entry, key, latency_ms=latency, probe=probe, request_id=w.request_id, chain=w.chain
            )
            return completion
        return Action.NEXT_ENTRY

    def _after_failure(
        self,
        entry: Entry,
        key: str,
        err: ProviderError,
        attempt: int,
        attempts: int,
        began: float,
        w: _Walk,
        partial: str | None,
    ) -> Decision:
        """Note the failed attempt (events, health record) and decide what follows (`llmfail.decide`)."""
        policy = entry.policy
        err.model = entry.model
        err.message = redact(err.message) or ""
        now = self.clock()
        latency = (now - began) * 1000
        w.attempts.append(Attempt(entry.model, False, str(err.kind), err.status, latency, err.message))
        w.causes.append(err)
        self._event(
            w,
            ev.ATTEMPT_FAILED,
            entry.model,
            kind=str(err.kind),
            status=err.status,
            attempt=attempt,
            latency_ms=latency,
            detail=err.message,
            data=_failure_data(key, entry.model, err),
        )
        if w.probe_key == entry.model:
            self._event(
                w, ev.PROBE, entry.model, kind=str(err.kind), status=err.status, latency_ms=latency, data={"ok": False}
            )
        facts = Failure.of(
            err,
            attempt=attempt,
            attempts=attempts,
            now=now,
            remaining=w.deadline_at - now,
            deadline_cut=err.code == DEADLINE_CUT,
            partial=partial is not None,
            missing_key=w.missing_key is not None,
        )
        decision = decide(facts, policy, self._jitter)
        if err.kind == Kind.AUTH and w.missing_key:
            err.hint = err.hint or f"{w.missing_key} is not set in this environment"
        record = decision.record
        if record is not None:
            blamed = key if record.blame is Blame.CREDENTIAL else entry.model
            self.health.record_failure(
                blamed, err, record, began=w.start, request_id=w.request_id, chain=w.chain, probe=w.probe_key == blamed
            )
        return decision

    def _jitter(self, cap: float) -> float:
        return self.rng.uniform(0.0, cap)

    def _mid_stream(self, entry: Entry, err: ProviderError, partial: str, w: _Walk) -> Action:
        """A failure after the first token: StreamInterrupted, or a restart on the next entry.

        The restart marker goes out when the next entry is really tried (`_move_on`).
        With no entry left to restart on, the caller gets StreamInterrupted and
        keeps the partial text: a restart marker with nothing after it would
        discard what was shown for a bare "exhausted".
        """
        if entry.policy.mid_stream == "restart" and w.emit is not None:
            w.leaving = _Leaving(entry.model, err, partial)
            return Action.NEXT_ENTRY
        raise self._interrupted(w, entry.model, partial, err)

    def _interrupted(self, w: _Walk, model: str, partial: str, err: ProviderError) -> LlmfailError:
        self._event(
            w,
            ev.STREAM_INTERRUPTED,
            model,
            kind=str(err.kind),
            status=err.status,
            detail=err.message,
            data={"action": "error", "partial_chars": len(partial)},
        )
        return self._finish_error(w, StreamInterrupted(model, partial, err))

    async def _move_on(self, w: _Walk, entry: Entry) -> None:
        """The walk really tries `entry` after leaving another: the failover (and a pending
        restart) happen now, naming `entry`."""
        leaving, w.leaving = w.leaving, None
        if leaving is None:
            return
        cause = leaving.cause
        if leaving.partial is not None and cause is not None and w.emit is not None:
            w.shown.clear()
            await w.emit(Restart(leaving.model, entry.model, cause))
            self._event(
                w,
                ev.STREAM_INTERRUPTED,
                leaving.model,
                kind=str(cause.kind),
                status=cause.status,
                detail=cause.message,
                data={"action": "restart", "partial_chars": len(leaving.partial)},
            )
        w.failovers += 1
        self._event(w, ev.FAILOVER, leaving.model, next_model=entry.model, kind=str(cause.kind) if cause else None)


def _failure_data(key: str, model: str, err: ProviderError) -> dict[str, Any]:
    """An `attempt_failed` row's extras: the credential that failed (when not the entry's only
    one), and the wait the provider asked for, which `llmfail replay` puts back into a scenario."""
    data: dict[str, Any] = {"credential": key} if key != model else {}
    if err.retry_after is not None:
        data["retry_after_s"] = round(err.retry_after, 3)
    return data
