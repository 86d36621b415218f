"""Scenario files: timed phases of faults at a steady request rate, to replay an incident.

    rate: 2/s                # requests per second (also 120/m, 7200/h, or a bare number per second)
    duration: 40m            # arrivals stop here; requests in flight finish
    latency: 150ms           # optional fake base latency (jittered), like --latency
    phases:
      - {at: 0m, name: healthy, faults: []}
      - {at: 10m, name: outage, faults: ["openai/gpt-4o:503=0.9"]}
      - {at: 25m, name: recovered, faults: []}

A phase lasts until the next one starts (the last until `duration`); its
faults use the `--fail-rate` vocabulary and *replace* the previous phase's.
`--fail-rate` options given on the command line apply in every phase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..durations import parse_duration
from ..errors import UsageError
from .faults import FaultSpec, parse_fault_spec

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h|hour))?\s*$")
_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_KEYS = {"rate", "duration", "latency", "phases", "chain"}
_PHASE_KEYS = {"at", "name", "faults"}


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # seconds from the beginning of the run
    faults: tuple[FaultSpec, ...]


@dataclass(frozen=True)
class Scenario:
    path: str
    rate: float  # requests per second
    duration: float  # seconds
    phases: tuple[Phase, ...]  # sorted by start; the first starts at 0
    latency: float | None = None
    chain: str | None = None

    @property
    def requests(self) -> int:
        """How many requests arrive: one every 1/rate seconds in [0, duration)."""
        return max(0, int(-(-self.duration * self.rate // 1)))

    def phase_at(self, offset: float) -> int:
        """Index of the phase running `offset` seconds into the run."""
        index = 0
        for i, phase in enumerate(self.phases):
            if phase.start <= offset:
                index = i
        return index

    def end_of(self, index: int) -> float:
        return self.phases[index + 1].start if index + 1 < len(self.phases) else self.duration


def parse_rate(value: object) -> float:
    """`2/s`, `120/m`, `7200/h` or a bare number -> requests per second (> 0)."""
    match = _RATE.match(str(value)) if not isinstance(value, bool) else None
    rate = float(match.group(1)) / _PER[match.group(2)] if match else 0.0
    if rate <= 0:
        raise ValueError(f"expected a positive request rate like 2/s or 120/m, got {value!r}")
    return rate


class _Problem(Exception):
    pass


def _duration(value: object, key: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _Problem(f"{key}: {exc}") from None


def parse_scenario(data: Any, path: str = "<scenario>") -> Scenario:
    """Validate a decoded scenario document; a UsageError names the key at fault."""
    try:
        return _build(data, path)
    except _Problem as problem:
        raise UsageError(f"{path}: {problem}", hint="`llmfail simulate --help` and docs/scenarios.md describe the scenario format") from None


def _build(data: Any, path: str) -> Scenario:
    if not isinstance(data, dict):
        raise _Problem("expected a mapping with rate, duration and phases")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise _Problem(f"unknown key {unknown[0]!r} (expected: {', '.join(sorted(_KEYS))})")
    for key in ("rate", "duration", "phases"):
        if key not in data:
            raise _Problem(f"missing key {key!r}")
    try:
        rate = parse_rate(data["rate"])
    except ValueError as exc:
        raise _Problem(f"rate: {exc}") from None
    duration = _duration(data["duration"], "duration")
    if duration <= 0:
        raise _Problem("duration: must be longer than 0s")
    latency = _duration(data["latency"], "latency") if data.get("latency") is not None else None
    chain = data.get("chain")
    if chain is not None and not isinstance(chain, str):
        raise _Problem("chain: expected a chain name")
    raw = data["phases"]
    if not isinstance(raw, list) or not raw:
        raise _Problem("phases: expected a non-empty list of {at, faults}")
    phases = [_phase(item, f"phases[{i}]", i) for i, item in enumerate(raw)]
    phases.sort(key=lambda p: p.start)
    starts = [p.start for p in phases]
    if len(set(starts)) != len(starts):
        raise _Problem("phases: two phases start at the same time")
    if phases[0].start > 0:  # nothing was said about the beginning: it is healthy
        phases.insert(0, Phase("start", 0.0, ()))
    if phases[-1].start >= duration:
        raise _Problem(f"phases: a phase starts at or after the end of the run ({duration:g}s)")
    return Scenario(path, rate, duration, tuple(phases), latency, chain)


def _phase(item: Any, key: str, index: int) -> Phase:
    if not isinstance(item, dict):
        raise _Problem(f"{key}: expected a mapping like {{at: 10m, faults: [\"503=0.9\"]}}")
    unknown = sorted(set(map(str, item)) - _PHASE_KEYS)
    if unknown:
        raise _Problem(f"{key}: unknown key {unknown[0]!r} (expected: at, name, faults)")
    if "at" not in item:
        raise _Problem(f"{key}: missing key 'at'")
    start = _duration(item["at"], f"{key}.at")
    faults = item.get("faults") or []
    if isinstance(faults, str):
        faults = [faults]
    if not isinstance(faults, list):
        raise _Problem(f"{key}.faults: expected a list of [MODEL:]FAULT[=RATE]")
    specs = []
    for i, text in enumerate(faults):
        try:
            specs.append(parse_fault_spec(str(text)))
        except UsageError as exc:
            raise _Problem(f"{key}.faults[{i}]: {exc.message}") from None
    return Phase(str(item.get("name") or f"phase {index + 1}"), start, tuple(specs))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    import yaml

    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the scenario file {name}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise UsageError(f"{name}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    return parse_scenario(data, name)
