"""The one health vocabulary: every view asks `entry_status` (table tests on plain states)."""

from __future__ import annotations

import pytest

from llmfail.config import parse_config
from llmfail.health import EntryStatus, entry_status
from llmfail.store import ModelState

NOW = 1_000_000.0

CONFIG = parse_config(
    """
chains:
  prod:
    - mock/a
    - model: mock/b
      credentials: [{api_key_env: K1}, {api_key_env: K2}]
  other:
    - mock/b
    - mock/c
""",
    "t.yaml",
)
A, B = CONFIG.chains["prod"].entries


def st(model: str, **fields: object) -> ModelState:
    return ModelState(model=model, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({}, EntryStatus.HEALTHY),
        ({"mock/a": st("mock/a", failures=2)}, EntryStatus.HEALTHY),
        ({"mock/a": st("mock/a", bench_until=NOW + 5, benched_at=NOW - 1)}, EntryStatus.BENCHED),
        ({"mock/a": st("mock/a", bench_until=NOW + 5, benched_at=NOW, manual=True)}, EntryStatus.MANUAL),
        ({"mock/a": st("mock/a", bench_until=NOW - 1, benched_at=NOW - 30)}, EntryStatus.HALF_OPEN),
        (
            {"mock/a": st("mock/a", bench_until=NOW - 1, benched_at=NOW - 30, probe_holder="h", probe_until=NOW + 9)},
            EntryStatus.PROBING,
        ),
        ({"mock/a": st("mock/a", slow_since=NOW - 60)}, EntryStatus.SLOW),
        # a bench set before the wall clock stepped back by more than a minute counts as ended
        ({"mock/a": st("mock/a", bench_until=NOW + 5000, benched_at=NOW + 4000)}, EntryStatus.HALF_OPEN),
    ],
)
def test_entry_status_of_a_single_credential_entry(states: dict[str, ModelState], expected: EntryStatus) -> None:
    assert entry_status(A, states, NOW) == expected


def test_an_entry_is_benched_when_every_credential_is_and_live_while_one_is_not() -> None:
    one = {"mock/b#0": st("mock/b#0", bench_until=NOW + 60, benched_at=NOW)}
    both = one | {"mock/b#1": st("mock/b#1", bench_until=NOW + 60, benched_at=NOW)}
    assert entry_status(B, one, NOW) == EntryStatus.HEALTHY
    assert entry_status(B, both, NOW) == EntryStatus.BENCHED


def test_live_statuses_are_the_ones_a_request_walks() -> None:
    assert {s for s in EntryStatus if s.is_live} == {EntryStatus.HEALTHY, EntryStatus.SLOW, EntryStatus.HALF_OPEN}
    assert {s for s in EntryStatus if s.is_benched} == {EntryStatus.BENCHED, EntryStatus.MANUAL}


def test_bench_keys_of_entries_and_configs() -> None:
    assert A.bench_keys() == ("mock/a",) and A.credential_keys() == ()
    assert B.bench_keys() == ("mock/b", "mock/b#0", "mock/b#1")
    assert [e.model for e in CONFIG.entries()] == ["mock/a", "mock/b", "mock/c"]
    assert CONFIG.bench_keys() == {"mock/a", "mock/b", "mock/b#0", "mock/b#1", "mock/c"}
