"""The config's frozen data types: what the engine, the store and the commands read.

Nothing here reads YAML. A Policy setting is declared once, here: its type, its
default and (in the field's metadata) the kind of value the file may give for it;
`fields.py` derives the parsers from these declarations, so adding a setting is
one line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args, get_origin, get_type_hints

# ------------------------------------------------------------------ how a setting is written


@dataclass(frozen=True)
class WholeNumber:
    """A setting written as a whole number, at least `minimum`."""

    minimum: int


@dataclass(frozen=True)
class Number:
    """A setting written as a number from `minimum` to `maximum`."""

    minimum: float
    maximum: float = math.inf


@dataclass(frozen=True)
class Duration:
    """A setting written as a duration (`250ms`, `30s`, `10m` or seconds); `positive` rules out zero."""

    positive: bool = False


@dataclass(frozen=True)
class Settings:
    """A setting that is itself a group of settings (like `backoff`): any subset of its keys may be given,
    the others keep the value they inherit. `what` shows the expected shape in an error."""

    what: str


#: How a setting's value is written. A `Literal[...]` field needs none: its choices are its type.
ValueKind = WholeNumber | Number | Duration | Settings

SETTING = "llmfail.setting"  # the metadata key a setting's ValueKind is stored under
MEANING = "llmfail.meaning"  # the metadata key of what a setting does (for the schema and the reference)


def setting(default: Any, kind: ValueKind | None, meaning: str) -> Any:
    """A dataclass field that the config file can set, written as `kind` (None for a `Literal` field,
    whose choices are its type). `meaning` is what the schema and docs/configuration.md say it does."""
    metadata = {MEANING: meaning} if kind is None else {SETTING: kind, MEANING: meaning}
    return field(default=default, metadata=metadata)


def setting_names(cls: type) -> tuple[str, ...]:
    """The fields of `cls` the config file may set: those with a ValueKind and the Literal-typed ones."""
    hints = get_type_hints(cls)
    return tuple(f.name for f in fields(cls) if SETTING in f.metadata or get_origin(hints[f.name]) is Literal)


# ------------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Backoff:
    base: float = setting(0.2, Duration(), "the wait before the second try; it doubles with each try after that")
    max: float = setting(10.0, Duration(), "the longest wait between two tries")


@dataclass(frozen=True)
class Policy:
    """Every knob of the walk (the `defaults:` section), durations in seconds.

    The config's `defaults:` fill one Policy; an entry mapping may override any
    of these keys for itself.

    `explicit` names the keys the config file set for this policy (in `defaults:`
    or on the entry): a caller that wants another default for its own situation
    (`Config.defaulted`) changes only the others. It is provenance, not
    behaviour, so it takes no part in equality.
    """

    attempts: int = setting(3, WholeNumber(1), "tries per entry on retryable errors (the first one included)")
    backoff: Backoff = field(
        default_factory=Backoff,
        metadata={
            SETTING: Settings("a mapping like {base: 200ms, max: 10s}"),
            MEANING: "the wait between two tries of one entry: exponential from `base` up to `max`, with full "
            "jitter; an entry may override one of the two keys and keep the other",
        },
    )
    cooldown: float = setting(30.0, Duration(), "how long an entry is benched after it fails")
    max_cooldown_factor: float = setting(
        1.0,
        Number(1),
        "above 1, repeated benches of one entry grow: cooldown × min(factor, benches since its last success)",
    )
    auth_cooldown: float = setting(
        600.0, Duration(), "the bench length for a dead key or model (401, 403, 404, out of credit)"
    )
    max_retry_wait: float = setting(
        5.0, Duration(), "the longest Retry-After honoured by waiting; a longer one benches the entry and moves on"
    )
    timeout: float = setting(
        30.0, Duration(positive=True), "per attempt: connecting plus waiting for the response headers"
    )
    first_token_timeout: float = setting(
        10.0,
        Duration(positive=True),
        "streaming: the longest wait for the first piece of content once headers arrived "
        "(raise it for reasoning models)",
    )
    idle_timeout: float = setting(15.0, Duration(positive=True), "streaming: the longest silence between two chunks")
    deadline: float = setting(120.0, Duration(positive=True), "the whole request: every entry and every wait together")
    on_all_benched: Literal["try_all", "fail"] = setting(
        "try_all",
        None,
        "when every entry is benched: `try_all` walks them all anyway, once each in chain order (panic mode); "
        "`fail` fails at once and says when the first bench ends",
    )
    on_invalid_request: Literal["next", "fail"] = setting(
        "next", None, "after a 400 or 422 that is not a context-length error: try the `next` entry or `fail`"
    )
    on_content_filter: Literal["fail", "next"] = setting(
        "fail", None, "when a provider refuses the content: `fail` the request or try the `next` entry"
    )
    mid_stream: Literal["error", "restart"] = setting(
        "error",
        None,
        "when a stream breaks after content was sent: report an `error`, or `restart` with the next entry's "
        "answer from the start",
    )
    slow_threshold: float = setting(
        10.0, Duration(), "the first-token latency above which a healthy entry counts as slow"
    )
    on_slow: Literal["demote", "ignore"] = setting(
        "demote", None, "`demote` tries slow entries after the fast ones; `ignore` keeps the written order"
    )
    retention: float = setting(30 * 86400.0, Duration(), "events older than this are pruned from the log")
    max_tokens: int = setting(
        1024, WholeNumber(1), "the max_tokens sent when the caller gives none (Anthropic requires one)"
    )
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def defaulted(self, changes: Mapping[str, Any]) -> Policy:
        """This policy with `changes` applied to every key the config did not set explicitly."""
        kept = {key: value for key, value in changes.items() if key not in self.explicit}
        return replace(self, **kept) if kept else self


def check_policy_changes(changes: Mapping[str, Any]) -> None:
    """TypeError for a key that is no Policy setting, ValueError for a choice that is not offered."""
    names = setting_names(Policy)
    hints = get_type_hints(Policy)
    for key, value in changes.items():
        if key not in names:
            raise TypeError(f"{key!r} is not a policy setting; expected one of: {', '.join(names)}")
        if get_origin(hints[key]) is Literal and value not in get_args(hints[key]):
            choices = ", ".join(map(str, get_args(hints[key])))
            raise ValueError(f"{key} must be one of {choices}, not {value!r}")


# ---------------------------------------------------------------------------- providers


@dataclass(frozen=True)
class MockBehaviour:
    """What a `mock` provider does (the same vocabulary as `simulate --fail-rate`).

    fail: an HTTP status as a string ("503", "429"), or "timeout", "reset",
    "malformed", "stream-cut", "content-filter", "context-length", "slow:2s";
    None for a healthy echo.
    """

    fail: str | None = None
    fail_rate: float = 1.0
    latency: float = 0.0
    reply: str | None = None  # fixed answer; None echoes the last user message


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    type: str  # one of PROVIDER_TYPES
    base_url: str | None  # None only for mock
    api_key_env: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    mock: MockBehaviour | None = None  # set only when type == "mock"


@dataclass(frozen=True)
class Credential:
    api_key_env: str | None


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    column: int


# ------------------------------------------------------------------------------- chains


@dataclass(frozen=True)
class Entry:
    """One step of a flattened chain."""

    model: str  # "provider/model" as written: the bench key and the name in events
    provider: ProviderConfig
    wire_model: str  # the part after the first "/": sent on the wire
    policy: Policy  # defaults merged with this entry's overrides
    credentials: tuple[Credential, ...]  # at least one; from `credentials:` or the provider's key
    daily_quota: int | None = None
    location: Location | None = None

    def bench_key(self, credential_index: int) -> str:
        """`provider/model#N` for one of several credentials, else the entry's own key."""
        return f"{self.model}#{credential_index}" if len(self.credentials) > 1 else self.model

    def credential_keys(self) -> tuple[str, ...]:
        """The credential-level bench keys (`provider/model#N`); empty with a single credential,
        whose failures are the entry's own."""
        if len(self.credentials) < 2:
            return ()
        return tuple(f"{self.model}#{i}" for i in range(len(self.credentials)))

    def bench_keys(self) -> tuple[str, ...]:
        """Every key the shared state holds for this entry: its own, then its credentials'."""
        return (self.model, *self.credential_keys())


@dataclass(frozen=True)
class Chain:
    name: str
    entries: tuple[Entry, ...]  # nested chains already flattened, in order

    @property
    def models(self) -> list[str]:
        return [e.model for e in self.entries]


def unique_entries(chains: Iterable[Chain]) -> list[Entry]:
    """Each model once, first occurrence wins: a model shared by chains is one row in
    `stats`, one probe, one set of bench keys."""
    found: dict[str, Entry] = {}
    for chain in chains:
        for entry in chain.entries:
            found.setdefault(entry.model, entry)
    return list(found.values())


# ---------------------------------------------------------------------- alerts and state


@dataclass(frozen=True)
class Sink:
    webhook: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Alerts:
    dedup: float = 600.0
    sinks: tuple[Sink, ...] = ()


@dataclass(frozen=True)
class StateConfig:
    """Where the shared bench state and event log live (the `state:` section).

    `url` is a store URL or path (`redis://host:6379/0`, `sqlite:///path`, a plain
    path); it never carries a password: `password_env` names the environment
    variable that holds it. `namespace` separates fleets sharing one server.
    """

    url: str
    password_env: str | None = None
    namespace: str | None = None


# -------------------------------------------------------------------------------- whole


@dataclass(frozen=True)
class Config:
    path: str  # the file it came from (BUILTIN_EXAMPLE for the example shipped in the package)
    policy: Policy
    providers: Mapping[str, ProviderConfig]
    chains: Mapping[str, Chain]
    alerts: Alerts = field(default_factory=Alerts)
    state: StateConfig | None = None

    def entries(self) -> list[Entry]:
        """Each model once, in config order (see `unique_entries`)."""
        return unique_entries(self.chains.values())

    def bench_keys(self) -> set[str]:
        """Every bench key the config's chains use: each entry and each of its credentials."""
        return {key for chain in self.chains.values() for entry in chain.entries for key in entry.bench_keys()}

    def chain(self, name: str) -> Chain:
        """The chain called `name`, or a UsageError naming the chains that exist."""
        from ..errors import UsageError

        try:
            return self.chains[name]
        except KeyError:
            known = ", ".join(sorted(self.chains)) or "none"
            raise UsageError(f"no chain named {name!r} in {self.path}", hint=f"chains defined: {known}") from None

    def defaulted(self, **changes: Any) -> Config:
        """A copy whose policies take `changes` for every key the config did not set explicitly.

        For a caller whose situation wants another default than the library's: `llmfail run` at a
        terminal uses `config.defaulted(mid_stream="restart")`, yet a `mid_stream:` written in the
        file (in `defaults:` or on the entry) still wins. Raises TypeError for an unknown key and
        ValueError for a choice that does not exist.
        """
        check_policy_changes(changes)
        if not changes:
            return self
        entries: dict[int, Entry] = {}  # one new Entry per old one: chains that share an entry still do

        def defaulted(entry: Entry) -> Entry:
            if id(entry) not in entries:
                entries[id(entry)] = replace(entry, policy=entry.policy.defaulted(changes))
            return entries[id(entry)]

        chains = {
            name: replace(chain, entries=tuple(defaulted(e) for e in chain.entries))
            for name, chain in self.chains.items()
        }
        return replace(self, policy=self.policy.defaulted(changes), chains=chains)
