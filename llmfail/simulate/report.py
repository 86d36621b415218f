"""What a simulation saw, gathered from the engine's own events, and its `--json` shape.

The figures come from the events the engine writes (through an observer), so
`simulate` measures exactly what `llmfail events` and `stats` would show for
the same traffic. Every figure is simulated: times are virtual milliseconds,
and nothing from the wall clock enters a report, so a seed reproduces it bit
for bit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..events import Event
from ..stats import percentile


@dataclass
class ModelFigures:
    """One entry's attempts (failed + answered), its errors by kind, and its automatic benches."""

    attempts: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    benched: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "benched": self.benched,
        }


@dataclass
class Window:
    """Figures of one stretch of simulated time (a scenario phase, or a minute of the timeline)."""

    name: str
    start_s: float
    end_s: float
    faults: tuple[str, ...] = ()
    requests: int = 0
    succeeded: int = 0
    failovers: int = 0
    panics: int = 0
    served: Counter[str] = field(default_factory=Counter)
    benched: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.requests - self.succeeded

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "faults": list(self.faults),
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "success_rate": _rate(self.succeeded, self.requests),
            "failovers": self.failovers,
            "panics": self.panics,
            "served": dict(self.served),
            "benched": dict(self.benched),
        }


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    ok: bool
    expected: str  # the bound with its comparison, e.g. ">= 0.99"
    actual: float | int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "expected": self.expected, "actual": self.actual}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


@dataclass
class Report:
    """The outcome of one simulation; `to_json()` is the `simulate --json` shape (docs/simulate.md)."""

    chain: str
    models: dict[str, ModelFigures]
    requests: int = 0
    succeeded: int = 0
    failovers: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    simulated_s: float = 0.0
    phases: list[Window] | None = None  # scenario runs only
    timeline: list[Window] | None = None  # scenario runs only, one window per minute
    expectations: list[ExpectationResult] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C ended the run early: the figures cover what was done

    @property
    def failed(self) -> int:
        return self.requests - self.succeeded

    @property
    def success_rate(self) -> float:
        return _rate(self.succeeded, self.requests)

    def latency(self, p: float) -> float:
        return round(percentile(self.latencies_ms, p) or 0.0, 1)

    def share(self, model: str) -> float:
        """The fraction of all requests this model answered."""
        figures = self.models.get(model)
        return _rate(figures.ok if figures else 0, self.requests)

    @property
    def ok(self) -> bool:
        """Every expectation was met (vacuously true without any)."""
        return all(e.ok for e in self.expectations)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chain": self.chain,
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "success_rate": self.success_rate,
            "failovers": self.failovers,
            "latency_ms": {"p50": self.latency(50), "p95": self.latency(95), "p99": self.latency(99)},
            "models": {name: figures.to_json() for name, figures in self.models.items()},
            "expectations": [e.to_json() for e in self.expectations],
        }
        if self.phases is not None:
            out["phases"] = [w.to_json() for w in self.phases]
        if self.timeline is not None:
            out["timeline"] = [w.to_json() for w in self.timeline]
        return out


class Recorder:
    """An engine observer that turns events into a Report as they happen.

    `windows_of(offset_s)` says which scenario phase an event belongs to (by
    the time it happened, so a request counts where it finished); rows of the
    timeline (a minute each, or `step` seconds) are found the same way.
    """

    def __init__(
        self,
        chain: str,
        models: Sequence[str],
        epoch: float,
        *,
        phases: list[Window] | None = None,
        phase_of: Callable[[float], int] | None = None,
        on_request: Callable[[int], None] | None = None,
        step: float = 60.0,
    ) -> None:
        self.report = Report(
            chain, {m: ModelFigures() for m in models}, phases=phases, timeline=[] if phases is not None else None
        )
        self._epoch = epoch
        self._phase_of = phase_of
        self._on_request = on_request
        self._step = step

    def _windows(self, offset: float) -> list[Window]:
        report = self.report
        if report.phases is None or report.timeline is None or self._phase_of is None:
            return []
        step = self._step
        row = max(0, int(offset // step))
        while len(report.timeline) <= row:
            m = len(report.timeline)
            report.timeline.append(Window(f"{m * step / 60:g}m", m * step, (m + 1) * step))
        return [report.phases[self._phase_of(offset)], report.timeline[row]]

    def __call__(self, event: Event) -> None:
        kind = event.type
        report = self.report
        if kind not in (ev.REQUEST, ev.ATTEMPT_FAILED, ev.FAILOVER, ev.BENCHED, ev.PANIC):
            return
        offset = event.ts - self._epoch
        report.simulated_s = max(report.simulated_s, offset)
        windows = self._windows(offset)
        figures = report.models.get(event.model or "")
        if kind == ev.REQUEST:
            answered = event.data.get("answered_by")
            report.requests += 1
            report.latencies_ms.append(event.latency_ms or 0.0)
            if event.data.get("ok") and answered:
                report.succeeded += 1
                if answered in report.models:
                    report.models[answered].attempts += 1
                    report.models[answered].ok += 1
            for w in windows:
                w.requests += 1
                if event.data.get("ok") and answered:
                    w.succeeded += 1
                    w.served[answered] += 1
            if self._on_request is not None:
                self._on_request(report.requests)
        elif kind == ev.ATTEMPT_FAILED:
            if figures is not None:
                figures.attempts += 1
                figures.errors[event.kind or "unknown"] += 1
        elif kind == ev.FAILOVER:
            report.failovers += 1
            for w in windows:
                w.failovers += 1
        elif kind == ev.BENCHED:
            if figures is not None:  # entry benches; a credential's own bench (model#N) is not the entry's
                figures.benched += 1
                for w in windows:
                    w.benched[event.model or ""] += 1
        elif kind == ev.PANIC:
            for w in windows:
                w.panics += 1
