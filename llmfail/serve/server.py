"""Running the gateway: bind, serve, drain on SIGTERM, reload on SIGHUP.

- **SIGTERM** (and Ctrl-C): stop accepting connections, let the requests in flight
  finish within `grace` seconds (then cancel what is left: those requests end as
  `cancelled`, nothing benched), close the engine, exit 0 (130 for Ctrl-C). The wait is
  `Gateway.drain`, not aiohttp's `shutdown_timeout`, which waits that long twice (once for
  the handler, once more after asking it to stop); what that timeout still covers, the
  admin and health requests, takes milliseconds.
- **SIGHUP**: load the config again. A config that loads replaces the old one for the
  requests that start from then on (`Engine.reload`: in-flight requests finish on the
  config they began with; a `config_changed` event records it). One that does not load
  is logged with each problem's `file:line:col`, and the old config stays.

The runner cancels a request's handler when its client disconnects
(`handler_cancellation=True`): that cancellation is what stops the upstream attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from ..config import Config
from ..engine import Engine
from ..errors import ConfigError, ExitCode, LlmfailError, UsageError
from ..store import Store
from .app import GATEWAY, MAX_CONCURRENCY, create_app

log = logging.getLogger("llmfail.serve")


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log_to_stderr(debug: bool) -> None:
    """Access lines and the gateway's notes on stderr, one per line, with a UTC time."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(message)s"))
    root = logging.getLogger("llmfail")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


@dataclass(frozen=True)
class ServeSettings:
    """How `llmfail serve` runs: the command's options and the keys from the environment."""

    host: str = "127.0.0.1"
    port: int = 4000
    max_concurrency: int = MAX_CONCURRENCY
    grace: float = 30.0
    keys: Sequence[str] = ()  # LLMFAIL_SERVE_KEYS: client keys (none: no client key needed)
    admin_token: str | None = None  # LLMFAIL_ADMIN_TOKEN: the admin API's token (None: no admin API)


def run_server(
    config: Config, store: Store, settings: ServeSettings, reload_config: Callable[[], Config], *, debug: bool = False
) -> ExitCode:
    """Serve until SIGTERM or Ctrl-C; the process's exit code. SIGHUP calls `reload_config`."""
    _log_to_stderr(debug)
    return asyncio.run(_serve(config, store, settings, reload_config))


async def _serve(
    config: Config, store: Store, settings: ServeSettings, reload_config: Callable[[], Config]
) -> ExitCode:
    engine = Engine(config, store)
    app = create_app(
        engine, keys=settings.keys, admin_token=settings.admin_token, max_concurrency=settings.max_concurrency
    )
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=settings.grace, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        await engine.aclose()
        # asyncio wraps the OS's reason in a sentence of its own; the reason alone is the news.
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        raise UsageError(
            f"cannot listen on {settings.host}:{settings.port}: {reason}",
            hint="pass another --port (0 picks a free one) or --host",
        ) from None
    bound = runner.addresses[0]
    log.info(
        "llmfail serve: listening on http://%s:%d (chains: %s; config %s)",
        settings.host,
        bound[1],
        ", ".join(config.chains),
        config.path,
    )
    if settings.keys:
        log.info("llmfail serve: client keys required (%d set in LLMFAIL_SERVE_KEYS)", len(settings.keys))
    elif not _loopback(settings.host):
        log.warning(
            "llmfail serve: warning: %s is reachable from other machines and no client key is required: "
            "anyone who reaches it spends your provider keys (set LLMFAIL_SERVE_KEYS)",
            settings.host,
        )
    if settings.admin_token:
        log.info("llmfail serve: admin API on under /admin/ (LLMFAIL_ADMIN_TOKEN is set)")

    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[ExitCode] = loop.create_future()

    def stop(code: ExitCode) -> None:
        if not stopped.done():
            stopped.set_result(code)

    loop.add_signal_handler(signal.SIGTERM, stop, ExitCode.OK)
    loop.add_signal_handler(signal.SIGINT, stop, ExitCode.INTERRUPTED)
    loop.add_signal_handler(signal.SIGHUP, reload, engine, reload_config)
    try:
        code = await stopped
        # A second SIGTERM while draining (a supervisor repeating itself) changes nothing.
        loop.add_signal_handler(signal.SIGTERM, log.info, "llmfail serve: already stopping")
        gateway = app[GATEWAY]
        gateway.draining = True
        log.info(
            "llmfail serve: stopping; %d request(s) in flight get up to %gs to finish",
            gateway.in_flight,
            settings.grace,
        )
        for running in list(runner.sites):
            await running.stop()  # no new connections from here on
        cancelled = await gateway.drain(settings.grace)
        if cancelled:
            log.info("llmfail serve: %d request(s) still running after %gs were cancelled", cancelled, settings.grace)
        await runner.cleanup()
        await engine.aclose()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("llmfail serve: stopped")
    return code


def _loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def reload(engine: Engine, reload_config: Callable[[], Config]) -> bool:
    """Load the config again and hand it to the engine; on failure keep the old one and say why."""
    try:
        config = reload_config()
    except ConfigError as error:
        log.error("llmfail serve: the config did not load; keeping the previous one:")
        for problem in error.problems:
            log.error("  %s", problem)
        return False
    except LlmfailError as error:
        log.error("llmfail serve: the config did not load (%s); keeping the previous one", error.message)
        return False
    engine.reload(config)
    log.info("llmfail serve: config reloaded from %s (chains: %s)", config.path, ", ".join(config.chains))
    return True
