"""The Redis/Valkey backend of `Store`: benches, leases, quotas and the event log shared by every host.

Why it is built the way it is:

- **One Lua script per read-modify-write** (`redis_scripts`): the bench rules run
  on the server, atomically, with the caller's `now`; key expiry never decides
  anything, TTLs only give memory back.
- **One hash tag per namespace**: every key is `{llmfail:NS}:…`, so every script
  touches one slot and works on Redis Cluster. Layout (P = `{llmfail:NS}:`):
  `P m:<key>` bench state (hash), `P models` known keys (set), `P ver` version
  (bumped by every state write), channel `P inval` (the key a script changed),
  `P meta` (hash), `P quota:<day>` (hash, 3-day TTL), `P alert:<key>\\0<type>`
  (claim until, TTL window + 1 day), `P ev` the event stream, `P evid` the last
  event id, `P t:<minute>` per-minute counters, `P tidx` the minutes present
  (sorted set), `P s:<model>` answer samples (sorted set by ts), `P smodels`.
- **Event ids are a counter** (`INCR evid`), and the stream entry of event N is
  `N-0`: ids are plain increasing integers, never reused after pruning, and an
  event becomes visible only with its id (one script appends both), so a reader
  following `id > last` misses nothing.
- **Clock skew**: the offset to the server's `TIME` (the least-RTT sample of
  three, re-measured every minute) is added to every time sent and taken off
  every time read, so all hosts decide on the server's clock while each caller
  keeps seeing times on its own. Offsets under a second count as none and the
  offset is whole seconds, so same-machine times round-trip exactly.
- **Hot path**: `states()` is served from a cache per process (shared by its
  stores on one server and namespace, so their own writes are seen at once)
  that a pub/sub message from the writing script drops, that a background
  thread re-reads every 250 ms (the backstop for lost messages) and whose
  entries expire after 500 ms; a clean success writes nothing. A healthy
  request costs one round trip: its `request` event. Another host's bench is
  honoured within a few ms, within 250 ms if the message is lost.
- **Outages**: 0.25 s socket timeouts and no client-side retries (redis-py
  retries 10 times by default; a retried write could count a failure twice).
  Every Redis error becomes one `StateError` line naming the server,
  `StoreUnavailable` when waiting may fix it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import events as ev
from ..errors import StateError, StoreUnavailable, UsageError
from ..events import Event
from ..redact import redacted_json
from . import EventTally, ModelState
from .redis_scripts import SCRIPTS, script_source
from .transitions import after_success
from .transitions import clean_detail as _clean

log = logging.getLogger("llmfail.store")

#: Environment variable holding the Redis password when the caller names none.
PASSWORD_ENV = "LLMFAIL_REDIS_PASSWORD"
DEFAULT_NAMESPACE = "default"
#: Seconds a command (or a connect) may take before the server counts as unreachable.
SOCKET_TIMEOUT_S = 0.25
#: The background thread re-reads the cached keys this often (the backstop for lost pub/sub).
POLL_S = 0.25
#: A cached state older than this is read again, even if the background thread has stalled.
CACHE_TTL_S = 0.5
#: Keys asked for within this many seconds are kept fresh by the background thread.
WATCH_S = 10.0
#: The clock offset to the server is measured again this often (seconds).
SKEW_REFRESH_S = 60.0
#: A measured offset below this counts as none (one host's clock, or NTP-synced hosts).
SKEW_TOLERANCE_S = 1.0
#: Events per append script (see `RedisStore.append`).
APPEND_CHUNK = 64
#: `prune` runs at most this often (seconds) unless forced, like the SQLite store.
PRUNE_INTERVAL_S = 3600.0
_QUOTA_TTL_S = 3 * 86400
_PAGE = 500
_BUCKET_S = 60

_TIME_FIELDS = ("bench_until", "benched_at", "last_error_at", "probe_until", "slow_since", "speed_at", "recheck_at")
_EVENT_TEXT = ("request_id", "chain", "model", "type", "kind", "next_model", "detail")
_SEP = "\x1f"
_NONE = "\x00"
#: Errors that say "not now" rather than "never": the server is failing over, loading, full or busy.
_TRANSIENT_ERRORS = (
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.OutOfMemoryError, "OOM"),
)
_TRANSIENT_CODES = frozenset(
    {"READONLY", "LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "OOM", "BUSY", "NOREPLICAS"}
)
#: The scripts' SHA1s, as `EVALSHA` names them (the server computes the same from the UTF-8 source).
_SHAS = {name: hashlib.sha1(script_source(name).encode()).hexdigest() for name in SCRIPTS}
#: The append script's one packed argument (compact; non-ASCII text goes as UTF-8, as it would unpacked).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: redis-py's words for a connection that broke under a command (the server died or closed it).
_LOST = re.compile(r"Error while (reading from|writing to) |Connection closed by server|.*Connection lost", re.I)

_SCHEMES = {"redis": "redis", "rediss": "rediss", "unix": "unix", "valkey": "redis", "valkeys": "rediss"}


def _arg(value: object) -> str:
    """One script argument; `\\0` stands for None."""
    if value is None:
        return _NONE
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def display_url(url: str) -> str:
    """`url` with any password shown as `***` (the only form of a URL llmfail prints)."""
    from .select import redact_url

    return redact_url(url)


def _bucket_field(model: str, type_: str, kind: str | None, chain: str | None) -> str:
    return _SEP.join((model, type_, _NONE if kind is None else kind, _NONE if chain is None else chain))


class RedisStore:
    """`Store` on a Redis ≥ 7.0 or Valkey server, shared by every process and host using the same URL
    and namespace. Safe for threads and `fork()` (redis-py's pool reconnects in a child)."""

    #: An append waits a network round trip: the engine's journal hands events to its writer
    #: thread rather than stall the event loop (`llmfail.journal`).
    appends_wait = True

    def __init__(
        self,
        client: redis.Redis,
        *,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        clock: Callable[[], float] = time.time,
        background: bool = True,
        timeout: float = SOCKET_TIMEOUT_S,
    ) -> None:
        if not namespace or any(c in namespace for c in "{}\x00"):
            raise UsageError(f"invalid Redis namespace {namespace!r}", hint="use letters, digits, '-', '_' or '.'")
        self.url = display_url(url)
        self.namespace = namespace
        self.prefix = "{llmfail:" + namespace + "}:"
        self._version_key = self.prefix + "ver"
        # Typed Any: redis-py's stubs cannot know that decode_responses=True makes every reply a str.
        self._client: Any = client
        self._clock = clock
        self._offset = 0.0
        self._skew_at: float | None = None
        self._background = background
        self._shared: _StateCache | None = None
        self._pid = os.getpid()
        self._follower: Any = None
        self._follower_timeout = 0.0
        self._timeout = timeout

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str | None = None,
        password_env: str | None = None,
        clock: Callable[[], float] | None = None,
        timeout: float = SOCKET_TIMEOUT_S,
    ) -> RedisStore:
        """The store at `url` (`redis://`, `rediss://`, `unix://`, `valkey://`, `valkeys://`).

        The password comes only from the environment variable `password_env`
        (default `LLMFAIL_REDIS_PASSWORD`); a URL that carries one is refused,
        since URLs end up in config files, shell history and logs. Nothing
        connects until the first call. `timeout` bounds every command and connect
        (the default suits the request path; bulk copies may want longer).
        """
        parts = urlsplit(url)
        scheme = _SCHEMES.get(parts.scheme.lower())
        if scheme is None:
            raise UsageError(
                f"not a Redis URL: {display_url(url)}",
                hint="use redis://HOST:PORT/DB, rediss://…, unix:///path/to/socket or valkey://…",
            )
        if parts.password is not None:
            raise UsageError(
                f"the Redis URL {display_url(url)} contains a password",
                hint=f"remove it from the URL and put it in ${password_env or PASSWORD_ENV}",
            )
        env = password_env or PASSWORD_ENV
        password = os.environ.get(env) or None
        if password_env and password is None:
            raise UsageError(
                f"${password_env} (the Redis password) is not set",
                hint=f"export {password_env}=… or drop password_env from the config",
            )
        target = scheme + "://" + url.split("://", 1)[1]  # urlunsplit would drop the // of unix:///path
        client = redis.Redis.from_url(
            target,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
            decode_responses=True,
            health_check_interval=0,
            client_name="llmfail",
        )
        shown = (
            url
            if password is None
            else urlunsplit(
                (
                    parts.scheme,
                    f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}",
                    parts.path,
                    parts.query,
                    parts.fragment,
                )
            )
        )
        return cls(
            client,
            url=shown,
            namespace=namespace or DEFAULT_NAMESPACE,
            clock=clock if clock is not None else time.time,
            timeout=timeout,
        )

    # -- plumbing -----------------------------------------------------------------

    def _error(self, exc: BaseException) -> StateError:
        """One line naming the server, for any error of redis-py (never its own exception or traceback).

        Transient conditions (no connection, no answer in time, a read-only replica, a
        server still loading, a cluster without quorum, a full server, a busy script) are
        `StoreUnavailable`: the guard opens its breaker and tries again later. A refused
        password or command is a plain `StateError`: waiting will not fix it.
        """
        text = " ".join(str(exc).split()) or type(exc).__name__
        text = text.split(". script:")[0].split(" script:")[0]  # the failing script's sha says nothing to a user
        if isinstance(
            exc, (redis.AuthenticationError, redis.exceptions.NoPermissionError, redis.exceptions.AuthorizationError)
        ) or text.startswith(("NOAUTH", "WRONGPASS")):
            return StateError(
                f"shared state {self.url} refused access ({text})",
                hint=f"check the password in ${PASSWORD_ENV} (or the variable state.password_env "
                "names) and the user's ACL",
            )
        if isinstance(exc, redis.ResponseError):
            code = next((c for cls, c in _TRANSIENT_ERRORS if isinstance(exc, cls)), None)
            if code is None and text.split(" ")[0] in _TRANSIENT_CODES:
                code, _, text = text.partition(" ")
            if code is None:
                return StateError(
                    f"shared state {self.url} refused a command ({text})",
                    hint="llmfail needs Redis >= 7.0 or Valkey >= 7.2; `llmfail check` tells more",
                )
            text = f"{code}: {text}"
        elif isinstance(exc, redis.TimeoutError):
            text = f"no answer within {self._timeout:g} s"
        elif _LOST.match(text):  # redis-py's wording names the socket's own address and errno
            text = "connection lost"
        elif match := re.match(r"Error -?\d+ connecting to \S+?\.? (.+?)\.?$", text):
            text = match.group(1)[:1].lower() + match.group(1)[1:]  # "connection refused", not the errno
        return StoreUnavailable(
            f"cannot reach shared state {self.url} ({text})",
            hint="check that Redis is running and reachable from here, or point --db / LLMFAIL_DB elsewhere",
        )

    @contextmanager
    def _calling(self) -> Iterator[None]:
        """Every Redis error as one `StateError` line (see `_error`)."""
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            raise self._error(exc) from None

    def _run(self, name: str, *args: object, client: Any = None) -> Any:
        return self._call(name, self.prefix, *[_arg(a) for a in args], client=client)

    def _call(self, name: str, *args: str, client: Any = None) -> Any:
        """Run one script (`args` already strings, the prefix first) with `EVALSHA`, loading it once
        when the server does not know it (a restart, a failover, `SCRIPT FLUSH`)."""
        target = self._client if client is None else client
        try:
            try:
                return self._execute(target, "EVALSHA", _SHAS[name], 1, self._version_key, *args)
            except redis.exceptions.NoScriptError:
                target.script_load(script_source(name))
                return self._execute(target, "EVALSHA", _SHAS[name], 1, self._version_key, *args)
        except (redis.RedisError, OSError) as exc:
            raise self._error(exc) from None

    @staticmethod
    def _execute(target: Any, *command: object) -> Any:
        """One command on a connection of `target`'s pool: what `execute_command` does for our
        clients (no retries, no health checks, no reply callback for EVALSHA) without its
        per-command retry wrapper and metrics, about a third of the client's CPU for a script.
        The connection drops itself on a socket error or timeout; an error reply keeps it."""
        pool = target.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command(*command, check_health=False)
            return conn.read_response()
        finally:
            pool.release(conn)

    def _sibling(self, name: str, **overrides: Any) -> Any:
        """Another client to the same server with its own connections (the cache's listener, the
        events follower), so neither waits behind a request's command nor holds one up."""
        pool = self._client.connection_pool
        kwargs = {**pool.connection_kwargs, "client_name": name, **overrides}
        return redis.Redis(connection_pool=pool.__class__(connection_class=pool.connection_class, **kwargs))

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._shared = None  # the parent's cache and its thread stay behind; the next read makes ours
            self._follower = None

    # -- clock skew ---------------------------------------------------------------

    def measure_skew(self, client: Any = None) -> float:
        """Measure the offset of the server's `TIME` from our clock (least-RTT sample of three)
        and use it from now on; returns the offset in effect (seconds, whole, 0 under 1 s)."""
        best: tuple[float, float] | None = None
        with self._calling():
            for _ in range(3):
                local = self._clock()
                started = time.perf_counter()
                seconds, micros = (client or self._client).time()
                rtt = time.perf_counter() - started
                offset = seconds + micros / 1e6 - (local + rtt / 2)
                if best is None or rtt < best[0]:
                    best = (rtt, offset)
        assert best is not None
        measured = best[1]
        offset = 0.0 if abs(measured) < SKEW_TOLERANCE_S else float(round(measured))
        if abs(offset - self._offset) >= SKEW_TOLERANCE_S or offset == 0.0:
            self._offset = offset  # small wobbles keep the offset in effect: times stay stable
        self._skew_at = time.monotonic()
        return self._offset

    @property
    def clock_offset(self) -> float:
        """Seconds added to this host's times to get the server's (0 until measured)."""
        return self._offset

    def _skew(self) -> float:
        at = self._skew_at
        if at is None or time.monotonic() - at > SKEW_REFRESH_S:
            self.measure_skew()
        return self._offset

    def _out(self, t: float | None) -> float | None:
        """A time of ours as the server's."""
        return None if t is None else t + self._skew()

    def _state(self, model: str, raw: Sequence[str] | dict[str, str], offset: float | None = None) -> ModelState:
        """A state hash (flat list or dict) in this host's time (`offset` 0: in the server's)."""
        if not isinstance(raw, dict):
            raw = dict(zip(raw[::2], raw[1::2], strict=False))
        offset = self._offset if offset is None else offset

        def when(name: str) -> float | None:
            value = raw.get(name)
            return None if value is None else float(value) - offset

        status = raw.get("last_error_status")
        slow_ms = raw.get("slow_ms")
        return ModelState(
            model=model,
            bench_until=when("bench_until"),
            benched_at=when("benched_at"),
            manual=raw.get("manual") == "1",
            reason=raw.get("reason"),
            kind=raw.get("kind"),
            bench_count=int(float(raw.get("bench_count") or 0)),
            failures=int(float(raw.get("failures") or 0)),
            last_error_kind=raw.get("last_error_kind"),
            last_error_status=int(float(status)) if status is not None else None,
            last_error_at=when("last_error_at"),
            probe_holder=raw.get("probe_holder"),
            probe_until=when("probe_until"),
            slow_since=when("slow_since"),
            slow_ms=float(slow_ms) if slow_ms is not None else None,
            speed_at=when("speed_at"),
            recheck_at=when("recheck_at"),
        )

    # -- the cache of bench states --------------------------------------------------

    def _cache(self) -> _StateCache | None:
        """This process's cache for our server and namespace (None when caching is off)."""
        if not self._background:
            return None
        if self._shared is None:
            self._shared = _StateCache.acquire(self)
        return self._shared

    def _local(self, state: ModelState | None) -> ModelState | None:
        """A cached state (kept in the server's time) in this host's time."""
        offset = self._offset
        if state is None or not offset:
            return state
        changes = {name: value - offset for name in _TIME_FIELDS if (value := getattr(state, name)) is not None}
        return dataclasses.replace(state, **changes)

    def _read_states(self, keys: Sequence[str], client: Any = None) -> dict[str, ModelState | None]:
        """One round trip: the named keys' states in the server's time (None: unknown)."""
        reply = self._run("read_states", *keys, client=client)
        return {key: (self._state(key, raw, 0.0) if raw else None) for key, raw in zip(keys, reply[1:], strict=False)}

    def _forget(self, model: str | None) -> None:
        cache = self._shared or _StateCache.find(self)
        if cache is not None:
            cache.forget(model)

    def _wrote(self, model: str, raw: Sequence[str]) -> ModelState:
        """Our own write: every store of this process sees what the script returned at once
        (other processes learn of it by pub/sub). Returns it in this host's time."""
        cache = self._shared or _StateCache.find(self)  # a store that only writes still keeps the others current
        state = self._state(model, raw, 0.0)
        if cache is not None:
            cache.put(model, state)
        if not self._offset:
            return state  # the same times on both clocks: one parse serves both
        return self._state(model, raw)

    # -- bench state ----------------------------------------------------------------

    def states(self, models: Iterable[str]) -> dict[str, ModelState]:
        """The given keys' states in the order given (unknown keys absent), from the process's cache
        while it is fresh: at most one round trip, none while nothing has changed."""
        self._check_fork()
        keys = list(dict.fromkeys(models))
        self._skew()
        cache = self._cache()
        found: dict[str, ModelState | None] = {}
        generation = 0
        if cache is not None:
            found, generation = cache.lookup(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            fresh = self._read_states(missing)
            if cache is not None:
                cache.fill(generation, fresh)
            found.update(fresh)
        return {key: state for key in keys if (state := self._local(found[key])) is not None}

    def all_states(self) -> list[ModelState]:
        """Every key the store knows, by key name (always read from the server)."""
        self._check_fork()
        self._skew()
        reply = self._run("read_all")
        states = [self._state(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]
        return sorted(states, key=lambda s: s.model)

    def benches(self, now: float) -> list[ModelState]:
        """Keys benched at `now`, soonest expiry first (read from the server)."""
        benched = [s for s in self.all_states() if s.is_benched(now)]
        return sorted(benched, key=lambda s: (s.bench_until or 0.0, s.model))

    def bench(
        self,
        model: str,
        *,
        now: float,
        until: float,
        manual: bool,
        reason: str | None,
        kind: str | None,
        replace: bool = False,
    ) -> ModelState:
        """Set a bench (operator's `llmfail bench`); bench_count += 1. A running bench is never
        shortened unless `replace`: the later deadline wins."""
        self._check_fork()
        raw = self._run("bench", model, self._out(now), self._out(until), manual, _clean(reason), kind, replace)
        return self._wrote(model, raw)

    def record_failure(
        self,
        model: str,
        *,
        now: float,
        kind: str,
        status: int | None,
        bench_for: float | None,
        factor: float = 1.0,
        min_until: float | None = None,
        reason: str | None = None,
        began: float | None = None,
    ) -> tuple[ModelState, bool]:
        """One failed attempt (see `Store.record_failure`); True when this call started or extended a bench."""
        self._check_fork()
        benched, raw = self._run(
            "record_failure",
            model,
            self._out(now),
            str(kind),
            status,
            bench_for,
            float(factor),
            self._out(min_until),
            _clean(reason),
            self._out(began),
        )
        return self._wrote(model, raw), bool(benched)

    def record_success(self, model: str, *, now: float) -> ModelState | None:
        """Close the circuit (see `Store.record_success`). A key the cache knows as clean costs nothing:
        this runs after every answer."""
        self._check_fork()
        prev = self.states([model]).get(model)
        if prev is None or after_success(prev, now) is None:  # clean: nothing to write
            return prev
        raw = self._run("record_success", model, self._out(now))
        self._forget(model)
        return self._state(model, raw) if raw else None

    def unbench(self, models: Sequence[str] | None, *, now: float) -> list[str]:
        """Lift the benches of `models` (None: every bench); returns the keys that were benched at `now`."""
        self._check_fork()
        keys = [] if models is None else list(dict.fromkeys(models))
        reply = self._run("unbench", self._out(now), models is None, *keys)
        self._forget(None)
        lifted = [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]
        if models is None:
            lifted.sort(key=lambda pair: (pair[1], pair[0]))
        return [model for model, _ in lifted]

    def claim_probe(self, model: str, *, now: float, lease: float, holder: str) -> bool:
        self._check_fork()
        won = bool(self._run("claim_probe", model, self._out(now), float(lease), holder))
        if won:
            self._forget(model)
        return won

    def release_probe(self, model: str, *, holder: str) -> None:
        self._check_fork()
        if self._run("release_probe", model, holder):
            self._forget(model)

    # -- slow demotion ----------------------------------------------------------------

    def demote(self, model: str, *, now: float, slow_ms: float, recheck_at: float) -> bool:
        self._check_fork()
        done = bool(self._run("demote", model, self._out(now), float(slow_ms), self._out(recheck_at)))
        self._forget(model)
        return done

    def restore(self, model: str, *, now: float, fast_ms: float) -> bool:
        self._check_fork()
        done = bool(self._run("restore", model, self._out(now), float(fast_ms)))
        self._forget(model)
        return done

    def claim_recheck(self, model: str, *, now: float, next_at: float) -> bool:
        self._check_fork()
        done = bool(self._run("claim_recheck", model, self._out(now), self._out(next_at)))
        if done:
            self._forget(model)
        return done

    def recent_ttfts(self, model: str, *, after: float | None, limit: int) -> list[float]:
        """First-token times (ms) of the model's newest `limit` answers after `after`, newest first."""
        self._check_fork()
        if limit <= 0:
            return []
        low = "-inf" if after is None else f"({self._out(after)!r}"
        with self._calling():
            members = self._client.zrevrangebyscore(self.prefix + "s:" + model, "+inf", low, start=0, num=limit)
        return [ttft for member in members if (ttft := _sample(member)[1]) is not None]

    # -- small shared facts ---------------------------------------------------------

    def swap_meta(self, key: str, value: str) -> str | None:
        self._check_fork()
        old = self._run("swap_meta", key, value)
        return None if old is None else str(old)

    def claim_alert(self, key: str, type_: str, *, now: float, window: float) -> bool:
        self._check_fork()
        ttl = math.ceil(max(window, 0.0)) + 86400
        return bool(self._run("claim_alert", f"{key}{_NONE}{type_}", self._out(now), float(window), ttl))

    def take_quota(self, model: str, *, day: str, limit: int) -> bool:
        self._check_fork()
        if limit <= 0:
            return False
        return bool(self._run("take_quota", day, model, int(limit), _QUOTA_TTL_S))

    def quota_used(self, model: str, *, day: str) -> int:
        self._check_fork()
        with self._calling():
            used = self._client.hget(self.prefix + "quota:" + day, model)
        return int(used or 0)

    # -- events -------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> list[int]:
        """Write events (details redacted and truncated); returns their ids.

        One script per APPEND_CHUNK events: each chunk is atomic and its ids
        consecutive; a long batch (a spool replayed, `state copy`) is cut so no
        single script holds the server up for long or outlasts the client's timeout.
        """
        self._check_fork()
        if not events:
            return []
        offset = self._skew()
        ids: list[int] = []
        for start in range(0, len(events), APPEND_CHUNK):
            packed = _dumps([_event_args(event, offset) for event in events[start : start + APPEND_CHUNK]])
            reply = self._call("append", self.prefix, packed)
            ids.extend(int(i) for i in reply)
        return ids

    def _event(self, entry_id: str, fields: dict[str, str]) -> Event:
        offset = self._offset
        data: dict[str, Any] = {}
        if fields.get("data"):
            try:
                loaded = json.loads(fields["data"])
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                data = loaded
        benched_until = fields.get("benched_until")
        status, attempt, latency = fields.get("status"), fields.get("attempt"), fields.get("latency_ms")
        return Event(
            id=int(entry_id.partition("-")[0]),
            ts=float(fields["ts"]) - offset,
            request_id=fields.get("request_id"),
            chain=fields.get("chain"),
            model=fields.get("model"),
            type=fields.get("type", ""),
            kind=fields.get("kind"),
            status=int(status) if status is not None else None,
            attempt=int(attempt) if attempt is not None else None,
            benched_until=float(benched_until) - offset if benched_until is not None else None,
            next_model=fields.get("next_model"),
            latency_ms=float(latency) if latency is not None else None,
            detail=fields.get("detail"),
            data=data,
        )

    def events(
        self,
        *,
        after_id: int | None = None,
        since: float | None = None,
        model: str | None = None,
        chain: str | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[Event]:
        """Events in id order, filtered; `newest=True` with `limit` gives the last N.

        Read in pages of the stream (`XRANGE`, or `XREVRANGE` for `newest`), starting
        at the lowest id any event with ts >= `since` can have (from the minute
        buckets), filtered here. Ascending id order always.
        """
        self._check_fork()
        if limit is not None and limit <= 0:
            return []
        offset = self._skew()
        start = (after_id or 0) + 1
        since_s = None if since is None else since + offset
        if since_s is not None:
            lowest = int(self._run("events_start", math.floor(since_s / _BUCKET_S)))
            if lowest == 0:
                return []
            start = max(start, lowest)
        wanted = set(types) if types else None

        def keep(e: Event) -> bool:
            return (
                (since_s is None or e.ts + offset >= since_s)
                and (model is None or e.model == model)
                and (chain is None or e.chain == chain)
                and (wanted is None or e.type in wanted)
            )

        stream = self.prefix + "ev"
        found: list[Event] = []
        with self._calling():
            if newest:
                high = "+"
                while limit is None or len(found) < limit:
                    page = self._client.xrevrange(stream, high, f"{start}-0", count=_PAGE)
                    found.extend(e for e in (self._event(i, f) for i, f in page) if keep(e))
                    if len(page) < _PAGE:
                        break
                    high = "(" + page[-1][0]
                found = found[:limit] if limit is not None else found
                found.reverse()
            else:
                low = f"{start}-0"
                while limit is None or len(found) < limit:
                    page = self._client.xrange(stream, low, "+", count=_PAGE)
                    found.extend(e for e in (self._event(i, f) for i, f in page) if keep(e))
                    if len(page) < _PAGE:
                        break
                    low = "(" + page[-1][0]
                found = found[:limit] if limit is not None else found
        return found

    def wait_for_events(self, after_id: int, timeout: float) -> list[Event]:
        """Events with id > `after_id`, waiting up to `timeout` seconds for the first one
        (`XREAD BLOCK`: no polling). [] when nothing came. For `events --follow`."""
        self._check_fork()
        # Its own connection, whose socket timeout outlasts the wait: a hung server still ends the call.
        socket_timeout = timeout + max(1.0, self._timeout)
        if self._follower is None or self._follower_timeout != socket_timeout:
            if self._follower is not None:
                self._follower.close()
            self._follower = self._sibling("llmfail-follow", socket_timeout=socket_timeout)
            self._follower_timeout = socket_timeout
        block_ms = max(1, int(timeout * 1000))
        follower = self._follower
        with self._calling():
            reply = follower.xread({self.prefix + "ev": f"{after_id}-0"}, count=_PAGE, block=block_ms)
        self._skew()
        rows: list[Event] = []
        for _stream, entries in reply or []:
            rows.extend(self._event(i, f) for i, f in entries)
        return rows

    def tally(
        self, *, since: float, until: float, chain: str | None = None, sample: int = 2000
    ) -> dict[str, EventTally]:
        """Per-model figures of the events with since <= ts <= until, from the per-minute counters:
        whole minutes inside the window are summed from their buckets, the two edge minutes are
        counted from their events; samples come from the per-model sorted sets."""
        self._check_fork()
        offset = self._skew()
        lo, hi = since + offset, until + offset
        if hi < lo:
            return {}
        first, last = math.floor(lo / _BUCKET_S), math.floor(hi / _BUCKET_S)
        sums, edge_ids = self._run("tally", first, last, repr(lo), repr(hi))
        counts: dict[tuple[str, str, str | None, str | None], int] = {}
        recovered: dict[str, int] = {}
        seen: dict[str, float] = {}
        for name, value in zip(sums[::2], sums[1::2], strict=False):
            if name.startswith("\x1e"):
                tag, _, who = name[1:].partition(_SEP)
                if tag == "ls":
                    seen[who] = float(value)
                elif tag == "rec":
                    recovered[who] = int(value)
                continue
            model, type_, kind, event_chain = name.split(_SEP)
            counts[(model, type_, None if kind == _NONE else kind, None if event_chain == _NONE else event_chain)] = (
                int(value)
            )
        for minute, first_id, last_id in zip(
            edge_ids[::3], edge_ids[1::3], edge_ids[2::3], strict=False
        ):  # minutes cut
            with self._calling():  # the minute's events lie between its first and last id, among others
                entries = self._client.xrange(self.prefix + "ev", f"{first_id}-0", f"{last_id}-0")
            for _, fields in entries:
                model, ts = fields.get("model"), float(fields["ts"])
                if model is None or not lo <= ts <= hi or math.floor(ts / _BUCKET_S) != int(minute):
                    continue
                type_, kind = fields.get("type", ""), fields.get("kind")
                key = (model, type_, kind, fields.get("chain"))
                counts[key] = counts.get(key, 0) + 1
                seen[model] = max(seen.get(model, -math.inf), ts)
                if type_ == ev.PROBE and kind is None and self._event("0-0", fields).data.get("recovered") == 1:
                    recovered[model] = recovered.get(model, 0) + 1
        return {
            model: self._tally_model(
                model, counts, recovered.get(model, 0), seen[model] - offset, lo, hi, chain, sample
            )
            for model in sorted(seen)
        }

    def _tally_model(
        self,
        model: str,
        counts: dict[tuple[str, str, str | None, str | None], int],
        recoveries: int,
        last_seen: float,
        lo: float,
        hi: float,
        chain: str | None,
        sample: int,
    ) -> EventTally:
        def total(type_: str, *, traffic: bool, kind: str | bool | None = False) -> dict[str | None, int]:
            by_kind: dict[str | None, int] = {}
            for (m, t, k, c), n in counts.items():
                if (
                    m == model
                    and t == type_
                    and (not traffic or chain is None or c == chain)
                    and (kind is False or k == kind)
                ):
                    by_kind[k] = by_kind.get(k, 0) + n
            return by_kind

        errors = {k: n for k, n in total(ev.ATTEMPT_FAILED, traffic=True).items() if k is not None and n}
        latencies: list[float] = []
        ttfts: list[float] = []
        taken = 0
        if sample > 0:
            key, start = self.prefix + "s:" + model, 0
            page_size = sample if chain is None else _PAGE
            with self._calling():
                while True:
                    page = self._client.zrevrangebyscore(key, repr(hi), repr(lo), start=start, num=page_size)
                    start += len(page)
                    for member in page:
                        latency, ttft, member_chain = _sample(member)
                        if chain is not None and member_chain != chain:
                            continue
                        taken += 1
                        if latency is not None:
                            latencies.append(latency)
                        if ttft is not None:
                            ttfts.append(ttft)
                        if taken >= sample:
                            break
                    if taken >= sample or len(page) < page_size:
                        break
        return EventTally(
            model=model,
            answered=sum(total(ev.REQUEST, traffic=True, kind=None).values()),
            errors=errors,
            failovers=sum(total(ev.FAILOVER, traffic=True).values()),
            benched=sum(total(ev.BENCHED, traffic=False).values()),
            recoveries=recoveries,
            latencies_ms=tuple(latencies),
            ttfts_ms=tuple(ttfts),
            last_seen=last_seen,
        )

    def max_event_id(self) -> int:
        """The highest id ever assigned (0 when none), even if pruning deleted that event."""
        self._check_fork()
        with self._calling():
            return int(self._client.get(self.prefix + "evid") or 0)

    def change_token(self) -> Hashable:
        """Changes whenever any host writes bench state or an event: one `MGET` of two counters."""
        self._check_fork()
        with self._calling():
            ver, evid = self._client.mget(self._version_key, self.prefix + "evid")
        return (ver or "0", evid or "0")

    def prune(self, *, now: float, retention: float, force: bool = False) -> int:
        """Delete events older than `retention` (and their counters), at most once an hour across
        every host unless `force`; returns the number of events deleted."""
        self._check_fork()
        deleted = int(self._run("prune", self._out(now), float(retention), force, PRUNE_INTERVAL_S))
        return max(deleted, 0)

    # -- diagnostics ----------------------------------------------------------------------

    def server_problems(self) -> list[str]:
        """Settings of the server that can silently lose shared state, one sentence each (for
        `llmfail check`): a server older than 7.0, an evicting `maxmemory-policy`, no persistence.
        A setting the server will not show (managed services often refuse CONFIG) is not guessed at."""
        problems: list[str] = []
        with self._calling():
            info = self._client.info("server")
            version = str(info.get("redis_version") or info.get("valkey_version") or "0")
            if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < (7, 0):
                problems.append(f"the server runs Redis {version}; llmfail needs Redis >= 7.0 or Valkey >= 7.2")
            persistence = self._client.info("persistence")
            try:
                policy = self._client.config_get("maxmemory-policy").get("maxmemory-policy")
                saves = self._client.config_get("save").get("save")
            except redis.ResponseError:
                policy = saves = None
        if policy is not None and policy != "noeviction":
            problems.append(
                f"maxmemory-policy is {policy}: a full server can evict benches and leases "
                "(set maxmemory-policy noeviction)"
            )
        if not int(persistence.get("aof_enabled", 0)) and saves == "":
            problems.append(
                "the server keeps nothing on disk (appendonly no, no RDB saves): a restart loses "
                "every bench and event (set appendonly yes)"
            )
        return problems

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the background thread and drop the connections; a later call reconnects."""
        cache, self._shared = self._shared, None
        if cache is not None and self._pid == os.getpid():
            cache.release()
        if self._follower is not None:
            self._follower.close()
            self._follower = None
        self._client.connection_pool.disconnect()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, namespace={self.namespace!r})"


def _event_args(event: Event, offset: float) -> list[str]:
    """One event as the append script's strings: ts, model, counter field, sample, recovered, then the
    stream entry's field/value pairs (see `redis_scripts.APPEND`)."""
    ts = repr(float(event.ts + offset))
    fields = ["ts", ts]
    for name in _EVENT_TEXT:
        value = getattr(event, name)
        if name == "detail":
            value = _clean(value)
        if value is not None:
            fields += [name, str(value)]
    if event.status is not None:
        fields += ["status", str(int(event.status))]
    if event.attempt is not None:
        fields += ["attempt", str(int(event.attempt))]
    if event.benched_until is not None:
        fields += ["benched_until", repr(float(event.benched_until + offset))]
    if event.latency_ms is not None:
        fields += ["latency_ms", repr(float(event.latency_ms))]
    if event.data:
        fields += ["data", redacted_json(event.data)]
    model, data = event.model, event.data or {}
    field = sample = recovered = ""
    if model is not None:
        field = _bucket_field(model, event.type, event.kind, event.chain)
        if event.type == ev.REQUEST and event.kind is None:
            latency = _number(data.get("attempt_ms"))
            latency = latency if latency is not None else _number(event.latency_ms)
            ttft = _number(data.get("attempt_ttft_ms"))
            ttft = ttft if ttft is not None else _number(data.get("ttft_ms"))
            sample = "|".join(
                (
                    "",
                    "" if latency is None else repr(latency),
                    "" if ttft is None else repr(ttft),
                    _NONE if event.chain is None else event.chain,
                )
            )
        if event.type == ev.PROBE and event.kind is None and data.get("recovered") == 1:
            recovered = "1"
    return [ts, _NONE if model is None else model, field, sample, recovered, *fields]


def _sample(member: str) -> tuple[float | None, float | None, str | None]:
    """(latency, ttft, chain) of one sample-set member `<id>|<latency>|<ttft>|<chain>`."""
    _, latency, ttft, chain = member.split("|", 3)
    return (float(latency) if latency else None, float(ttft) if ttft else None, None if chain == _NONE else chain)


_CACHES: dict[tuple[str, str, int], _StateCache] = {}
_CACHES_LOCK = threading.Lock()


class _StateCache:
    """The bench states of one server and namespace as this process last read them, shared by
    every `RedisStore` of the process on them.

    Why shared: a write through any store of the process is then seen by all of them
    at once (an app, its dashboard feed and its probe see one state), and one
    listener thread serves them all. Writes from other processes arrive as pub/sub
    messages (the key is dropped at once) and through the listener's re-read of
    every key in use each POLL_S (the backstop for lost messages); an entry older
    than CACHE_TTL_S is never used, and nothing is used while the listener is not
    listening. States are kept in the server's time; each store translates them.
    """

    def __init__(self, key: tuple[str, str, int], store: RedisStore) -> None:
        self.key = key
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[ModelState | None, float]] = {}
        self.watch: dict[str, float] = {}
        self.generation = 0
        self.users = 0
        self.listener = _Listener(self, store)
        self.listener.start()

    @staticmethod
    def find(store: RedisStore) -> _StateCache | None:
        """The cache other stores of this process keep for `store`'s server and namespace, if any."""
        return _CACHES.get((store.url, store.namespace, os.getpid()))

    @classmethod
    def acquire(cls, store: RedisStore) -> _StateCache:
        key = (store.url, store.namespace, os.getpid())
        with _CACHES_LOCK:
            cache = _CACHES.get(key)
            if cache is None or not cache.listener.is_alive():
                cache = _CACHES[key] = cls(key, store)
            cache.users += 1
            return cache

    def release(self) -> None:
        with _CACHES_LOCK:
            self.users -= 1
            if self.users > 0:
                return
            if _CACHES.get(self.key) is self:
                del _CACHES[self.key]
        self.listener.stop()
        self.forget(None)

    def lookup(self, keys: Sequence[str]) -> tuple[dict[str, ModelState | None], int]:
        """The fresh entries among `keys` (marking all of them as in use) and the generation to fill with."""
        now = time.monotonic()
        found: dict[str, ModelState | None] = {}
        listening = self.listener.healthy
        with self.lock:
            for key in keys:
                self.watch[key] = now
                hit = self.entries.get(key)
                if listening and hit is not None and now - hit[1] < CACHE_TTL_S:
                    found[key] = hit[0]
            return found, self.generation

    def fill(self, generation: int, states: dict[str, ModelState | None], stamp: float | None = None) -> None:
        """Cache what a read got, unless something was dropped since it began (it may be older)."""
        stamp = time.monotonic() if stamp is None else stamp
        with self.lock:
            if generation == self.generation and self.listener.healthy:
                for model, state in states.items():
                    self.entries[model] = (state, stamp)

    def put(self, model: str, state: ModelState) -> None:
        """This process's own write: its result is the newest state there is."""
        with self.lock:
            self.generation += 1
            if self.listener.healthy:
                self.entries[model] = (state, time.monotonic())
            else:
                self.entries.pop(model, None)

    def forget(self, model: str | None) -> None:
        """Drop one key (None: all of them); a read in flight must not cache what it got."""
        with self.lock:
            self.generation += 1
            if model is None:
                self.entries.clear()
            else:
                self.entries.pop(model, None)

    def in_use(self) -> tuple[list[str], int, float]:
        """The keys asked for within WATCH_S (the others are dropped), a generation and a stamp."""
        now = time.monotonic()
        with self.lock:
            for key in [k for k, at in self.watch.items() if now - at > WATCH_S]:
                del self.watch[key]
                self.entries.pop(key, None)
            return list(self.watch), self.generation, now


class _Listener(threading.Thread):
    """Keeps a `_StateCache` honest: drops a key when a script announces a change to it and
    re-reads every key in use each POLL_S (so a lost message costs at most that long).
    `healthy` is False while it cannot listen; the stores then read every state from the server."""

    def __init__(self, cache: _StateCache, store: RedisStore) -> None:
        super().__init__(name="llmfail-redis-cache", daemon=True)
        self._cache = cache
        self._store = store
        self._stopping = threading.Event()
        self.healthy = False

    def stop(self) -> None:
        self._stopping.set()
        self.healthy = False

    def _refresh(self, client: Any) -> None:
        keys, generation, stamp = self._cache.in_use()
        if keys:
            self._cache.fill(generation, self._store._read_states(keys, client), stamp)

    def run(self) -> None:
        store, cache = self._store, self._cache
        channel = store.prefix + "inval"
        client = store._sibling("llmfail-cache")
        while not self._stopping.is_set():
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel)
                pubsub.get_message(timeout=SOCKET_TIMEOUT_S)  # the subscription's confirmation
                self.healthy = True  # from here on no change goes unnoticed: the re-read below catches up
                self._refresh(client)
                next_poll = time.monotonic() + POLL_S
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=max(0.0, next_poll - time.monotonic()))
                    if message is not None and message.get("type") == "message":
                        cache.forget(str(message["data"]))
                    if time.monotonic() >= next_poll:
                        self._refresh(client)
                        next_poll = time.monotonic() + POLL_S
            except Exception as error:  # a background thread must never die: anything unexpected is an outage too
                if not isinstance(error, (redis.RedisError, OSError, StoreUnavailable)):
                    log.debug("llmfail: the Redis cache listener failed; retrying in 1 s", exc_info=True)
                self.healthy = False
                cache.forget(None)
                self._stopping.wait(1.0)
            finally:
                self.healthy = False
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass
        client.connection_pool.disconnect()
