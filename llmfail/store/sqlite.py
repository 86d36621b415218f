"""The SQLite backend of `Store`: one local file every llmfail process shares.

Why it is built the way it is:

- **The bench rules are not here**: every change of a key's bench state is
  read row -> pure function of `transitions` -> write row, inside one
  transaction, so this file holds only how SQLite makes that atomic and fast.
- **WAL + busy timeout**: readers (the TUI, `events --follow`) never block
  writers and writers queue (10 s by default, `busy_timeout`: operator
  commands wait, the engine's guard asks for ~0.1 s) instead of failing at once.
- **`BEGIN IMMEDIATE` for every write**: a deferred transaction that reads and
  then upgrades to a write lock gets `SQLITE_BUSY` *without* the busy handler
  waiting, which is exactly the "database is locked" failure several processes
  hitting one bench key would produce. Taking the write lock up front makes
  each read-modify-write (failure counters, probe leases, quotas) atomic
  across processes and lets the busy timeout do its job.
- **Pure reads**: listing benches or rendering the dashboard must never change
  state (failback is implicit: a bench simply expires), so no read path writes,
  not even to tidy expired rows.
- **No connection across `fork()`**: SQLite forbids using a connection opened
  in the parent; the store remembers its pid and reconnects lazily in a child.
- **Schema version + forward migrations** in a `meta` table, so a newer
  llmfail can upgrade an old file and an older llmfail refuses a newer file
  instead of corrupting it.
- **`AUTOINCREMENT` event ids**: ids are never reused after pruning, so a
  follower reading `id > last` never misses or repeats a row.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from .. import events as ev
from ..errors import StateError
from ..events import Event
from ..redact import redacted_json
from . import EventTally, ModelState
from .transitions import (
    after_failure,
    after_success,
    can_claim_probe,
    clean_detail,
    lift,
    manual_bench,
    probe_claimed,
    probe_released,
)

#: Seconds a writer waits for another process's write lock before giving up, unless the
#: store is opened with another `busy_timeout`: operator commands wait this long; the
#: engine's guard opens its store with a short budget, since a request must not wait.
BUSY_TIMEOUT_S = 10.0

#: `prune` runs at most this often (seconds) unless forced; deleting is a write
#: every process would otherwise repeat on every request.
PRUNE_INTERVAL_S = 3600.0

#: SQLite's historical limit on bound parameters is 999; stay well below it.
_IN_CHUNK = 500
_KNOWN_MAX = 4096  # bench keys remembered by _known_states before it starts afresh

_MODEL_COLUMNS = (
    "model",
    "bench_until",
    "benched_at",
    "manual",
    "reason",
    "kind",
    "bench_count",
    "failures",
    "last_error_kind",
    "last_error_status",
    "last_error_at",
    "probe_holder",
    "probe_until",
)
#: Slow-demotion columns: read with the bench state, written only by their own
#: methods (never by `_put`), so a bench or a success can never undo a demotion.
_SPEED_COLUMNS = ("slow_since", "slow_ms", "speed_at", "recheck_at")
_MODEL_SELECT = "SELECT " + ", ".join(_MODEL_COLUMNS + _SPEED_COLUMNS) + " FROM models"

_EVENT_COLUMNS = (
    "id",
    "ts",
    "request_id",
    "chain",
    "model",
    "type",
    "kind",
    "status",
    "attempt",
    "benched_until",
    "next_model",
    "latency_ms",
    "detail",
    "data",
)
_EVENT_SELECT = "SELECT " + ", ".join(_EVENT_COLUMNS) + " FROM events"

# Connections inherited from a parent process. They must never be closed (or
# garbage-collected, which closes them) in the child: closing could checkpoint
# or unlink the parent's WAL behind its back. Keeping a reference is the cure.
_ABANDONED: list[sqlite3.Connection] = []


def _migration_1(conn: sqlite3.Connection) -> None:
    """The initial schema: bench state, the event log and daily quota counters."""
    conn.execute(
        """
        CREATE TABLE models (
            model TEXT PRIMARY KEY,
            bench_until REAL,
            benched_at REAL,
            manual INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            kind TEXT,
            bench_count INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            last_error_kind TEXT,
            last_error_status INTEGER,
            last_error_at REAL,
            probe_holder TEXT,
            probe_until REAL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            request_id TEXT,
            chain TEXT,
            model TEXT,
            type TEXT NOT NULL,
            kind TEXT,
            status INTEGER,
            attempt INTEGER,
            benched_until REAL,
            next_model TEXT,
            latency_ms REAL,
            detail TEXT,
            data TEXT
        )
        """
    )
    conn.execute("CREATE INDEX events_ts ON events (ts)")
    conn.execute("CREATE INDEX events_model_ts ON events (model, ts)")
    conn.execute("CREATE INDEX events_type_ts ON events (type, ts)")
    conn.execute("CREATE INDEX events_chain_ts ON events (chain, ts)")
    conn.execute(
        """
        CREATE TABLE quotas (
            model TEXT NOT NULL,
            day TEXT NOT NULL,
            used INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (model, day)
        )
        """
    )


def _migration_2(conn: sqlite3.Connection) -> None:
    """A covering index for per-model figures (`llmfail stats`, the dashboard, slow demotion).

    Ordered model, type, kind, ts: every figure is then a range count of the
    window's rows under one (model, type, kind) prefix, with the chain filter
    read from the index too, so `stats` costs what the window holds, not the
    whole log. Kept apart from `events_model_ts`, which `events --model --since`
    needs in (model, ts) order.
    """
    conn.execute("CREATE INDEX events_model_type_kind_ts ON events (model, type, kind, ts, chain)")


def _migration_3(conn: sqlite3.Connection) -> None:
    """Slow demotion: a model's demotion lives beside its bench state, so the engine reads
    both with the one `states()` query it already makes per request."""
    for column in _SPEED_COLUMNS:
        conn.execute(f"ALTER TABLE models ADD COLUMN {column} REAL")


def _migration_4(conn: sqlite3.Connection) -> None:
    """Alert dedup: one row per (key, type) holding until when its alert is claimed, so
    several processes seeing the same failure send one alert, not one each."""
    conn.execute(
        """
        CREATE TABLE alert_claims (
            key TEXT NOT NULL,
            type TEXT NOT NULL,
            until REAL NOT NULL,
            PRIMARY KEY (key, type)
        )
        """
    )


#: Forward migrations, in order: entry N-1 takes the schema from version N-1 to
#: N. Append new ones; never edit or reorder a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1, _migration_2, _migration_3, _migration_4]
SCHEMA_VERSION = len(MIGRATIONS)


@functools.lru_cache(maxsize=64)
def _states_sql(count: int) -> str:
    """The SELECT of `count` keys (the engine asks for the same chain's keys every request)."""
    return _MODEL_SELECT + f" WHERE model IN ({', '.join('?' * count)})"


_INSERT_EVENT = (
    "INSERT INTO events (ts, request_id, chain, model, type, kind, status, attempt, "
    "benched_until, next_model, latency_ms, detail, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _row_id(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _state(row: Sequence[Any]) -> ModelState:
    return ModelState(
        model=row[0],
        bench_until=row[1],
        benched_at=row[2],
        manual=bool(row[3]),
        reason=row[4],
        kind=row[5],
        bench_count=row[6] or 0,
        failures=row[7] or 0,
        last_error_kind=row[8],
        last_error_status=row[9],
        last_error_at=row[10],
        probe_holder=row[11],
        probe_until=row[12],
        slow_since=row[13],
        slow_ms=row[14],
        speed_at=row[15],
        recheck_at=row[16],
    )


def _event(row: Sequence[Any]) -> Event:
    data: dict[str, Any] = {}
    if row[13]:
        try:
            loaded = json.loads(row[13])
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            data = loaded
    return Event(
        id=row[0],
        ts=row[1],
        request_id=row[2],
        chain=row[3],
        model=row[4],
        type=row[5],
        kind=row[6],
        status=row[7],
        attempt=row[8],
        benched_until=row[9],
        next_model=row[10],
        latency_ms=row[11],
        detail=row[12],
        data=data,
    )


def _distinct(conn: sqlite3.Connection, column: str, where: str, params: Sequence[Any]) -> list[str]:
    """The distinct non-null values of an indexed `column` under a fixed prefix, one index
    seek each (`min(column) > previous`), where `SELECT DISTINCT` would read every row."""
    extra = f" AND {where}" if where else ""
    rows = conn.execute(
        f"""
        WITH RECURSIVE found(value) AS (
            SELECT min({column}) FROM events WHERE {column} IS NOT NULL{extra}
            UNION ALL
            SELECT (SELECT min({column}) FROM events WHERE {column} > found.value{extra})
            FROM found WHERE found.value IS NOT NULL
        )
        SELECT value FROM found WHERE value IS NOT NULL
        """,
        (*params, *params),
    ).fetchall()
    return [row[0] for row in rows]


def _tally_model(
    conn: sqlite3.Connection, model: str, since: float, until: float, chain: str | None, sample: int
) -> EventTally | None:
    """One model's `EventTally`, or None when it has no event in the window."""

    def count(type_: str, kind: str | None, *, traffic: bool) -> int:
        sql = "SELECT count(*) FROM events WHERE model = ? AND type = ? AND kind IS ? AND ts >= ? AND ts <= ?"
        params: list[Any] = [model, type_, kind, since, until]
        if traffic and chain is not None:
            sql += " AND +chain = ?"  # `+`: filtered on the covering index, never a seek by chain
            params.append(chain)
        return int(conn.execute(sql, params).fetchone()[0])

    def by_kind(type_: str, *, traffic: bool) -> dict[str, int]:
        kinds = _distinct(conn, "kind", "model = ? AND type = ?", (model, type_))
        counts = {kind: count(type_, kind, traffic=traffic) for kind in kinds}
        return {kind: n for kind, n in counts.items() if n}

    newest = conn.execute(
        "SELECT ts FROM events WHERE model = ? AND ts >= ? AND ts <= ? ORDER BY ts DESC LIMIT 1", (model, since, until)
    ).fetchone()
    if newest is None:
        return None
    last_seen = newest[0]
    # A failover or bench without a cause kind is possible (a probe lost to another process).
    failovers = sum(by_kind(ev.FAILOVER, traffic=True).values()) + count(ev.FAILOVER, None, traffic=True)
    benched = sum(by_kind(ev.BENCHED, traffic=False).values()) + count(ev.BENCHED, None, traffic=False)
    recoveries = conn.execute(
        "SELECT count(*) FROM events WHERE model = ? AND type = ? AND kind IS NULL AND ts >= ? AND ts <= ? "
        "AND json_extract(data, '$.recovered') IS 1",
        (model, ev.PROBE, since, until),
    ).fetchone()[0]
    # Newest answers first; events written before `attempt_ms` existed fall back to
    # the request's own latency and time to first token.
    sql = (
        "SELECT coalesce(json_extract(data, '$.attempt_ms'), latency_ms), "
        "coalesce(json_extract(data, '$.attempt_ttft_ms'), json_extract(data, '$.ttft_ms')) "
        "FROM events WHERE model = ? AND type = ? AND kind IS NULL AND ts >= ? AND ts <= ?"
    )
    params: list[Any] = [model, ev.REQUEST, since, until]
    if chain is not None:
        sql += " AND +chain = ?"
        params.append(chain)
    rows = conn.execute(sql + " ORDER BY ts DESC LIMIT ?", (*params, max(0, sample))).fetchall()
    return EventTally(
        model=model,
        answered=count(ev.REQUEST, None, traffic=True),
        errors=by_kind(ev.ATTEMPT_FAILED, traffic=True),
        failovers=failovers,
        benched=benched,
        recoveries=int(recoveries),
        latencies_ms=tuple(float(r[0]) for r in rows if r[0] is not None),
        ttfts_ms=tuple(float(r[1]) for r in rows if r[1] is not None),
        last_seen=float(last_seen),
    )


class SqliteStore:
    """`Store` on one SQLite file, safe for threads, processes and `fork()`.

    One connection per store (per process), serialised by a lock: SQLite
    connections are not safe to use from two threads at once, and the work per
    call is tiny, so one guarded connection beats a pool.
    """

    def __init__(self, path: str, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._known: dict[str, ModelState | None] = {}
        self._known_version: int | None = None
        # Open (and create/migrate) now, so a bad file fails at startup with a
        # clear StateError rather than in the middle of a request.
        with self._lock:
            self._connection()

    # -- connection management ------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The live connection for this process; reconnects after a fork. Caller holds the lock."""
        if self._conn is None:
            self._conn = self._open()
            self._known, self._known_version = {}, None
        return self._conn

    def _known_states(self, conn: sqlite3.Connection) -> dict[str, ModelState | None]:
        """Bench keys as last read, valid while nobody has written the models since.

        Why: the engine reads its chain's states on every request, and that
        query was a tenth of a request's cost, for rows that change only on a
        failure, a bench or an operator's command. `PRAGMA data_version`
        (one cheap statement) changes whenever another connection, in this
        process or any other, has committed since it was last asked; this
        connection's own writes of states all go through `_write()`, which
        forgets the cache. Rows read after a check are therefore current until
        the next check says otherwise. None marks a key known to be absent.
        """
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._known_version or len(self._known) > _KNOWN_MAX:
            self._known, self._known_version = {}, version
        return self._known

    def _check_fork(self) -> None:
        """Forget the parent's connection (and possibly-held lock) in a forked child."""
        pid = os.getpid()
        if pid != self._pid:
            if self._conn is not None:
                _ABANDONED.append(self._conn)
            self._conn = None
            self._lock = threading.RLock()
            self._pid = pid

    def _open(self) -> sqlite3.Connection:
        memory = self.path == ":memory:" or self.path.startswith("file:")
        if not memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create the directory for the state DB {self.path}: {exc.strerror or exc}",
                    hint="pass --db PATH or set LLMFAIL_DB to a writable location",
                ) from None
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=self.path.startswith("file:"),
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._state_error(exc, opening=True) from None
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to SCHEMA_VERSION; a pure read when it already is."""
        version = self._schema_version(conn)
        if version == SCHEMA_VERSION:
            return
        self._refuse_newer(version)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = self._schema_version(conn)
            self._refuse_newer(version)
            for number in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[number - 1](conn)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not has_meta:
            return 0
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else 0
        except (TypeError, ValueError):
            raise sqlite3.DatabaseError(f"meta.schema_version is not a number: {row[0]!r}") from None

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StateError(
                f"the state DB {self.path} has schema version {version}, newer than this llmfail "
                f"understands ({SCHEMA_VERSION})",
                hint="upgrade llmfail (pip install -U llmfail), or point --db / LLMFAIL_DB at another file",
            )

    def _state_error(self, exc: sqlite3.Error, *, opening: bool = False) -> StateError:
        """One clear message naming the file instead of a raw sqlite3 traceback."""
        text = str(exc)
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name == "SQLITE_NOTADB" or "not a database" in text:
            return StateError(
                f"{self.path} is not an llmfail state database (not a SQLite file)",
                hint="move the file away, or point --db / LLMFAIL_DB at another path",
            )
        if name.startswith("SQLITE_BUSY") or "locked" in text:
            return StateError(
                f"the state DB {self.path} is locked by another process (waited up to {self.busy_timeout:g} s)",
                hint="retry, or look for a stuck process holding the file open",
            )
        verb = "open" if opening else "use"
        return StateError(
            f"cannot {verb} the state DB {self.path}: {text}",
            hint="check the file's permissions and free disk space, or pass --db PATH",
        )

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode, each statement its own transaction: for pure reads
        (each its own snapshot) and for a write that is a single statement."""
        self._check_fork()
        with self._lock:
            try:
                yield self._connection()
            except sqlite3.Error as exc:
                raise self._state_error(exc) from None

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads that must agree with each other: one deferred read transaction.

        In WAL mode it sees one committed state throughout and blocks no writer.
        """
        with self._read() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextmanager
    def _write(self, *, states: bool = True) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` … `COMMIT`: the write lock is taken before anything is read.

        `states=False` promises the transaction writes no model state (it only appends or
        prunes events), so the cached states (`_known_states`) stay valid."""
        self._check_fork()
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    if states:
                        self._known = {}  # see _known_states
            except sqlite3.Error as exc:
                raise self._state_error(exc) from None

    @staticmethod
    def _get(conn: sqlite3.Connection, model: str) -> ModelState | None:
        row = conn.execute(_MODEL_SELECT + " WHERE model = ?", (model,)).fetchone()
        return _state(row) if row else None

    @staticmethod
    def _put(conn: sqlite3.Connection, state: ModelState) -> None:
        values = (
            state.model,
            state.bench_until,
            state.benched_at,
            int(state.manual),
            state.reason,
            state.kind,
            state.bench_count,
            state.failures,
            state.last_error_kind,
            state.last_error_status,
            state.last_error_at,
            state.probe_holder,
            state.probe_until,
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in _MODEL_COLUMNS[1:])
        conn.execute(
            f"INSERT INTO models ({', '.join(_MODEL_COLUMNS)}) VALUES ({', '.join('?' * len(_MODEL_COLUMNS))}) "
            f"ON CONFLICT(model) DO UPDATE SET {updates}",
            values,
        )

    # -- bench state ------------------------------------------------------------

    def states(self, models: Iterable[str]) -> dict[str, ModelState]:
        """Pure read of the given keys, in the order given; keys never seen are absent from the result."""
        keys = list(dict.fromkeys(models))
        with self._read() as conn:
            known = self._known_states(conn)
            missing = [key for key in keys if key not in known]
            for start in range(0, len(missing), _IN_CHUNK):
                chunk = missing[start : start + _IN_CHUNK]
                found = {row[0]: _state(row) for row in conn.execute(_states_sql(len(chunk)), chunk)}
                for key in chunk:
                    known[key] = found.get(key)
            return {key: state for key in keys if (state := known[key]) is not None}

    def all_states(self) -> list[ModelState]:
        """Pure read of every key the store knows, by key name."""
        with self._read() as conn:
            return [_state(row) for row in conn.execute(_MODEL_SELECT + " ORDER BY model")]

    def benches(self, now: float) -> list[ModelState]:
        """Keys benched at `now` (`ModelState.is_benched`), soonest expiry first. Pure read:
        expired rows stay as they are (they are half-open, not healthy). SQL narrows to
        unexpired rows; `is_benched` (with the clock-step rule) decides, so the rule is
        written once, in Python."""
        with self._read() as conn:
            rows = conn.execute(_MODEL_SELECT + " WHERE bench_until > ? ORDER BY bench_until, model", (now,))
            return [state for state in map(_state, rows) if state.is_benched(now)]

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

        A running bench is never shortened unless `replace`; the state returned
        is the one stored, so the caller can tell what was kept.
        """
        with self._write() as conn:
            prev = self._get(conn, model) or ModelState(model=model)
            state = manual_bench(prev, now, until=until, manual=manual, reason=reason, kind=kind, replace=replace)
            if state != prev:
                self._put(conn, state)
        return state

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
        """One failed attempt (`transitions.after_failure`); True when it started or extended a bench."""
        with self._write() as conn:
            prev = self._get(conn, model) or ModelState(model=model)
            state, benched = after_failure(
                prev,
                now,
                kind=kind,
                status=status,
                bench_for=bench_for,
                factor=factor,
                min_until=min_until,
                reason=reason,
                began=began,
            )
            self._put(conn, state)
        return state, benched

    def record_success(self, model: str, *, now: float) -> ModelState | None:
        """Close the circuit (`transitions.after_success`); returns the state before the change
        (None if the key was unknown).

        A success on a key that is unknown or already clean writes nothing and
        takes no lock: it is decided on the cached read (`_known_states`), which
        is current as of this call. Only a key with something to reset is
        re-read and changed under the write lock.
        """
        prev = self.states([model]).get(model)
        if prev is None or after_success(prev, now) is None:
            return prev
        with self._write() as conn:
            prev = self._get(conn, model)
            if prev is None:
                return None
            state = after_success(prev, now)
            if state is not None:
                self._put(conn, state)
        return prev

    def unbench(self, models: Sequence[str] | None, *, now: float) -> list[str]:
        """Lift the benches of `models` (None: every bench), `transitions.lift`. Returns the keys
        benched at `now`, in the order given (None: by expiry, like `benches`).

        Every key named (or, for None, every key with a bench row, running or
        half-open) is lifted, even one not benched at `now`: its counters and
        any half-open state are cleared, so it starts fresh.
        """
        with self._write() as conn:
            if models is None:
                rows = conn.execute(
                    _MODEL_SELECT + " WHERE bench_until IS NOT NULL ORDER BY bench_until, model"
                ).fetchall()
                targets = [_state(row) for row in rows]
            else:
                targets = [s for s in (self._get(conn, m) for m in dict.fromkeys(models)) if s is not None]
            lifted: list[str] = []
            for prev in targets:
                if prev.is_benched(now):
                    lifted.append(prev.model)
                state = lift(prev)
                if state != prev:
                    self._put(conn, state)
        return lifted

    # -- slow demotion ------------------------------------------------------------

    def recent_ttfts(self, model: str, *, after: float | None, limit: int) -> list[float]:
        """First-token times (ms) of the model's newest `limit` answers written after `after`,
        newest first. A seek on the (model, type, kind, ts) index reading `limit` rows, so
        it is cheap enough to run after an answer."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT coalesce(json_extract(data, '$.attempt_ttft_ms'), json_extract(data, '$.ttft_ms')) "
                "FROM events WHERE model = ? AND type = ? AND kind IS NULL AND ts > ? ORDER BY ts DESC LIMIT ?",
                (model, ev.REQUEST, after if after is not None else float("-inf"), max(0, limit)),
            ).fetchall()
        return [float(row[0]) for row in rows if row[0] is not None]

    def demote(self, model: str, *, now: float, slow_ms: float, recheck_at: float) -> bool:
        """Mark `model` slow unless it already is; True when this call did."""
        with self._write() as conn:
            conn.execute("INSERT INTO models (model) VALUES (?) ON CONFLICT(model) DO NOTHING", (model,))
            cursor = conn.execute(
                "UPDATE models SET slow_since = ?, slow_ms = ?, speed_at = ?, recheck_at = ? "
                "WHERE model = ? AND slow_since IS NULL",
                (now, slow_ms, now, recheck_at, model),
            )
            return cursor.rowcount == 1

    def restore(self, model: str, *, now: float, fast_ms: float) -> bool:
        """Clear a demotion; True when this call did."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE models SET slow_since = NULL, slow_ms = ?, speed_at = ?, recheck_at = NULL "
                "WHERE model = ? AND slow_since IS NOT NULL",
                (fast_ms, now, model),
            )
            return cursor.rowcount == 1

    def claim_recheck(self, model: str, *, now: float, next_at: float) -> bool:
        """A demoted model's due recheck turn, taken by exactly one request (one conditional UPDATE)."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE models SET recheck_at = ? WHERE model = ? AND slow_since IS NOT NULL "
                "AND (recheck_at IS NULL OR recheck_at <= ?)",
                (next_at, model, now),
            )
            return cursor.rowcount == 1

    def swap_meta(self, key: str, value: str) -> str | None:
        """Set `meta[key]` and return the previous value (None when unset).

        The common case, nothing changed, is a pure read; a change is re-read
        under the write lock, so when two processes race exactly one of them
        sees the old value (and writes the one audit event).
        """
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None and row[0] == value:
            return value
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != value:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
            return row[0] if row is not None else None

    def claim_alert(self, key: str, type_: str, *, now: float, window: float) -> bool:
        """The right to send the (key, type) alert now; True for exactly one caller per window.

        One upsert under the write lock: a new row, or an expired claim renewed,
        changes one row; a claim still running changes none.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO alert_claims (key, type, until) VALUES (?, ?, ?) "
                "ON CONFLICT(key, type) DO UPDATE SET until = excluded.until WHERE alert_claims.until <= ?",
                (key, type_, now + window, now),
            )
            return cursor.rowcount == 1

    def claim_probe(self, model: str, *, now: float, lease: float, holder: str) -> bool:
        """Take the half-open probe lease if nobody holds it (`transitions.can_claim_probe`);
        True when this caller got it. Decided under the write lock, so exactly one process wins."""
        with self._write() as conn:
            prev = self._get(conn, model)
            if prev is None or not can_claim_probe(prev, now, holder):
                return False
            self._put(conn, probe_claimed(prev, now, lease=lease, holder=holder))
            return True

    def release_probe(self, model: str, *, holder: str) -> None:
        """Give the lease back early; only its holder can (a stale holder's release is a no-op)."""
        with self._write() as conn:
            prev = self._get(conn, model)
            state = probe_released(prev, holder) if prev is not None else None
            if state is not None:
                self._put(conn, state)

    # -- quotas -----------------------------------------------------------------

    def take_quota(self, model: str, *, day: str, limit: int) -> bool:
        """Count one request against `model`'s daily quota; False (and no count) when full."""
        if limit <= 0:
            return False
        with self._write() as conn:
            row = conn.execute("SELECT used FROM quotas WHERE model = ? AND day = ?", (model, day)).fetchone()
            used = row[0] if row else 0
            if used >= limit:
                return False
            conn.execute(
                "INSERT INTO quotas (model, day, used) VALUES (?, ?, 1) "
                "ON CONFLICT(model, day) DO UPDATE SET used = used + 1",
                (model, day),
            )
            return True

    def quota_used(self, model: str, *, day: str) -> int:
        """Requests counted against `model` on `day` (0 when none). Pure read."""
        with self._read() as conn:
            row = conn.execute("SELECT used FROM quotas WHERE model = ? AND day = ?", (model, day)).fetchone()
            return int(row[0]) if row else 0

    # -- events -----------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> list[int]:
        """Write events in one transaction (details redacted and truncated); returns their ids.

        `detail` is redacted then cut to DETAIL_MAX; every string in `data` is
        redacted. The ids are the store's (any `id` on the input is ignored);
        `Event` is frozen, so callers wanting the stored shape use `with_id`.
        """
        rows = [
            (
                event.ts,
                event.request_id,
                event.chain,
                event.model,
                event.type,
                event.kind,
                event.status,
                event.attempt,
                event.benched_until,
                event.next_model,
                event.latency_ms,
                clean_detail(event.detail),
                redacted_json(event.data) if event.data else None,
            )
            for event in events
        ]
        if not rows:
            return []
        if len(rows) == 1:  # one INSERT is a transaction of its own: no BEGIN/COMMIT round trips
            with self._read() as conn:
                return [_row_id(conn.execute(_INSERT_EVENT, rows[0]))]
        with self._write(states=False) as conn:
            return [_row_id(conn.execute(_INSERT_EVENT, row)) for row in rows]

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

        `after_id` is for tailing (id > after_id), `since` is ts >= since.
        `types` None or empty means every type (so an unset repeatable CLI
        option, which arrives as an empty tuple, filters nothing). The result is
        always in ascending id order, also with `newest`.
        """
        where: list[str] = []
        params: list[Any] = []
        if after_id is not None:
            where.append("id > ?")
            params.append(after_id)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if chain is not None:
            where.append("chain = ?")
            params.append(chain)
        if types:
            kinds = list(dict.fromkeys(types))
            where.append(f"type IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        sql = _EVENT_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC" if newest else " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, limit))
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        if newest:
            rows.reverse()
        return [_event(row) for row in rows]

    def tally(
        self, *, since: float, until: float, chain: str | None = None, sample: int = 2000
    ) -> dict[str, EventTally]:
        """Per-model figures of the events with since <= ts <= until (see `Store.tally`).

        Every figure is a count over one (model, type, kind) prefix of
        `events_model_type_kind_ts` restricted to the window, so the work is
        proportional to the rows in the window plus a few index seeks; the
        models and kinds themselves are found by skipping through the index
        (a loose index scan), never by reading the whole log.
        """
        tallies: dict[str, EventTally] = {}
        with self._snapshot() as conn:
            for model in _distinct(conn, "model", "", ()):
                tally = _tally_model(conn, model, since, until, chain, sample)
                if tally is not None:
                    tallies[model] = tally
        return tallies

    def max_event_id(self) -> int:
        """The highest id ever assigned (0 when none), even if pruning deleted that row,
        so a follower starting here sees only events written after it started."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT max(coalesce((SELECT max(id) FROM events), 0), "
                "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))"
            ).fetchone()
            return int(row[0])

    def change_token(self) -> int:
        """`PRAGMA data_version`: changes whenever another connection (in this process or any
        other) commits; this connection's own commits do not move it."""
        with self._read() as conn:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def prune(self, *, now: float, retention: float, force: bool = False) -> int:
        """Delete events older than `retention`, at most once an hour unless `force`.

        The last prune time lives in `meta`, so the hourly limit holds across
        processes. The check is first made with a pure read, so the common "not
        yet" case takes no write lock. Returns the number of events deleted.
        A last-prune time in the future (clock moved back) does not block pruning.
        """
        if not force:
            with self._read() as conn:
                if not self._prune_due(conn, now):
                    return 0
        with self._write() as conn:
            if not force and not self._prune_due(conn, now):
                return 0
            deleted = conn.execute("DELETE FROM events WHERE ts < ?", (now - retention,)).rowcount
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('last_prune', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (repr(float(now)),),
            )
            return deleted

    @staticmethod
    def _prune_due(conn: sqlite3.Connection, now: float) -> bool:
        row = conn.execute("SELECT value FROM meta WHERE key = 'last_prune'").fetchone()
        if row is None:
            return True
        try:
            last = float(row[0])
        except (TypeError, ValueError):
            return True
        return not 0 <= now - last < PRUNE_INTERVAL_S

    # -- lifecycle --------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version recorded in the file (for diagnostics and tests)."""
        with self._read() as conn:
            return self._schema_version(conn)

    def close(self) -> None:
        """Close this process's connection; a later call reconnects. Idempotent."""
        self._check_fork()
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"
