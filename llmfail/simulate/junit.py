"""JUnit XML for CI dashboards: one testcase per expectation, a failure element when unmet.

The file holds simulated figures only (no timestamps, no wall time), so the
same seed writes the same file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import UsageError
from .report import Report


def junit_xml(report: Report) -> str:
    """The report's expectations as a JUnit `<testsuites>` document."""
    failures = sum(not e.ok for e in report.expectations)
    suites = ET.Element(
        "testsuites", name="llmfail simulate", tests=str(len(report.expectations)), failures=str(failures), errors="0"
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"llmfail simulate --chain {report.chain}",
        tests=str(len(report.expectations)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("requests", report.requests),
        ("succeeded", report.succeeded),
        ("success_rate", report.success_rate),
        ("failovers", report.failovers),
        ("p99_ms", report.latency(99)),
    ):
        ET.SubElement(properties, "property", name=name, value=str(value))
    for expectation in report.expectations:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"llmfail.simulate.{report.chain}",
            name=f"{expectation.name} {expectation.expected}",
        )
        if not expectation.ok:
            message = f"expected {expectation.name} {expectation.expected}, got {expectation.actual:g}"
            failure = ET.SubElement(case, "failure", message=message, type="ExpectationNotMet")
            failure.text = message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: Report, path: str | Path) -> None:
    try:
        Path(path).write_text(junit_xml(report), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the JUnit file {path}: {exc.strerror or exc}") from None
