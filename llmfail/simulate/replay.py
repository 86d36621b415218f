"""`llmfail replay`: turn a window of the event log into a scenario, and what the log saw into a report.

After an incident the event log holds what happened, attempt by attempt. This
module reads a window of it (through the store's `EventLog.events` only, so any
backend works) and derives:

- a **scenario** in the `--scenario` format: the window cut into buckets of
  about 1/60 of the span of its requests (never under a second), each bucket
  measured — arrivals, and for every model the share of its attempts that
  failed each way — and consecutive buckets that behave alike made one
  phase, the boundaries placed where a likelihood test says behaviour
  changed (`phases.py`). A model with no attempt in a bucket (benched, or never
  reached) says nothing about it, so it never splits a phase; a phase in
  which it was never tried keeps its faults from the phase before.
- the **"then" report**: the log's own events counted by the same `Recorder`
  that counts a simulation, over the same phases, so "then" and "now"
  (`simulate` of the scenario on today's config) are measured alike.

A scenario holds only model names, fault words, rates and durations: no
prompt, answer, error text, key, host name or URL from the log, because these
files are committed to repositories.

How an attempt's failure becomes a fault word: an HTTP status stays the
status (a 429 with the wait its answer asked for becomes `429@20s`), a timeout
of llmfail's own is `timeout`, a failure with no status is `reset` (or
`stream-cut` when it was a stream cut short), an unparseable 200 answer is
`malformed`, and safety refusals and too-long prompts are `content-filter` and
`context-length`. An answer whose first token came much later than the model's
usual (over four times its median, and over a second more) is `slow:DURATION`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from statistics import median
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..errors import LlmfailError, UsageError
from ..events import Event, iso
from ..fakes import Fault
from ..store import EventLog
from .faults import FaultSpec
from .phases import Bucket, Run, find_runs, settle_mixed
from .report import Recorder, Report, Window
from .scenario import Phase, Scenario

if TYPE_CHECKING:
    from ..config import Config
    from .expect import Expectation

#: The event types a replay reads: outcomes, failed attempts, failovers, benches and panics.
TYPES = (ev.REQUEST, ev.ATTEMPT_FAILED, ev.FAILOVER, ev.BENCHED, ev.PANIC)

#: Rows read from the store per call: bounded memory per call, few round trips.
PAGE = 20_000

#: The buckets a span is cut into (about; a bucket is never under a second).
BUCKETS = 60

#: Fault rates are written with two decimals; smaller ones are noise in a scenario.
RATE_STEP = 0.01


@dataclass(frozen=True)
class Span:
    """The window of the log that was read, in epoch seconds (UTC)."""

    start: float
    end: float

    def to_json(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end)}


#: The window when none is given.
DEFAULT_SINCE = "1h"


def _moment(option: str, text: str) -> float:
    """An ISO 8601 time (UTC unless it names an offset) as epoch seconds; a usage error otherwise."""
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected an ISO 8601 time", hint="for example 2026-12-04T02:00Z or 2026-12-04 02:00"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def window(since: str | None, start: str | None, end: str | None, *, now: float) -> Span:
    """The window a replay reads: the last `since`, or `start` to `end` (default now)."""
    from ..durations import parse_duration

    if since is not None and (start is not None or end is not None):
        raise UsageError(
            "--since does not mix with --from/--to", hint="give --since DURATION or --from TIME [--to TIME]"
        )
    if start is None:
        if end is not None:
            raise UsageError("--to needs --from", hint="for example --from 2026-12-04T02:00Z --to 2026-12-04T03:30Z")
        try:
            length = parse_duration(since or DEFAULT_SINCE)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}", hint="durations look like 30m, 2h or 1d") from None
        if length <= 0:
            raise UsageError(f"--since {since}: an empty window", hint="durations look like 30m, 2h or 1d")
        return Span(now - length, now)
    span = Span(_moment("--from", start), _moment("--to", end) if end is not None else now)
    if end is None and span.end <= span.start:
        raise UsageError(f"--from {iso(span.start)} is in the future", hint=f"it is {iso(now)} now")
    if span.end <= span.start:
        raise UsageError(f"--to {iso(span.end)} is not after --from {iso(span.start)}")
    return span


class NoRequests(LlmfailError):
    """The window holds no request of the chain: nothing to replay (exit 1)."""


#: Ids follow the order rows were written, times nearly so (writers' clocks and a spool replayed
#: later differ a little): a page written this long after the window's end ends the reading.
PAST_END_S = 600.0


def read_window(log: EventLog, span: Span, *, page: int = PAGE) -> list[Event]:
    """The events a replay needs with `span.start <= ts <= span.end`, in id order, a page at a time
    (a window long past does not read the whole log written since)."""
    out: list[Event] = []
    after: int | None = None
    while True:
        batch = log.events(after_id=after, since=span.start, types=TYPES, limit=page)
        out.extend(e for e in batch if e.ts <= span.end)
        if len(batch) < page or min(e.ts for e in batch) > span.end + PAST_END_S:
            return out
        after = batch[-1].id


def pick_chain(events: Sequence[Event], asked: str | None, configured: Sequence[str], span: Span) -> str:
    """The chain to replay: the one asked for, else the one with the most requests in the window.

    A chain the config does not have cannot be replayed against it (exit 2);
    a configured chain with no request in a window that has others is exit 2
    too (a wrong name, most likely); a window with no request at all is exit 1.
    """
    counts = Counter(e.chain for e in events if e.type == ev.REQUEST and e.chain)
    window = f"between {iso(span.start)} and {iso(span.end)}"
    if asked is not None and asked not in configured:
        from difflib import get_close_matches

        close = get_close_matches(asked, [*configured, *counts], n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"chains in the config: {', '.join(configured) or 'none'}"
        if asked in counts:
            hint = f"the config no longer has it; {hint}"
        raise UsageError(f"replay: no chain named {asked!r} in the config", hint=hint)
    if not counts:
        raise NoRequests(
            f"no requests between {iso(span.start)} and {iso(span.end)}",
            hint="widen the window: a longer --since, or an earlier --from",
        )
    if asked is not None:
        if asked not in counts:
            from difflib import get_close_matches

            close = get_close_matches(asked, list(counts), n=1)
            logged = ", ".join(f"{name} ({n})" for name, n in counts.most_common())
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"replay: chain {asked!r} has no requests {window}", hint=f"{hint}requests by chain: {logged}"
            )
        return asked
    for name, _ in counts.most_common():
        if name in configured:
            return name
    raise UsageError(
        f"replay: the chains with requests {window} are not in the config: {', '.join(counts)}",
        hint="pass --chain NAME with a chain of the current config",
    )


# ------------------------------------------------------------------------------- measuring


def fault_word(event: Event) -> str | None:
    """The fault vocabulary's word for one failed attempt (None: not a provider's fault)."""
    kind, status = event.kind, event.status
    if kind in (None, "cancelled", "quota"):
        return None
    if kind == "content_filter":
        return "content-filter"
    if kind == "context_length":
        return "context-length"
    if status == 200:
        return "malformed"
    if status is not None and 100 <= status <= 599:
        wait = event.data.get("retry_after_s")
        return f"{status}@{_exact(float(wait))}" if isinstance(wait, int | float) and wait > 0 else str(status)
    if kind == "timeout":
        return "timeout"
    if kind == "transient":  # no status: the connection broke, or the stream stopped short
        return "stream-cut" if "stream" in (event.detail or "").lower() else "reset"
    return None


def _started(event: Event, ms: object) -> float:
    """When the work behind an event began: its time minus its own duration."""
    return event.ts - (float(ms) / 1000 if isinstance(ms, int | float) else 0.0)


def _answers(events: Iterable[Event]) -> list[tuple[float, str, float | None]]:
    """(start of the answering attempt, model, its first-token ms) of every answered request."""
    out: list[tuple[float, str, float | None]] = []
    for e in events:
        if e.type == ev.REQUEST and e.data.get("ok") and e.data.get("answered_by"):
            took = e.data.get("attempt_ms")
            first = e.data.get("attempt_ttft_ms", took)
            if not isinstance(first, int | float):  # an older row: the request's own figures
                first = e.data.get("ttft_ms") if not e.data.get("failovers") else None
            out.append((_started(e, took), str(e.data["answered_by"]), float(first) if first is not None else None))
    return out


def _slow_cut(answers: Sequence[tuple[float, str, float | None]]) -> dict[str, float]:
    """Per model, the first-token time (ms) above which an answer counts as slow."""
    firsts: dict[str, list[float]] = defaultdict(list)
    for _, model, first in answers:
        if first is not None:
            firsts[model].append(first)
    return {m: max(4 * median(v), median(v) + 1000) for m, v in firsts.items()}


@dataclass(frozen=True)
class Derivation:
    """A window of the log made into a scenario, with what is needed to report on it."""

    scenario: Scenario
    span: Span
    epoch: float  # the scenario's 0 s in the log's time: the first request's arrival
    bucket_s: float
    events: tuple[Event, ...]  # the chain's events, in id order
    requests: int
    failed_attempts: int
    unknown_models: dict[str, int]  # model in the log, not in the chain now -> its attempts (failed and answered)

    def then(self, models: Sequence[str], *, step: float) -> Report:
        """The log's own figures, counted like a simulation's and over the same phases."""
        scenario = self.scenario
        windows = [
            Window(p.name, p.start, scenario.end_of(i), tuple(map(str, p.faults)))
            for i, p in enumerate(scenario.phases)
        ]
        every = [*models, *(m for m in self.unknown_models if m not in models)]
        recorder = Recorder(
            scenario.chain or "", every, self.epoch, phases=windows, phase_of=scenario.phase_at, step=step
        )
        for event in self.events:
            recorder(event)
        return recorder.report


def derive(events: Sequence[Event], chain: str, models: Sequence[str], span: Span) -> Derivation:
    """The scenario of `chain`'s traffic in `events`, for the chain's current `models`.

    A model the chain no longer has keeps its traffic (its requests still
    arrive and are walked through the chain as it is now) but its faults are
    left out, and it is named in `unknown_models`.
    """
    own = [e for e in events if e.chain == chain]
    requests = [e for e in own if e.type == ev.REQUEST]
    if not requests:
        raise NoRequests(f"no requests of chain {chain!r} between {iso(span.start)} and {iso(span.end)}")
    arrivals = [_started(e, e.latency_ms) for e in requests]
    epoch = min(arrivals)
    reach = max(arrivals) - epoch
    # N arrivals span N-1 gaps: the traffic lasted one mean gap more than first-to-last.
    duration = round(reach * len(arrivals) / (len(arrivals) - 1), 3) if reach > 0 else 1.0
    raw = duration / BUCKETS
    bucket = float(round(raw)) if raw >= 10 else max(1.0, round(raw, 3))  # whole seconds read better
    count = max(1, int(duration // bucket))  # the last bucket also takes the remainder
    buckets = [Bucket() for _ in range(count)]

    def at(ts: float) -> Bucket:
        return buckets[min(count - 1, max(0, int((ts - epoch) // bucket)))]

    for ts in arrivals:
        at(ts).arrivals += 1
    answers = _answers(own)
    slow_cut = _slow_cut(answers)
    fast: list[float] = []
    slow_extra: dict[str, list[float]] = defaultdict(list)
    trials: dict[str, list[tuple[float, str | None]]] = defaultdict(list)  # per model: (when, fault or None)
    for began, model, first in answers:
        b = at(began)
        b.attempts[model] += 1
        if first is not None and first > slow_cut[model]:
            b.faults[model]["slow"] += 1
            slow_extra[model].append(first)
            trials[model].append((began - epoch, "slow"))
        else:
            trials[model].append((began - epoch, None))
            if first is not None:
                fast.append(first)
    waits: dict[tuple[str, str], list[float]] = defaultdict(list)
    unknown: Counter[str] = Counter()
    failed = 0
    for e in own:
        if e.type != ev.ATTEMPT_FAILED or not e.model:
            continue
        failed += 1
        word = fault_word(e)
        if e.model not in models:
            unknown[e.model] += 1
        if word is None:
            continue
        began = _started(e, e.latency_ms)
        b = at(began)
        b.attempts[e.model] += 1
        code, _, wait = word.partition("@")
        b.faults[e.model][code] += 1
        trials[e.model].append((began - epoch, code))
        if wait:
            waits[(e.model, code)].append(float(e.data["retry_after_s"]))
    for _, model, _ in answers:
        if model not in models:
            unknown[model] += 1
    latency = median(fast) / 1000 if fast else None
    base = latency or 0.0
    slow_words = {m: f"slow:{_exact(max(0.001, median(v) / 1000 - base))}" for m, v in slow_extra.items()}
    for series in trials.values():
        series.sort()
    offsets = sorted(t - epoch for t in arrivals)
    evidence = _held_failing(buckets, bucket, _benches(own, trials, epoch))
    runs = settle_mixed(find_runs(buckets, models, bucket, duration, evidence), models, trials, offsets)
    # The file's rate: that of the longest stretch (a quiet one aside), so most phases need none of their own.
    longest = max(runs, key=lambda r: (r.arrivals > 0, r.end - r.start))
    usual = _significant(longest.arrivals / (longest.end - longest.start))
    phases = _phases(runs, usual, list(models), waits, slow_words)
    scenario = Scenario(
        path=f"<replay of {chain}>",
        rate=usual,
        duration=duration,
        phases=tuple(phases),
        latency=round(latency, 3) if latency else None,
        chain=chain,
    )
    return Derivation(scenario, span, epoch, bucket, tuple(own), len(requests), failed, dict(unknown))


def _benches(
    own: Iterable[Event], trials: dict[str, list[tuple[float, str | None]]], epoch: float
) -> list[tuple[str, float, float, str]]:
    """(model, from, to, fault): the benches, in seconds from `epoch`, that a failure began and a
    failure alike ended (the probe, or the first attempt after it, failed the same way).

    With a realistic cooldown, a model in an outage is tried once per bench: a few attempts,
    too few to tell the outage from chance. Benched between two failures alike, it is taken
    to have failed that way throughout; a bench ended by an answer says nothing (the model
    recovered at some point in it)."""
    from bisect import bisect_right

    out: list[tuple[str, float, float, str]] = []
    for e in own:
        if e.type != ev.BENCHED or not e.model or e.benched_until is None or not trials.get(e.model):
            continue
        series = trials[e.model]
        start, end = e.ts - epoch, e.benched_until - epoch
        k = bisect_right(series, start, key=lambda trial: trial[0])  # the trials begun by the bench's start
        if 0 < k < len(series) and series[k - 1][1] is not None and series[k - 1][1] == series[k][1]:
            out.append((e.model, start, end, str(series[k][1])))
    return out


def _held_failing(buckets: list[Bucket], size: float, benches: Sequence[tuple[str, float, float, str]]) -> list[Bucket]:
    """`buckets`, plus failed attempts of the bench's fault in each bucket whose middle lies in one
    of `benches` and in which the model was not tried: as many as the model usually made in a
    bucket where it was tried (at least one). What the phases are cut on."""
    if not benches:
        return buckets
    out = [Bucket() for _ in buckets]
    for mine, theirs in zip(out, buckets, strict=True):
        mine.add(theirs)
    for model, start, end, code in benches:
        tried = [b.attempts[model] for b in buckets if b.attempts[model]]
        usual = max(1, round(sum(tried) / len(tried)))
        for index in range(max(0, math.ceil(start / size - 0.5)), min(len(out), math.floor(end / size - 0.5) + 1)):
            if not buckets[index].attempts[model]:
                out[index].attempts[model] += usual
                out[index].faults[model][code] += usual
    return out


def _phases(
    runs: Sequence[Run],
    usual: float,
    models: list[str],
    waits: dict[tuple[str, str], list[float]],
    slow_words: dict[str, str],
) -> list[Phase]:
    """Phases from merged runs; a model a run never tried keeps its faults from the run before.

    A phase whose arrival rate is within 3 % of `usual` (the file's rate) has no `rate` of its own."""
    phases: list[Phase] = []
    carried: dict[str, tuple[FaultSpec, ...]] = {}
    seen_fault = False
    for run in runs:
        total = run.total
        faults: list[FaultSpec] = []
        for model in models:
            if not total.attempts[model]:
                faults.extend(carried.get(model, ()))
                continue
            mine: list[FaultSpec] = []
            measured = run.measured(model)
            for word, _ in sorted(measured.faults[model].items()):
                rate = round(measured.rate(model, word), 2)
                if rate < RATE_STEP:
                    continue
                if word == "slow":
                    word = slow_words.get(model, "slow:1s")
                elif (model, word) in waits:
                    word = f"{word}@{_exact(median(waits[(model, word)]))}"
                mine.append(FaultSpec(model, Fault(word, rate)))
            carried[model] = tuple(mine)
            faults.extend(mine)
        covered = run.end - run.start
        per_s = _significant(run.arrivals / covered) if covered > 0 else 0.0
        # the file's rate, give or take rounding noise, needs no `rate` of its own
        arrival = None if abs(per_s - usual) <= 0.03 * usual else per_s
        name = (
            "quiet" if arrival == 0 else "recovered" if seen_fault and not faults else "healthy" if not faults else ""
        )
        seen_fault = seen_fault or bool(faults)
        phases.append(
            Phase(name or f"incident {sum(1 for p in phases if p.faults) + 1}", run.start, tuple(faults), arrival)
        )
    return _join_equal(phases)


def _join_equal(phases: list[Phase]) -> list[Phase]:
    """Neighbouring phases whose written form is the same (once rounded) become one."""
    out: list[Phase] = []
    for phase in phases:
        if out and out[-1].faults == phase.faults and out[-1].rate == phase.rate:
            continue
        out.append(phase)
    return out


# ------------------------------------------------------------------------------- writing


def _exact(seconds: float) -> str:
    """A duration written so it reads back exactly (to the millisecond): `40m`, `1h2m5s`, `1.5s`, `250ms`."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    whole, frac = divmod(ms, 1000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if secs or frac:
        text += f"{secs}.{frac:03d}".rstrip("0").rstrip(".") + "s"
    return text


def _significant(value: float, digits: int = 4) -> float:
    """`value` rounded to a few significant digits (a rate of one request a day stays above 0)."""
    return float(f"{value:.{digits}g}")


def _rate_text(rate: float) -> str:
    """Requests per second as the shortest of /s, /m, /h that reads well."""
    for per, unit in ((1, "s"), (60, "m"), (3600, "h")):
        value = round(rate * per, 3)
        if value >= 1 or unit == "h":
            return f"{value:g}/{unit}"
    raise AssertionError("unreachable")


def scenario_mapping(scenario: Scenario) -> dict[str, Any]:
    """The scenario as the mapping a `--scenario` file holds (what `--save` writes)."""
    out: dict[str, Any] = {
        "chain": scenario.chain,
        "rate": _rate_text(scenario.rate),
        "duration": _exact(scenario.duration),
    }
    if scenario.latency is not None:
        out["latency"] = _exact(scenario.latency)
    phases = []
    for phase in scenario.phases:
        item: dict[str, Any] = {"at": _exact(phase.start) if phase.start else "0s", "name": phase.name}
        if phase.rate is not None:
            item["rate"] = _rate_text(phase.rate) if phase.rate else "0"
        item["faults"] = [str(f) for f in phase.faults]
        phases.append(item)
    out["phases"] = phases
    return out


def scenario_yaml(derivation: Derivation, path: str = "THIS_FILE") -> str:
    """The scenario file (to be saved at `path`): a header comment naming the window and the counts
    it came from, then the mapping."""
    import yaml

    mapping = scenario_mapping(derivation.scenario)
    span = derivation.span
    lines = [
        f"# llmfail replay of chain {mapping['chain']!r}: the event log between {iso(span.start)} and {iso(span.end)}",
        f"# {derivation.requests} requests (the first at {iso(derivation.epoch)}), "
        f"{derivation.failed_attempts} failed attempts; measured in buckets of {_exact(derivation.bucket_s)}.",
        f"# Run it: llmfail simulate --scenario {path} --expect-success-rate 0.99 --junit out.xml",
    ]
    for key in ("chain", "rate", "duration", "latency"):
        if key in mapping:
            lines.append(yaml.safe_dump({key: mapping[key]}, default_flow_style=False).strip())
    lines.append("phases:")
    for phase in mapping["phases"]:
        lines.append("  - " + yaml.safe_dump(phase, default_flow_style=True, width=10**9, sort_keys=False).strip())
    return "\n".join(lines) + "\n"


def save_window(
    config: Config, log: EventLog, start: float, end: float, *, chain: str | None = None, folder: str = "."
) -> str:
    """The dashboard's `s`: the window on screen derived into `folder`/llmfail-scenario-CHAIN-TIME.yaml.

    Never overwrites: a file of that name already there gets a numbered sibling."""
    from datetime import UTC, datetime
    from pathlib import Path

    span = Span(start, end)
    events = read_window(log, span)
    name = pick_chain(events, chain, list(config.chains), span)
    derivation = derive(events, name, config.chain(name).models, span)
    stamp = datetime.fromtimestamp(end, UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    for n in range(1, 1000):
        path = Path(folder) / f"llmfail-scenario-{safe}-{stamp}{'' if n == 1 else f'-{n}'}.yaml"
        try:
            with path.open("x", encoding="utf-8") as file:
                file.write(scenario_yaml(derivation, path.name))
        except FileExistsError:
            continue
        return str(path.resolve())
    raise UsageError(f"cannot save the scenario: too many files named like {path} already")


# ------------------------------------------------------------------------------- then vs now

#: The most requests a replay simulates by default: a busier window is replayed thinned.
MAX_REQUESTS = 10_000


@dataclass
class Replay:
    """A replay's outcome: the derivation, the log's figures ("then") and the simulation's ("now")."""

    derivation: Derivation
    then: Report
    now: Report
    thinned: float = 1.0  # the share of the scenario's arrivals the simulation sent (1: all)

    @property
    def chain(self) -> str:
        return self.now.chain

    def then_json(self) -> dict[str, Any]:
        then = self.then
        served = {m: then.share(m) for m, f in then.models.items() if f.ok}
        return {
            "requests": then.requests,
            "succeeded": then.succeeded,
            "failed": then.failed,
            "success_rate": then.success_rate,
            "failovers": then.failovers,
            "served_by": served,
            "latency_ms": {"p50": then.latency(50), "p95": then.latency(95), "p99": then.latency(99)},
            "benched": {m: f.benched for m, f in then.models.items() if f.benched},
            "panics": sum(w.panics for w in then.phases or ()),
            "phases": [w.to_json() for w in then.phases or ()],
            "timeline": [w.to_json() for w in then.timeline or ()],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "window": self.derivation.span.to_json(),
            "then": self.then_json(),
            "now": self.now.to_json(),
            "scenario": scenario_mapping(self.derivation.scenario),
            "thinned": self.thinned,
            "models_not_in_config": dict(self.derivation.unknown_models),
        }


def thin(scenario: Scenario, share: float) -> Scenario:
    """The scenario with every arrival rate multiplied by `share` (faults and timing unchanged)."""
    if share >= 1:
        return scenario
    phases = tuple(replace(p, rate=p.rate * share if p.rate is not None else None) for p in scenario.phases)
    return replace(scenario, rate=scenario.rate * share, phases=phases)


def timeline_step(scenario: Scenario) -> float:
    """Rows of the timelines: whole minutes, at most about 60 rows."""
    return 60.0 * max(1, math.ceil(scenario.duration / 3600))


def replay(
    config: Config,
    log: EventLog,
    span: Span,
    *,
    chain: str | None = None,
    seed: int = 0,
    expectations: Callable[[Sequence[str]], tuple[Expectation, ...]] = lambda models: (),
    max_requests: int = MAX_REQUESTS,
) -> Replay:
    """Derive the scenario of `span` from `log`, and simulate it on `config` (a private store, virtual time).

    `expectations` builds the checks from the chosen chain's entries (the chain
    may be known only once the log is read). A scenario of more than
    `max_requests` arrivals (0: no limit) is simulated at a proportionally
    thinned rate, so a day of traffic replays in seconds; the saved scenario
    keeps the real rates.
    """
    from .runner import Plan, simulate

    events = read_window(log, span)
    name = pick_chain(events, chain, list(config.chains), span)
    models = config.chain(name).models
    derivation = derive(events, name, models, span)
    scenario = derivation.scenario
    share = min(1.0, max_requests / scenario.requests) if max_requests > 0 and scenario.requests else 1.0
    step = timeline_step(scenario)
    plan = Plan(name, seed=seed, scenario=thin(scenario, share), expectations=expectations(models))
    now = simulate(config, plan, step=step)
    return Replay(derivation, derivation.then(models, step=step), now, round(share, 6))
