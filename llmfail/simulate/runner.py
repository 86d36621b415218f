"""Drive a chain with simulated traffic on virtual time and report what happened.

Two shapes of traffic:
- **closed loop** (`--requests N --concurrency C`): C callers each send their
  next request as soon as the previous one is answered, until N are done;
- **scenario** (`--scenario FILE`): open-loop arrivals at the file's rate for
  its duration, with faults switched at each phase boundary, so benching,
  panic and failback can be watched over an incident.

Isolation: the state DB is a fresh in-memory SQLite database (the real
store, its schema and transactions), so a simulation never sees nor changes
the operator's benches. With a `db` it still runs on a private copy of that
DB's running benches, then writes its events (and the benches it made) there
backdated, so the simulated timeline ends at the wall clock: `events`,
`stats` and the dashboard never see a row from the future.
Reproducibility: the faults and the engine draw from two generators seeded
from `seed`, the clock is virtual, and a fresh DB starts from a fixed epoch;
same inputs, same report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from random import Random

from ..config import Config
from ..engine import Engine
from ..errors import LlmfailError, UsageError
from ..events import BENCHED
from ..providers.base import Runtime
from ..store import Store
from ..store.sqlite import SqliteStore
from .expect import Expectation
from .faults import FaultSpec, faults_by_model
from .providers import FakeProviders
from .report import Recorder, Report, Window
from .scenario import Scenario
from .vtime import run_virtual

#: Where virtual time starts on a fresh DB: 2026-01-01T00:00:00Z (any fixed instant works).
EPOCH = 1_767_225_600.0

#: The fake providers' base latency when none is given (jittered ×0.5–1.5).
DEFAULT_LATENCY = 0.2

PROMPT = "simulated request"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Plan:
    """Everything that decides a simulation's outcome."""

    chain: str
    faults: tuple[FaultSpec, ...] = ()
    requests: int = 100
    concurrency: int = 1
    seed: int = 0
    latency: float | None = None  # None: the scenario's, else DEFAULT_LATENCY
    stream: bool = False
    scenario: Scenario | None = None
    expectations: tuple[Expectation, ...] = ()


def simulate(
    config: Config, plan: Plan, *, db: str | None = None, on_progress: Progress | None = None, step: float = 60.0
) -> Report:
    """Run `plan` against fake providers on virtual time; the report carries the checked expectations.

    With `db` the benches running in that state DB apply, and the run's events
    and benches are written there at the end, stamped so that the simulated
    timeline ends now (see `_write_back`); without, a fresh private DB lives
    only as long as the run. Ctrl-C ends the run early: the report then covers
    the requests answered so far and has `interrupted` set. A scenario's
    timeline has a row per `step` seconds.
    """
    if plan.requests < 1 or plan.concurrency < 1:
        raise UsageError("--requests and --concurrency must be at least 1")
    chain = config.chain(plan.chain)
    models = [e.model for e in chain.entries]
    # Every fault of every phase is checked before anything runs.
    faults_by_model(plan.faults, models)
    if plan.scenario is not None:
        for phase in plan.scenario.phases:
            faults_by_model(phase.faults, models, where=f"{plan.scenario.path}, phase {phase.name!r}: fault")
    # The same SQLite store and SQL, in memory: private to this run, gone at its end,
    # and no file I/O per event (a third of a simulated request's cost on a file).
    private = SqliteStore(":memory:")
    try:
        if db is None:
            report = run_virtual(_simulate(config, plan, private, EPOCH, on_progress, step))
        else:
            from ..store import open_store

            target = open_store(db)
            try:
                start = float(int(time.time()))
                for state in target.benches(start):
                    private.bench(
                        state.model,
                        now=start,
                        until=state.bench_until or start,
                        manual=state.manual,
                        reason=state.reason,
                        kind=state.kind,
                    )
                report = run_virtual(_simulate(config, plan, private, start, on_progress, step))
                _write_back(private, target, start, report.simulated_s)
            finally:
                target.close()
    finally:
        private.close()
    report.expectations = [e.check(report) for e in plan.expectations]
    return report


def _write_back(private: Store, target: Store, start: float, length: float) -> None:
    """The run's events into `target`, moved back by its simulated length so the last one is
    stamped about now; and the benches it started, likewise moved back (one still running
    at the end of the run runs on from now by what it had left)."""
    shift = length

    def back(ts: float | None) -> float | None:
        return None if ts is None else ts - shift

    events = private.events()
    target.append([replace(e, ts=e.ts - shift, benched_until=back(e.benched_until), id=None) for e in events])
    benched = {e.model for e in events if e.type == BENCHED and e.model}
    end = start + length
    for state in private.benches(end):  # still running at the end of the run, so after `start` once moved
        if state.model in benched and state.bench_until is not None:
            # the failure that benched it, so `ls-benched`, `stats` and the dashboard show its last error
            failed_at = max(start, (state.last_error_at or end) - shift)
            target.record_failure(
                state.model,
                now=failed_at,
                kind=state.last_error_kind or state.kind or "transient",
                status=state.last_error_status,
                bench_for=state.bench_until - shift - failed_at,
                reason=state.reason,
            )


async def _simulate(
    config: Config, plan: Plan, store: Store, epoch: float, on_progress: Progress | None, step: float
) -> Report:
    loop = asyncio.get_running_loop()
    start = loop.time()

    def clock() -> float:
        return epoch + loop.time()

    scenario = plan.scenario
    latency = (
        plan.latency
        if plan.latency is not None
        else (scenario.latency if scenario and scenario.latency is not None else DEFAULT_LATENCY)
    )
    fakes = FakeProviders(
        config, plan.chain, Runtime(clock, asyncio.sleep, Random(f"{plan.seed}/faults")), latency=latency
    )
    models = [e.model for e in fakes.chain.entries]
    engine = Engine(
        fakes.config, store, clock=clock, sleep=asyncio.sleep, rng=Random(f"{plan.seed}/engine"), transport=fakes
    )
    total = scenario.requests if scenario else plan.requests
    phases = (
        [Window(p.name, p.start, scenario.end_of(i), tuple(map(str, p.faults))) for i, p in enumerate(scenario.phases)]
        if scenario
        else None
    )
    recorder = Recorder(
        plan.chain,
        models,
        epoch,
        phases=phases,
        phase_of=scenario.phase_at if scenario else None,
        on_request=(lambda done: on_progress(done, total)) if on_progress else None,
        step=step,
    )
    engine.on_event(recorder)

    async def one() -> None:
        try:
            await engine.complete(plan.chain, PROMPT, stream=plan.stream)
        except LlmfailError:
            pass  # the failure is in the events the recorder saw

    try:
        if scenario is None:
            fakes.set_faults(faults_by_model(plan.faults, models))
            await _closed_loop(one, plan.requests, plan.concurrency)
        else:
            await _scenario(one, fakes, scenario, plan.faults, models, start)
    except asyncio.CancelledError:  # Ctrl-C: asyncio cancelled the run; report what was done
        recorder.report.interrupted = True
    finally:
        await engine.aclose()
    return recorder.report


async def _closed_loop(one: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> None:
    sent = 0

    async def caller() -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            await one()

    await asyncio.gather(*(caller() for _ in range(min(concurrency, requests))))


async def _scenario(
    one: Callable[[], Awaitable[None]],
    fakes: FakeProviders,
    scenario: Scenario,
    always: tuple[FaultSpec, ...],
    models: list[str],
    start: float,
) -> None:
    loop = asyncio.get_running_loop()
    current = -1

    def enter(index: int) -> None:
        nonlocal current
        if index != current:
            current = index
            fakes.set_faults(faults_by_model(always + scenario.phases[index].faults, models))

    async def switch_phases() -> None:
        # Faults change at the boundary even for retries in flight, not only for new arrivals.
        for index, phase in enumerate(scenario.phases):
            await asyncio.sleep(max(0.0, start + phase.start - loop.time()))
            enter(index)

    enter(0)
    switcher = asyncio.create_task(switch_phases())
    requests: list[asyncio.Future[None]] = []
    for offset in scenario.arrivals():
        await asyncio.sleep(max(0.0, start + offset - loop.time()))
        enter(scenario.phase_at(offset))
        requests.append(asyncio.ensure_future(one()))
    await asyncio.gather(switcher, *requests)
