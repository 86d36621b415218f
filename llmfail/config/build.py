"""Config files -> a validated `Config`: reading, the sections, nesting and flattening.

Why the loader works the way it does:

- It validates everything before raising and reports every problem at once (see
  `yaml_nodes`), so `llmfail check` in CI is a single fix-all round.
- Nested chains are flattened and `defaults` merged into each entry here, once,
  so the engine only ever walks a plain list of entries that carry their whole
  policy and cannot meet a cycle, a duplicate or an unknown name at request time.
- Secrets stay in the environment: the config keeps the *names* of key
  variables (and of the state store's password variable) and the providers read
  the values when they send, so a Config can be printed, compared or logged.
  Header values built from `${VAR}` are the one place an environment value
  enters the config, so those of auth-like headers are registered with `redact`
  as they are read. A state URL that carries a password is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode

from ..errors import ConfigError, ConfigProblem
from .fields import (
    POLICY_PARSERS,
    Field,
    choice,
    duration,
    env_name,
    headers,
    integer,
    mock_fail,
    number,
    object_schema,
    text,
    url,
    with_overrides,
)
from .model import (
    Alerts,
    Chain,
    Config,
    Credential,
    Entry,
    MockBehaviour,
    Policy,
    ProviderConfig,
    Sink,
    StateConfig,
)
from .provider_types import BUILTIN_PROVIDERS, PROVIDER_TYPES
from .yaml_nodes import (
    STR_TAG,
    Invalid,
    NodeReader,
    Pair,
    compose,
    decode,
    index_path,
    is_null,
    key_path,
    suggest,
)

EXAMPLE_RESOURCE = "chains.example.yaml"

#: The name the example shipped inside the package goes by in messages (it has no path of its own).
BUILTIN_EXAMPLE = "built-in example config"

#: The largest config file llmfail reads. PyYAML composes about 200 KB a second, so
#: this bounds a load to about a second (a real config is a few KiB; the example 4).
MAX_CONFIG_BYTES = 256 * 1024

#: The most entries one chain may flatten to. Nesting multiplies: nine chains that
#: each nest the previous one nine times would flatten to 9**9 entries.
MAX_CHAIN_ENTRIES = 1000


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one config file; ConfigError lists every problem found."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as file:  # bounded: --config /dev/zero must not read forever
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(name, 0, 0, "", "config file not found")],
            hint="pass --config PATH, set $LLMFAIL_CONFIG, or write a starter one with `llmfail init`",
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [ConfigProblem(name, 0, 0, "", "this is a directory, not a config file")],
            hint=f"pass the config file itself, like {os.path.join(name, 'chains.yaml')}",
        ) from None
    except OSError as error:
        raise ConfigError(
            [ConfigProblem(name, 0, 0, "", f"cannot read the config file: {error.strerror or error}")]
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large(name)
    return parse_config(decode(data, name), name)


def _too_large(name: str) -> ConfigError:
    return ConfigError(
        [ConfigProblem(name, 1, 1, "", f"the config file is larger than {MAX_CONFIG_BYTES // 1024} KiB")],
        hint="is --config pointing at the right file? a chains file is a few KiB",
    )


def parse_config(text: str, path: str = "<string>") -> Config:
    """Validate YAML text as a config; `path` is only used to locate problems."""
    if len(text) > MAX_CONFIG_BYTES:
        raise _too_large(path)
    reader = NodeReader(path)
    root = compose(text, path)
    config = _build(reader, root)
    if reader.problems or config is None:
        raise ConfigError(reader.sorted_problems())
    return config


def load_default_config() -> Config:
    """The example config shipped inside the package (works with no keys and no network)."""
    # In the llmfail package directory, read by path rather than importlib.resources: it works
    # the same from a checkout, an editable install and a wheel.
    example = Path(__file__).parent.parent / EXAMPLE_RESOURCE
    return parse_config(example.read_text(encoding="utf-8"), BUILTIN_EXAMPLE)


def _defaults(reader: NodeReader, node: Node | None) -> Policy:
    if node is None:
        return Policy()
    pairs = reader.mapping(node, "defaults", POLICY_PARSERS)
    return with_overrides(Policy(), reader.fields(pairs or {}, "defaults", POLICY_PARSERS))


# -------------------------------------------------------------------------- providers

#: The keys of a provider (under `providers.NAME`).
PROVIDER_KEYS: Mapping[str, Field[Any]] = {
    "type": choice(tuple(PROVIDER_TYPES)).means(
        "the API the provider speaks; required for a new name, optional under a built-in's name "
        "(openai, anthropic, ollama, gemini, mock)",
        example="openai",
    ),
    "base_url": url(interpolated=True).means(
        "the endpoint; ${VAR} and ${VAR:-default} are read from the environment. "
        "Default: the vendor's URL for a built-in type (none for mock)",
        example="${VLLM_URL:-http://127.0.0.1:8000/v1}",
    ),
    "api_key_env": env_name(nullable=True).means(
        "the NAME of the environment variable holding the key (never the key itself); null or unset sends "
        "no key. Default: the vendor's usual variable (OPENAI_API_KEY, ...) for a built-in name, none otherwise",
        example="VLLM_KEY",
    ),
    "headers": headers.means(
        "extra HTTP headers sent with every request; values may use ${VAR}, and those of auth-like headers "
        "are kept out of every log and event",
        example="{X-Team: platform}",
    ),
}
#: The keys only a `type: mock` provider takes: a local fake for demos and tests (no network, no key).
MOCK_KEYS: Mapping[str, Field[Any]] = {
    "fail": mock_fail.means(
        "the fault it plays: an HTTP status (429, 503, ...), timeout, reset, malformed, stream-cut, "
        "content-filter, context-length or slow:DURATION; empty for a healthy echo",
        default=None,
        example="503",
    ),
    "fail_rate": number(0, 1).means("the probability of the fault per request", default=1, example="0.2"),
    "latency": duration().means("added before every answer", default="0ms", example="200ms"),
    "reply": text.means("a fixed answer; without it the mock echoes the last user message", example="pong"),
}
_ANY_PROVIDER_PARSERS: Mapping[str, Field[Any]] = {**PROVIDER_KEYS, **MOCK_KEYS}


def _providers(reader: NodeReader, node: Node | None) -> tuple[dict[str, ProviderConfig], set[str]]:
    """Built-ins plus the file's providers, and every name the file declares (even broken ones)."""
    providers = dict(BUILTIN_PROVIDERS)
    pairs = reader.mapping(node, "providers", what="a mapping of provider names") if node is not None else None
    for name, (key_node, value_node) in (pairs or {}).items():
        path = key_path("providers", name)
        if "/" in name or not name.strip():
            reader.problem(key_node, path, "a provider name must be non-empty and cannot contain '/'")
            continue
        provider = _provider(reader, name, value_node, path)
        if provider is not None:
            providers[name] = provider
    return providers, set(pairs or ()) | set(BUILTIN_PROVIDERS)


def _provider(reader: NodeReader, name: str, node: Node, path: str) -> ProviderConfig | None:
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
    default_url = PROVIDER_TYPES[kind].base_url
    return ProviderConfig(
        name=name,
        type=kind,
        base_url=None if kind == "mock" else values.get("base_url", default_url),
        api_key_env=values.get("api_key_env", inherited.api_key_env if inherited else None),
        headers=values.get("headers", {}),
        mock=MockBehaviour(**{k: values[k] for k in MOCK_KEYS if k in values}) if kind == "mock" else None,
    )


def _check_type_keys(reader: NodeReader, kind: str, pairs: Mapping[str, Pair], path: str) -> None:
    """Keys that exist but make no sense for this provider type."""
    misplaced = ("base_url",) if kind == "mock" else tuple(MOCK_KEYS)
    for key in misplaced:
        if key in pairs:
            reason = "a mock provider has no base_url" if kind == "mock" else f"{key!r} applies only to type: mock"
            reader.problem(pairs[key][0], key_path(path, key), reason)


# ----------------------------------------------------------------------------- alerts


#: The keys of one alert sink; a sink has exactly one of them.
SINK_KEYS: Mapping[str, Field[Any]] = {
    "webhook": url(interpolated=False).means(
        "a URL that gets each alert as a JSON POST", example="http://127.0.0.1:9000/hooks/llm"
    ),
    "command": text.means("a command that gets each alert as JSON on its stdin", example='"notify-send llmfail"'),
}


def _sink(reader: NodeReader, node: Node, path: str) -> Sink:
    pairs = reader.mapping(node, path, SINK_KEYS, what="{webhook: URL} or {command: TEXT}")
    if pairs is None:
        raise Invalid()
    if len(pairs) != 1:
        raise Invalid("expected exactly one of webhook: URL or command: TEXT")
    values = reader.fields(pairs, path, SINK_KEYS)
    if not values:
        raise Invalid()
    return Sink(**values)


def _sinks(reader: NodeReader, node: Node, path: str) -> tuple[Sink, ...]:
    items = reader.sequence(node, path)
    if items is None:
        raise Invalid()
    parsed = [reader.parse(item, index_path(path, i), _sink) for i, item in enumerate(items)]
    return tuple(sink for ok, sink in parsed if ok)


#: The keys of the `alerts:` section.
ALERTS_KEYS: Mapping[str, Field[Any]] = {
    "dedup": duration().means(
        "one alert per model and alert type per window, across every process sharing the state", default="10m"
    ),
    "sinks": Field(
        _sinks,
        {
            "type": "array",
            "items": {"oneOf": [object_schema({key: field}, required=(key,)) for key, field in SINK_KEYS.items()]},
        },
        "list of sinks",
    ).means(
        "where alerts go (benched, panic, exhausted, recovered): a list of {webhook: URL} and {command: TEXT}",
        default=[],
        example="[{webhook: http://127.0.0.1:9000/hooks/llm}]",
    ),
}


def _alerts(reader: NodeReader, node: Node | None) -> Alerts:
    if node is None:
        return Alerts()
    pairs = reader.mapping(node, "alerts", ALERTS_KEYS)
    return Alerts(**reader.fields(pairs or {}, "alerts", ALERTS_KEYS))


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


#: The one key of a credential (an item of an entry's `credentials:`).
CREDENTIAL_KEYS: Mapping[str, Field[Any]] = {
    "api_key_env": env_name(nullable=False).means(
        "the NAME of the environment variable holding this key", example="ANTHROPIC_KEY_A"
    ),
}


def _credentials(reader: NodeReader, node: Node, path: str) -> tuple[Credential, ...]:
    items = reader.sequence(node, path, what="a list like [{api_key_env: KEY_A}, {api_key_env: KEY_B}]")
    if items is None:
        raise Invalid()
    if not items:
        raise Invalid("expected at least one credential")
    parsed = [reader.parse(item, index_path(path, i), _credential) for i, item in enumerate(items)]
    if not all(ok for ok, _ in parsed):
        raise Invalid()
    return tuple(credential for _, credential in parsed)


def _credential(reader: NodeReader, node: Node, path: str) -> Credential:
    pairs = reader.mapping(node, path, ("api_key_env",), what="a mapping like {api_key_env: NAME}")
    if pairs is None:
        raise Invalid()
    if "api_key_env" not in pairs:
        raise Invalid("missing key 'api_key_env'")
    key_node = pairs["api_key_env"][1]
    return Credential(env_name(nullable=False)(reader, key_node, key_path(path, "api_key_env")))


#: "provider/model": the provider's name, then the model name sent on the wire.
MODEL_SCHEMA = {"type": "string", "pattern": "^[^/]+/.+$"}

#: The keys of an entry written as a mapping (besides every `defaults` setting, which it may override).
ENTRY_KEYS: Mapping[str, Field[Any]] = {
    "model": Field(text, MODEL_SCHEMA, "provider/model").means(
        "provider/model: a provider's name (built-in or under providers:), then the model name the API is sent",
        example="anthropic/claude-sonnet-4-5",
    ),
    "credentials": Field(
        _credentials,
        {"type": "array", "minItems": 1, "items": object_schema(CREDENTIAL_KEYS, required=("api_key_env",))},
        "list of {api_key_env: NAME}",
    ).means(
        "several keys for one entry, tried in order; each is benched on its own (as provider/model#N). "
        "Not with api_key_env",
        example="[{api_key_env: ANTHROPIC_KEY_A}, {api_key_env: ANTHROPIC_KEY_B}]",
    ),
    "api_key_env": env_name(nullable=False).means(
        "this entry's key variable, instead of its provider's. Not with credentials", example="OPENAI_KEY_TEAM_B"
    ),
    "daily_quota": integer(1).means(
        "requests per UTC day this entry may take (counted in the shared state); past it the entry is skipped",
        example="5000",
    ),
}
_ENTRY_PARSERS: Mapping[str, Field[Any]] = {**ENTRY_KEYS, **POLICY_PARSERS}

#: A chain item that nests another chain: `{chain: NAME}`.
NESTED_KEYS: Mapping[str, Field[Any]] = {
    "chain": text.means("another chain's name: its entries are put here, in order", example="cheap"),
}
_ITEM_SHAPE = '"provider/model", a mapping with model:, or {chain: NAME}'


def _item(reader: NodeReader, node: Node, path: str, scope: _Scope) -> Entry | _Nested | None:
    """One list item of a chain: an entry, a nested-chain reference, or None once reported."""
    if isinstance(node, ScalarNode) and node.tag == STR_TAG:
        return _entry(reader, node, path, scope, node, {})
    pairs = reader.mapping(node, path, {**_ENTRY_PARSERS, **NESTED_KEYS}, what=_ITEM_SHAPE)
    if pairs is None:
        return None
    if "chain" in pairs:
        return _nested(reader, pairs, path)
    if "model" not in pairs:
        reader.problem(node, path, "missing key 'model' (or 'chain' for a nested chain)")
        return None
    values = reader.fields(pairs, path, _ENTRY_PARSERS)
    if "credentials" in pairs and "api_key_env" in pairs:
        reader.problem(
            pairs["api_key_env"][0], key_path(path, "api_key_env"), "give api_key_env or credentials, not both"
        )
    if "model" not in values:
        return None
    return _entry(reader, pairs["model"][1], key_path(path, "model"), scope, node, values)


def _nested(reader: NodeReader, pairs: Mapping[str, Pair], path: str) -> _Nested | None:
    for key, (key_node, _) in pairs.items():
        if key != "chain":
            reader.problem(key_node, key_path(path, key), "a nested chain item takes only 'chain:'")
    value_node = pairs["chain"][1]
    ok, name = reader.parse(value_node, key_path(path, "chain"), NESTED_KEYS["chain"])
    return _Nested(name, value_node, key_path(path, "chain")) if ok else None


def _entry(
    reader: NodeReader, model_node: Node, path: str, scope: _Scope, entry_node: Node, values: Mapping[str, Any]
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
            hint = suggest(provider_name, scope.declared)
            reader.problem(model_node, path, f"unknown provider {provider_name!r}{hint}")
        return None
    credentials = values.get("credentials") or (Credential(values.get("api_key_env", provider.api_key_env)),)
    overrides = {key: value for key, value in values.items() if key in POLICY_PARSERS}
    return Entry(
        model=model,
        provider=provider,
        wire_model=wire_model,
        policy=with_overrides(scope.policy, overrides),
        credentials=credentials,
        daily_quota=values.get("daily_quota"),
        location=reader.location(entry_node),
    )


@dataclass(frozen=True)
class _Written:
    """A chain's list item as read, with where it was written (to locate a duplicate)."""

    item: Entry | _Nested
    node: Node
    path: str


def _chain_items(reader: NodeReader, node: Node, path: str, scope: _Scope) -> list[_Written]:
    items = reader.sequence(node, path, what="a list of entries")
    if items is not None and not items:
        reader.problem(node, path, "the chain is empty; expected at least one entry")
    written = []
    for i, item_node in enumerate(items or ()):
        item = _item(reader, item_node, index_path(path, i), scope)
        if item is not None:
            written.append(_Written(item, item_node, index_path(path, i)))
    return written


#: A chain name is typed on the command line (`--chain NAME`) and shown in tables and events.
CHAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _chains(reader: NodeReader, at: Node, node: Node | None, scope: _Scope) -> dict[str, Chain]:
    """`at` locates the complaint when there are no chains at all."""
    what = "a mapping of chain names to lists of entries"
    pairs = reader.mapping(node, "chains", what=what) if node is not None else None
    if node is None or pairs == {}:
        reader.problem(at, "chains", "no chains defined; expected chains: {NAME: [provider/model, ...]}")
    raw: dict[str, list[_Written]] = {}
    for name, (key_node, value) in (pairs or {}).items():
        if not CHAIN_NAME.fullmatch(name):
            reader.problem(
                key_node,
                key_path("chains", name),
                f"chain name {name!r} is not a usable name: use "
                "letters, digits, '_', '.' and '-', starting with a letter or digit (like prod-eu)",
            )
        raw[name] = _chain_items(reader, value, key_path("chains", name), scope)
    return _flatten(reader, raw)


def _flatten(reader: NodeReader, raw: Mapping[str, list[_Written]]) -> dict[str, Chain]:
    """Nested chains expanded in place; unknown names, cycles (named in full) and a model
    that appears twice in one chain are problems."""
    done: dict[str, tuple[Entry, ...]] = {}
    cycles: set[frozenset[str]] = set()

    def expand(name: str, stack: list[str]) -> tuple[Entry, ...]:
        if name not in done:
            entries: list[Entry] = []
            for written in raw[name]:
                item = written.item
                resolved = resolve(item, stack)
                if isinstance(item, _Nested) and len(entries) + len(resolved) > MAX_CHAIN_ENTRIES:
                    reader.problem(
                        item.node,
                        item.path,
                        f"chain {name!r} flattens to more than {MAX_CHAIN_ENTRIES} entries (nested chains multiply)",
                    )
                    break
                _check_repeats(reader, name, entries, resolved, written)
                entries.extend(resolved)
            done[name] = tuple(entries)
        return done[name]

    def resolve(item: Entry | _Nested, stack: list[str]) -> tuple[Entry, ...]:
        if isinstance(item, Entry):
            return (item,)
        if item.chain not in raw:
            reader.problem(item.node, item.path, f"unknown chain {item.chain!r}{suggest(item.chain, raw)}")
        elif item.chain in stack:
            cycle = [*stack[stack.index(item.chain) :], item.chain]
            if frozenset(cycle) not in cycles:
                cycles.add(frozenset(cycle))
                reader.problem(item.node, item.path, f"cyclic nested chains: {' -> '.join(cycle)}")
        else:
            return expand(item.chain, [*stack, item.chain])
        return ()

    return {name: Chain(name, expand(name, [name])) for name in raw}


def _check_repeats(
    reader: NodeReader, chain: str, before: list[Entry], added: tuple[Entry, ...], written: _Written
) -> None:
    """One problem when `written` brings models the chain already has: a model has one bench state,
    so its second place in a chain could only ever be skipped or retry what just failed (that is
    what `attempts` is for). Repeats inside a nested chain are that chain's own problem."""
    first: dict[str, int] = {}
    for index, entry in enumerate(before):
        first.setdefault(entry.model, index)
    repeated = list(dict.fromkeys(entry.model for entry in added if entry.model in first))
    if not repeated:
        return
    index = first[repeated[0]]
    earlier = before[index].location
    at = f"entry {index + 1}" + (f", line {earlier.line}" if earlier is not None else "")
    already = (
        f"already in chain {chain!r} ({at}); a model has one bench state, so list it once "
        "(raise its attempts to retry it)"
    )
    if isinstance(written.item, _Nested):
        more = f" and {len(repeated) - 1} more model(s)" if len(repeated) > 1 else ""
        message = f"nested chain {written.item.chain!r} repeats {repeated[0]!r}{more}, {already}"
    else:
        message = f"{repeated[0]!r} is {already}"
    reader.problem(written.node, written.path, message)


# ------------------------------------------------------------------------------ state

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]+")


def _state_url(reader: NodeReader, node: Node, path: str) -> str:
    """A store URL or path, never one that carries a password (the config may be printed or committed)."""
    value = text(reader, node, path)
    try:
        password = urlsplit(value).password
    except ValueError:  # a malformed netloc: the store reports it when it opens the URL
        password = None
    if password:
        # Never echo the URL: it holds the password.
        raise Invalid(
            "the URL contains a password; the value is not shown. Passwords belong in the environment: "
            "remove it from the URL and name its variable in password_env (like REDIS_PASSWORD)"
        )
    return value


def _namespace(reader: NodeReader, node: Node, path: str) -> str:
    value = text(reader, node, path)
    if not _NAMESPACE.fullmatch(value):
        raise Invalid(f"expected a namespace of letters, digits, '_', '.' and '-' (like prod-eu), got {value!r}")
    return value


#: A URL whose user part carries a password (what `_state_url` refuses).
_URL_WITH_PASSWORD = r"^([A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#@]*:[^/?#@]+@"

#: The keys of the `state:` section.
STATE_KEYS: Mapping[str, Field[Any]] = {
    "url": Field(
        _state_url, {**text.schema, "not": {"type": "string", "pattern": _URL_WITH_PASSWORD}}, "store URL or path"
    ).means(
        "where the shared bench state and event log live: redis://host:6379/0 (rediss:// for TLS), "
        "sqlite:///path or a plain file path. Never with a password in it",
        example="redis://127.0.0.1:6379/0",
    ),
    # The two defaults are the Redis store's (llmfail.store.redis, not imported here: it loads redis-py);
    # tests/test_schema.py keeps them equal.
    "password_env": env_name(nullable=True).means(
        "the NAME of the environment variable holding the store's password",
        default="LLMFAIL_REDIS_PASSWORD",
        example="REDIS_PASSWORD",
    ),
    "namespace": Field(_namespace, {"type": "string", "pattern": f"^{_NAMESPACE.pattern}$"}, "name").means(
        "separates fleets that share one server (letters, digits, _ . -)", default="default", example="prod"
    ),
}


def _state(reader: NodeReader, node: Node | None) -> StateConfig | None:
    """`state: {url, password_env, namespace}`: where the shared bench state lives; None when not given."""
    if node is None:
        return None
    what = "a mapping like {url: redis://host:6379/0, password_env: REDIS_PASSWORD, namespace: prod}"
    pairs = reader.mapping(node, "state", STATE_KEYS, what=what)
    if pairs is None:
        return None
    values = reader.fields(pairs, "state", STATE_KEYS)
    if "url" not in pairs:
        reader.problem(node, "state", "missing key 'url' (like redis://host:6379/0 or a SQLite file path)")
    return StateConfig(**values) if "url" in values else None


# ------------------------------------------------------------------------------ whole


#: The sections of a config file and what each holds (only `chains:` is required).
SECTIONS: Mapping[str, str] = {
    "defaults": "the policy every entry follows unless the entry overrides a key",
    "alerts": "where to send alerts when a failover starts or ends",
    "providers": "endpoints beyond the built-in ones (openai, anthropic, ollama, gemini, mock), "
    "or overrides of a built-in under its name",
    "state": "where the bench state and event log shared by every process live (default: a SQLite file)",
    "chains": "the failover chains, by name: each a list of entries tried in order",
}
_TOP_LEVEL = tuple(SECTIONS)


def _build(reader: NodeReader, root: Node | None) -> Config | None:
    if root is None:
        reader.problem(None, "", "the file is empty; expected a mapping with at least chains:")
        return None
    pairs = reader.mapping(root, "", _TOP_LEVEL, what="a mapping with defaults:, alerts:, providers:, state:, chains:")
    if pairs is None or not isinstance(root, MappingNode):
        return None
    section = {key: _present(pairs, key) for key in _TOP_LEVEL}
    policy = _defaults(reader, section["defaults"])
    providers, declared = _providers(reader, section["providers"])
    alerts = _alerts(reader, section["alerts"])
    state = _state(reader, section["state"])
    scope = _Scope(policy, providers, declared, _chain_names(section["chains"]))
    chains_at = pairs["chains"][0] if "chains" in pairs else root
    chains = _chains(reader, chains_at, section["chains"], scope)
    return Config(path=reader.file, policy=policy, providers=providers, chains=chains, alerts=alerts, state=state)


def _present(pairs: Mapping[str, Pair], key: str) -> Node | None:
    """A section's node; an empty section (`providers:` with nothing under it) counts as absent."""
    node = pairs[key][1] if key in pairs else None
    return None if is_null(node) else node


def _chain_names(node: Node | None) -> list[str]:
    if not isinstance(node, MappingNode):
        return []
    return [key.value for key, _ in node.value if isinstance(key, ScalarNode)]
