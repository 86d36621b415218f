"""Alerts: tell people once when a failover starts, never slow a request doing it.

The config's `alerts:` sinks (a webhook gets a JSON POST, a command gets the
same JSON on stdin) receive four kinds of alert, each made from one event:

    benched     an automatic bench (`benched` event; manual benches are the operator's own act)
    panic       every entry of a chain was benched (`panic`)
    exhausted   a request failed on every entry (`exhausted`)
    recovered   a half-open probe closed a bench (`probe` with `recovered`)

Why it works the way it does:

- **Off the request path.** `Alerter` is an engine observer: it only puts the
  event on a bounded queue (never blocking; a full queue drops and logs). A
  daemon thread does the dedup claim and the sending, each sink bounded by
  `SINK_TIMEOUT_S`, so a dead webhook costs requests nothing.
- **Deduplicated across processes.** Before sending, the thread claims
  (key, type) in the state DB for the `dedup` window (`Store.claim_alert`, one
  atomic upsert), where key is the model, or `chain:NAME` for chain-wide
  alerts. Many processes watching the same outage send one alert per window.
- **Failures are events.** A sink that errors, answers non-2xx, exits non-zero
  or times out becomes an `alert_failed` event (sink type and host only: a
  webhook URL's path is often its secret).
- **Delivered before exit.** A short-lived process (`llmfail run`) would kill
  the daemon thread with the alert still queued, so at interpreter exit the
  queues are drained for at most `SINK_TIMEOUT_S`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shlex
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import events as ev
from .events import Event, iso
from .redact import redact

if TYPE_CHECKING:
    from .config import Alerts, Sink
    from .journal import Journal

log = logging.getLogger("llmfail")

#: Longest a single sink may take (connect + answer, or the command's run).
SINK_TIMEOUT_S = 5.0

#: Alerts waiting to be sent; more are dropped (and logged), never waited for.
QUEUE_SIZE = 256

BENCHED = "benched"
PANIC = "panic"
EXHAUSTED = "exhausted"
RECOVERED = "recovered"

Send = Callable[["Sink", bytes], None]

_live: weakref.WeakSet[Alerter] = weakref.WeakSet()


def alert_type(event: Event) -> str | None:
    """Which alert an event is, if any."""
    if event.type == ev.BENCHED and not event.data.get("manual") and event.kind != "manual":
        return BENCHED
    if event.type == ev.PANIC:
        return PANIC
    if event.type == ev.EXHAUSTED:
        return EXHAUSTED
    if event.type == ev.PROBE and event.data.get("recovered"):
        return RECOVERED
    return None


def dedup_key(event: Event) -> str:
    """What an alert is about: the model, else the chain (panic and exhaustion are chain-wide)."""
    if event.model:
        return event.model
    return f"chain:{event.chain}" if event.chain else "-"


def payload(alert: str, event: Event) -> dict[str, Any]:
    """The JSON a sink receives: the alert, a line for people, and the event row itself."""
    about = event.model or (f"chain {event.chain}" if event.chain else "llmfail")
    words = {
        BENCHED: "benched",
        PANIC: "every entry benched (panic mode)",
        EXHAUSTED: "chain exhausted",
        RECOVERED: "recovered",
    }
    why = f" ({event.kind}{' ' + str(event.status) if event.status else ''})" if event.kind else ""
    return {
        "alert": alert,
        "model": event.model,
        "chain": event.chain,
        "ts": iso(event.ts),
        "summary": f"llmfail: {about} {words[alert]}{why}",
        "host": socket.gethostname(),
        "event": event.to_json(),
    }


def sink_label(sink: Sink) -> str:
    """A sink named without its secrets: scheme and host of a webhook, the program of a command."""
    if sink.webhook:
        parts = urlsplit(sink.webhook)
        return f"webhook {parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    words = shlex.split(sink.command or "") if sink.command else []
    return f"command {words[0] if words else ''}"


def send(sink: Sink, body: bytes) -> None:
    """Deliver one alert to one sink within SINK_TIMEOUT_S; raise on any failure."""
    if sink.webhook:
        request = urllib.request.Request(
            sink.webhook,
            data=body,
            method="POST",
            headers={"content-type": "application/json", "user-agent": "llmfail"},
        )
        with urllib.request.urlopen(request, timeout=SINK_TIMEOUT_S) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"HTTP {response.status}")
        return
    done = subprocess.run(
        sink.command or "", shell=True, input=body, capture_output=True, timeout=SINK_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(f"exit status {done.returncode}" + (f": {err[-1]}" if err else ""))


class Alerter:
    """An engine observer that sends alerts from a background thread (see the module docstring)."""

    def __init__(self, alerts: Alerts, journal: Journal, *, sender: Send = send, queue_size: int = QUEUE_SIZE) -> None:
        self.alerts = alerts
        self.journal = journal  # where `alert_failed` events go, so the engine's observers see them
        self.store = journal.store  # the dedup claims
        self.sender = sender
        self.queue_size = queue_size
        self.dropped = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._queue: queue.Queue[tuple[str, Event]] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        _live.add(self)

    def __call__(self, event: Event) -> None:
        """The observer: O(1) and never blocking, whatever the sinks are doing."""
        alert = alert_type(event)
        if alert is None or not self.alerts.sinks:
            return
        self._start()
        try:
            self._queue.put_nowait((alert, event))
        except queue.Full:
            self.dropped += 1
            log.warning("llmfail: alert queue full (%d waiting): dropped a %s alert", self.queue_size, alert)

    def flush(self, timeout: float = SINK_TIMEOUT_S) -> bool:
        """Wait until every queued alert is handled, at most `timeout` s; True when it was."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread and queue are not ours
                self._pid, self._queue, self._thread = os.getpid(), queue.Queue(self.queue_size), None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="llmfail-alerts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            alert, event = self._queue.get()
            try:
                self._deliver(alert, event)
            except Exception:
                log.exception("llmfail: alert delivery failed")
            finally:
                self._queue.task_done()

    def _deliver(self, alert: str, event: Event) -> None:
        if not self.store.claim_alert(dedup_key(event), alert, now=event.ts, window=self.alerts.dedup):
            return  # this process or another sent it within the window
        body = json.dumps(payload(alert, event), separators=(",", ":")).encode()
        for sink in self.alerts.sinks:
            try:
                self.sender(sink, body)
            except Exception as error:
                self._failed(alert, event, sink, error)

    def _failed(self, alert: str, event: Event, sink: Sink, error: BaseException) -> None:
        label = sink_label(sink)
        if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
            error = error.reason if isinstance(error.reason, BaseException) else OSError(str(error.reason))
        why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if isinstance(error, (TimeoutError, subprocess.TimeoutExpired, socket.timeout)):
            why = f"no answer within {SINK_TIMEOUT_S:g}s ({type(error).__name__})"
        log.warning("llmfail: %s alert to %s failed: %s", alert, label, redact(why))
        self.journal.write(
            Event(
                type=ev.ALERT_FAILED,
                ts=self.journal.clock(),
                request_id=event.request_id,
                chain=event.chain,
                model=event.model,
                detail=f"{alert} alert to {label} failed: {why}",
                data={"alert": alert, "sink": label},
            )
        )


def flush_all(timeout: float = SINK_TIMEOUT_S) -> bool:
    """Drain every live Alerter of this process, at most `timeout` s in all."""
    deadline = time.monotonic() + timeout
    done = True
    for alerter in list(_live):
        if alerter._pid == os.getpid():
            done = alerter.flush(max(0.0, deadline - time.monotonic())) and done
    return done


atexit.register(flush_all)
