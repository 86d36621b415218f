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
    replay.py     a window of the event log -> a scenario, and its figures ("then")
    phases.py     where behaviour changes: measured buckets cut into phases

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

if TYPE_CHECKING:  # what type checkers see (`X as X`: an explicit re-export); at runtime __getattr__ works
    from .expect import Expectation as Expectation
    from .expect import build_expectations as build_expectations
    from .faults import FaultSpec as FaultSpec
    from .faults import parse_fault_spec as parse_fault_spec
    from .faults import parse_fault_specs as parse_fault_specs
    from .report import Report as Report
    from .runner import Plan as Plan
    from .runner import simulate as simulate
    from .scenario import Scenario as Scenario
    from .scenario import load_scenario as load_scenario
    from .scenario import parse_scenario as parse_scenario


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
