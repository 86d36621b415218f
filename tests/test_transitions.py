"""The pure bench rules (`llmfail.store.transitions`) as tables: (previous state, inputs, expected).

Every backend only applies these functions atomically, so these rows are the
behaviour; `test_store_contract.py` then checks each backend applies them.
A row lists only the fields it is about; the rest must be unchanged from `prev`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from llmfail import redact
from llmfail.events import DETAIL_MAX
from llmfail.store import CLOCK_STEP_S, ModelState
from llmfail.store.transitions import (
    after_failure,
    after_success,
    can_claim_probe,
    clock_stepped_back,
    lift,
    manual_bench,
    probe_claimed,
    probe_released,
)

T = 1_700_000_000.0
KEY = "openai/gpt-4o"
FRESH = ModelState(model=KEY)
#: A failure's history fields, as a failure at T + 5 leaves them.
ERR = {
    "last_error_kind": "transient",
    "last_error_status": 503,
    "last_error_at": T + 5,
    "probe_holder": None,
    "probe_until": None,
}


def state(**fields: Any) -> ModelState:
    return replace(FRESH, **fields)


AUTO = state(bench_until=T + 30, benched_at=T, kind="transient", reason="503 upstream", bench_count=1, failures=1)
MANUAL = state(bench_until=T + 600, benched_at=T, manual=True, kind="manual", reason="bad deploy", bench_count=1)
HALF_OPEN = replace(AUTO, bench_until=T - 1, benched_at=T - 31)
LEASED = replace(HALF_OPEN, probe_holder="a", probe_until=T + 10)

# -- after_failure: (name, prev, inputs, expected changes, benched) -----------------------------------------------

FAILURES: list[tuple[str, ModelState, dict[str, Any], dict[str, Any], bool]] = [
    ("no bench_for only counts", FRESH, {"bench_for": None}, {"failures": 1, **ERR}, False),
    (
        "first bench lasts the cooldown",
        FRESH,
        {"bench_for": 30.0, "reason": "boom"},
        {
            "failures": 1,
            "bench_count": 1,
            "bench_until": T + 35,
            "benched_at": T + 5,
            "kind": "transient",
            "reason": "boom",
            **ERR,
        },
        True,
    ),
    (
        "the default factor keeps the cooldown fixed",
        replace(HALF_OPEN, bench_count=3),
        {"bench_for": 30.0},
        {"failures": 2, "bench_count": 4, "bench_until": T + 35, "benched_at": T + 5, "reason": None, **ERR},
        True,
    ),
    (
        "progressive cooldown grows with bench_count",
        replace(HALF_OPEN, bench_count=1),
        {"bench_for": 30.0, "factor": 3.0},
        {"failures": 2, "bench_count": 2, "bench_until": T + 65, "benched_at": T + 5, "reason": None, **ERR},
        True,
    ),
    (
        "progressive cooldown stops at the factor",
        replace(HALF_OPEN, bench_count=5),
        {"bench_for": 30.0, "factor": 3.0},
        {"failures": 2, "bench_count": 6, "bench_until": T + 95, "benched_at": T + 5, "reason": None, **ERR},
        True,
    ),
    (
        "min_until wins when later",
        FRESH,
        {"bench_for": 30.0, "min_until": T + 600},
        {"failures": 1, "bench_count": 1, "bench_until": T + 600, "benched_at": T + 5, "kind": "transient", **ERR},
        True,
    ),
    (
        "a running automatic bench is extended, keeping its start",
        AUTO,
        {"bench_for": 60.0, "reason": "again"},
        {"failures": 2, "bench_count": 2, "bench_until": T + 65, "reason": "again", **ERR},
        True,
    ),
    (
        "a running automatic bench is never shortened",
        replace(AUTO, bench_until=T + 600),
        {"bench_for": 30.0},
        {"failures": 2, "bench_count": 2, "bench_until": T + 600, "reason": None, **ERR},
        True,
    ),
    (
        "a running manual bench keeps flag, reason and kind",
        MANUAL,
        {"bench_for": 30.0, "reason": "503"},
        {"failures": 1, "bench_count": 2, **ERR},
        True,
    ),
    (
        "a running manual bench is only ever extended",
        MANUAL,
        {"bench_for": 30.0, "min_until": T + 900},
        {"failures": 1, "bench_count": 2, "bench_until": T + 900, **ERR},
        True,
    ),
    (
        "in flight when the bench began: counted, benches nothing",
        AUTO,
        {"bench_for": 30.0, "began": T - 1},
        {"failures": 2, **ERR},
        False,
    ),
    (
        "in flight on a manual bench: counted, benches nothing",
        MANUAL,
        {"bench_for": 30.0, "began": T - 1},
        {"failures": 1, **ERR},
        False,
    ),
    (
        "began after the bench began: benches as usual",
        AUTO,
        {"bench_for": 30.0, "began": T + 1},
        {"failures": 2, "bench_count": 2, "bench_until": T + 35, "reason": None, **ERR},
        True,
    ),
    (
        "began the instant the bench began: in flight (a virtual clock)",
        AUTO,
        {"bench_for": 30.0, "began": T},
        {"failures": 2, **ERR},
        False,
    ),
    (
        "an ended bench has no in-flight rule: benched afresh",
        HALF_OPEN,
        {"bench_for": 30.0, "began": T - 100},
        {"failures": 2, "bench_count": 2, "bench_until": T + 35, "benched_at": T + 5, "reason": None, **ERR},
        True,
    ),
    (
        "the failed probe's lease is released and it is benched again",
        LEASED,
        {"bench_for": 30.0},
        {"failures": 2, "bench_count": 2, "bench_until": T + 35, "benched_at": T + 5, "reason": None, **ERR},
        True,
    ),
    ("a count-only failure releases the lease too", LEASED, {"bench_for": None}, {"failures": 2, **ERR}, False),
    (
        "a bench from before a clock step back is not running: benched afresh",
        replace(AUTO, benched_at=T + 5 + CLOCK_STEP_S + 1, bench_until=T + 5000),
        {"bench_for": 30.0},
        {"failures": 2, "bench_count": 2, "bench_until": T + 35, "benched_at": T + 5, "reason": None, **ERR},
        True,
    ),
]


@pytest.mark.parametrize(
    ("prev", "inputs", "changes", "benched"), [row[1:] for row in FAILURES], ids=[row[0] for row in FAILURES]
)
def test_after_failure(prev: ModelState, inputs: dict[str, Any], changes: dict[str, Any], benched: bool) -> None:
    args: dict[str, Any] = {"kind": "transient", "status": 503, "bench_for": None, **inputs}
    assert after_failure(prev, T + 5, **args) == (replace(prev, **changes), benched)


def test_after_failure_redacts_and_truncates_the_reason() -> None:
    secret = "sk-test-TRANSITIONS-123456789"
    redact.register_secret(secret)
    got, _ = after_failure(FRESH, T, kind="auth", status=401, bench_for=60.0, reason=f"bad {secret} " + "x" * 2000)
    assert got.reason is not None and secret not in got.reason and len(got.reason) == DETAIL_MAX


# -- after_success: (name, prev, expected; None = nothing to write) -----------------------------------------------

SUCCESSES: list[tuple[str, ModelState, ModelState | None]] = [
    ("a clean key writes nothing", FRESH, None),
    ("a clean key with old history writes nothing", state(last_error_kind="timeout", last_error_at=T - 9), None),
    ("an automatic bench is cleared, history kept", AUTO, state(bench_count=0, failures=0)),
    ("a half-open bench is closed and its lease released", LEASED, state()),
    ("counted failures reset", state(failures=3, last_error_kind="timeout"), state(last_error_kind="timeout")),
    ("a running manual bench is kept", replace(MANUAL, failures=2), replace(MANUAL, bench_count=0)),
    ("a running manual bench with nothing to reset writes nothing", replace(MANUAL, bench_count=0), None),
    ("an expired manual bench is cleared", replace(MANUAL, bench_until=T - 1), state()),
    (
        "a bench from before a clock step back is cleared",
        replace(AUTO, benched_at=T + CLOCK_STEP_S + 1, bench_until=T + 5000),
        state(),
    ),
]


@pytest.mark.parametrize(("prev", "expected"), [row[1:] for row in SUCCESSES], ids=[row[0] for row in SUCCESSES])
def test_after_success(prev: ModelState, expected: ModelState | None) -> None:
    assert after_success(prev, T) == expected


# -- manual_bench: (name, prev, inputs, expected changes) ------------------------------------------------------------

NEW = {"until": T + 300, "manual": True, "reason": "incident", "kind": None}
BENCHES: list[tuple[str, ModelState, dict[str, Any], dict[str, Any]]] = [
    (
        "a fresh key is benched with kind manual",
        FRESH,
        {},
        {
            "bench_until": T + 300,
            "benched_at": T,
            "manual": True,
            "reason": "incident",
            "kind": "manual",
            "bench_count": 1,
        },
    ),
    (
        "an explicit kind is kept",
        FRESH,
        {"manual": False, "kind": "transient", "reason": None},
        {"bench_until": T + 300, "benched_at": T, "kind": "transient", "bench_count": 1},
    ),
    ("a shorter re-bench keeps the running one whole", MANUAL, {"reason": None}, {}),
    ("a shorter re-bench with a reason keeps the running reason", MANUAL, {"reason": "other"}, {}),
    ("an operator bench shorter than an automatic one keeps it as it is", replace(AUTO, bench_until=T + 3600), {}, {}),
    ("an equal deadline keeps the running bench", MANUAL, {"until": T + 600, "reason": "same"}, {}),
    (
        "a longer re-bench extends, keeping the start, taking the new reason",
        MANUAL,
        {"until": T + 900, "reason": "still bad"},
        {"bench_until": T + 900, "reason": "still bad", "bench_count": 2},
    ),
    (
        "a longer re-bench without a reason keeps the operator's reason",
        MANUAL,
        {"until": T + 900, "reason": None},
        {"bench_until": T + 900, "bench_count": 2},
    ),
    (
        "extending an automatic bench makes it manual, without the error as reason",
        AUTO,
        {"reason": None},
        {"bench_until": T + 300, "manual": True, "reason": None, "kind": "manual", "bench_count": 2},
    ),
    (
        "an automatic bench extending a manual one keeps it manual",
        MANUAL,
        {"until": T + 900, "manual": False, "kind": "transient", "reason": "503"},
        {"bench_until": T + 900, "bench_count": 2},
    ),
    (
        "replace shortens a running bench",
        MANUAL,
        {"until": T + 60, "reason": None, "replace": True},
        {"bench_until": T + 60, "reason": None, "bench_count": 2},
    ),
    (
        "replace also lengthens, restarting the bench",
        AUTO,
        {"replace": True},
        {
            "bench_until": T + 300,
            "benched_at": T,
            "manual": True,
            "reason": "incident",
            "kind": "manual",
            "bench_count": 2,
        },
    ),
    (
        "an ended bench is not running: benched afresh, lease dropped",
        LEASED,
        {"until": T + 5},
        {
            "bench_until": T + 5,
            "benched_at": T,
            "manual": True,
            "reason": "incident",
            "kind": "manual",
            "bench_count": 2,
            "probe_holder": None,
            "probe_until": None,
        },
    ),
]


@pytest.mark.parametrize(("prev", "inputs", "changes"), [row[1:] for row in BENCHES], ids=[row[0] for row in BENCHES])
def test_manual_bench(prev: ModelState, inputs: dict[str, Any], changes: dict[str, Any]) -> None:
    assert manual_bench(prev, T, **{**NEW, **inputs}) == replace(prev, **changes)


# -- lift, probes, the clock-step rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prev",
    [FRESH, AUTO, MANUAL, LEASED, state(failures=4, slow_since=T, slow_ms=900.0)],
    ids=["fresh", "automatic", "manual", "leased", "demoted"],
)
def test_lift_clears_the_bench_and_counters_but_keeps_history_and_speed(prev: ModelState) -> None:
    got = lift(prev)
    assert (got.bench_until, got.benched_at, got.manual, got.reason, got.kind) == (None, None, False, None, None)
    assert (got.bench_count, got.failures, got.probe_holder, got.probe_until) == (0, 0, None, None)
    assert (got.last_error_kind, got.last_error_at, got.slow_since, got.slow_ms) == (
        prev.last_error_kind,
        prev.last_error_at,
        prev.slow_since,
        prev.slow_ms,
    )


PROBES: list[tuple[str, ModelState | None, float, str, bool]] = [
    ("an unknown key has nothing to probe", None, T, "a", False),
    ("a key never benched has nothing to probe", state(failures=2), T, "a", False),
    ("a running bench is not half-open", AUTO, T + 29, "a", False),
    ("a bench ends at bench_until", AUTO, T + 30, "a", True),
    ("a manual bench that ended is half-open", MANUAL, T + 600, "a", True),
    ("the lease is another holder's", LEASED, T, "b", False),
    ("the holder renews its own lease", LEASED, T, "a", True),
    ("an expired lease is free", LEASED, T + 10, "b", True),
    (
        "a bench from before a clock step back is half-open",
        replace(AUTO, benched_at=T + CLOCK_STEP_S + 1, bench_until=T + 5000),
        T,
        "a",
        True,
    ),
    (
        "a manual bench keeps its end across a clock step",
        replace(MANUAL, benched_at=T + CLOCK_STEP_S + 1, bench_until=T + 5000),
        T,
        "a",
        False,
    ),
]


@pytest.mark.parametrize(
    ("prev", "now", "holder", "expected"), [row[1:] for row in PROBES], ids=[row[0] for row in PROBES]
)
def test_can_claim_probe(prev: ModelState | None, now: float, holder: str, expected: bool) -> None:
    assert can_claim_probe(prev, now, holder) is expected


def test_a_claimed_probe_is_held_until_the_lease_ends_and_released_only_by_its_holder() -> None:
    held = probe_claimed(HALF_OPEN, T, lease=10.0, holder="a")
    assert (held.probe_holder, held.probe_until) == ("a", T + 10)
    assert probe_released(held, "b") is None
    assert probe_released(held, "a") == HALF_OPEN


@pytest.mark.parametrize(
    ("benched_at", "manual", "stepped"),
    [
        (T + CLOCK_STEP_S, False, False),  # within the step allowance: another writer's bench
        (T + CLOCK_STEP_S + 0.001, False, True),
        (T + CLOCK_STEP_S + 0.001, True, False),  # the operator's deadline is the operator's
        (None, False, False),
    ],
)
def test_clock_stepped_back(benched_at: float | None, manual: bool, stepped: bool) -> None:
    prev = state(bench_until=T + 9999, benched_at=benched_at, manual=manual)
    assert clock_stepped_back(prev, T) is stepped
    assert prev.is_benched(T) is not stepped and prev.is_half_open(T) is stepped
