"""Expectations a CI run checks against a report: each one a pass/fail testcase.

--expect-success-rate R        share of requests answered        >= R
--expect-p99 DURATION          simulated p99 latency              <= DURATION
--expect-max-failovers N       failovers over the whole run       <= N
--expect-served-by MODEL=SHARE share of requests MODEL answered   >= SHARE
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..durations import parse_duration
from ..errors import UsageError
from .report import ExpectationResult, Report


@dataclass(frozen=True)
class Expectation:
    """A named bound on one figure of the report."""

    name: str
    op: str  # ">=" or "<="
    bound: float

    def actual(self, report: Report) -> float | int:
        if self.name == "success_rate":
            return report.success_rate
        if self.name == "p99_ms":
            return report.latency(99)
        if self.name == "failovers":
            return report.failovers
        return report.share(self.name.removeprefix("served_by:"))

    def check(self, report: Report) -> ExpectationResult:
        actual = self.actual(report)
        ok = actual >= self.bound if self.op == ">=" else actual <= self.bound
        return ExpectationResult(self.name, ok, f"{self.op} {self.bound:g}", actual)


def _share(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{flag}: expected a fraction between 0 and 1, got {text!r}")
    return value


def build_expectations(
    *,
    success_rate: float | None = None,
    p99: str | None = None,
    max_failovers: int | None = None,
    served_by: Sequence[str] = (),
    models: Sequence[str] = (),
) -> tuple[Expectation, ...]:
    """Expectations from the command-line values, validated (UsageError on a bad one)."""
    out: list[Expectation] = []
    if success_rate is not None:
        out.append(Expectation("success_rate", ">=", _share(str(success_rate), "--expect-success-rate")))
    if p99 is not None:
        try:
            out.append(Expectation("p99_ms", "<=", parse_duration(p99) * 1000))
        except ValueError as exc:
            raise UsageError(f"--expect-p99: {exc}") from None
    if max_failovers is not None:
        if max_failovers < 0:
            raise UsageError("--expect-max-failovers: expected a count >= 0")
        out.append(Expectation("failovers", "<=", float(max_failovers)))
    for item in served_by:
        model, eq, share = item.rpartition("=")
        if not eq or not model:
            raise UsageError(
                f"--expect-served-by {item!r}: expected MODEL=SHARE",
                hint="for example --expect-served-by openai/gpt-4o=0.9",
            )
        if models and model not in models:
            raise UsageError(
                f"--expect-served-by {item!r}: {model!r} is not an entry of this chain",
                hint=f"the chain's entries: {', '.join(models)}",
            )
        out.append(Expectation(f"served_by:{model}", ">=", _share(share, "--expect-served-by")))
    return tuple(out)
