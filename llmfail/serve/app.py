"""The gateway's aiohttp application: chat completions, models, health, and the rules around them.

Every request passes the access-log middleware (one line per request on stderr, and any
aiohttp error turned into OpenAI's error JSON), then the client-key check. The chat
handler refuses at once past `max_concurrency` (a 503, never an unbounded queue), reads
the body (413 past `body_limit`), and hands the walk to the engine.

A client that disconnects cancels its handler (the runner is made with
`handler_cancellation=True`, see `llmfail.serve.server`): the cancellation reaches the
engine's walk, which records the request as `cancelled` and benches nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..engine import Engine
from ..errors import LlmfailError, StateError
from ..health import entry_status
from ..result import Restart, Result, Token
from .openai_shape import (
    BadRequest,
    ChatCall,
    chunk_json,
    completion_json,
    error_answer,
    error_json,
    error_type,
    finish_reason,
    parse_chat,
    usage_json,
)

access_log = logging.getLogger("llmfail.serve.access")
log = logging.getLogger("llmfail")

#: Chat requests walked at once by default (`llmfail serve --max-concurrency`); one more gets a 503.
MAX_CONCURRENCY = 128

#: Largest request body accepted (a 413 past it): room for long prompts, not for abuse.
BODY_LIMIT = 4 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: What the access line reports about the request being handled (chain, status, model, failovers,
#: request_id), filled in by the handler; a context variable, since one task runs both.
_NOTE: ContextVar[dict[str, Any]] = ContextVar("llmfail_serve_note")


@dataclass
class Gateway:
    """What the handlers share: the engine and the serving rules.

    `keys` are the client keys (`LLMFAIL_SERVE_KEYS`): when there are any, `/v1/` needs one
    of them as a bearer token. `admin_token` (`LLMFAIL_ADMIN_TOKEN`) turns the operator API
    on. `draining` is set once SIGTERM arrived: `/readyz` says so, so a balancer stops sending,
    and a chat request that still arrives on an open keep-alive connection is refused.
    `grace_over` is set when `drain` starts cancelling what still runs.
    """

    engine: Engine
    keys: Sequence[str] = ()
    admin_token: str | None = None
    max_concurrency: int = MAX_CONCURRENCY
    clock: Callable[[], float] = time.time
    draining: bool = False
    grace_over: bool = False
    _keys: tuple[bytes, ...] = field(init=False, default=())
    _walks: set[asyncio.Task[Any]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._keys = tuple(k.encode() for k in self.keys if k)

    @property
    def in_flight(self) -> int:
        """Chat requests being handled now."""
        return len(self._walks)

    @contextlib.contextmanager
    def walking(self) -> Iterator[None]:
        """Count the request being handled as in flight: `drain` waits for it, then cancels it."""
        walk = asyncio.current_task()  # aiohttp runs each request in a task of its own
        assert walk is not None
        self._walks.add(walk)
        try:
            yield
        finally:
            self._walks.discard(walk)

    async def drain(self, grace: float) -> int:
        """Let the chat requests in flight finish within `grace` seconds, then cancel the rest
        (the engine records each as `cancelled` and benches nothing); how many were cancelled."""
        if not self._walks:
            return 0
        _, late = await asyncio.wait(set(self._walks), timeout=grace)
        self.grace_over = True
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        return len(late)

    def client_allowed(self, request: web.Request) -> bool:
        if not self._keys:
            return True
        offered = bearer(request)
        # Every key is compared, whichever matches, so timing tells nothing about which one was close.
        return bool(offered) and sum(hmac.compare_digest(offered, key) for key in self._keys) > 0


GATEWAY = web.AppKey("gateway", Gateway)


def bearer(request: web.Request) -> bytes:
    """The bearer token of the request's Authorization header (empty when none)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else b""


def error_response(
    status: int, message: str, code: str | None = None, *, headers: dict[str, str] | None = None, **more: Any
) -> web.Response:
    return web.json_response(error_json(message, error_type(status), code, **more), status=status, headers=headers)


def create_app(
    engine: Engine,
    *,
    keys: Sequence[str] = (),
    admin_token: str | None = None,
    max_concurrency: int = MAX_CONCURRENCY,
    body_limit: int = BODY_LIMIT,
) -> web.Application:
    """The gateway as an aiohttp application (run it with `llmfail.serve.server.serve`, or a test client)."""
    gateway = Gateway(
        engine, keys=keys, admin_token=admin_token or None, max_concurrency=max_concurrency, clock=engine.clock
    )
    app = web.Application(middlewares=[_access_and_errors, _client_keys], client_max_size=body_limit)
    app[GATEWAY] = gateway
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if gateway.admin_token:
        from .admin import add_admin_routes

        add_admin_routes(app)
    return app


# --------------------------------------------------------------------------- middlewares


@web.middleware
async def _access_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One access-log line per request; aiohttp's own errors (404, 405, 413) in OpenAI's shape."""
    began = time.perf_counter()
    note: dict[str, Any] = {}
    _NOTE.set(note)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        code = "request_too_large" if exc.status == 413 else "not_found" if exc.status == 404 else None
        return error_response(exc.status, exc.reason if exc.status != 413 else exc.text or exc.reason, code)
    except asyncio.CancelledError:
        # The client went away (499), or the gateway stopped it when its grace ran out (503).
        status = 503 if request.app[GATEWAY].grace_over else 499
        raise
    except Exception:  # a bug of ours: the traceback in the log, OpenAI's error shape for the client
        log.exception("llmfail serve: %s %s failed", request.method, request.path)
        return error_response(500, "the gateway failed on this request (its log says why)", "internal_error")
    finally:
        ms = (time.perf_counter() - began) * 1000
        access_log.info(
            "%s %s chain=%s status=%d model=%s failovers=%s ms=%.1f id=%s",
            request.method,
            request.path,
            note.get("chain", "-"),
            note.get("status", status),
            note.get("model") or "-",
            note.get("failovers", "-"),
            ms,
            note.get("request_id", "-"),
        )


@web.middleware
async def _client_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") and not request.app[GATEWAY].client_allowed(request):
        return error_response(
            401, "a client key is required: send one of LLMFAIL_SERVE_KEYS as a bearer token", "invalid_api_key"
        )
    return await handler(request)


# --------------------------------------------------------------------------- chat completions


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    if gateway.draining:  # a keep-alive connection opened before SIGTERM: send the client elsewhere
        refused = error_response(
            503, "the gateway is stopping; retry on another instance", "stopping", headers={"x-should-retry": "true"}
        )
        refused.force_close()  # and the connection closes after it
        return refused
    if gateway.in_flight >= gateway.max_concurrency:
        return error_response(
            503,
            f"the gateway is at its limit of {gateway.max_concurrency} concurrent requests; retry shortly",
            "overloaded",
            headers={"Retry-After": "1", "x-should-retry": "true"},
        )
    with gateway.walking():
        return await _chat(request, gateway)


async def _chat(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    note = _NOTE.get()
    try:
        call = parse_chat(json.loads(await request.read()))
    except BadRequest as bad:
        return error_response(bad.status, bad.message, bad.code, param=bad.param)
    except ValueError:
        return error_response(400, "the request body is not valid JSON", "invalid_json")
    note["chain"] = call.chain
    engine = gateway.engine
    chains = engine.config.chains
    if call.chain not in chains:
        known = sorted(chains)
        return error_response(
            404,
            f"the model {call.chain!r} does not exist: a model is a chain name, one of {', '.join(known) or 'none'}",
            "model_not_found",
            param="model",
            chains=known,
        )
    note["request_id"] = request_id = os.urandom(8).hex()
    if call.stream:
        return await _stream(request, gateway, call, request_id)
    with engine.journal.answer_first():
        try:
            result = await engine.complete(call.chain, call.messages, **call.engine_args(), request_id=request_id)
        except LlmfailError as error:
            answer = _failed(note, error, gateway.clock(), request_id)
        else:
            note.update(model=result.model, failovers=result.failovers)
            answer = web.json_response(
                completion_json(result, int(gateway.clock())),
                headers=_headers(result.model, result.failovers, request_id),
            )
    return await _send_then_settle(request, answer, engine, note)


async def _send_then_settle(
    request: web.Request, answer: web.Response, engine: Engine, note: dict[str, Any]
) -> web.Response:
    """Send the answer, then wait for the request's events to be stored.

    The walk ran inside `Journal.answer_first()`, so the commit of its event rows (the
    largest single cost of a healthy request on SQLite) comes after the client has its
    answer rather than before. aiohttp finds the answer already sent and only finishes
    the connection's bookkeeping. The status is noted once the answer is out: a client
    that reads it and hangs up at once cancels this handler while it settles, and that
    is a delivered answer, not a 499 (the events are written all the same).
    """
    try:
        await answer.prepare(request)
        await answer.write_eof()
        note["status"] = answer.status
    except ConnectionResetError:  # the client left before its answer: its events are still stored
        note["status"] = 499
    finally:
        await engine.journal.settled()
    return answer


def _headers(model: str | None, failovers: int, request_id: str) -> dict[str, str]:
    headers = {"x-llmfail-failovers": str(failovers), "x-llmfail-request-id": request_id}
    if model:
        headers["x-llmfail-model"] = model
    return headers


def _failovers(error: LlmfailError) -> int:
    """Failovers of a request that failed: the entries it tried, less the first."""
    return max(0, len({a.model for a in error.attempts}) - 1)


def _failed(note: dict[str, Any], error: LlmfailError, now: float, request_id: str) -> web.Response:
    """A walk that failed. The engine has done every retry its policy allows, so the answer tells
    SDKs not to retry it on their own (`x-should-retry: false`, which the OpenAI SDKs honour):
    their automatic retries would multiply the attempts of an outage by three."""
    answer = error_answer(error, now)
    failovers = _failovers(error)
    note.update(failovers=failovers)
    headers = {**answer.headers, **_headers(None, failovers, request_id), "x-should-retry": "false"}
    return web.json_response(answer.body, status=answer.status, headers=headers)


async def _stream(request: web.Request, gateway: Gateway, call: ChatCall, request_id: str) -> web.StreamResponse:
    """Server-sent chunks ending in `[DONE]`.

    The response starts with the first token, so until then a failure is still a whole
    HTTP error (and failover is invisible). After it, a failure ends the stream with an
    OpenAI-style error event and no `[DONE]`: a client never mistakes a cut answer for a
    whole one. Under `mid_stream: restart` a chunk carrying `x_llmfail_restart` says the
    text so far is void and the next entry's whole answer follows.
    """
    note = _NOTE.get()
    created = int(gateway.clock())
    response: web.StreamResponse | None = None

    async def send(obj: Any) -> None:
        assert response is not None
        await response.write(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")

    async def start(model: str | None, failovers: int) -> web.StreamResponse:
        started = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **_headers(model, failovers, request_id),
            }
        )
        await started.prepare(request)
        note.update(model=model, failovers=failovers, status=200)
        return started

    items = gateway.engine.stream(call.chain, call.messages, **call.engine_args(), request_id=request_id)
    try:
        async for item in items:
            if isinstance(item, Token):
                delta: dict[str, Any] = {"content": item.text}
                if response is None:
                    response = await start(item.model, item.failovers)
                    delta = {"role": "assistant", **delta}
                await send(chunk_json(request_id, created, item.model, delta))
            elif isinstance(item, Restart):
                restart = {"failed_model": item.failed_model, "model": item.model, "kind": str(item.cause.kind)}
                await send(chunk_json(request_id, created, item.model, {}, x_llmfail_restart=restart))
            elif isinstance(item, Result):
                if response is None:  # an empty answer: no token ever came
                    response = await start(item.model, item.failovers)
                note.update(model=item.model, failovers=item.failovers)
                await send(chunk_json(request_id, created, item.model, {}, finish_reason(item.finish_reason)))
                if call.include_usage:
                    usage_chunk = chunk_json(request_id, created, item.model, {}, usage=usage_json(item))
                    usage_chunk["choices"] = []
                    await send(usage_chunk)
                await response.write(b"data: [DONE]\n\n")
    except LlmfailError as error:
        if response is None:
            return _failed(note, error, gateway.clock(), request_id)
        answer = error_answer(error, gateway.clock())
        answer.body["error"]["code"] = "stream_interrupted"
        note.update(status=answer.status, failovers=_failovers(error))
        with contextlib.suppress(ConnectionResetError):  # nobody left to tell
            await send(answer.body)
    except asyncio.CancelledError:
        if response is not None and gateway.grace_over:  # stopped by the gateway: say so in the stream
            note.update(status=503)
            stopped = "the gateway stopped before the answer was complete"
            with contextlib.suppress(ConnectionResetError):
                await send(error_json(stopped, "server_error", "stream_interrupted"))
        raise
    except ConnectionResetError:  # the client left while we wrote: the walk stops (outcome: cancelled)
        note.update(status=499)
        assert response is not None
        return response
    finally:
        await items.aclose()  # type: ignore[attr-defined]
    assert response is not None
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


# --------------------------------------------------------------------------- models and health


async def models(request: web.Request) -> web.Response:
    config = request.app[GATEWAY].engine.config
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "llmfail",
            "entries": [entry.model for entry in chain.entries],
        }
        for name, chain in config.chains.items()
    ]
    return web.json_response({"object": "list", "data": data})


async def healthz(request: web.Request) -> web.Response:
    """The process is up and answering (liveness)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: not draining, the store answers, some chain has an entry that is not benched."""
    gateway = request.app[GATEWAY]
    engine = gateway.engine
    config = engine.config
    body: dict[str, Any] = {"ready": False, "config": config.path, "draining": gateway.draining}
    try:
        now = gateway.clock()
        running = {state.model: state for state in engine.store.benches(now)}
    except StateError as error:
        body["store"] = f"unreachable: {error.message}"
        return web.json_response(body, status=503)
    body["store"] = "ok"
    live = [
        name
        for name, chain in config.chains.items()
        if any(entry_status(entry, running, now).is_live for entry in chain.entries)
    ]
    body["live_chains"] = live
    body["ready"] = bool(live) and not gateway.draining
    return web.json_response(body, status=200 if body["ready"] else 503)
