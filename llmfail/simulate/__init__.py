"""`llmfail simulate`: prove a chain survives provider faults, offline, on virtual time.

    faults.py     --fail-rate [MODEL:]FAULT[=RATE] -> per-entry faults
    scenario.py   timed phases of faults at a request rate (--scenario FILE)
    providers.py  a fake provider per chain entry behind one httpx transport
    vtime.py      the virtual-time event loop everything runs on
    runner.py     closed-loop or scenario traffic through the real engine
    report.py     events -> figures, and the --json shape
    expect.py     --expect-* bounds checked against a report
    junit.py      JUnit XML, one testcase per expectation
    render.py     the report for people (Rich; imported by the CLI only)

Only the network is replaced: the real adapters, classifier, engine and
SQLite store run, so what passes here is what production does.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it. Re-exported lazily (PEP 562), so
#: `mock-server`, which only needs the fault parser, never loads the engine.
_EXPORTS: dict[str, str] = {
    "Expectation": "expect",
    "build_expectations": "expect",
    "FaultSpec": "faults",
    "parse_fault_spec": "faults",
    "parse_fault_specs": "faults",
    "Report": "report",
    "Plan": "runner",
    "simulate": "runner",
    "Scenario": "scenario",
    "load_scenario": "scenario",
    "parse_scenario": "scenario",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .expect import Expectation, build_expectations
    from .faults import FaultSpec, parse_fault_spec, parse_fault_specs
    from .report import Report
    from .runner import Plan, simulate
    from .scenario import Scenario, load_scenario, parse_scenario


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
