"""Per-model health figures from the event log: what `llmfail stats` prints and the dashboard shows.

One function, `model_stats`, so the CLI table, `stats --json` and the TUI's
health table can never disagree. The store does the counting with indexed
queries (`Store.tally`); this module only turns counts into percentiles and a
state, so it stays fast on a log of millions of events.

Definitions (documented for users in docs/operations.md, `llmfail stats`):

- `requests`: HTTP requests sent to the model (retries included), i.e. `ok + failed`.
- `ok`: requests it answered; `failed`: failed attempts; `errors`: those by kind.
- `failovers`: times a request left this model for the next entry.
- `benched`: benches (automatic and manual); `recoveries`: half-open probes
  that closed a bench.
- `p50_ms`/`p95_ms` and `ttft_p50_ms`/`ttft_p95_ms`: nearest-rank percentiles
  of the answering attempt's latency and time to first token, over the
  model's newest `PERCENTILE_SAMPLE` answers in the window.
- `state`: `manual`, `benched`, `probing`, `half-open`, `slow` or `healthy` right
  now (`llmfail.health.EntryStatus`), except that a model that would be
  `healthy` but has no request in the window is `no data`: nothing says it
  answers, so calling it healthy would be a guess. A bench, a half-open probe
  or a slow demotion is known from the shared state and is always shown as such,
  traffic or not. `ModelStats.state` itself stays the health status (what the
  engine routes by); `reported_state` is what `stats` and the dashboard show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .health import NO_DATA, EntryStatus, entry_status

if TYPE_CHECKING:
    from .config import Chain, Config, Entry
    from .store import EventTally, ModelState, Store

#: Answers per model the percentiles are taken over (the newest in the window).
#: A bounded sample keeps `stats` fast on huge windows; for any window with
#: fewer answers the percentiles are exact.
PERCENTILE_SAMPLE = 2000

#: A live model with no request in the window: its health is unknown, not "healthy".

#: Worst first: the order a dashboard sorts troubled models by (`llmfail.health`'s vocabulary, then no data).
STATES = (*EntryStatus, NO_DATA)


@dataclass(frozen=True)
class ModelStats:
    """One model's figures over a window, plus its health right now."""

    model: str
    requests: int = 0
    ok: int = 0
    failed: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    failovers: int = 0
    benched: int = 0
    recoveries: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    state: EntryStatus = EntryStatus.HEALTHY
    # What a dashboard shows beside the figures (from the shared state, not the window):
    failures: int = 0  # consecutive failed attempts since the last success
    bench_count: int = 0  # benches since the last success
    bench_until: float | None = None  # epoch s, when a bench is running or half-open
    bench_reason: str | None = None  # the operator's reason or the error that benched it
    last_error_kind: str | None = None
    last_error_status: int | None = None
    last_error_at: float | None = None
    last_seen: float | None = None  # newest event of the model in the window
    slow_ms: float | None = None  # the first-token latency that demoted it (state "slow")

    @property
    def success_rate(self) -> float | None:
        """ok / requests, None before any request."""
        return self.ok / self.requests if self.requests else None

    @property
    def reported_state(self) -> str:
        """The state `stats` reports: the health status, or NO_DATA for a healthy model with no request."""
        return no_data_or(self.state, self.requests)

    def to_json(self) -> dict[str, Any]:
        """The `stats --json` value for one model (docs/events.md)."""
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "errors": dict(sorted(self.errors.items())),
            "failovers": self.failovers,
            "benched": self.benched,
            "recoveries": self.recoveries,
            "p50_ms": _round(self.p50_ms),
            "p95_ms": _round(self.p95_ms),
            "state": self.reported_state,
        }


def model_stats(
    store: Store,
    *,
    since: float,
    now: float,
    chain: Chain | None = None,
    config: Config | None = None,
) -> dict[str, ModelStats]:
    """Figures for the events with `since <= ts <= now`, per model, with each model's state at `now`.

    With `chain`, only its entries, in chain order, counting only that chain's
    traffic (benches and recoveries count from every chain: a bench is shared).
    Otherwise every model of `config` (in config order, so an idle entry still
    shows) and then every other model that has events in the window, by name.
    Pure read.
    """
    tallies = store.tally(since=since, until=now, chain=chain.name if chain else None, sample=PERCENTILE_SAMPLE)
    entries = _entries(chain, config)
    if chain is not None:
        models = [e.model for e in chain.entries]
    else:
        models = list(entries) + sorted(m for m in tallies if m not in entries)
    keys = set(models) | {key for entry in entries.values() for key in entry.bench_keys()}
    states = store.states(keys)
    return {
        model: _stats(model, tallies.get(model), states, entries.get(model), now) for model in dict.fromkeys(models)
    }


def _entries(chain: Chain | None, config: Config | None) -> dict[str, Entry]:
    """The entries the rows are about, by model, first occurrence wins."""
    from .config import unique_entries

    chains = [chain] if chain is not None else list(config.chains.values()) if config is not None else []
    return {entry.model: entry for entry in unique_entries(chains)}


def _stats(
    model: str, tally: EventTally | None, states: Mapping[str, ModelState], entry: Entry | None, now: float
) -> ModelStats:
    own = states.get(model)
    failed = sum(tally.errors.values()) if tally else 0
    answered = tally.answered if tally else 0
    return ModelStats(
        model=model,
        requests=answered + failed,
        ok=answered,
        failed=failed,
        errors=dict(tally.errors) if tally else {},
        failovers=tally.failovers if tally else 0,
        benched=tally.benched if tally else 0,
        recoveries=tally.recoveries if tally else 0,
        p50_ms=percentile(tally.latencies_ms, 50) if tally else None,
        p95_ms=percentile(tally.latencies_ms, 95) if tally else None,
        ttft_p50_ms=percentile(tally.ttfts_ms, 50) if tally else None,
        ttft_p95_ms=percentile(tally.ttfts_ms, 95) if tally else None,
        state=entry_status(entry, states, now, model=model),
        failures=own.failures if own else 0,
        bench_count=own.bench_count if own else 0,
        bench_until=own.bench_until if own else None,
        bench_reason=own.reason if own and own.bench_until is not None else None,
        last_error_kind=own.last_error_kind if own else None,
        last_error_status=own.last_error_status if own else None,
        last_error_at=own.last_error_at if own else None,
        last_seen=tally.last_seen if tally else None,
        slow_ms=own.slow_ms if own and own.is_demoted else None,
    )


def no_data_or(state: str, requests: int) -> str:
    """`state`, unless it is `healthy` with no request to back it: then NO_DATA."""
    return NO_DATA if state == EntryStatus.HEALTHY and not requests else state


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `pct`% of the values at or
    below it. Always an observed value, so a hand count of a fixture gives the same figure."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
