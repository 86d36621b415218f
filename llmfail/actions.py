"""Operator actions: bench, unbench, list benches, view chains, check a config.

The CLI commands and the dashboard's keys must do exactly the same thing (the
same default length, the same event with the same user, the same rows), so
neither owns the logic: both call these functions with a store, a config and
an injected `now`. Nothing here imports Typer, Rich, Textual or httpx, so the
commands that use it start fast.

Reading is pure: `list_benches` and `chains_view` never write,
not even to tidy an expired bench.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import events as ev
from .audit import operator
from .durations import format_duration
from .errors import UsageError
from .events import Event, iso
from .health import EntryStatus, entry_status

if TYPE_CHECKING:
    from .config import Chain, Config, Entry, Location, Policy
    from .journal import Journal
    from .store import ModelState, Store


# --------------------------------------------------------------------------- benches


@dataclass(frozen=True)
class BenchRow:
    """One running bench as `ls-benched` shows it (and `bench --json` prints it)."""

    model: str
    until: float  # epoch seconds
    remaining_s: float
    manual: bool
    reason: str | None  # the operator's reason, or the error that benched it
    kind: str | None  # "manual", or the kind of the failure that benched it
    bench_count: int

    @classmethod
    def of(cls, state: ModelState, now: float) -> BenchRow:
        until = state.bench_until if state.bench_until is not None else now
        return cls(
            model=state.model,
            until=until,
            remaining_s=max(0.0, until - now),
            manual=state.manual,
            reason=state.reason,
            kind=state.kind,
            bench_count=state.bench_count,
        )

    @property
    def remaining(self) -> str:
        """For people: `4m12s`."""
        return format_duration(self.remaining_s)

    def to_json(self) -> dict[str, Any]:
        """The `ls-benched --json` row (docs/events.md)."""
        return {
            "model": self.model,
            "until": iso(self.until),
            "remaining_s": round(self.remaining_s, 1),
            "manual": self.manual,
            "reason": self.reason,
            "kind": self.kind,
            "bench_count": self.bench_count,
        }


def _bare_journal(store: Store) -> Journal:
    """The journal of a caller without an engine (the CLI, the dashboard): imported on use, so
    read-only commands such as `ls-benched --json` never load it (`tests/test_imports.py`)."""
    from .journal import Journal

    return Journal(store)


def check_model_name(model: str) -> None:
    """A bench key is `provider/model` (or `provider/model#N`, N = 0, 1, … the credential's place
    in its entry's list); anything else can never match."""
    provider, _, name = model.partition("/")
    if not provider or not name or model != model.strip():
        raise UsageError(
            f"{model!r} is not a model name: expected provider/model (e.g. openai/gpt-4o)",
            hint="`llmfail chains` lists the models of every chain",
        )
    base, hash_, index = model.partition("#")
    if hash_ and not (index.isascii() and index.isdigit() and str(int(index)) == index):
        raise UsageError(
            f"{model!r} is not a credential key: after '#' comes the credential's number (0, 1, ...)",
            hint=f"bench the whole entry with `{base}`, or one credential with `{base}#0`",
        )


def unknown_model(model: str, config: Config) -> str | None:
    """Why `model` is no bench key of `config` (with the nearest ones), or None when it is one.

    A credential key (`#N`) that the config does not have is refused outright: it can only
    be a typo (an entry with one credential has no `#N` keys; its own key covers it).
    """
    import difflib

    keys = config_keys(config)
    if model in keys:
        return None
    base = model.partition("#")[0]
    if "#" in model:
        creds = sorted(k for k in keys if k.startswith(base + "#"))
        raise UsageError(
            f"{base} has no credential {model[len(base) :]} in {config.path}",
            hint=f"its credential keys: {', '.join(creds)}"
            if creds
            else (
                f"{base} has a single credential: bench {base} itself"
                if base in keys
                else "`llmfail chains` lists the models of every chain"
            ),
        )
    close = difflib.get_close_matches(model, sorted(k for k in keys if "#" not in k), n=1, cutoff=0.6)
    return f"no chain in {config.path} contains {model}" + (f" (did you mean {close[0]}?)" if close else "")


def config_keys(config: Config) -> set[str]:
    """Every bench key the config's chains use: each entry and each of its credentials."""
    return config.bench_keys()


def default_bench_length(config: Config, model: str) -> float:
    """How long a manual bench of `model` lasts when the operator gives no length: the cooldown
    of the entry it is (or whose credential it is); the longest one when chains set different
    cooldowns for it (the bench is shared by every chain); the defaults' for a model no chain has."""
    cooldowns = [
        entry.policy.cooldown
        for chain in config.chains.values()
        for entry in chain.entries
        if model in entry.bench_keys()
    ]
    return max(cooldowns, default=config.policy.cooldown)


def bench_model(
    store: Store,
    config: Config | None,
    model: str,
    duration: float | None,
    reason: str | None,
    now: float,
    *,
    replace: bool = False,
    journal: Journal | None = None,
    who: Mapping[str, str] | None = None,
) -> BenchRow:
    """Bench `model` by hand until `now + duration` (default: its cooldown, `default_bench_length`).

    No automatic path clears a manual bench (only `unbench` or its end does), and a running bench is never
    shortened unless `replace`: the row returned is the bench now running, whose `until` is
    later than asked when a longer bench was kept. The `benched` event carries the reason and
    who did it; none is written when the running bench was kept unchanged.
    `config` may be None when the caller could not load one; then `duration`
    is required. A model that no chain contains is accepted (operators bench
    ahead of deploys): the caller decides whether to warn (`config_keys`).

    The event is written through `journal` (an engine's, so its observers see it), or a bare
    `Journal(store)` for callers without an engine (the CLI, the dashboard). `who` names the
    caller in the event (default: this process's OS user and host, `audit.operator`).
    """
    check_model_name(model)
    if duration is None:
        if config is None:
            raise UsageError("no usable config to take the default bench length from", hint="pass --for DURATION")
        duration = default_bench_length(config, model)
    if duration <= 0:
        raise UsageError(
            f"a bench must last longer than 0s, got {format_duration(duration)}",
            hint="pass --for with a positive duration, e.g. --for 10m",
        )
    reason = reason.strip() if reason and reason.strip() else None
    until = now + duration
    state = store.bench(model, now=now, until=until, manual=True, reason=reason, kind="manual", replace=replace)
    if state.bench_until is not None and state.bench_until > until:
        return BenchRow.of(state, now)  # a longer bench was running and is kept: nothing happened
    (journal or _bare_journal(store)).write(
        Event(
            type=ev.BENCHED,
            ts=now,
            model=model,
            kind=state.kind,
            benched_until=state.bench_until,
            detail=reason,
            data={**(who or operator()), "reason": reason, "manual": True},
        )
    )
    return BenchRow.of(state, now)


@dataclass(frozen=True)
class Unbenched:
    """What `unbench_models` did: the keys lifted, and the names asked for that had no bench."""

    lifted: list[str]
    not_benched: list[str]


def unbench_models(
    store: Store,
    models: Sequence[str] | None,
    now: float,
    reason: str | None = None,
    *,
    journal: Journal | None = None,
    who: Mapping[str, str] | None = None,
) -> Unbenched:
    """Lift the benches of `models` (None: every bench) and log who did it, and why.

    Lifting `provider/model` also lifts its credential benches
    (`provider/model#N`): the operator is saying the model works again. One
    `unbenched` event is written per key that was benched, through `journal` (or a bare
    `Journal(store)`), as `bench_model` does.
    """
    if models is None:
        targets: list[str] | None = None
    else:
        for model in models:
            check_model_name(model)
        running = [s.model for s in store.benches(now)]
        targets = list(
            dict.fromkeys(
                key for model in models for key in (model, *(k for k in running if k.startswith(model + "#")))
            )
        )
    lifted = store.unbench(targets, now=now)
    if lifted:
        who = who or operator()
        reason = reason.strip() if reason and reason.strip() else None
        (journal or _bare_journal(store)).write_many(
            [
                Event(
                    type=ev.UNBENCHED, ts=now, model=key, detail=reason, data={**who, "reason": reason, "manual": True}
                )
                for key in lifted
            ]
        )
    missing = [m for m in (models or []) if not any(k == m or k.startswith(m + "#") for k in lifted)]
    return Unbenched(lifted, missing)


def list_benches(store: Store, now: float) -> list[BenchRow]:
    """Running benches, soonest expiry first; expired ones are never listed. Pure read."""
    return [BenchRow.of(state, now) for state in store.benches(now)]


# --------------------------------------------------------------------------- chains


@dataclass(frozen=True)
class EntryView:
    """One entry of a flattened chain and its health right now."""

    model: str
    provider: str
    status: EntryStatus
    bench: BenchRow | None  # the entry's own bench, or its soonest-ending credential bench
    benched_credentials: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """`chains --json`'s entry: what the table shows. Until 0.1 an entry was just its model
        name; `jq 'map_values(map(.model))'` gives that shape back."""
        bench = self.bench
        return {
            "model": self.model,
            "state": str(self.status),
            "until": iso(bench.until) if bench is not None else None,
            "remaining_s": round(bench.remaining_s, 1) if bench is not None else None,
            "reason": (bench.reason if bench.manual else bench.kind) if bench is not None else None,
            "credentials_benched": list(self.benched_credentials),
        }


@dataclass(frozen=True)
class ChainView:
    name: str
    entries: tuple[EntryView, ...]

    @property
    def models(self) -> list[str]:
        return [e.model for e in self.entries]


def _entry_view(entry: Entry, states: dict[str, ModelState], now: float) -> EntryView:
    creds = [s for k in entry.credential_keys() if (s := states.get(k)) is not None and s.is_benched(now)]
    own = states.get(entry.model)
    status = entry_status(entry, states, now)
    bench: BenchRow | None = None
    if own is not None and own.is_benched(now):
        bench = BenchRow.of(own, now)
    elif status.is_benched and creds:
        bench = BenchRow.of(min(creds, key=lambda s: s.bench_until or now), now)
    return EntryView(entry.model, entry.provider.name, status, bench, tuple(s.model for s in creds))


def chains_view(config: Config, store: Store | None, now: float) -> list[ChainView]:
    """Every chain with its flattened entries and which are benched now. Pure read;
    `store` None (no state DB yet) shows every entry live."""
    states = store.states(config_keys(config)) if store is not None else {}
    return [
        ChainView(name, tuple(_entry_view(entry, states, now) for entry in chain.entries))
        for name, chain in config.chains.items()
    ]


# --------------------------------------------------------------------------- events

#: How often a follower checks for new rows: well inside the 0.5 s a follower
#: promises, and each check is one `PRAGMA data_version` (no query, no write).
FOLLOW_POLL_S = 0.2

#: Rows read per query while catching up, so a burst never loads the whole log at once.
FOLLOW_BATCH = 1000

#: How long one blocking wait lasts on a store that can block until an event arrives (Redis:
#: `XREAD BLOCK`). Between two waits nothing is read; the bound only decides how soon a server
#: that stopped answering is noticed (this plus the client's timeout).
FOLLOW_WAIT_S = 2.0


@dataclass(frozen=True)
class EventFilter:
    """Which events to show; every field None/empty means "all"."""

    since: float | None = None  # epoch seconds
    model: str | None = None
    chain: str | None = None
    types: tuple[str, ...] = ()

    def query(self) -> dict[str, Any]:
        return {"since": self.since, "model": self.model, "chain": self.chain, "types": self.types or None}

    def matches(self, event: Event) -> bool:
        """The test `Store.events(**query())` applies, for events read without a query."""
        return (
            (self.since is None or event.ts >= self.since)
            and (self.model is None or event.model == self.model)
            and (self.chain is None or event.chain == self.chain)
            and (not self.types or event.type in self.types)
        )


def parse_types(values: Iterable[str]) -> tuple[str, ...]:
    """Event types from repeated and/or comma-separated options, checked against the stable list."""
    import difflib

    types = tuple(dict.fromkeys(t.strip() for v in values for t in v.split(",") if t.strip()))
    for name in types:
        if name not in ev.EVENT_TYPES:
            close = difflib.get_close_matches(name, ev.EVENT_TYPES, n=1)
            raise UsageError(
                f"unknown event type {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                hint="event types: " + ", ".join(ev.EVENT_TYPES),
            )
    return types


def recent_events(store: Store, where: EventFilter, limit: int | None) -> tuple[list[Event], int]:
    """The newest `limit` matching events (oldest first), and the id to follow on from.

    The mark is read before the rows, and rows past it are left to the
    follower, so an event committed in between is shown exactly once.
    """
    mark = store.max_event_id()
    rows = store.events(**where.query(), limit=limit, newest=limit is not None)
    return [e for e in rows if e.id is not None and e.id <= mark], mark


def follow_events(
    store: Store,
    where: EventFilter,
    after_id: int,
    *,
    poll_s: float = FOLLOW_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    wait_s: float = FOLLOW_WAIT_S,
) -> Iterator[list[Event]]:
    """Batches of matching events written after `after_id`, by any process (any host), forever.

    A store that can wait for new events (`wait_for_events(after_id, timeout)`: Redis's
    `XREAD BLOCK`) is asked to, `wait_s` at a time: an idle follower sends one blocking
    read per `wait_s` and a new row arrives as soon as it is written. Rows are filtered
    here, and the follower moves past the ones that do not match.

    Otherwise (SQLite) waiting costs one `change_token()` (`PRAGMA data_version`) per
    poll, which only changes when another connection commits: the log is queried
    only when something was written. Either way ids never repeat and never go back
    (the store contract), so pruning never makes `id > last` skip or repeat a row.
    """
    wait: Callable[[int, float], list[Event]] | None = getattr(store, "wait_for_events", None)
    if wait is not None:
        while True:
            batch = wait(after_id, wait_s)
            if batch:
                after_id = max(after_id, *(e.id or 0 for e in batch))
                shown = [e for e in batch if where.matches(e)]
                if shown:
                    yield shown
    seen_version: object = None  # the last `change_token()`
    while True:
        version = store.change_token()
        if version != seen_version:
            seen_version = version
            while True:
                mark = store.max_event_id()
                batch = store.events(after_id=after_id, **where.query(), limit=FOLLOW_BATCH)
                if batch:
                    after_id = batch[-1].id or after_id
                    yield batch
                if len(batch) < FOLLOW_BATCH:
                    # Rows up to `mark` were committed before the query read them, so
                    # skipping past the non-matching ones keeps the next query short.
                    after_id = max(after_id, mark)
                    break
        sleep(poll_s)


# --------------------------------------------------------------------------- check


@dataclass(frozen=True)
class CheckWarning:
    """A setup that loads but will probably hurt in production; `where` is file:line:col when known."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def _where(entry: Entry) -> str:
    loc = entry.location
    return f"{loc.file}:{loc.line}:{loc.column}" if loc and loc.line else ""


def suspicious(config: Config, environ: dict[str, str] | None = None) -> list[CheckWarning]:
    """What `llmfail check` warns about in a valid config (a short list, nothing clever):

    - a chain whose entries all sit on one endpoint: that provider's outage takes
      the whole chain down, failover included;
    - an entry whose `attempts × timeout` exceeds the request `deadline`: its
      last attempts, and every entry after it, may never run;
    - a key variable that is not set in this environment.
    """
    env = os.environ if environ is None else environ
    found: list[CheckWarning] = []
    for name, chain in config.chains.items():
        endpoints = {e.provider.base_url or e.provider.name for e in chain.entries}
        if chain.entries and len(endpoints) == 1:
            providers = sorted({e.provider.name for e in chain.entries})
            found.append(
                CheckWarning(
                    _where(chain.entries[0]),
                    (
                        f"chain {name!r}: every entry is on provider {', '.join(providers)}; "
                        "an outage of that provider takes the whole chain down (add an entry on another provider)"
                    ),
                )
            )
    defaults, inherited = config.policy, []
    for entry in _entries(config.chains.values()):
        policy = entry.policy
        if policy.attempts * policy.timeout <= defaults.deadline:
            continue
        if (policy.attempts, policy.timeout) == (defaults.attempts, defaults.timeout):
            inherited.append(entry.model)  # one warning for the defaults, not one per entry
        else:
            found.append(CheckWarning(_where(entry), f"{entry.model}: " + _too_long(policy, defaults.deadline)))
    if inherited:
        found.append(
            CheckWarning("", f"defaults (used by {', '.join(inherited)}): " + _too_long(defaults, defaults.deadline))
        )
    users: dict[str, list[str]] = {}
    for entry in _entries(config.chains.values()):
        for credential in entry.credentials:
            if credential.api_key_env and not env.get(credential.api_key_env):
                users.setdefault(credential.api_key_env, [])
                if entry.model not in users[credential.api_key_env]:
                    users[credential.api_key_env].append(entry.model)
    for var, models in users.items():
        found.append(CheckWarning("", f"${var} is not set (the key of {', '.join(models)})"))
    return found


def _too_long(policy: Policy, deadline: float) -> str:
    worst = policy.attempts * policy.timeout
    return (
        f"attempts × timeout = {policy.attempts} × {format_duration(policy.timeout)} = {format_duration(worst)}, "
        f"longer than the deadline of {format_duration(deadline)}; later attempts and the entries after "
        "may never run"
    )


def _entries(chains: Iterable[Chain]) -> Iterable[Entry]:
    """Each distinct entry once, in config order: a nested chain repeats its entries in every
    chain that includes it, and one warning per written entry is enough."""
    seen: set[tuple[str, Location | None]] = set()
    for chain in chains:
        for entry in chain.entries:
            if (entry.model, entry.location) not in seen:
                seen.add((entry.model, entry.location))
                yield entry
