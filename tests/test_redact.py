"""`redact()`'s fast path (secrets sorted once, short texts returned as they are) changes no answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
    saved = (set(r._secrets), r._ordered, r._shortest)
    try:
        yield
    finally:
        r._secrets.clear()
        r._secrets.update(saved[0])
        r._ordered, r._shortest = saved[1], saved[2]


ALPHABET = "abcsk-ABC0123_.=/ BearerkeyAIza"


@given(
    secrets=st.lists(st.text(ALPHABET, min_size=0, max_size=14), max_size=4),
    parts=st.lists(st.one_of(st.text(ALPHABET, max_size=12), st.sampled_from(["sk-", "key=", "Bearer ", "AIza"])),
                   max_size=8),
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
