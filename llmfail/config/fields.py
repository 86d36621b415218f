"""Value parsers, and the Policy's parsers derived from its field declarations.

A parser reads one YAML node and returns the value or raises `Invalid` (see
`yaml_nodes`). The Policy's settings are not listed here a second time:
`settings_parsers(Policy)` reads each field's declared `ValueKind` (or its
`Literal` choices) from `model.py`, so `defaults:` and every entry mapping
accept exactly the Policy's settings.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import fields, replace
from typing import Any, get_args, get_type_hints
from urllib.parse import urlsplit

from yaml.nodes import Node, ScalarNode

from ..durations import parse_duration
from ..redact import register_secret
from .model import (
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


def integer(minimum: int) -> Parser:
    def parse(reader: NodeReader, node: Node, path: str) -> int:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(f"expected a whole number >= {minimum}, got {describe(node)}")
        return value

    return parse


def number(minimum: float, maximum: float = math.inf) -> Parser:
    expected = f"a number >= {minimum:g}" if maximum == math.inf else f"a number from {minimum:g} to {maximum:g}"

    def parse(reader: NodeReader, node: Node, path: str) -> float:
        value = reader.scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum:
            raise Invalid(f"expected {expected}, got {describe(node)}")
        return float(value)

    return parse


def duration(*, positive: bool = False) -> Parser:
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

    return parse


def choice(options: Collection[str]) -> Parser:
    def parse(reader: NodeReader, node: Node, path: str) -> str:
        if isinstance(node, ScalarNode) and node.tag == STR_TAG and node.value in options:
            return str(node.value)
        hint = did_you_mean(str(node.value), options) if isinstance(node, ScalarNode) else ""
        raise Invalid(f"expected one of {', '.join(options)}, got {describe(node)}{hint}")

    return parse


def text(reader: NodeReader, node: Node, path: str) -> str:
    """A non-empty piece of text, as written (so `reply: yes` stays "yes", not True)."""
    if not isinstance(node, ScalarNode) or node.tag == NULL_TAG or not node.value.strip():
        raise Invalid(f"expected some text, got {describe(node) if node.tag != STR_TAG else 'empty text'}")
    reader.scalar(node)  # rejects tags YAML cannot read
    return str(node.value)


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(*, nullable: bool) -> Parser:
    def parse(reader: NodeReader, node: Node, path: str) -> str | None:
        if nullable and is_null(node):
            return None
        if isinstance(node, ScalarNode) and ENV_NAME.fullmatch(node.value):
            return str(node.value)
        # Never echo the value: people paste the key itself here.
        raise Invalid(
            "expected the NAME of an environment variable (letters, digits and _, like "
            "OPENAI_API_KEY), not a key; the value is not shown, keys belong in the environment"
        )

    return parse


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


def url(*, interpolated: bool) -> Parser:
    def parse(reader: NodeReader, node: Node, path: str) -> str:
        written = text(reader, node, path)
        value = interpolate(written, secret=False) if interpolated else written
        if not _is_http_url(value):
            raise Invalid(f"expected an http(s) URL, got {written!r}")
        return value.rstrip("/")

    return parse


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


def headers(reader: NodeReader, node: Node, path: str) -> dict[str, str]:
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


def _header_value(secret: bool) -> Parser:
    def parse(reader: NodeReader, node: Node, path: str) -> str:
        return interpolate(text(reader, node, path), secret=secret)

    return parse


def mock_fail(reader: NodeReader, node: Node, path: str) -> str | None:
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


# ---------------------------------------------------------------- settings from declarations


def settings_parsers(cls: type) -> dict[str, Parser]:
    """One parser per setting of dataclass `cls`, from each field's declared ValueKind or Literal type."""
    hints = get_type_hints(cls)
    names = setting_names(cls)
    parsers: dict[str, Parser] = {}
    for declared in fields(cls):
        if declared.name not in names:
            continue
        hint = hints[declared.name]
        kind: ValueKind | None = declared.metadata.get(SETTING)
        parsers[declared.name] = choice(get_args(hint)) if kind is None else _parser_for(kind, hint)
    return parsers


def _parser_for(kind: ValueKind, hint: Any) -> Parser:
    if isinstance(kind, WholeNumber):
        return integer(kind.minimum)
    if isinstance(kind, Number):
        return number(kind.minimum, kind.maximum)
    if isinstance(kind, Duration):
        return duration(positive=kind.positive)
    return _settings_group(hint, kind)


def _settings_group(cls: type, kind: Settings) -> Parser:
    """The given keys of a group like `backoff` only, so an entry can override `base` and keep `max`."""
    parsers = settings_parsers(cls)

    def parse(reader: NodeReader, node: Node, path: str) -> dict[str, Any]:
        pairs = reader.mapping(node, path, parsers, what=kind.what)
        if pairs is None:
            raise Invalid()
        return reader.fields(pairs, path, parsers)

    return parse


#: One parser per Policy setting: `defaults:` and every entry mapping accept exactly these keys.
POLICY_PARSERS: Mapping[str, Parser] = settings_parsers(Policy)


def with_overrides(base: Policy, overrides: Mapping[str, Any]) -> Policy:
    """`base` with the settings a file gave (a group like `backoff` merged key by key), noted as explicit."""
    if not overrides:
        return base
    changes = {
        key: replace(getattr(base, key), **value) if isinstance(value, dict) else value
        for key, value in overrides.items()
    }
    return replace(base, **changes, explicit=base.explicit | frozenset(overrides))
