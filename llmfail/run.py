"""`llmfail run`: one request through a chain, printed for people or as JSON."""

from __future__ import annotations

import asyncio
import sys

from . import events as ev
from .config import Config
from .engine import Engine
from .errors import ExitCode, LlmfailError, StreamInterrupted
from .events import Event
from .output import emit_json, note, report_error
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

    async def go() -> int:
        try:
            if json_out or not stream:
                result = await engine.complete(chain, prompt, stream=stream, **kwargs)  # type: ignore[arg-type]
                if json_out:
                    emit_json(result.to_json())
                else:
                    sys.stdout.write(result.text + ("" if result.text.endswith("\n") else "\n"))
                    sys.stdout.flush()
                return ExitCode.OK
            async for item in engine.stream(chain, prompt, **kwargs):  # type: ignore[arg-type]
                if isinstance(item, Token):
                    sys.stdout.write(item.text)
                    sys.stdout.flush()
                elif isinstance(item, Restart):
                    sys.stdout.write("\n")
                    note(f"llmfail: {item.failed_model} failed mid-stream ({item.cause.kind}); restarting the answer on the next entry")
                elif isinstance(item, Result):
                    sys.stdout.write("\n")
                    sys.stdout.flush()
            return ExitCode.OK
        except LlmfailError as error:
            if isinstance(error, StreamInterrupted):
                sys.stdout.write("\n")
                sys.stdout.flush()
            if json_out:
                emit_json(failure_json(chain, error, error.attempts, error.latency_ms))
            report_error(error)
            return error.exit_code
        finally:
            await engine.aclose()

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        sys.stdout.flush()
        note("llmfail: interrupted")
        return ExitCode.INTERRUPTED
