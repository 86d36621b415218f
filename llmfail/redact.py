"""Keeping API keys out of everything llmfail writes or prints.

Every key llmfail reads from the environment is registered here the moment it
is read; `redact()` then scrubs those exact values (and anything shaped like a
bearer token or a vendor key) from a text. The store, events, errors and CLI
output all pass through it, so a provider that echoes the key back in its error
body cannot leak it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

_lock = threading.Lock()
_secrets: set[str] = set()  # add only through register_secret(): the two below follow it
_ordered: tuple[str, ...] = ()  # the secrets, longest first (a longer one may contain a shorter)

# Key shapes worth scrubbing even when we did not load them ourselves.
_PATTERNS = re.compile(
    r"(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,})"
    r"|(?:AIza[0-9A-Za-z_\-]{20,})"
    r"|(?:(?<=Bearer )[A-Za-z0-9._\-]{8,})"
    r"|(?:(?<=key=)[A-Za-z0-9._\-]{8,})",
)

MASK = "***"

#: The shortest text `_PATTERNS` can match (`sk-` and 8 more characters).
_PATTERN_MIN = 11
_shortest = _PATTERN_MIN  # no shorter text can hold a registered secret or a key-shaped token
# Printable ASCII but `"` and `\\`: the characters `json.dumps` writes unchanged inside a string.
_JSON_VERBATIM = re.compile(r"[ !#-\[\]-~]*")
_verbatim = True  # every registered secret is one `json.dumps` writes unchanged


def register_secret(value: str | None) -> None:
    """Remember a secret so every later `redact()` removes it (short values are ignored)."""
    global _ordered, _shortest, _verbatim
    if value and len(value) >= 4:
        with _lock:
            if value not in _secrets:
                # The flags first, the list readers scan last: `redact()` and `redacted_json()`
                # read them without the lock, and must never see the secret without its flags.
                _verbatim = _verbatim and _JSON_VERBATIM.fullmatch(value) is not None
                _shortest = min(_shortest, len(value))
                _secrets.add(value)
                _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def env_secret(name: str) -> str | None:
    """Read an API key from the environment and register it; None when unset or empty."""
    value = os.environ.get(name) or None
    register_secret(value)
    return value


def redact(text: str | None) -> str | None:
    # Runs on every string of every event, error and output line: the secrets are
    # sorted once when registered, a text too short to hold any is returned as is,
    # and the regex runs only on a text holding one of its fixed parts.
    if not text or len(text) < _shortest:
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    if "sk-" in text or "AIza" in text or "Bearer " in text or "key=" in text:  # every match holds one
        return _PATTERNS.sub(MASK, text)
    return text


def redacted_json(value: Any) -> str:
    """`value` as compact JSON with every string in it (keys too) redacted.

    Unknown objects become their redacted `str()`, so a provider response object
    stuffed into an event's `data` can neither break the write nor leak a key.

    Why two paths: this runs for every event, and scrubbing string by string
    was a visible share of a request's cost. When every registered secret is
    written verbatim by `json.dumps` (plain ASCII, as API keys are) and so are
    the key shapes `_PATTERNS` knows, a secret inside any string shows in the
    JSON text too; so a text that `redact()` leaves unchanged holds none and is
    the answer. Anything found (or a secret with quotes, backslashes or
    non-ASCII) takes the careful path, which never cuts through JSON syntax.
    """
    if _verbatim:
        try:
            text = json.dumps(value, separators=(",", ":"), default=_jsonable)
        except (TypeError, ValueError):  # keys of odd types, cycles: the careful path decides
            pass
        else:
            if redact(text) == text:
                return text
    return json.dumps(_scrub(value), separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, set | frozenset) else str(value)


def _json_key(key: Any) -> str:
    """A dict key as `json.dumps` writes it (`True` -> "true"), so both paths store the same."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    return str(key)


def _scrub(value: Any) -> Any:
    """A JSON-safe copy of `value` with every string (keys too) redacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(_json_key(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return redact(str(value))
