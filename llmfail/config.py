"""YAML config -> typed, frozen objects; every problem located by file:line:col and key path.

Why the loader works the way it does:

- It reads PyYAML's node tree (`yaml.compose`) rather than `safe_load`'s plain
  dicts, because only nodes remember where they came from: an operator mid-incident
  needs "chains.yaml:14:7: chains.prod[1].timeout: ...", not "bad timeout somewhere".
- It validates everything before raising and reports every problem at once, so
  `llmfail check` in CI is a single fix-all round, not a fix-one-rerun loop.
- Nested chains are flattened and `defaults` merged into each entry here, once,
  so the engine only ever walks a plain list of entries that carry their whole
  policy and cannot meet a cycle or an unknown name at request time.
- Secrets stay in the environment: the config keeps the *names* of key
  variables and the providers read the values when they send, so a Config can be
  printed, compared or logged. Header values built from `${VAR}` are the one
  place an environment value enters the config, so those of auth-like headers are
  registered with `redact` as they are read.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .durations import parse_duration
from .errors import ConfigError, ConfigProblem
from .redact import redact, register_secret

PROVIDER_TYPES = ("openai", "anthropic", "ollama", "gemini", "mock")


@dataclass(frozen=True)
class Backoff:
    base: float = 0.2
    max: float = 10.0


@dataclass(frozen=True)
class Policy:
    """Every knob of the walk (SPEC §2 `defaults:`), durations in seconds.

    The config's `defaults:` fill one Policy; an entry mapping may override any
    of these keys for itself.
    """

    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    cooldown: float = 30.0
    max_cooldown_factor: float = 1.0
    auth_cooldown: float = 600.0
    max_retry_wait: float = 5.0
    timeout: float = 30.0
    first_token_timeout: float = 10.0
    idle_timeout: float = 15.0
    deadline: float = 120.0
    on_all_benched: Literal["try_all", "fail"] = "try_all"
    on_invalid_request: Literal["next", "fail"] = "next"
    on_content_filter: Literal["fail", "next"] = "fail"
    mid_stream: Literal["error", "restart"] = "error"
    slow_threshold: float = 10.0
    on_slow: Literal["demote", "ignore"] = "demote"
    retention: float = 30 * 86400.0
    max_tokens: int = 1024  # sent when the caller gives none (Anthropic requires one)


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
class Sink:
    webhook: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Alerts:
    dedup: float = 600.0
    sinks: tuple[Sink, ...] = ()


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


@dataclass(frozen=True)
class Config:
    path: str  # the file it came from ("<default>" for the embedded example)
    policy: Policy
    providers: Mapping[str, ProviderConfig]
    chains: Mapping[str, Chain]
    alerts: Alerts = field(default_factory=Alerts)

    def entries(self) -> list[Entry]:
        """Each model once, in config order (see `unique_entries`)."""
        return unique_entries(self.chains.values())

    def bench_keys(self) -> set[str]:
        """Every bench key the config's chains use: each entry and each of its credentials."""
        return {key for chain in self.chains.values() for entry in chain.entries for key in entry.bench_keys()}

    def chain(self, name: str) -> Chain:
        """The chain called `name`, or a UsageError naming the chains that exist."""
        from .errors import UsageError

        try:
            return self.chains[name]
        except KeyError:
            known = ", ".join(sorted(self.chains)) or "none"
            raise UsageError(
                f"no chain named {name!r} in {self.path}", hint=f"chains defined: {known}"
            ) from None


# --------------------------------------------------------------------------- loading

EXAMPLE_RESOURCE = "chains.example.yaml"

#: Default (base_url, api_key_env) per provider type; a built-in provider is named after its type.
TYPE_DEFAULTS: Mapping[str, tuple[str | None, str | None]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "ollama": ("http://127.0.0.1:11434", None),
    "gemini": ("https://generativelanguage.googleapis.com", "GEMINI_API_KEY"),
    "mock": (None, None),
}

BUILTIN_PROVIDERS: Mapping[str, ProviderConfig] = {
    kind: ProviderConfig(
        name=kind,
        type=kind,
        base_url=base_url,
        api_key_env=key_env,
        mock=MockBehaviour() if kind == "mock" else None,
    )
    for kind, (base_url, key_env) in TYPE_DEFAULTS.items()
}

#: The largest config file llmfail reads. PyYAML composes about 200 KB a second, so
#: this bounds a load to about a second (a real config is a few KiB; the example 4).
MAX_CONFIG_BYTES = 256 * 1024

#: How deep YAML may nest (block indentation plus flow brackets). A config needs about 7.
MAX_NESTING = 64

#: The most entries one chain may flatten to. Nesting multiplies: nine chains that
#: each nest the previous one nine times would flatten to 9**9 entries.
MAX_CHAIN_ENTRIES = 1000

#: Named faults a mock provider can play, besides an HTTP status and `slow:DURATION`.
MOCK_FAULTS = ("timeout", "reset", "malformed", "stream-cut", "content-filter", "context-length")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one config file; ConfigError lists every problem found."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as file:  # bounded: --config /dev/zero must not read forever
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(name, 0, 0, "", "config file not found")],
            hint="pass --config PATH, set $LLMFAIL_CONFIG, or start from chains.example.yaml",
        ) from None
    except OSError as error:
        raise ConfigError(
            [ConfigProblem(name, 0, 0, "", f"cannot read the config file: {error.strerror or error}")]
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large(name)
    return parse_config(_decode(data, name), name)


def _too_large(name: str) -> ConfigError:
    return ConfigError(
        [ConfigProblem(name, 1, 1, "", f"the config file is larger than {MAX_CONFIG_BYTES // 1024} KiB")],
        hint="is --config pointing at the right file? a chains file is a few KiB",
    )


def parse_config(text: str, path: str = "<string>") -> Config:
    """Validate YAML text as a config; `path` is only used to locate problems."""
    if len(text) > MAX_CONFIG_BYTES:
        raise _too_large(path)
    reader = _Reader(path)
    root = _compose(text, path)
    config = _build(reader, root)
    if reader.problems or config is None:
        raise ConfigError(sorted(reader.problems, key=lambda p: (p.line, p.column)))
    return config


def load_default_config() -> Config:
    """The example config shipped inside the package (works with no keys and no network)."""
    # Beside this module rather than importlib.resources: it works the same from
    # a checkout, an editable install and a wheel, package or namespace package.
    text = Path(__file__).with_name(EXAMPLE_RESOURCE).read_text(encoding="utf-8")
    return parse_config(text, "<default>")


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, column = _line_column(data[: error.start].decode("utf-8", "replace"))
        raise ConfigError([ConfigProblem(name, line, column, "", "the file is not UTF-8 text")]) from None


def _line_column(before: str) -> tuple[int, int]:
    """1-based position of the character that follows `before`."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit.

    Its scanner does work proportional to the flow depth for every token, so
    `[[[[...` thousands deep costs seconds before the composer's recursion gives
    up; a config never needs more than a handful of levels.
    """

    def add_indent(self, column: int) -> bool:
        self._check_depth(len(self.indents))
        return super().add_indent(column)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        self._check_depth(self.flow_level)
        super().fetch_flow_collection_start(TokenClass)

    def _check_depth(self, depth: int) -> None:
        if depth >= MAX_NESTING:
            raise yaml.scanner.ScannerError(problem=f"nested too deeply (more than {MAX_NESTING} levels)",
                                            problem_mark=self.get_mark())


def _compose(text: str, path: str) -> Node | None:
    """The YAML node tree, or a ConfigError located at the syntax error."""
    loader: yaml.SafeLoader | None = None  # yaml.compose(), keeping the loader: its mark locates a RecursionError
    try:
        loader = _Loader(text)
        return loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        context = f" ({error.context})" if error.context else ""
        message = f"invalid YAML: {error.problem}{context}"
    except yaml.YAMLError as error:  # ReaderError: a character YAML does not allow
        line, column = _line_column(text[: getattr(error, "position", 0)])
        message = f"invalid YAML: {getattr(error, 'reason', error)}"
    except RecursionError:  # the scanner stopped where the nesting got too deep
        mark = loader.get_mark() if loader is not None else None
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = "invalid YAML: nested too deeply"
    finally:
        if loader is not None:
            loader.dispose()
    raise ConfigError([ConfigProblem(path, line, column, "", message)])


# ----------------------------------------------------------------- node-level reading

_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"

_Pair = tuple[Node, Node]  # (key node, value node)
_Parser = Callable[["_Reader", Node, str], Any]


class _Invalid(Exception):
    """Raised by a value parser; `message=None` means the parser already recorded its problems."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.message = message


class _Reader:
    """One pass over one file: reads nodes and collects problems instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def problem(self, node: Node | None, path: str, message: str) -> None:
        line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (1, 1)
        self.problems.append(ConfigProblem(self.file, line, column, path, redact(message) or message))

    def location(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def scalar(self, node: Node) -> Any:
        """The Python value of a scalar node (None for an empty value)."""
        if not isinstance(node, ScalarNode):
            raise _Invalid(f"expected a single value, got {_describe(node)}")
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            raise _Invalid(f"cannot read this value: {getattr(error, 'problem', None) or error}") from None

    def parse(self, node: Node, path: str, parser: _Parser) -> tuple[bool, Any]:
        """(True, value), or (False, None) after recording why the value is bad."""
        try:
            return True, parser(self, node, path)
        except _Invalid as error:
            if error.message:
                self.problem(node, path, error.message)
            return False, None

    def fields(self, pairs: Mapping[str, _Pair], path: str, parsers: Mapping[str, _Parser]) -> dict[str, Any]:
        """Every key of `pairs` that has a parser, parsed; bad values are recorded and left out."""
        values: dict[str, Any] = {}
        for key, (_, value_node) in pairs.items():
            if key in parsers:
                ok, value = self.parse(value_node, _key(path, key), parsers[key])
                if ok:
                    values[key] = value
        return values

    def sequence(self, node: Node, path: str, what: str = "a list") -> list[Node] | None:
        if isinstance(node, SequenceNode):
            return list(node.value)
        self.problem(node, path, f"expected {what}, got {_describe(node)}")
        return None

    def mapping(
        self, node: Node, path: str, allowed: Collection[str] | None = None, what: str = "a mapping"
    ) -> dict[str, _Pair] | None:
        """The mapping's pairs by key (`<<` merges applied); reports duplicate and unknown keys."""
        if not isinstance(node, MappingNode):
            self.problem(node, path, f"expected {what}, got {_describe(node)}")
            return None
        pairs: dict[str, _Pair] = {}
        merged: dict[str, _Pair] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                if not _mergeable(value_node):
                    self.problem(value_node, _key(path, "<<"), "'<<' merges a mapping or a list of mappings")
                for key, pair in _merged_pairs(value_node, set()).items():
                    merged.setdefault(key, pair)
            elif self._check_key(key_node, path, pairs, allowed):
                pairs[key_node.value] = (key_node, value_node)
        for key, pair in merged.items():
            if key not in pairs and self._check_key(pair[0], path, {}, allowed):
                pairs[key] = pair
        return pairs

    def _check_key(
        self, key_node: Node, path: str, seen: Mapping[str, _Pair], allowed: Collection[str] | None
    ) -> bool:
        if not isinstance(key_node, ScalarNode) or key_node.tag == _NULL:
            self.problem(key_node, path, f"expected a plain name as key, got {_describe(key_node)}")
            return False
        key = key_node.value
        if key in seen:
            first = seen[key][0].start_mark.line + 1
            self.problem(key_node, _key(path, key), f"duplicate key {key!r} (first given on line {first})")
            return False
        if allowed is not None and key not in allowed:
            self.problem(key_node, _key(path, key), f"unknown key {key!r}{_suggest(key, allowed)}")
            return False
        return True


def _mergeable(node: Node) -> bool:
    if isinstance(node, SequenceNode):
        return all(isinstance(item, MappingNode) for item in node.value)
    return isinstance(node, MappingNode)


def _merged_pairs(node: Node, seen: set[int]) -> dict[str, _Pair]:
    """Pairs a YAML `<<:` merge brings in (earlier sources win, as YAML specifies)."""
    if id(node) in seen:
        return {}
    seen.add(id(node))
    sources = node.value if isinstance(node, SequenceNode) else [node]
    pairs: dict[str, _Pair] = {}
    for source in sources:
        for key_node, value_node in source.value if isinstance(source, MappingNode) else ():
            if key_node.tag == _MERGE:
                for key, pair in _merged_pairs(value_node, seen).items():
                    pairs.setdefault(key, pair)
            elif isinstance(key_node, ScalarNode):
                pairs.setdefault(key_node.value, (key_node, value_node))
    return pairs


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _index(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _suggest(word: str, choices: Collection[str]) -> str:
    """'; did you mean X?' when something is close, else the list of what is allowed."""
    listing = f"; expected one of: {', '.join(sorted(choices))}" if choices else ""
    return _did_you_mean(word, choices) or listing


def _describe(node: Node) -> str:
    """How a value reads in an error message."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kinds = {
        _NULL: "an empty value",
        "tag:yaml.org,2002:bool": f"the boolean {node.value}",
        "tag:yaml.org,2002:int": f"the number {node.value}",
        "tag:yaml.org,2002:float": f"the number {node.value}",
    }
    return kinds.get(node.tag, f"{node.value!r}")


# ------------------------------------------------------------------------ value parsers


def _integer(minimum: int) -> _Parser:
    def parse(reader: _Reader, node: Node, path: str) -> int:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(f"expected a whole number >= {minimum}, got {_describe(node)}")
        return value

    return parse


def _number(minimum: float, maximum: float = math.inf) -> _Parser:
    expected = f"a number >= {minimum:g}" if maximum == math.inf else f"a number from {minimum:g} to {maximum:g}"

    def parse(reader: _Reader, node: Node, path: str) -> float:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum:
            raise _Invalid(f"expected {expected}, got {_describe(node)}")
        return float(value)

    return parse


def _duration(*, positive: bool = False) -> _Parser:
    def parse(reader: _Reader, node: Node, path: str) -> float:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _Invalid(f"expected a duration like 250ms, 30s, 10m, 2h or 1d, got {_describe(node)}")
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            raise _Invalid(str(error)) from None
        if positive and seconds == 0:
            raise _Invalid("expected a duration above zero, like 30s")
        return seconds

    return parse


def _choice(options: Collection[str]) -> _Parser:
    def parse(reader: _Reader, node: Node, path: str) -> str:
        if isinstance(node, ScalarNode) and node.tag == _STR and node.value in options:
            return str(node.value)
        hint = _did_you_mean(str(node.value), options) if isinstance(node, ScalarNode) else ""
        raise _Invalid(f"expected one of {', '.join(options)}, got {_describe(node)}{hint}")

    return parse


def _text(reader: _Reader, node: Node, path: str) -> str:
    """A non-empty piece of text, as written (so `reply: yes` stays "yes", not True)."""
    if not isinstance(node, ScalarNode) or node.tag == _NULL or not node.value.strip():
        raise _Invalid(f"expected some text, got {_describe(node) if node.tag != _STR else 'empty text'}")
    reader.scalar(node)  # rejects tags YAML cannot read
    return str(node.value)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(*, nullable: bool) -> _Parser:
    def parse(reader: _Reader, node: Node, path: str) -> str | None:
        if nullable and isinstance(node, ScalarNode) and node.tag == _NULL:
            return None
        if isinstance(node, ScalarNode) and _ENV_NAME.fullmatch(node.value):
            return str(node.value)
        # Never echo the value: people paste the key itself here.
        raise _Invalid(
            "expected the NAME of an environment variable (letters, digits and _, like "
            "OPENAI_API_KEY), not a key; the value is not shown, keys belong in the environment"
        )

    return parse


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(text: str, *, secret: bool) -> str:
    """`${VAR}` / `${VAR:-default}` from the environment; unset variables are one problem."""
    if "${" in _VAR.sub("", text):
        raise _Invalid("expected ${NAME} or ${NAME:-default} around an environment variable name")
    missing = [m.group(1) for m in _VAR.finditer(text) if m.group(1) not in os.environ and m.group(2) is None]
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise _Invalid(f"environment variable(s) not set: {names} (set them, or write ${{VAR:-default}})")

    def substitute(match: re.Match[str]) -> str:
        name, default = match.groups()
        if name not in os.environ:
            return default or ""
        if secret:
            register_secret(os.environ[name])
        return os.environ[name]

    return _VAR.sub(substitute, text)


def _url(*, interpolate: bool) -> _Parser:
    def parse(reader: _Reader, node: Node, path: str) -> str:
        text = _text(reader, node, path)
        url = _interpolate(text, secret=False) if interpolate else text
        if not _is_http_url(url):
            raise _Invalid(f"expected an http(s) URL, got {text!r}")
        return url.rstrip("/")

    return parse


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers whose interpolated values are treated as secrets (scrubbed by `redact`).
#: Not every header: registering a value like "prod" would mask it everywhere.
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|session|password", re.IGNORECASE)


def _headers(reader: _Reader, node: Node, path: str) -> dict[str, str]:
    pairs = reader.mapping(node, path, what="a mapping of header names to values")
    if pairs is None:
        raise _Invalid()
    headers: dict[str, str] = {}
    for name, (key_node, value_node) in pairs.items():
        if not _HEADER_NAME.fullmatch(name):
            reader.problem(key_node, _key(path, name), f"{name!r} is not a valid HTTP header name")
            continue
        ok, value = reader.parse(value_node, _key(path, name), _header_value(bool(_SECRET_HEADER.search(name))))
        if ok:
            headers[name] = value
    return headers


def _header_value(secret: bool) -> _Parser:
    def parse(reader: _Reader, node: Node, path: str) -> str:
        return _interpolate(_text(reader, node, path), secret=secret)

    return parse


def _mock_fail(reader: _Reader, node: Node, path: str) -> str | None:
    value = reader.scalar(node)
    if value is None:
        return None
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if text.isdigit():
        if not 400 <= int(text) <= 599:
            raise _Invalid(f"expected an HTTP error status from 400 to 599, got {text}")
        return text
    if text in MOCK_FAULTS:
        return text
    if text.startswith("slow:"):
        try:
            parse_duration(text.removeprefix("slow:"))
        except ValueError as error:
            raise _Invalid(f"slow:DURATION: {error}") from None
        return text
    raise _Invalid(
        f"expected an HTTP status (like 503) or one of {', '.join(MOCK_FAULTS)}, slow:DURATION; "
        f"got {_describe(node)}{_did_you_mean(text, MOCK_FAULTS)}"
    )


# ---------------------------------------------------------------------------- policy


def _backoff(reader: _Reader, node: Node, path: str) -> dict[str, float]:
    """The given backoff keys only, so an entry can override `base` and keep `max`."""
    pairs = reader.mapping(node, path, ("base", "max"), what="a mapping like {base: 200ms, max: 10s}")
    if pairs is None:
        raise _Invalid()
    return reader.fields(pairs, path, dict.fromkeys(("base", "max"), _duration()))


def _policy_parsers() -> dict[str, _Parser]:
    hints = get_type_hints(Policy)
    enums = {name: _choice(get_args(hint)) for name, hint in hints.items() if get_origin(hint) is Literal}
    durations = ("cooldown", "auth_cooldown", "max_retry_wait", "slow_threshold", "retention")
    timeouts = ("timeout", "first_token_timeout", "idle_timeout", "deadline")
    return {
        "attempts": _integer(1),
        "backoff": _backoff,
        "max_cooldown_factor": _number(1),
        "max_tokens": _integer(1),
        **dict.fromkeys(durations, _duration()),
        **dict.fromkeys(timeouts, _duration(positive=True)),
        **enums,
    }


#: One parser per Policy field: `defaults:` and every entry mapping accept exactly these keys.
POLICY_PARSERS: Mapping[str, _Parser] = _policy_parsers()


def _with_overrides(base: Policy, overrides: Mapping[str, Any]) -> Policy:
    changes = dict(overrides)
    if "backoff" in changes:
        changes["backoff"] = replace(base.backoff, **changes["backoff"])
    return replace(base, **changes)


def _defaults(reader: _Reader, node: Node | None) -> Policy:
    if node is None:
        return Policy()
    pairs = reader.mapping(node, "defaults", POLICY_PARSERS)
    return _with_overrides(Policy(), reader.fields(pairs or {}, "defaults", POLICY_PARSERS))


# -------------------------------------------------------------------------- providers

_PROVIDER_PARSERS: Mapping[str, _Parser] = {
    "type": _choice(PROVIDER_TYPES),
    "base_url": _url(interpolate=True),
    "api_key_env": _env_name(nullable=True),
    "headers": _headers,
}
_MOCK_PARSERS: Mapping[str, _Parser] = {
    "fail": _mock_fail,
    "fail_rate": _number(0, 1),
    "latency": _duration(),
    "reply": _text,
}
_ANY_PROVIDER_PARSERS: Mapping[str, _Parser] = {**_PROVIDER_PARSERS, **_MOCK_PARSERS}


def _providers(reader: _Reader, node: Node | None) -> tuple[dict[str, ProviderConfig], set[str]]:
    """Built-ins plus the file's providers, and every name the file declares (even broken ones)."""
    providers = dict(BUILTIN_PROVIDERS)
    pairs = reader.mapping(node, "providers", what="a mapping of provider names") if node is not None else None
    for name, (key_node, value_node) in (pairs or {}).items():
        path = _key("providers", name)
        if "/" in name or not name.strip():
            reader.problem(key_node, path, "a provider name must be non-empty and cannot contain '/'")
            continue
        provider = _provider(reader, name, value_node, path)
        if provider is not None:
            providers[name] = provider
    return providers, set(pairs or ()) | set(BUILTIN_PROVIDERS)


def _provider(reader: _Reader, name: str, node: Node, path: str) -> ProviderConfig | None:
    pairs = reader.mapping(node, path, _ANY_PROVIDER_PARSERS)
    if pairs is None:
        return None
    values = reader.fields(pairs, path, _ANY_PROVIDER_PARSERS)
    builtin = BUILTIN_PROVIDERS.get(name)
    if "type" in pairs:
        kind = values.get("type")  # None when the type given is bad (already reported)
    elif builtin is not None:
        kind = builtin.type
    else:
        reader.problem(node, path, f"missing key 'type'; expected one of: {', '.join(PROVIDER_TYPES)}")
        return None
    if kind is None:
        return None
    # Only a built-in overridden with its own type keeps its key variable: a new
    # endpoint must never be sent the OpenAI key just because it speaks OpenAI.
    inherited = builtin if builtin is not None and builtin.type == kind else None
    _check_type_keys(reader, kind, pairs, path)
    default_url, _ = TYPE_DEFAULTS[kind]
    return ProviderConfig(
        name=name,
        type=kind,
        base_url=None if kind == "mock" else values.get("base_url", default_url),
        api_key_env=values.get("api_key_env", inherited.api_key_env if inherited else None),
        headers=values.get("headers", {}),
        mock=MockBehaviour(**{k: values[k] for k in _MOCK_PARSERS if k in values}) if kind == "mock" else None,
    )


def _check_type_keys(reader: _Reader, kind: str, pairs: Mapping[str, _Pair], path: str) -> None:
    """Keys that exist but make no sense for this provider type."""
    misplaced = ("base_url",) if kind == "mock" else tuple(_MOCK_PARSERS)
    for key in misplaced:
        if key in pairs:
            reason = "a mock provider has no base_url" if kind == "mock" else f"{key!r} applies only to type: mock"
            reader.problem(pairs[key][0], _key(path, key), reason)


# ----------------------------------------------------------------------------- alerts


def _sink(reader: _Reader, node: Node, path: str) -> Sink:
    pairs = reader.mapping(node, path, ("webhook", "command"), what="{webhook: URL} or {command: TEXT}")
    if pairs is None:
        raise _Invalid()
    if len(pairs) != 1:
        raise _Invalid("expected exactly one of webhook: URL or command: TEXT")
    values = reader.fields(pairs, path, {"webhook": _url(interpolate=False), "command": _text})
    if not values:
        raise _Invalid()
    return Sink(**values)


def _sinks(reader: _Reader, node: Node, path: str) -> tuple[Sink, ...]:
    items = reader.sequence(node, path)
    if items is None:
        raise _Invalid()
    parsed = [reader.parse(item, _index(path, i), _sink) for i, item in enumerate(items)]
    return tuple(sink for ok, sink in parsed if ok)


def _alerts(reader: _Reader, node: Node | None) -> Alerts:
    if node is None:
        return Alerts()
    parsers: Mapping[str, _Parser] = {"dedup": _duration(), "sinks": _sinks}
    pairs = reader.mapping(node, "alerts", parsers)
    return Alerts(**reader.fields(pairs or {}, "alerts", parsers))


# ----------------------------------------------------------------------------- chains


@dataclass(frozen=True)
class _Nested:
    """A `{chain: NAME}` item, waiting to be flattened once every chain is read."""

    chain: str
    node: Node
    path: str


@dataclass(frozen=True)
class _Scope:
    """What an entry needs to be resolved."""

    policy: Policy
    providers: Mapping[str, ProviderConfig]
    declared: Collection[str]  # provider names, including ones whose definition is broken
    chains: Collection[str]


def _credentials(reader: _Reader, node: Node, path: str) -> tuple[Credential, ...]:
    items = reader.sequence(node, path, what="a list like [{api_key_env: KEY_A}, {api_key_env: KEY_B}]")
    if items is None:
        raise _Invalid()
    if not items:
        raise _Invalid("expected at least one credential")
    parsed = [reader.parse(item, _index(path, i), _credential) for i, item in enumerate(items)]
    if not all(ok for ok, _ in parsed):
        raise _Invalid()
    return tuple(credential for _, credential in parsed)


def _credential(reader: _Reader, node: Node, path: str) -> Credential:
    pairs = reader.mapping(node, path, ("api_key_env",), what="a mapping like {api_key_env: NAME}")
    if pairs is None:
        raise _Invalid()
    if "api_key_env" not in pairs:
        raise _Invalid("missing key 'api_key_env'")
    key_node = pairs["api_key_env"][1]
    return Credential(_env_name(nullable=False)(reader, key_node, _key(path, "api_key_env")))


_ENTRY_PARSERS: Mapping[str, _Parser] = {
    "model": _text,
    "credentials": _credentials,
    "api_key_env": _env_name(nullable=False),
    "daily_quota": _integer(1),
    **POLICY_PARSERS,
}
_ITEM_SHAPE = '"provider/model", a mapping with model:, or {chain: NAME}'


def _item(reader: _Reader, node: Node, path: str, scope: _Scope) -> Entry | _Nested | None:
    """One list item of a chain: an entry, a nested-chain reference, or None once reported."""
    if isinstance(node, ScalarNode) and node.tag == _STR:
        return _entry(reader, node, path, scope, node, {})
    pairs = reader.mapping(node, path, {**_ENTRY_PARSERS, "chain": _text}, what=_ITEM_SHAPE)
    if pairs is None:
        return None
    if "chain" in pairs:
        return _nested(reader, pairs, path)
    if "model" not in pairs:
        reader.problem(node, path, "missing key 'model' (or 'chain' for a nested chain)")
        return None
    values = reader.fields(pairs, path, _ENTRY_PARSERS)
    if "credentials" in pairs and "api_key_env" in pairs:
        reader.problem(pairs["api_key_env"][0], _key(path, "api_key_env"), "give api_key_env or credentials, not both")
    if "model" not in values:
        return None
    return _entry(reader, pairs["model"][1], _key(path, "model"), scope, node, values)


def _nested(reader: _Reader, pairs: Mapping[str, _Pair], path: str) -> _Nested | None:
    for key, (key_node, _) in pairs.items():
        if key != "chain":
            reader.problem(key_node, _key(path, key), "a nested chain item takes only 'chain:'")
    value_node = pairs["chain"][1]
    ok, name = reader.parse(value_node, _key(path, "chain"), _text)
    return _Nested(name, value_node, _key(path, "chain")) if ok else None


def _entry(
    reader: _Reader, model_node: Node, path: str, scope: _Scope, entry_node: Node, values: Mapping[str, Any]
) -> Entry | None:
    model = str(model_node.value)
    provider_name, slash, wire_model = model.partition("/")
    if not (slash and provider_name and wire_model):
        nest = f"; to nest chain {model!r} write `- chain: {model}`" if model in scope.chains else ""
        reader.problem(model_node, path, f"expected provider/model (like openai/gpt-4o), got {model!r}{nest}")
        return None
    provider = scope.providers.get(provider_name)
    if provider is None:
        if provider_name not in scope.declared:
            hint = _suggest(provider_name, scope.declared)
            reader.problem(model_node, path, f"unknown provider {provider_name!r}{hint}")
        return None
    credentials = values.get("credentials") or (Credential(values.get("api_key_env", provider.api_key_env)),)
    overrides = {key: value for key, value in values.items() if key in POLICY_PARSERS}
    return Entry(
        model=model,
        provider=provider,
        wire_model=wire_model,
        policy=_with_overrides(scope.policy, overrides),
        credentials=credentials,
        daily_quota=values.get("daily_quota"),
        location=reader.location(entry_node),
    )


def _chain_items(reader: _Reader, node: Node, path: str, scope: _Scope) -> list[Entry | _Nested]:
    items = reader.sequence(node, path, what="a list of entries")
    if items is not None and not items:
        reader.problem(node, path, "the chain is empty; expected at least one entry")
    parsed = [_item(reader, item, _index(path, i), scope) for i, item in enumerate(items or ())]
    return [item for item in parsed if item is not None]


def _chains(reader: _Reader, at: Node, node: Node | None, scope: _Scope) -> dict[str, Chain]:
    """`at` locates the complaint when there are no chains at all."""
    what = "a mapping of chain names to lists of entries"
    pairs = reader.mapping(node, "chains", what=what) if node is not None else None
    if node is None or pairs == {}:
        reader.problem(at, "chains", "no chains defined; expected chains: {NAME: [provider/model, ...]}")
    raw = {name: _chain_items(reader, value, _key("chains", name), scope) for name, (_, value) in (pairs or {}).items()}
    return _flatten(reader, raw)


def _flatten(reader: _Reader, raw: Mapping[str, list[Entry | _Nested]]) -> dict[str, Chain]:
    """Nested chains expanded in place; unknown names and cycles (named in full) are problems."""
    done: dict[str, tuple[Entry, ...]] = {}
    cycles: set[frozenset[str]] = set()

    def expand(name: str, stack: list[str]) -> tuple[Entry, ...]:
        if name not in done:
            entries: list[Entry] = []
            for item in raw[name]:
                resolved = resolve(item, stack)
                if isinstance(item, _Nested) and len(entries) + len(resolved) > MAX_CHAIN_ENTRIES:
                    reader.problem(item.node, item.path, f"chain {name!r} flattens to more than "
                                   f"{MAX_CHAIN_ENTRIES} entries (nested chains multiply)")
                    break
                entries.extend(resolved)
            done[name] = tuple(entries)
        return done[name]

    def resolve(item: Entry | _Nested, stack: list[str]) -> tuple[Entry, ...]:
        if isinstance(item, Entry):
            return (item,)
        if item.chain not in raw:
            reader.problem(item.node, item.path, f"unknown chain {item.chain!r}{_suggest(item.chain, raw)}")
        elif item.chain in stack:
            cycle = [*stack[stack.index(item.chain) :], item.chain]
            if frozenset(cycle) not in cycles:
                cycles.add(frozenset(cycle))
                reader.problem(item.node, item.path, f"cyclic nested chains: {' -> '.join(cycle)}")
        else:
            return expand(item.chain, [*stack, item.chain])
        return ()

    return {name: Chain(name, expand(name, [name])) for name in raw}


# ------------------------------------------------------------------------------ whole


_TOP_LEVEL = ("defaults", "alerts", "providers", "chains")


def _build(reader: _Reader, root: Node | None) -> Config | None:
    if root is None:
        reader.problem(None, "", "the file is empty; expected a mapping with at least chains:")
        return None
    pairs = reader.mapping(root, "", _TOP_LEVEL, what="a mapping with defaults:, alerts:, providers:, chains:")
    if pairs is None or not isinstance(root, MappingNode):
        return None
    section = {key: _present(pairs, key) for key in _TOP_LEVEL}
    policy = _defaults(reader, section["defaults"])
    providers, declared = _providers(reader, section["providers"])
    alerts = _alerts(reader, section["alerts"])
    scope = _Scope(policy, providers, declared, _chain_names(section["chains"]))
    chains_at = pairs["chains"][0] if "chains" in pairs else root
    chains = _chains(reader, chains_at, section["chains"], scope)
    return Config(path=reader.file, policy=policy, providers=providers, chains=chains, alerts=alerts)


def _present(pairs: Mapping[str, _Pair], key: str) -> Node | None:
    """A section's node; an empty section (`providers:` with nothing under it) counts as absent."""
    node = pairs[key][1] if key in pairs else None
    return None if isinstance(node, ScalarNode) and node.tag == _NULL else node


def _chain_names(node: Node | None) -> list[str]:
    if not isinstance(node, MappingNode):
        return []
    return [key.value for key, _ in node.value if isinstance(key, ScalarNode)]
