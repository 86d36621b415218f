"""Value parsers, and the Policy's parsers derived from its field declarations.

A parser reads one YAML node and returns the value or raises `Invalid` (see
`yaml_nodes`). Each one here is a `Field`: the parser together with what it
accepts written as JSON Schema, and (once bound to a key) what the key means,
its default and an example. The loader calls the parser; `llmfail schema` and
docs/configuration.md read the rest (`config/schema.py`), so the three cannot
drift apart. The Policy's settings are not listed here a second time:
`settings_parsers(Policy)` reads each field's declared `ValueKind` (or its
`Literal` choices) and meaning from `model.py`, so `defaults:` and every entry
mapping accept exactly the Policy's settings.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any, Generic, TypeVar, get_args, get_type_hints
from urllib.parse import urlsplit

from yaml.nodes import Node, ScalarNode

from ..durations import format_duration, parse_duration
from ..redact import register_secret
from .model import (
    MEANING,
    SETTING,
    Duration,
    Number,
    Policy,
    Settings,
    ValueKind,
    WholeNumber,
    setting_names,
)
from .yaml_nodes import (
    NULL_TAG,
    STR_TAG,
    Invalid,
    NodeReader,
    Parser,
    describe,
    did_you_mean,
    is_null,
    key_path,
)

#: Named faults a mock provider can play, besides an HTTP status and `slow:DURATION`.
MOCK_FAULTS = ("timeout", "reset", "malformed", "stream-cut", "content-filter", "context-length")


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


#: `Field.default` when a key has none (an absent key means something else, said in its meaning).
NO_DEFAULT: Any = _NoDefault()

Schema = Mapping[str, Any]  # a JSON Schema fragment (draft 2020-12)


T = TypeVar("T")


@dataclass(frozen=True)
class Field(Generic[T]):
    """A value parser, what it accepts as JSON Schema and, once bound to a key with `means`,
    what the key does, its default and an example (as written in YAML).

    One declaration serves the loader (which calls it), `llmfail schema` and the
    configuration reference; `tests/test_schema.py` checks that the loader and the
    schema accept and refuse the same files.
    """

    parse: Callable[[NodeReader, Node, str], T]
    schema: Schema
    shape: str  # the kind of value, for people: "duration", "whole number >= 1", ...
    meaning: str = ""
    default: Any = NO_DEFAULT
    example: str | None = None

    def __call__(self, reader: NodeReader, node: Node, path: str) -> T:
        return self.parse(reader, node, path)

    def means(self, meaning: str, *, default: Any = NO_DEFAULT, example: str | None = None) -> Field[T]:
        """This field bound to a key: what it does, its default and an example."""
        return replace(self, meaning=meaning, default=default, example=example)


#: A duration as text: `250ms`, `30s`, `1h30m`, `2.5m` or a number of seconds (`90`, `1.5`, `1e3`), units
#: in any case, spaces allowed around parts: what `parse_duration` reads, bar `1_000` and spaces inside a number.
_DURATION_TEXT = r"^\s*(\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(\d+(\.\d+)?\s*([mM][sS]|[sSmMhHdD])\s*)+)\s*$"
#: A duration that adds up to zero: every digit 0, bar an exponent's (the `not` of a positive duration).
_ZERO_TEXT = r"^[\s+0.]*([eE][+-]?\d+)?\s*$|^[\s0.]*([a-zA-Z]+[\s0.]*)*$"


def integer(minimum: int) -> Field[int]:
    def parse(reader: NodeReader, node: Node, path: str) -> int:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(f"expected a whole number >= {minimum}, got {describe(node)}")
        return value

    return Field(parse, {"type": "integer", "minimum": minimum}, f"whole number ≥ {minimum}")


def number(minimum: float, maximum: float = math.inf) -> Field[float]:
    expected = f"a number >= {minimum:g}" if maximum == math.inf else f"a number from {minimum:g} to {maximum:g}"

    def parse(reader: NodeReader, node: Node, path: str) -> float:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum:
            raise Invalid(f"expected {expected}, got {describe(node)}")
        return float(value)

    bounds = {"minimum": minimum} | ({} if maximum == math.inf else {"maximum": maximum})
    shape = f"number ≥ {minimum:g}" if maximum == math.inf else f"number from {minimum:g} to {maximum:g}"
    return Field(parse, {"type": "number", **bounds}, shape)


def duration_schema(*, positive: bool = False) -> Schema:
    """A duration written as text or as a number of seconds."""
    as_text: dict[str, Any] = {
        "type": "string",
        "pattern": _DURATION_TEXT,
        # What an editor's YAML language server says instead of quoting the pattern.
        "patternErrorMessage": "expected a duration like 250ms, 30s, 10m, 1h30m or 1d, or a number of seconds",
    }
    as_number: dict[str, Any] = {"type": "number", "minimum": 0}
    if positive:
        as_text["not"] = {"pattern": _ZERO_TEXT}
        as_number = {"type": "number", "exclusiveMinimum": 0}
    return {"anyOf": [as_text, as_number]}


def duration(*, positive: bool = False) -> Field[float]:
    def parse(reader: NodeReader, node: Node, path: str) -> float:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Invalid(f"expected a duration like 250ms, 30s, 10m, 2h or 1d, got {describe(node)}")
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            raise Invalid(str(error)) from None
        if positive and seconds == 0:
            raise Invalid("expected a duration above zero, like 30s")
        return seconds

    return Field(parse, duration_schema(positive=positive), "duration above zero" if positive else "duration")


def choice(options: Collection[str]) -> Field[str]:
    def parse(reader: NodeReader, node: Node, path: str) -> str:
        if isinstance(node, ScalarNode) and node.tag == STR_TAG and node.value in options:
            return str(node.value)
        hint = did_you_mean(str(node.value), options) if isinstance(node, ScalarNode) else ""
        raise Invalid(f"expected one of {', '.join(options)}, got {describe(node)}{hint}")

    return Field(parse, {"enum": list(options)}, "one of " + ", ".join(f"`{option}`" for option in options))


def _text(reader: NodeReader, node: Node, path: str) -> str:
    if not isinstance(node, ScalarNode) or node.tag == NULL_TAG or not node.value.strip():
        raise Invalid(f"expected some text, got {describe(node) if node.tag != STR_TAG else 'empty text'}")
    reader.scalar(node)  # rejects tags YAML cannot read
    return str(node.value)


#: Text that is not blank; a number or a boolean is read as the text it is written as.
TEXT_SCHEMA: Schema = {"type": ["string", "number", "boolean"], "pattern": r"\S"}

#: A non-empty piece of text, as written (so `reply: yes` stays "yes", not True).
text = Field(_text, TEXT_SCHEMA, "text")

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(*, nullable: bool) -> Field[str | None]:
    def parse(reader: NodeReader, node: Node, path: str) -> str | None:
        if nullable and is_null(node):
            return None
        # A name is text: `null`, `true` or `~` there is a slip, not a variable called "null".
        if isinstance(node, ScalarNode) and node.tag == STR_TAG and ENV_NAME.fullmatch(node.value):
            return str(node.value)
        # Never echo the value: people paste the key itself here.
        raise Invalid(
            "expected the NAME of an environment variable (letters, digits and _, like "
            "OPENAI_API_KEY), not a key; the value is not shown, keys belong in the environment"
        )

    name: dict[str, Any] = {
        "type": "string",
        "pattern": f"^{ENV_NAME.pattern}$",
        "patternErrorMessage": "expected the NAME of an environment variable (like OPENAI_API_KEY), not a key",
    }
    if nullable:
        return Field(parse, {"anyOf": [name, {"type": "null"}]}, "environment variable name, or null")
    return Field(parse, name, "environment variable name")


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: str, *, secret: bool) -> str:
    """`${VAR}` / `${VAR:-default}` from the environment; unset variables are one problem."""
    if "${" in _VAR.sub("", value):
        raise Invalid("expected ${NAME} or ${NAME:-default} around an environment variable name")
    missing = [m.group(1) for m in _VAR.finditer(value) if m.group(1) not in os.environ and m.group(2) is None]
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise Invalid(f"environment variable(s) not set: {names} (set them, or write ${{VAR:-default}})")

    def substitute(match: re.Match[str]) -> str:
        name, default = match.groups()
        if name not in os.environ:
            return default or ""
        if secret:
            register_secret(os.environ[name])
        return os.environ[name]

    return _VAR.sub(substitute, value)


#: An http(s) URL with a host (the scheme in any case).
_HTTP_URL = r"^\s*[hH][tT][tT][pP][sS]?://[^/?#\s]"


def url(*, interpolated: bool) -> Field[str]:
    def parse(reader: NodeReader, node: Node, path: str) -> str:
        written = text(reader, node, path)
        value = interpolate(written, secret=False) if interpolated else written
        if not _is_http_url(value):
            raise Invalid(f"expected an http(s) URL, got {written!r}")
        return value.rstrip("/")

    # With ${VAR} the URL is only known once the variable is read, so any text holding one passes.
    pattern = f"{_HTTP_URL}|\\$\\{{" if interpolated else _HTTP_URL
    shape = "http(s) URL, ${VAR} allowed" if interpolated else "http(s) URL"
    return Field(parse, {"type": "string", "pattern": pattern}, shape)


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers whose interpolated values are treated as secrets (scrubbed by `redact`).
#: Not every header: registering a value like "prod" would mask it everywhere.
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|session|password", re.IGNORECASE)


def _headers(reader: NodeReader, node: Node, path: str) -> dict[str, str]:
    pairs = reader.mapping(node, path, what="a mapping of header names to values")
    if pairs is None:
        raise Invalid()
    found: dict[str, str] = {}
    for name, (key_node, value_node) in pairs.items():
        if not _HEADER_NAME.fullmatch(name):
            reader.problem(key_node, key_path(path, name), f"{name!r} is not a valid HTTP header name")
            continue
        ok, value = reader.parse(value_node, key_path(path, name), _header_value(bool(_SECRET_HEADER.search(name))))
        if ok:
            found[name] = value
    return found


headers = Field(
    _headers,
    {
        "type": "object",
        "propertyNames": {"pattern": f"^{_HEADER_NAME.pattern}$"},
        "additionalProperties": TEXT_SCHEMA,
    },
    "mapping of header name to text, ${VAR} allowed",
)


def _header_value(secret: bool) -> Parser:
    def parse(reader: NodeReader, node: Node, path: str) -> str:
        return interpolate(text(reader, node, path), secret=secret)

    return parse


def _mock_fail(reader: NodeReader, node: Node, path: str) -> str | None:
    value = reader.scalar(node)
    if value is None:
        return None
    written = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if written.isdigit():
        if not 400 <= int(written) <= 599:
            raise Invalid(f"expected an HTTP error status from 400 to 599, got {written}")
        return written
    if written in MOCK_FAULTS:
        return written
    if written.startswith("slow:"):
        try:
            parse_duration(written.removeprefix("slow:"))
        except ValueError as error:
            raise Invalid(f"slow:DURATION: {error}") from None
        return written
    raise Invalid(
        f"expected an HTTP status (like 503) or one of {', '.join(MOCK_FAULTS)}, slow:DURATION; "
        f"got {describe(node)}{did_you_mean(written, MOCK_FAULTS)}"
    )


_SLOW = _DURATION_TEXT.replace("^\\s*", "^slow:\\s*", 1)
mock_fail = Field(
    _mock_fail,
    {
        "anyOf": [
            {"type": "null"},
            {"type": "integer", "minimum": 400, "maximum": 599},
            {"type": "string", "pattern": "^0*[45][0-9][0-9]$"},
            {"enum": list(MOCK_FAULTS)},
            {"type": "string", "pattern": _SLOW},
        ]
    },
    "HTTP status or fault name",
)


# ---------------------------------------------------------------- settings from declarations


def settings_parsers(cls: type) -> dict[str, Field[Any]]:
    """One field per setting of dataclass `cls`, from each field's declared ValueKind or Literal type,
    its meaning and its default (as it would be written in YAML)."""
    hints = get_type_hints(cls)
    names = setting_names(cls)
    parsers: dict[str, Field[Any]] = {}
    for declared in fields(cls):
        if declared.name not in names:
            continue
        hint = hints[declared.name]
        kind: ValueKind | None = declared.metadata.get(SETTING)
        value = declared.default_factory() if declared.default_factory is not MISSING else declared.default
        parser = choice(get_args(hint)) if kind is None else _parser_for(kind, hint)
        parsers[declared.name] = parser.means(declared.metadata[MEANING], default=_as_written(kind, value))
    return parsers


def _as_written(kind: ValueKind | None, value: Any) -> Any:
    """A setting's default as a file would write it: `30s`, not 30.0."""
    if isinstance(kind, Duration):
        return format_duration(value)
    if isinstance(kind, Number) and float(value).is_integer():
        return int(value)
    if isinstance(kind, Settings):
        return {name: field.default for name, field in settings_parsers(type(value)).items()}
    return value


def _parser_for(kind: ValueKind, hint: Any) -> Field[Any]:
    if isinstance(kind, WholeNumber):
        return integer(kind.minimum)
    if isinstance(kind, Number):
        return number(kind.minimum, kind.maximum)
    if isinstance(kind, Duration):
        return duration(positive=kind.positive)
    return _settings_group(hint, kind)


def _settings_group(cls: type, kind: Settings) -> Field[Any]:
    """The given keys of a group like `backoff` only, so an entry can override `base` and keep `max`."""
    parsers = settings_parsers(cls)

    def parse(reader: NodeReader, node: Node, path: str) -> dict[str, Any]:
        pairs = reader.mapping(node, path, parsers, what=kind.what)
        if pairs is None:
            raise Invalid()
        return reader.fields(pairs, path, parsers)

    return Field(parse, object_schema(parsers), "mapping: " + ", ".join(parsers))


def object_schema(keys: Mapping[str, Field[Any]], *, required: Collection[str] = ()) -> dict[str, Any]:
    """A mapping that takes exactly `keys`, each described by its field."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: key_schema(field) for name, field in keys.items()},
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def key_schema(field: Field[Any]) -> dict[str, Any]:
    """A key's schema: its value's shape, what it does and its default."""
    described = dict(field.schema)
    if field.meaning:
        described["description"] = field.meaning
    if field.default is not NO_DEFAULT:
        described["default"] = field.default
    return described


#: One parser per Policy setting: `defaults:` and every entry mapping accept exactly these keys.
POLICY_PARSERS: Mapping[str, Field[Any]] = settings_parsers(Policy)


def with_overrides(base: Policy, overrides: Mapping[str, Any]) -> Policy:
    """`base` with the settings a file gave (a group like `backoff` merged key by key), noted as explicit."""
    if not overrides:
        return base
    changes = {
        key: replace(getattr(base, key), **value) if isinstance(value, dict) else value
        for key, value in overrides.items()
    }
    return replace(base, **changes, explicit=base.explicit | frozenset(overrides))
