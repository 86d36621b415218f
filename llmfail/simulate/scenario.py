"""Scenario files: timed phases of faults at a steady request rate, to replay an incident.

    rate: 2/s                # requests per second (also 120/m, 7200/h, or a bare number per second)
    duration: 40m            # arrivals stop here; requests in flight finish
    latency: 150ms           # optional fake base latency (jittered), like --latency
    phases:
      - {at: 0m, name: healthy, faults: []}
      - {at: 10m, name: outage, rate: 5/s, faults: ["openai/gpt-4o:503=0.9", "429@20s=0.05"]}
      - {at: 25m, name: recovered, faults: []}

A phase lasts until the next one starts (the last until `duration`); its
faults use the `--fail-rate` vocabulary and *replace* the previous phase's.
A phase's own `rate` (0 for a quiet stretch) holds for that phase only; the
others arrive at the file's `rate`. `--fail-rate` options given on the
command line apply in every phase.

A scenario file is read with the config's located node reader, so a bad one gets
every problem at once, each with file:line:col and its key path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yaml.nodes import Node, ScalarNode, SequenceNode

from ..config.fields import duration, text
from ..config.yaml_nodes import (
    Invalid,
    NodeReader,
    Parser,
    compose,
    decode,
    index_path,
    is_null,
    key_path,
)
from ..errors import ConfigError, ConfigProblem, UsageError
from .faults import FaultSpec, parse_fault_spec

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h|hour))?\s*$")
_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_KEYS = ("rate", "duration", "latency", "phases", "chain")
_PHASE_KEYS = ("at", "name", "rate", "faults")

#: What a bad scenario file's error shows: the format itself (a pip user has no README at hand).
_HINT = (
    "a scenario reads like: {rate: 2/s, duration: 40m, phases: [{at: 0m, faults: []}, "
    '{at: 10m, name: outage, faults: ["openai/gpt-4o:503=0.9"]}]}'
)
_MAX_SCENARIO_BYTES = 256 * 1024


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # seconds from the beginning of the run
    faults: tuple[FaultSpec, ...]
    rate: float | None = None  # requests per second in this phase; None: the scenario's


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
        """How many requests arrive (see `arrivals`)."""
        return sum(count for _, count, _ in self._runs())

    def rate_of(self, index: int) -> float:
        """Requests per second during phase `index`."""
        rate = self.phases[index].rate
        return self.rate if rate is None else rate

    def _runs(self) -> list[tuple[float, int, float]]:
        """(start, count, rate) of each stretch at one rate: consecutive phases at the same rate
        make one stretch, so a file without per-phase rates arrives exactly as one steady stream."""
        runs: list[tuple[float, int, float]] = []
        index = 0
        while index < len(self.phases):
            rate, end = self.rate_of(index), index + 1
            while end < len(self.phases) and self.rate_of(end) == rate:
                end += 1
            start = self.phases[index].start
            stop = self.phases[end].start if end < len(self.phases) else self.duration
            runs.append((start, max(0, int(-(-(stop - start) * rate // 1))) if rate > 0 else 0, rate))
            index = end
        return runs

    def arrivals(self) -> Iterator[float]:
        """When each request arrives, in seconds from the start: one every 1/rate seconds of
        each stretch at one rate, from the stretch's start up to (not including) its end."""
        for start, count, rate in self._runs():
            for k in range(count):
                yield start + k / rate

    def phase_at(self, offset: float) -> int:
        """Index of the phase running `offset` seconds into the run."""
        index = 0
        for i, phase in enumerate(self.phases):
            if phase.start <= offset:
                index = i
        return index

    def end_of(self, index: int) -> float:
        return self.phases[index + 1].start if index + 1 < len(self.phases) else self.duration


def parse_rate(value: object, *, zero: bool = False) -> float:
    """`2/s`, `120/m`, `7200/h` or a bare number -> requests per second (> 0, or >= 0 with `zero`)."""
    match = _RATE.match(str(value)) if not isinstance(value, bool) else None
    rate = float(match.group(1)) / _PER[match.group(2)] if match else -1.0
    if rate < 0 or (rate == 0 and not zero):
        what = "a request rate like 2/s, 120/m or 0" if zero else "a positive request rate like 2/s or 120/m"
        raise ValueError(f"expected {what}, got {value!r}")
    return rate


class ScenarioError(ConfigError):
    """A scenario file that cannot be used; its message lists every problem, each on its own line.

    Unlike a config there is no `check` command to list them, so all of them go in the error itself.
    """

    def __init__(self, problems: list[ConfigProblem], path: str) -> None:
        super().__init__(problems, hint=_HINT)
        if len(problems) > 1:
            listed = "\n".join(f"  {problem}" for problem in problems)
            self.message = f"{len(problems)} problems in the scenario file {path}:\n{listed}"
        elif problems:
            self.message = str(problems[0])


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; a ScenarioError (exit 2) lists every problem."""
    name = str(path)
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_SCENARIO_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the scenario file {name}: {exc.strerror or exc}", hint=_HINT) from None
    if len(data) > _MAX_SCENARIO_BYTES:
        raise UsageError(f"the scenario file {name} is larger than {_MAX_SCENARIO_BYTES // 1024} KiB", hint=_HINT)
    try:
        source = decode(data, name)
    except ConfigError as error:  # not UTF-8
        raise ScenarioError(error.problems, name) from None
    return parse_scenario_text(source, name)


def parse_scenario_text(source: str, path: str = "<scenario>") -> Scenario:
    """Validate YAML text as a scenario; `path` locates the problems."""
    reader = NodeReader(path)
    try:
        root = compose(source, path)
    except ConfigError as error:  # not YAML
        raise ScenarioError(error.problems, path) from None
    scenario = _build(reader, root, path)
    if reader.problems or scenario is None:
        raise ScenarioError(reader.sorted_problems(), path)
    return scenario


def parse_scenario(data: Any, path: str = "<scenario>") -> Scenario:
    """Validate a scenario given as Python data (the decoded YAML); problems name the key, not a line."""
    import yaml

    try:
        return parse_scenario_text(yaml.safe_dump(data, sort_keys=False), path)
    except ScenarioError as error:
        unlocated = [ConfigProblem(p.file, 0, 0, p.path, p.message) for p in error.problems]
        raise ScenarioError(unlocated, path) from None


# ------------------------------------------------------------------------------- reading


def _rate(reader: NodeReader, node: Node, path: str) -> float:
    try:
        return parse_rate(reader.scalar(node))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _phase_rate(reader: NodeReader, node: Node, path: str) -> float:
    try:
        return parse_rate(reader.scalar(node), zero=True)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _faults(reader: NodeReader, node: Node, path: str) -> tuple[FaultSpec, ...]:
    """A list of `[MODEL:]FAULT[=RATE]`, or one of them; empty for none."""
    if is_null(node):
        return ()
    items = node.value if isinstance(node, SequenceNode) else [node]
    if not all(isinstance(item, ScalarNode) for item in items):
        raise Invalid('expected a list of [MODEL:]FAULT[=RATE], like ["503=0.9"]')
    specs: list[FaultSpec] = []
    for i, item in enumerate(items):
        where = index_path(path, i) if isinstance(node, SequenceNode) else path
        ok, spec = reader.parse(item, where, _fault)
        if ok:
            specs.append(spec)
    if len(specs) != len(items):
        raise Invalid()
    return tuple(specs)


def _fault(reader: NodeReader, node: Node, path: str) -> FaultSpec:
    try:
        return parse_fault_spec(str(node.value))
    except UsageError as exc:
        raise Invalid(exc.message) from None


_PHASE_PARSERS: dict[str, Parser] = {"at": duration(), "name": text, "rate": _phase_rate, "faults": _faults}


def _phase(reader: NodeReader, node: Node, path: str, index: int) -> tuple[Phase, Node] | None:
    """A phase and the node of its `at` (to locate a clash), or None once reported."""
    pairs = reader.mapping(node, path, _PHASE_KEYS, what='a mapping like {at: 10m, faults: ["503=0.9"]}')
    if pairs is None:
        return None
    values = reader.fields(pairs, path, _PHASE_PARSERS)
    if "at" not in pairs:
        reader.problem(node, path, "missing key 'at'")
    if "at" not in values or len(values) != len(pairs):
        return None
    name = values.get("name") or f"phase {index + 1}"
    return Phase(name, values["at"], values.get("faults", ()), values.get("rate")), pairs["at"][1]


_SCENARIO_PARSERS: dict[str, Parser] = {
    "rate": _rate,
    "duration": duration(positive=True),
    "latency": duration(),
    "chain": text,
}


def _build(reader: NodeReader, root: Node | None, path: str) -> Scenario | None:
    what = "a mapping with rate, duration and phases"
    if root is None:
        reader.problem(None, "", f"the file is empty; expected {what}")
        return None
    pairs = reader.mapping(root, "", _KEYS, what=what)
    if pairs is None:
        return None
    for key in ("rate", "duration", "phases"):
        if key not in pairs:
            reader.problem(root, "", f"missing key {key!r}")
    values = reader.fields({k: v for k, v in pairs.items() if not is_null(v[1])}, "", _SCENARIO_PARSERS)
    phases = _phases(reader, pairs["phases"][1]) if "phases" in pairs else []
    end = values.get("duration")
    for phase, at, where in phases:
        if end is not None and phase.start >= end:
            reader.problem(at, where, f"phase {phase.name!r} starts at or after the end of the run ({end:g}s)")
    if reader.problems or not phases:
        return None
    ordered = sorted((phase for phase, _, _ in phases), key=lambda p: p.start)
    if ordered[0].start > 0:  # nothing was said about the beginning: it is healthy
        ordered.insert(0, Phase("start", 0.0, ()))
    return Scenario(
        path, values["rate"], values["duration"], tuple(ordered), values.get("latency"), values.get("chain")
    )


def _phases(reader: NodeReader, node: Node) -> list[tuple[Phase, Node, str]]:
    """The phases that could be read, each with its `at` node and key path (to locate a clash)."""
    items = reader.sequence(node, "phases", what="a non-empty list of {at, faults}")
    if items is not None and not items:
        reader.problem(node, "phases", "expected a non-empty list of {at, faults}")
    phases: list[tuple[Phase, Node, str]] = []
    first_at: dict[float, Node] = {}
    for i, item in enumerate(items or ()):
        read = _phase(reader, item, index_path("phases", i), i)
        if read is None:
            continue
        phase, at = read
        where = key_path(index_path("phases", i), "at")
        if phase.start in first_at:
            line = first_at[phase.start].start_mark.line + 1
            reader.problem(at, where, f"two phases start at {phase.start:g}s (the other on line {line})")
        first_at.setdefault(phase.start, at)
        phases.append((phase, at, where))
    return phases
