"""`llmfail stats --format prometheus`: the same figures as `--json`, in a text format Prometheus parses."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from llmfail.prometheus import STATES, exposition
from llmfail.stats import ModelStats
from llmfail.store.sqlite import SqliteStore

from .test_stats import CONFIG, cli, shifted_fixture

#: The exposition format, line by line, strictly: HELP, TYPE gauge, or a sample with quoted, escaped labels.
LINE = re.compile(
    r"# HELP [a-z_]+ \S.*"
    r"|# TYPE [a-z_]+ gauge"
    r'|[a-z_]+(\{[a-z_]+="([^"\\\n]|\\[\\"n])*"(,[a-z_]+="([^"\\\n]|\\[\\"n])*")*\})? -?[0-9.e+-]+'
)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, parsed by Prometheus' own client library, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def logged(tmp_path: Path) -> None:
    (tmp_path / "chains.yaml").write_text(CONFIG, encoding="utf-8")
    store = SqliteStore(os.environ["LLMFAIL_DB"])
    store.append(shifted_fixture(time.time()))
    store.close()


def test_prometheus_output_carries_the_same_figures_as_json(tmp_path: Path) -> None:
    logged(tmp_path)
    result = cli("stats", "--format", "prometheus")
    assert result.exit_code == 0, result.stderr
    assert all(LINE.fullmatch(line) for line in result.stdout.splitlines()), result.stdout
    figures = json.loads(cli("stats", "--json").stdout)
    parsed = samples(result.stdout)

    def value(name: str, model: str, **labels: str) -> float:
        return parsed[(name, frozenset({"model": model, **labels}.items()))]

    assert parsed[("llmfail_stats_window_seconds", frozenset())] == 3600
    for model, row in figures.items():
        assert value("llmfail_model_requests", model) == row["requests"]
        assert value("llmfail_model_ok", model) == row["ok"]
        assert value("llmfail_model_failed", model) == row["failed"]
        assert value("llmfail_model_failovers", model) == row["failovers"]
        assert value("llmfail_model_benches", model) == row["benched"]
        assert value("llmfail_model_recoveries", model) == row["recoveries"]
        for kind, count in row["errors"].items():
            assert value("llmfail_model_errors", model, kind=kind) == count
        assert [s for s in STATES if value("llmfail_model_state", model, state=s) == 1] == [row["state"]]
    assert value("llmfail_model_latency_seconds", "a/m1", quantile="0.5") == 0.2
    assert value("llmfail_model_latency_seconds", "a/m1", quantile="0.95") == 1.0
    assert ("llmfail_model_latency_seconds", frozenset({"model": "c/idle", "quantile": "0.5"}.items())) not in parsed


def test_each_metric_has_one_help_and_one_type_line_before_its_samples(tmp_path: Path) -> None:
    logged(tmp_path)
    lines = cli("stats", "--format", "prometheus").stdout.splitlines()
    helps = [line.split()[2] for line in lines if line.startswith("# HELP")]
    types = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert helps == types and len(set(helps)) == len(helps)
    for line in lines:
        if not line.startswith("#"):
            name = line.split("{")[0].split()[0]
            assert name in helps
            assert lines.index(f"# TYPE {name} gauge") < lines.index(line)


def test_label_values_are_escaped_so_any_model_name_round_trips() -> None:
    model = 'odd/"quoted"\\back\nslash'
    text = exposition([ModelStats(model=model, requests=3, ok=3, p50_ms=1500.0, p95_ms=2000.0)], window_s=300)
    assert all(LINE.fullmatch(line) for line in text.splitlines()), text
    parsed = samples(text)
    assert parsed[("llmfail_model_requests", frozenset({"model": model}.items()))] == 3
    assert parsed[("llmfail_model_latency_seconds", frozenset({"model": model, "quantile": "0.5"}.items()))] == 1.5


def test_an_empty_log_still_prints_every_metrics_help_and_the_window(tmp_path: Path) -> None:
    result = cli("stats", "--since", "5m", "--format", "prometheus")
    assert result.exit_code == 0
    assert samples(result.stdout) == {("llmfail_stats_window_seconds", frozenset()): 300}
    assert "# TYPE llmfail_model_requests gauge" in result.stdout


def test_json_is_a_shorthand_for_format_json_and_two_formats_are_a_usage_error(tmp_path: Path) -> None:
    logged(tmp_path)
    assert cli("stats", "--json").stdout == cli("stats", "--format", "json").stdout
    assert cli("stats", "--json", "--format", "json").exit_code == 0
    both = cli("stats", "--json", "--format", "prometheus")
    assert both.exit_code == 2 and "two formats" in both.stderr
    unknown = cli("stats", "--format", "xml")
    assert unknown.exit_code == 2 and "table, json, prometheus" in unknown.stderr
    assert cli("stats", "--format", "table").stdout == cli("stats").stdout
