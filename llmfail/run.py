"""`llmfail run`: one request through a chain, printed for people or as JSON."""

from __future__ import annotations

import asyncio
import sys

from . import events as ev
from .config import Config
from .engine import Engine
from .errors import ExitCode, LlmfailError
from .events import Event
from .output import emit_json, note, report_error, warn
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
    engine = Engine(config, store)
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
                        note(f"llmfail: {item.failed_model} failed mid-stream ({item.cause.kind}); "
                             "restarting the answer on the next entry")
                    elif isinstance(item, Result):
                        streamed = item
                assert streamed is not None, "Engine.stream() ends with the Result or raises"
                result = streamed
            out.end_line()
            if not (quiet or json_out):
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

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        # asyncio.run cancelled the request: the engine benched nothing and wrote a
        # `cancelled` request event; the tokens that arrived are already on stdout.
        out.end_line()
        note("llmfail: interrupted")
        return ExitCode.INTERRUPTED


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
