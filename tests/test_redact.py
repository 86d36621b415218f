"""The fast paths of `redact()` (secrets sorted once, short texts returned as they are) and of
`redacted_json()` (one check of the JSON text) change no answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmfail import redact as r


def _reference(text: str | None, secrets: set[str]) -> str | None:
    """redact() as first written: every secret, longest first, then the key shapes, on every text."""
    if not text:
        return text
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, r.MASK)
    return r._PATTERNS.sub(r.MASK, text)


@contextmanager
def _registry() -> Iterator[None]:
    """Register secrets for one example only: the registry is process-wide."""
    saved = (set(r._secrets), r._ordered, r._shortest, r._verbatim)
    try:
        yield
    finally:
        r._secrets.clear()
        r._secrets.update(saved[0])
        r._ordered, r._shortest, r._verbatim = saved[1], saved[2], saved[3]


ALPHABET = "abcsk-ABC0123_.=/ BearerkeyAIza"


@given(
    secrets=st.lists(st.text(ALPHABET, min_size=0, max_size=14), max_size=4),
    parts=st.lists(
        st.one_of(st.text(ALPHABET, max_size=12), st.sampled_from(["sk-", "key=", "Bearer ", "AIza"])), max_size=8
    ),
)
def test_redact_gives_the_same_answer_as_the_plain_algorithm(secrets: list[str], parts: list[str]):
    with _registry():
        for secret in secrets:
            r.register_secret(secret)
        text = "".join(parts + secrets[:1] + parts[:2])
        assert r.redact(text) == _reference(text, set(r._secrets))
        for short in (text[:3], text[:10], text[:11]):
            assert r.redact(short) == _reference(short, set(r._secrets))


def test_a_short_secret_lowers_the_length_below_which_texts_are_left_alone():
    with _registry():
        assert r.redact("abcd efgh") == "abcd efgh"
        r.register_secret("efgh")
        assert r.redact("abcd efgh") == "abcd ***"
        assert r.redact("sk-12345678") == "***"


def _careful(value: Any) -> Any:
    """What `redacted_json` must give: every string redacted on its own (then as JSON)."""
    if isinstance(value, str):
        return r.redact(value)
    if isinstance(value, dict):
        return {r.redact(k): _careful(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_careful(v) for v in value]
    return value


JSON_ALPHABET = ALPHABET + '"\\\n:,{}[]é1'
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.text(JSON_ALPHABET, max_size=20),
    st.sampled_from(["sk-abcdefgh12", "Bearer tok-1234567", "key=AIzaSy0123456789abcdefghij"]),
)
documents = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(JSON_ALPHABET, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    secrets=st.lists(st.text(JSON_ALPHABET, min_size=4, max_size=10), max_size=3),
    value=documents,
    planted=st.integers(0, 3),
)
def test_redacted_json_gives_the_string_by_string_answer(secrets: list[str], value: Any, planted: int):
    with _registry():
        for secret in secrets:
            r.register_secret(secret)
        if secrets and planted < len(secrets):  # put a registered secret inside a string
            value = {"wrapped": value, "note": f"echo {secrets[planted]}!", secrets[planted]: 1}
        assert json.loads(r.redacted_json(value)) == json.loads(json.dumps(_careful(value)))


def test_redacted_json_turns_odd_objects_into_redacted_text():
    class Leaky:
        def __str__(self) -> str:
            return "response from sk-live-0123456789"

    with _registry():
        r.register_secret("sk-live-0123456789")
        value = {"obj": Leaky(), "tags": {"b"}, 3: (1, 2), "plain": "sk-live-0123456789"}
        assert json.loads(r.redacted_json(value)) == {
            "obj": "response from ***",
            "tags": ["b"],
            "3": [1, 2],
            "plain": "***",
        }


def test_redacted_json_writes_odd_keys_the_same_way_on_both_paths():
    value = {True: 1, None: 2, 1.5: 3, 7: 4}
    with _registry():
        r._verbatim = True  # whatever other tests registered
        quick = r.redacted_json(value)  # nothing to find: the one-check path
        r.register_secret("sk-live-0123456789")
        careful = r.redacted_json({**value, "x": "sk-live-0123456789"})
    assert (
        json.loads(careful) == {**json.loads(quick), "x": "***"} == {"true": 1, "null": 2, "1.5": 3, "7": 4, "x": "***"}
    )
