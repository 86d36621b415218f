"""`llmfail run`: one request through a chain, printed for people or as JSON."""

from __future__ import annotations

import asyncio
import atexit
import gc
import os
import sys

import httpx

from . import events as ev
from .config import Config
from .engine import Engine
from .errors import ExitCode, LlmfailError, plural
from .events import Event
from .output import emit_json, note, report_error, warn
from .plain_http import PlainHTTPTransport
from .result import Restart, Result, Token, failure_json
from .store import Store


def trace_line(event: Event) -> str | None:
    """The one stderr line a failover-relevant event gets (None: not worth a line)."""
    if event.type == ev.FAILOVER:
        why = f" ({event.kind})" if event.kind else ""
        return f"llmfail: {event.model} failed{why} -> trying {event.next_model}"
    if event.type == ev.PANIC:
        return "llmfail: every entry is benched: trying them all (panic mode)"
    if event.type == ev.QUOTA_SKIP:
        return f"llmfail: {event.model} skipped: {event.detail}"
    return None


def one_shot_transport() -> httpx.AsyncBaseTransport | None:
    """The transport that starts fastest, for a process that sends one request: httpx's own.

    The engine's default (aiohttp under httpx's API) costs a fifth of the CPU per
    request, which pays off over many requests; for one, importing aiohttp costs
    more than it saves (`benchmarks/startup.py`). With a proxy in the environment,
    None: the engine's default client applies it and `NO_PROXY` as httpx does.
    """
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in ("http_proxy", "https_proxy", "all_proxy")):
        return None
    return _OneShotTransport()


class _OneShotTransport(httpx.AsyncBaseTransport):
    """Plain HTTP straight on asyncio (`llmfail.plain_http`: no httpcore, h11 or anyio to
    import); `https://` on httpx's own transport, built at the first such request, so
    loading the CA bundle (~70 ms) is paid only when a TLS entry is really called. No
    retries here (httpcore's default is none): the engine is the one retry loop."""

    def __init__(self) -> None:
        self._plain: PlainHTTPTransport | None = None
        self._tls: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            if self._tls is None:
                self._tls = httpx.AsyncHTTPTransport()
            return await self._tls.handle_async_request(request)
        if self._plain is None:
            self._plain = PlainHTTPTransport()
        return await self._plain.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in (self._plain, self._tls):
            if pool is not None:
                await pool.aclose()


def skip_exit_collection() -> None:
    """Let the interpreter's exit skip collecting what this process built (a third of a one-shot run's
    exit, ~20 ms: `benchmarks/startup.py`): `gc.freeze()` as the process exits.

    The objects are freed all the same when the process ends; only `__del__` of objects caught in
    reference cycles no longer runs at exit, which Python never promised anyway. So whatever must
    be released is released explicitly: the engine's clients (`Engine.aclose`), the store (the
    caller closes it: SQLite checkpoints and removes its WAL file then), logs and alerts (their
    own `atexit` hooks). Registered at exit, so a caller that goes on running is not affected.
    """
    atexit.unregister(gc.freeze)  # once, however often a process calls run_command
    atexit.register(gc.freeze)


def restart_marker(restart: Restart) -> str:
    """The stderr line between a cut answer and the next entry's whole one (mid_stream: restart)."""
    return f"[{restart.failed_model} cut off — restarting with {restart.model or 'the next entry'}]"


def run_command(
    config: Config,
    store: Store,
    chain: str,
    prompt: str,
    *,
    system: str | None,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
    json_out: bool,
    quiet: bool,
) -> int:
    config.chain(chain)  # a usage error before anything is sent
    skip_exit_collection()
    engine = Engine(config, store, transport=one_shot_transport())
    if not quiet and not json_out:

        def show(event: Event) -> None:
            line = trace_line(event)
            if line:
                note(line)

        engine.on_event(show)
    kwargs = {"system": system, "max_tokens": max_tokens, "temperature": temperature}
    out = _Stdout()

    async def go() -> int:
        try:
            if json_out or not stream:
                result = await engine.complete(chain, prompt, stream=stream, **kwargs)  # type: ignore[arg-type]
                if json_out:
                    emit_json(result.to_json())
                else:
                    out.write(result.text or "\n")
            else:
                streamed: Result | None = None
                async for item in engine.stream(chain, prompt, **kwargs):  # type: ignore[arg-type]
                    if isinstance(item, Token):
                        out.write(item.text)
                    elif isinstance(item, Restart):
                        out.end_line()
                        note(restart_marker(item), style="bold yellow")
                    elif isinstance(item, Result):
                        streamed = item
                assert streamed is not None, "Engine.stream() ends with the Result or raises"
                result = streamed
            out.end_line()
            if not quiet:  # stderr: with --json too (the JSON also carries them)
                for warning in result.warnings:
                    warn(warning)
            return ExitCode.OK
        except LlmfailError as error:
            out.end_line()  # what arrived stays on stdout; the error goes below it on stderr
            if json_out:
                emit_json(failure_json(chain, error, error.attempts, error.latency_ms))
            report_error(error)
            return error.exit_code
        finally:
            await engine.aclose()
            _close_store(store)

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        # asyncio.run cancelled the request: the engine benched nothing and wrote a
        # `cancelled` request event; the tokens that arrived are already on stdout.
        out.end_line()
        note("llmfail: interrupted")
        return ExitCode.INTERRUPTED


def _close_store(store: Store) -> None:
    """Close the request's store; the guard first writes what it spooled while the store was
    locked or unreachable. What still cannot be written is said, never dropped silently."""
    from .store.guard import GuardedStore

    store.close()
    if isinstance(store, GuardedStore) and store.spooled:
        warn(
            f"{plural(store.spooled, 'event')} of this request could not be written to the state store"
            f" ({store.degraded or 'it could not be reached'}): they are lost"
        )


class _Stdout:
    """The answer on stdout, flushed piece by piece so tokens show as they arrive.

    It remembers whether a line is open, so an error, a restart or Ctrl-C
    starts on a fresh line without adding blank ones.
    """

    def __init__(self) -> None:
        self.open = False

    def write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.open = not text.endswith("\n")

    def end_line(self) -> None:
        if self.open:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.open = False
