"""`llmfail stats --format prometheus`: the per-model figures in Prometheus' text exposition format.

For node_exporter's textfile collector or a cron job that pushes to a gateway:
`llmfail stats --since 5m --format prometheus > /var/lib/node_exporter/llmfail.prom`.

Every figure is a gauge, not a counter: it is a count over the `--since` window
that ends now, so it can go down when old events leave the window (a counter
that Prometheus' `rate()` reads must only grow). The window's length is itself
a series, `llmfail_stats_window_seconds`. Times are in seconds (Prometheus' base
unit), percentiles carry a `quantile` label, and the state is a state set: one
series per possible state, 1 for the current one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .health import NO_DATA, EntryStatus
from .stats import ModelStats

#: Every state `stats` reports, so a series exists (at 0) before a model ever enters it.
STATES = (*EntryStatus, NO_DATA)

Labels = Mapping[str, str]


def _escape(value: str) -> str:
    """A label value as the exposition format requires: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _sample(name: str, labels: Labels, value: float) -> str:
    inside = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
    return f"{name}{{{inside}}} {_number(value)}"


#: (name, help, samples of one row): the per-model gauges, in the order they are printed.
_Samples = Callable[[ModelStats], Iterable[tuple[Labels, float]]]


def _plain(read: Callable[[ModelStats], float]) -> _Samples:
    return lambda row: [({}, read(row))]


def _quantiles(p50: Callable[[ModelStats], float | None], p95: Callable[[ModelStats], float | None]) -> _Samples:
    def samples(row: ModelStats) -> list[tuple[Labels, float]]:
        found = (("0.5", p50(row)), ("0.95", p95(row)))
        return [({"quantile": q}, ms / 1000) for q, ms in found if ms is not None]

    return samples


_GAUGES: tuple[tuple[str, str, _Samples], ...] = (
    (
        "llmfail_model_requests",
        "HTTP requests sent to the model in the window (retries included).",
        _plain(lambda r: r.requests),
    ),
    ("llmfail_model_ok", "Requests the model answered in the window.", _plain(lambda r: r.ok)),
    ("llmfail_model_failed", "Failed attempts on the model in the window.", _plain(lambda r: r.failed)),
    (
        "llmfail_model_errors",
        "Failed attempts on the model in the window, by error kind.",
        lambda row: [({"kind": kind}, n) for kind, n in sorted(row.errors.items())],
    ),
    (
        "llmfail_model_failovers",
        "Times a request left the model for the next entry in the window.",
        _plain(lambda r: r.failovers),
    ),
    (
        "llmfail_model_benches",
        "Benches of the model (automatic and manual) in the window.",
        _plain(lambda r: r.benched),
    ),
    (
        "llmfail_model_recoveries",
        "Half-open probes that closed a bench of the model in the window.",
        _plain(lambda r: r.recoveries),
    ),
    (
        "llmfail_model_latency_seconds",
        "Latency of the model's answering attempts in the window (nearest-rank percentiles).",
        _quantiles(lambda r: r.p50_ms, lambda r: r.p95_ms),
    ),
    (
        "llmfail_model_time_to_first_token_seconds",
        "Time to the first token of the model's streamed answers in the window (nearest-rank percentiles).",
        _quantiles(lambda r: r.ttft_p50_ms, lambda r: r.ttft_p95_ms),
    ),
    (
        "llmfail_model_state",
        "The model's state now: 1 for the current one (no data: healthy, but no request in the window).",
        lambda row: [({"state": state}, 1 if row.reported_state == state else 0) for state in STATES],
    ),
)


def exposition(rows: Iterable[ModelStats], *, window_s: float) -> str:
    """The figures of `rows` as Prometheus text: HELP and TYPE once per metric, one sample per model (and label)."""
    rows = list(rows)
    lines = [
        "# HELP llmfail_stats_window_seconds The length of the window the llmfail_model_* figures count over.",
        "# TYPE llmfail_stats_window_seconds gauge",
        f"llmfail_stats_window_seconds {_number(window_s)}",
    ]
    for name, text, samples in _GAUGES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [
            _sample(name, {"model": row.model, **labels}, value) for row in rows for labels, value in samples(row)
        ]
    return "\n".join(lines) + "\n"
