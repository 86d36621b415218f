"""`llmfail probe`: the cheapest real request to every entry, at once, and what its answer means.

Operators want to know before a user request fails whether each model is
healthy, slow or down. A probe is one 1-token completion through the entry's
own adapter and the engine's HTTP plumbing (`Engine.attempt_once`), so it
meets exactly what a request would: the same URL, key, headers, timeouts and
classification. A free model listing (`GET /models`, `/api/tags`) would be
cheaper still, but it proves only that the server is up, not that the model
answers or how fast, so it is not used.

    healthy   answered within the entry's slow_threshold
    slow      answered, first token after slow_threshold
    degraded  answered with an error worth retrying (429, 5xx), or refused
              the probe request itself (400-class: context, invalid, filter)
    offline   no answer: timeout, connection refused/reset, auth dead

Every entry is probed concurrently (the total time is the slowest probe's,
not the sum), each within its own `timeout`. Each result is a `probe` event.
Benches are left alone (the engine's half-open probe owns those), but an
answer's time decides slow demotion on its own: a slow probe demotes the
entry, a fast one restores it (see `HealthTracker.note_speed` in `llmfail.health`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from . import events as ev
from .config import unique_entries
from .errors import REQUEST_KINDS, Kind, ProviderError
from .events import Event
from .providers.base import ChatRequest
from .redact import env_secret, redact

if TYPE_CHECKING:
    from .config import Chain, Config, Entry
    from .engine import Engine
    from .journal import Journal
    from .store import Store


class ProbeVerdict(StrEnum):
    """What one probe request just found (`probe --json`'s `state`). Not an entry status
    (`llmfail.health.EntryStatus`): a probe is fresh evidence from the network, a status is
    what the shared state says; a probe changes a status only through the usual records."""

    HEALTHY = "healthy"  # answered, first token within slow_threshold
    SLOW = "slow"  # answered, first token above slow_threshold
    DEGRADED = "degraded"  # the provider answered, but with an error (rate limit, overload, bad request)
    OFFLINE = "offline"  # no usable answer: down, unreachable, timed out, or the credential is dead


HEALTHY, SLOW, DEGRADED, OFFLINE = ProbeVerdict

#: The probe request: one short user turn, at most one token back.
PROBE_REQUEST = ChatRequest(({"role": "user", "content": "ping"},), max_tokens=1, temperature=0.0)


@dataclass(frozen=True)
class ProbeResult:
    """What one entry's probe found."""

    model: str
    state: ProbeVerdict
    latency_ms: float | None  # time to the answer's first token, or to the failure
    kind: str | None = None  # the error kind when it failed
    status: int | None = None
    detail: str | None = None  # the (redacted) error message

    @property
    def answered(self) -> bool:
        return self.state in (HEALTHY, SLOW)

    def to_json(self) -> dict[str, Any]:
        """The `probe --json` row (docs/events.md)."""
        return {
            "model": self.model,
            "state": self.state,
            "latency_ms": round(self.latency_ms, 1) if self.latency_ms is not None else None,
            "kind": self.kind,
            "status": self.status,
        }


@dataclass(frozen=True)
class ProbeReport:
    """Every probed entry once (in config order) and, per chain, whether a healthy entry is left."""

    results: tuple[ProbeResult, ...]
    chains: dict[str, bool]  # chain name -> has a healthy entry

    @property
    def ok(self) -> bool:
        """The exit-code question: does every probed chain still have a healthy entry?"""
        return all(self.chains.values())


def state_of_error(err: ProviderError) -> ProbeVerdict:
    """offline when nothing usable answered; degraded when the provider answered with an error."""
    if err.kind in (Kind.TIMEOUT, Kind.AUTH):
        return OFFLINE
    if err.kind == Kind.TRANSIENT and err.status is None:  # refused, reset: no HTTP answer at all
        return OFFLINE
    if err.kind in (Kind.RATE_LIMITED, Kind.TRANSIENT, Kind.QUOTA) or err.kind in REQUEST_KINDS:
        return DEGRADED
    return OFFLINE


async def probe_entry(engine: Engine, entry: Entry) -> ProbeResult:
    """One entry, each credential in order until one is not auth-dead (like the walk)."""
    err: ProviderError | None = None
    began = engine.clock()
    for credential in entry.credentials:
        api_key = env_secret(credential.api_key_env) if credential.api_key_env else None
        began = engine.clock()
        try:
            timed = await engine.attempt_once(entry, PROBE_REQUEST, api_key)
        except ProviderError as error:
            err = error
            if error.kind == Kind.AUTH:
                continue
            break
        state = SLOW if timed.ttft_ms > entry.policy.slow_threshold * 1000 else HEALTHY
        return ProbeResult(entry.model, state, timed.ttft_ms)
    assert err is not None
    return ProbeResult(
        entry.model,
        state_of_error(err),
        (engine.clock() - began) * 1000,
        str(err.kind),
        err.status,
        redact(err.message),
    )


async def probe_chains(engine: Engine, chains: Sequence[Chain]) -> ProbeReport:
    """Probe every entry of `chains` concurrently; write one `probe` event per entry, and let
    each answer's time demote or restore the entry (slow demotion)."""
    entries = unique_entries(chains)
    results = await asyncio.gather(*(probe_entry(engine, entry) for entry in entries))
    record(engine.journal, results, engine.clock())
    for entry, result in zip(entries, results, strict=True):
        if result.answered and result.latency_ms is not None:  # "or its last probe": demote or restore
            engine.note_probe_speed(entry, result.latency_ms)
    by_model = {r.model: r for r in results}
    verdict = {chain.name: any(by_model[e.model].state == HEALTHY for e in chain.entries) for chain in chains}
    return ProbeReport(tuple(results), verdict)


def record(journal: Journal, results: Sequence[ProbeResult], now: float) -> list[Event]:
    """The results as `probe` events, in one write (`source` tells them from the engine's half-open
    probes), through the engine's journal so its observers see them; returns the stored events."""
    return journal.write_many(
        [
            Event(
                type=ev.PROBE,
                ts=now,
                model=r.model,
                kind=r.kind,
                status=r.status,
                latency_ms=r.latency_ms,
                detail=r.detail,
                data={"ok": r.answered, "state": r.state, "source": "llmfail probe"},
            )
            for r in results
        ]
    )


def run_probe(config: Config, store: Store, chains: Sequence[Chain]) -> ProbeReport:
    """`probe_chains` for the CLI: its own engine and event loop, closed afterwards."""
    from .engine import Engine

    engine = Engine(config, store, clock=time.time)

    async def go() -> ProbeReport:
        try:
            return await probe_chains(engine, chains)
        finally:
            await engine.aclose()

    return asyncio.run(go())
