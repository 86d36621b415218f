"""Shared state: benches, probe leases, daily quotas and the event log.

`Store` is the one small interface the engine, CLI and TUI use, in two halves
with different jobs: `BenchStore` (one small record per bench key, read on
every request, changed atomically) and `EventLog` (an append-only history,
followed and counted). SQLite (`llmfail.store.sqlite`) is the first backend;
Redis (`llmfail.store.redis`) shares state across hosts. `open_store` picks one
from a path or URL.

What every backend must keep (the contract suite, `tests/test_store_contract.py`,
checks each of these on every backend):

- **The bench rules are `llmfail.store.transitions`**: a backend supplies only
  an atomic read-modify-write of one key (read the state, apply the pure
  function, write the result), so no two backends can disagree about whether
  a model may be called.
- **Times come from the caller** (`now`, an injected clock), never from the
  backend's own clock or key expiry: benches, leases, quotas and claims are
  decided by comparing the stored absolute times with `now`.
- **Reads are pure**: `states`, `all_states`, `benches`, `quota_used`,
  `events`, `tally`, `recent_ttfts`, `max_event_id` and `change_token` never
  write, not even to tidy an expired row (failback is implicit: a bench
  simply expires; an expired bench stays half-open until a probe decides).
- **Every read-modify-write is atomic across processes and hosts**: exactly
  one caller wins a probe lease, an alert claim, a recheck turn, a demotion,
  a `swap_meta` change or the last unit of a quota; counters never lose an
  update.
- **Text is stored clean**: reasons and event details are redacted and cut
  to DETAIL_MAX (`transitions.clean_detail`), every string in event `data`
  redacted; no secret reaches the store.
- **Event ids increase in the order events become visible**: a follower that
  reads `events(after_id=last)` and remembers the highest id it saw never
  misses a row and never sees one twice — an id is never reused (not even
  after pruning), and no event with a lower id appears after one with a
  higher id has been read. `max_event_id` is the highest id ever assigned.
- **Errors are `StateError`** (one clear line naming the store, with a hint),
  never a backend's own exception.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import StateError, UsageError
from ..events import Event
from .transitions import CLOCK_STEP_S, clock_stepped_back

__all__ = [
    "CLOCK_STEP_S",
    "KNOWN_SCHEMES",
    "BenchStore",
    "EventLog",
    "EventTally",
    "ModelState",
    "Store",
    "StoreTarget",
    "open_store",
    "sqlite_file",
]


@dataclass(frozen=True)
class ModelState:
    """What the shared state knows about one bench key (`provider/model` or `provider/model#N`)."""

    model: str
    bench_until: float | None = None  # epoch s; None when not benched
    benched_at: float | None = None
    manual: bool = False
    reason: str | None = None  # operator's reason, or the error detail that benched it
    kind: str | None = None  # kind of the failure that caused the bench ("manual" for manual)
    bench_count: int = 0  # benches since the last success
    failures: int = 0  # consecutive failed attempts since the last success
    last_error_kind: str | None = None
    last_error_status: int | None = None
    last_error_at: float | None = None
    probe_holder: str | None = None
    probe_until: float | None = None  # probe lease expiry
    # Slow demotion (written only by demote/restore/claim_recheck, never by bench state changes):
    slow_since: float | None = None  # demoted since (epoch s); None when not demoted
    slow_ms: float | None = None  # first-token latency behind the last demote/restore decision
    speed_at: float | None = None  # when that decision was made: older samples no longer count
    recheck_at: float | None = None  # a demoted model's next turn at its own place in the chain

    @property
    def is_demoted(self) -> bool:
        return self.slow_since is not None

    def is_benched(self, now: float) -> bool:
        return self.bench_until is not None and self.bench_until > now and not clock_stepped_back(self, now)

    def is_half_open(self, now: float) -> bool:
        """The bench has ended but no success has closed it yet: one probe may go."""
        return self.bench_until is not None and (self.bench_until <= now or clock_stepped_back(self, now))

    def clock_stepped_back(self, now: float) -> bool:
        """See `transitions.clock_stepped_back`: the one place the clock-step rule lives."""
        return clock_stepped_back(self, now)

    def probe_leased(self, now: float) -> bool:
        return self.probe_until is not None and self.probe_until > now


@dataclass(frozen=True)
class EventTally:
    """One model's raw figures over a window of the event log, as `llmfail.stats` needs them.

    The store counts; `llmfail.stats` turns counts into rates, percentiles and
    states. Traffic figures (`answered`, `errors`, `failovers`, the samples)
    follow the chain filter; health figures (`benched`, `recoveries`) do not,
    because a bench is shared by every chain that uses the model.
    """

    model: str
    answered: int = 0  # `request` rows answered by this model
    errors: Mapping[str, int] = field(default_factory=dict)  # `attempt_failed` rows by kind
    failovers: int = 0  # `failover` rows leaving this model
    benched: int = 0  # `benched` rows (automatic and manual)
    recoveries: int = 0  # `probe` rows of a half-open probe that closed a bench
    latencies_ms: tuple[float, ...] = ()  # the answering attempt's latency, newest answers first
    ttfts_ms: tuple[float, ...] = ()  # the answering attempt's time to first token, newest first
    last_seen: float | None = None  # newest event of this model up to the window's end


class BenchStore(Protocol):
    """Shared health state: one record per bench key (`provider/model` or `provider/model#N`),
    plus probe leases, daily quotas, alert claims, slow demotion and small bookkeeping.

    Times are epoch seconds passed in by the caller (injected clock). Every
    read is pure; every change is one atomic read-modify-write applying the
    rule in `transitions` named in its docstring.
    """

    def states(self, models: Iterable[str]) -> dict[str, ModelState]:
        """Pure read of the given keys; keys never seen are absent from the result. Current as of
        the call: a write any process committed before it is seen (a cache must be invalidated
        by every other writer, not by time alone)."""
        ...

    def all_states(self) -> list[ModelState]:
        """Pure read of every key the store knows, by key name."""
        ...

    def benches(self, now: float) -> list[ModelState]:
        """Keys benched at `now` (`ModelState.is_benched`, with the clock-step rule), soonest
        expiry first (ties by key). Pure read."""
        ...

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
        """Set a bench (the operator's `llmfail bench`): `transitions.manual_bench`.

        A running bench is never shortened unless `replace` (the later deadline
        wins); the state returned is the one now stored, so the caller compares
        its `bench_until` with `until` to tell the user what was kept.
        """
        ...

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
        """One failed attempt: `transitions.after_failure`. Returns the stored state and True when
        this call started or extended a bench (the caller writes a `benched` event only then).

        failures += 1, last error noted, probe lease released. With `bench_for`
        the key is benched: until = max(now + bench_for * min(factor,
        bench_count), min_until), never shorter than a running bench. A failure
        of a request that `began` (read the bench state) at or before the
        running bench began — in flight when it was benched — is counted but
        benches nothing.
        """
        ...

    def record_success(self, model: str, *, now: float) -> ModelState | None:
        """Close the circuit: `transitions.after_success` (failures and bench_count reset, lease
        released, an automatic bench cleared; a running manual bench stays). Returns the state
        before the change (None if the key was unknown). A key with nothing to reset is not
        written at all: this runs after every answered request."""
        ...

    def unbench(self, models: Sequence[str] | None, *, now: float) -> list[str]:
        """Lift the benches of `models` (None: every key with a bench, running or half-open):
        `transitions.lift`. Returns the keys that were benched at `now`, in the order given
        (None: soonest expiry first)."""
        ...

    def claim_probe(self, model: str, *, now: float, lease: float, holder: str) -> bool:
        """Take the half-open probe lease until `now + lease` if `transitions.can_claim_probe`;
        True when this caller got it (exactly one of several racing callers does)."""
        ...

    def release_probe(self, model: str, *, holder: str) -> None:
        """Give the lease back early; only its holder can (a stale holder's release is a no-op)."""
        ...

    def take_quota(self, model: str, *, day: str, limit: int) -> bool:
        """Count one request against `model`'s daily quota; False (and no count) when full."""
        ...

    def quota_used(self, model: str, *, day: str) -> int:
        """Requests counted against `model` on `day` (0 when none). Pure read."""
        ...

    def swap_meta(self, key: str, value: str) -> str | None:
        """Set a small piece of bookkeeping (e.g. the last config's hash) and return what it was
        (None when unset). Unchanged: no write. Changed: exactly one caller sees the old value."""
        ...

    def claim_alert(self, key: str, type_: str, *, now: float, window: float) -> bool:
        """The right to send the (key, type) alert now: True for exactly one caller per
        `window` seconds, across every process sharing the store."""
        ...

    def demote(self, model: str, *, now: float, slow_ms: float, recheck_at: float) -> bool:
        """Mark `model` slow unless it already is; True when this call did (so exactly one
        process writes the `demoted` event). Bench changes never touch the demotion."""
        ...

    def restore(self, model: str, *, now: float, fast_ms: float) -> bool:
        """Clear a demotion; True when this call did (exactly one `restored` event)."""
        ...

    def claim_recheck(self, model: str, *, now: float, next_at: float) -> bool:
        """A demoted model's due recheck turn, taken by exactly one request; the next is at `next_at`."""
        ...


class EventLog(Protocol):
    """The append-only event log: what happened, in order, for `events`, `stats`, the TUI and alerts.

    Ids increase in the order events become visible, are never reused (not
    even after pruning), and a follower reading `events(after_id=last)` never
    misses or repeats a row. Timestamps are the caller's; ids, not
    timestamps, give the order.
    """

    def append(self, events: Sequence[Event]) -> list[int]:
        """Write events in one atomic step (all or none; details redacted and truncated, every
        string in `data` redacted); returns their ids, increasing, in the order given. Any `id`
        on the input is ignored."""
        ...

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
        """Events in ascending id order, filtered (id > after_id, ts >= since, exact model/chain,
        type in `types`; None or empty `types` filters nothing); `newest=True` with `limit`
        gives the last N, still in ascending order."""
        ...

    def tally(
        self, *, since: float, until: float, chain: str | None = None, sample: int = 2000
    ) -> dict[str, EventTally]:
        """Per-model figures of the events with since <= ts <= until, from indexed
        counts (never a scan of the whole log); at most `sample` newest answers
        per model are returned for percentiles. Models with no event in the
        window are absent. Pure read, one consistent snapshot."""
        ...

    def recent_ttfts(self, model: str, *, after: float | None, limit: int) -> list[float]:
        """First-token times (ms) of the model's newest `limit` answers written after `after`,
        newest first: the samples slow demotion takes its rolling median over. Pure read."""
        ...

    def max_event_id(self) -> int:
        """The highest id ever assigned (0 when none), even if pruning deleted that row, so a
        follower starting here sees only events written after it started."""
        ...

    def change_token(self) -> Hashable:
        """A cheap "anything new?" check for pollers (the dashboard, `events --follow`).

        Opaque: compare it with `!=` against the last one. It differs whenever
        another connection or process has committed a change (a bench, an event,
        anything) since the last token was taken. It may also differ when
        nothing a caller cares about changed (e.g. after this store's own
        writes), so a changed token means "read again", never "something is
        certainly new"; an unchanged one means nobody else wrote.
        """
        ...

    def prune(self, *, now: float, retention: float, force: bool = False) -> int:
        """Delete events older than `now - retention`, at most once an hour across every process
        sharing the log unless `force`; returns how many were deleted. Ids stay monotonic."""
        ...


class Store(BenchStore, EventLog, Protocol):
    """Both halves on one backend, as the engine, CLI and TUI use them."""

    def close(self) -> None:
        """Release connections; idempotent. A closed store reconnects if used again."""
        ...


#: URL schemes `open_store` understands; anything else is a usage error naming these.
KNOWN_SCHEMES = ("sqlite", "redis", "rediss", "unix", "valkey", "valkeys")
_REDIS_SCHEMES = frozenset(KNOWN_SCHEMES[1:])
#: `scheme:` at the start of a target. Two letters at least, so a Windows drive (`C:\\…`) is a path.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


def _scheme(target: str) -> str | None:
    """The URL scheme of `target`, or None for a plain path.

    A target is a URL when it starts with `scheme://`, or with `sqlite:` (so
    `sqlite:relative/path` works). Any other colon leaves it a path: a file
    named `backup:1.db`, or SQLite's own `file:` URIs, which go to SQLite as
    they always did.
    """
    match = _SCHEME.match(target)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme == "sqlite" or (target[match.end() :].startswith("//") and scheme != "file"):
        return scheme
    return None


def _sqlite_path(url: str) -> str:
    """The file of a `sqlite:` URL: `sqlite:///abs/path` (no host) or `sqlite:relative/path`."""
    rest = url[len("sqlite:") :]
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host not in ("", "localhost") or not slash:
            raise UsageError(
                "a sqlite:// URL names a file, not a host",
                hint="use sqlite:///absolute/path.db or sqlite:relative/path.db",
            )
        rest = "/" + path
    if not rest:
        raise UsageError("the sqlite: URL names no file", hint="use sqlite:///absolute/path.db")
    return rest


def _resolve(target: str | None) -> str:
    """`target`, else $LLMFAIL_DB, else the default SQLite file. Read as text, never through
    `Path`, which would fold a URL's `//`."""
    if target:
        return target
    from ..paths import default_state_db

    return os.environ.get("LLMFAIL_DB") or str(default_state_db())


def _known(scheme: str | None) -> str | None:
    if scheme is not None and scheme not in KNOWN_SCHEMES:
        # Only the scheme is named: the rest of a URL may hold a password.
        raise UsageError(
            f"unknown state store scheme {scheme}:// (known: {', '.join(KNOWN_SCHEMES)})",
            hint="pass a file path, sqlite:///path.db or a redis:// URL to --db or LLMFAIL_DB",
        )
    return scheme


def sqlite_file(target: str | None = None) -> Path | None:
    """The SQLite file `target` (None: the default store) names, or None for a Redis URL.

    For callers that must not create a store by reading it (`ls-benched` on a
    machine where nothing was ever benched): they check the file exists first.
    An unknown scheme is the same `UsageError` as `open_store`'s.
    """
    target = _resolve(target)
    scheme = _known(_scheme(target))
    if scheme in _REDIS_SCHEMES:
        return None
    return Path(_sqlite_path(target) if scheme == "sqlite" else target)


def open_store(
    target: str | None = None,
    *,
    namespace: str | None = None,
    password_env: str | None = None,
    busy_timeout: float | None = None,
) -> Store:
    """The store at `target`: a path or `sqlite:` URL (SQLite, created and migrated if
    needed), or a `redis://`, `rediss://`, `unix://`, `valkey://` or `valkeys://` URL (Redis/Valkey).

    `target` None is $LLMFAIL_DB, else the default SQLite file (`paths.default_state_db()`).
    `namespace` and `password_env` (the variable holding the password: secrets
    never come in the URL's place) are Redis's; `busy_timeout` is how long a
    SQLite writer waits for another's lock (default 10 s, right for operator
    commands; the engine's guard asks for a short one). The Redis backend is
    imported only for a Redis URL, so SQLite users never pay for (or need) the
    `redis` package. Any other scheme is a `UsageError` naming the known ones.
    """
    target = _resolve(target)
    scheme = _known(_scheme(target))
    if scheme in _REDIS_SCHEMES:
        return _open_redis(target, namespace=namespace, password_env=password_env)
    from .sqlite import BUSY_TIMEOUT_S, SqliteStore

    path = _sqlite_path(target) if scheme == "sqlite" else target
    return SqliteStore(path, busy_timeout=BUSY_TIMEOUT_S if busy_timeout is None else busy_timeout)


def _open_redis(url: str, *, namespace: str | None, password_env: str | None) -> Store:
    """`llmfail.store.redis.RedisStore.from_url`, imported only now; a clear error when it is missing."""
    try:
        module = importlib.import_module(".redis", __package__)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("redis", "hiredis"):
            message = "a Redis state store needs the redis package, which is not installed"
        else:
            message = f"this llmfail cannot use a Redis state store ({exc.name or exc} is missing)"
        raise StateError(message, hint="pip install 'llmfail[redis]'") from None
    store: Store = module.RedisStore.from_url(url, namespace=namespace, password_env=password_env)
    return store


@dataclass(frozen=True)
class StoreTarget:
    """Where a store lives, as plain data: a path or URL and a namespace.

    Picklable and hashable, so a test (or a process pool) can hand "the same
    store" to child processes, each of which opens its own connection with
    `open()` — connections never cross a process boundary.
    """

    url: str
    namespace: str | None = None

    def open(self, *, busy_timeout: float | None = None) -> Store:
        """A new connection to this store (see `open_store`)."""
        return open_store(self.url, namespace=self.namespace, busy_timeout=busy_timeout)
