"""`llmfail simulate`: fault injection on virtual time, through the real CLI, engine, adapters and store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmfail.cli import app
from llmfail.config import load_default_config, parse_config
from llmfail.errors import UsageError
from llmfail.fakes import Fault
from llmfail.simulate import Plan, parse_fault_spec, parse_fault_specs, parse_scenario, simulate
from llmfail.simulate.faults import FaultSpec
from llmfail.simulate.scenario import ScenarioError
from llmfail.simulate.vtime import SimulationStalled, run_virtual
from llmfail.store.sqlite import SqliteStore

runner = CliRunner()

PROD = ["openai/gpt-4o", "anthropic/claude-sonnet-4-5", "local-vllm/llama-3.1-8b", "ollama/llama3.2"]

JSON_KEYS = [
    "chain",
    "requests",
    "succeeded",
    "failed",
    "success_rate",
    "failovers",
    "latency_ms",
    "models",
    "expectations",
]

OUTAGE = """
rate: 1/s
duration: 30m
phases:
  - {at: 0m, name: healthy, faults: []}
  - {at: 5m, name: outage, faults: ["openai/gpt-4o:503"]}
  - {at: 20m, name: recovered, faults: []}
"""


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def sim_json(*args: str) -> dict[str, Any]:
    result = cli("simulate", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def small_chain(primary_type: str = "openai", extra: str = "") -> Any:
    """primary (of `primary_type`) -> an openai backup -> a mock last resort."""
    return parse_config(
        textwrap.dedent(f"""
        defaults: {{attempts: 2, timeout: 7s, cooldown: 30s, backoff: {{base: 100ms, max: 1s}}}}
        providers:
          p: {{type: {primary_type}, base_url: "https://primary.example", api_key_env: PRIMARY_KEY}}
          b: {{type: openai, base_url: "https://backup.example/v1", api_key_env: BACKUP_KEY}}
        chains:
          main: [p/primary, b/backup, mock/last]
        {extra}
        """),
        "test.yaml",
    )


# --------------------------------------------------------------------------- acceptance


def test_a_429_primary_fails_over_for_every_request_of_the_example_prod_chain():
    report = sim_json("--chain", "prod", "--fail-rate", "429", "--requests", "200", "--seed", "1")
    assert report["success_rate"] == 1.0 and report["succeeded"] == 200 and report["failed"] == 0
    models = report["models"]
    assert models["openai/gpt-4o"]["ok"] == 0, "the primary answered although it always says 429"
    assert models["openai/gpt-4o"]["errors"] == {"rate_limited": models["openai/gpt-4o"]["attempts"]}
    assert models["openai/gpt-4o"]["benched"] >= 1
    assert sum(m["ok"] for name, m in models.items() if name != "openai/gpt-4o") == 200


def test_the_json_report_has_exactly_the_documented_shape():
    report = sim_json("--chain", "prod", "--fail-rate", "503=0.5", "--requests", "20", "--expect-success-rate", "0.5")
    assert list(report) == JSON_KEYS
    assert list(report["latency_ms"]) == ["p50", "p95", "p99"]
    assert list(report["models"]) == PROD
    for figures in report["models"].values():
        assert list(figures) == ["attempts", "ok", "errors", "benched"]
    assert [list(e) for e in report["expectations"]] == [["name", "ok", "expected", "actual"]]
    assert report["expectations"][0] == {"name": "success_rate", "ok": True, "expected": ">= 0.5", "actual": 1.0}


def test_the_same_seed_gives_the_same_json_bit_for_bit_and_another_seed_differs():
    args = ("--chain", "prod", "--fail-rate", "503=0.5", "--requests", "150", "--concurrency", "8")
    first = cli("simulate", *args, "--seed", "7", "--json")
    again = cli("simulate", *args, "--seed", "7", "--json")
    other = cli("simulate", *args, "--seed", "8", "--json")
    assert first.exit_code == again.exit_code == other.exit_code == 0
    assert first.stdout == again.stdout
    assert json.loads(first.stdout)["models"]["openai/gpt-4o"]["errors"]["transient"] > 0
    assert json.loads(other.stdout)["models"] != json.loads(first.stdout)["models"]


def test_a_run_is_reproducible_across_processes_with_different_hash_seeds(tmp_path):
    """Set iteration order differs between interpreters; nothing in a report may depend on it."""
    outputs = set()
    for hash_seed in ("1", "2"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "llmfail.cli",
                "simulate",
                "--chain",
                "prod",
                "--fail-rate",
                "503=0.5",
                "--requests",
                "100",
                "--concurrency",
                "4",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_an_outage_of_the_primary_shows_benching_traffic_on_the_secondary_and_failback(tmp_path):
    scenario = tmp_path / "outage.yaml"
    scenario.write_text(OUTAGE)
    report = sim_json("--chain", "prod", "--scenario", str(scenario), "--seed", "3")
    healthy, outage, recovered = report["phases"]
    assert [p["name"] for p in report["phases"]] == ["healthy", "outage", "recovered"]
    assert healthy["served"] == {"openai/gpt-4o": 300} and healthy["benched"] == {}
    # During the outage the primary is benched (again after every failed probe) and the secondary serves.
    assert outage["benched"]["openai/gpt-4o"] >= 15 * 60 // 30 - 1
    assert outage["served"] == {"anthropic/claude-sonnet-4-5": 900}
    assert outage["success_rate"] == 1.0
    # Within one cooldown of the end of the outage, the primary serves again.
    assert recovered["served"]["openai/gpt-4o"] >= 600 - 31
    assert report["success_rate"] == 1.0
    minutes = report["timeline"]
    assert len(minutes) == 30
    assert all(m["served"] == {"anthropic/claude-sonnet-4-5": 60} for m in minutes[6:20])
    assert all(m["served"] == {"openai/gpt-4o": 60} for m in minutes[21:])


def test_a_phase_where_every_entry_fails_shows_panic_mode_and_failures():
    config = parse_config(
        textwrap.dedent("""
        defaults: {attempts: 1, cooldown: 30s}
        chains:
          main: [mock/a, mock/b]
        """),
        "test.yaml",
    )
    scenario = parse_scenario(
        {
            "rate": "1/s",
            "duration": "6m",
            "phases": [
                {"at": "0m", "name": "fine"},
                {"at": "2m", "name": "everything down", "faults": ["mock/a:503", "mock/b:503"]},
                {"at": "4m", "name": "back"},
            ],
        }
    )
    fine, down, back = simulate(config, Plan("main", scenario=scenario, seed=1)).phases or []
    assert fine.panics == 0 and fine.failed == 0
    assert down.panics > 0 and down.succeeded == 0 and down.failed == down.requests
    assert back.served["mock/a"] >= back.requests - 31 and back.failed == 0


def test_the_human_report_shows_models_totals_phases_and_the_timeline(tmp_path):
    scenario = tmp_path / "outage.yaml"
    scenario.write_text(OUTAGE)
    result = runner.invoke(app, ["simulate", "--chain", "prod", "--scenario", str(scenario)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for needle in (
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4-5",
        "1800/1800 answered (100.0%)",
        "phases",
        "outage",
        "openai/gpt-4o:503",
        "timeline",
        "29m",
    ):
        assert needle in out
    assert "{" not in out  # people get tables, not JSON


def test_a_progress_bar_runs_only_on_a_terminal():
    import io

    from rich.console import Console

    from llmfail.simulate.render import progress

    with progress(Console(file=io.StringIO())) as update:
        assert update is None  # pipes and CI logs get no bar
    screen = io.StringIO()
    with progress(Console(file=screen, force_terminal=True, width=80)) as update:
        assert update is not None
        simulate(small_chain(), Plan("main", requests=128, seed=1), on_progress=update)
    assert "simulating" in screen.getvalue()


# --------------------------------------------------------------------------- expectations and JUnit


def test_a_failing_expectation_exits_1_and_the_junit_file_records_the_failure(tmp_path):
    junit = tmp_path / "junit.xml"
    result = cli(
        "simulate",
        "--chain",
        "prod",
        "--fail-rate",
        "503=0.5",
        "--fail-rate",
        "anthropic/claude-sonnet-4-5:503",
        "--fail-rate",
        "local-vllm/llama-3.1-8b:503",
        "--fail-rate",
        "ollama/llama3.2:503",
        "--requests",
        "50",
        "--expect-success-rate",
        "0.99",
        "--expect-max-failovers",
        "100000",
        "--junit",
        str(junit),
        "--json",
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [(e["name"], e["ok"]) for e in report["expectations"]] == [("success_rate", False), ("failovers", True)]
    assert "expectation not met: success_rate >= 0.99" in result.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["success_rate >= 0.99", "failovers <= 100000"]
    failure = cases[0].find("failure")
    assert failure is not None and "got " + f"{report['success_rate']:g}" in (failure.get("message") or "")
    assert cases[1].find("failure") is None


def test_met_expectations_exit_0_and_the_junit_file_has_no_failure(tmp_path):
    junit = tmp_path / "junit.xml"
    result = cli(
        "simulate",
        "--chain",
        "prod",
        "--fail-rate",
        "429",
        "--requests",
        "50",
        "--expect-success-rate",
        "1",
        "--expect-p99",
        "5s",
        "--expect-served-by",
        "anthropic/claude-sonnet-4-5=0.9",
        "--junit",
        str(junit),
    )
    assert result.exit_code == 0, result.stderr
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0" and root.get("tests") == "3"
    assert root.find(".//failure") is None


def test_p99_and_served_by_expectations_are_checked_against_simulated_figures():
    result = cli(
        "simulate",
        "--chain",
        "prod",
        "--fail-rate",
        "slow:3s",
        "--requests",
        "20",
        "--expect-p99",
        "1s",
        "--expect-served-by",
        "openai/gpt-4o=1",
        "--json",
    )
    assert result.exit_code == 1  # slow but under the timeout: the primary answers everything, late
    report = json.loads(result.stdout)
    assert report["latency_ms"]["p99"] >= 3000
    assert [(e["name"], e["ok"]) for e in report["expectations"]] == [
        ("p99_ms", False),
        ("served_by:openai/gpt-4o", True),
    ]
    assert report["expectations"][0]["expected"] == "<= 1000"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-rate", "bogus"], "bad --fail-rate 'bogus'"),
        (["--fail-rate", "503=2"], "RATE must be a probability"),
        (["--fail-rate", "slow:fast"], "bad --fail-rate 'slow:fast'"),
        (["--fail-rate", "openai/gpt-4:503"], "did you mean 'openai/gpt-4o'"),
        (["--chain", "nope"], "no chain named 'nope'"),
        (["--expect-success-rate", "1.5"], "--expect-success-rate"),
        (["--expect-served-by", "nobody/x=0.5"], "not an entry of this chain"),
        (["--expect-p99", "soon"], "--expect-p99"),
        (["--latency", "-1s"], "--latency"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args, message):
    result = cli("simulate", "--chain", "prod", *args) if "--chain" not in args else cli("simulate", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_requests_do_not_mix_with_a_scenario(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(OUTAGE)
    result = cli("simulate", "--chain", "prod", "--scenario", str(scenario), "--requests", "5")
    assert result.exit_code == 2 and "--requests/--concurrency do not apply to --scenario" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rate: 2/s\nduration: 1m\n", "missing key 'phases'"),
        ("rate: fast\nduration: 1m\nphases: [{at: 0s}]\n", "rate: expected a positive request rate"),
        ("rate: 2/s\nduration: 1m\nphases: [{at: 0s, faults: [nope]}]\n", "phases[0].faults[0]: bad --fail-rate"),
        ("rate: 2/s\nduration: 1m\nphases: [{at: 2m}]\n", "at or after the end of the run"),
        ("rate: 2/s\nduration: 1m\nphase: []\n", "unknown key 'phase'"),
        ("rate: 2/s\nduration: 1m\nphases: [{at: 0s, faults: ['nobody/x:503']}]\n", "'nobody/x' is not an entry"),
        ("rate: [\n", "bad.yaml:2:1: invalid YAML"),
    ],
)
def test_a_bad_scenario_file_exits_2_naming_the_problem(tmp_path, text, message):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(text)
    result = cli("simulate", "--chain", "prod", "--scenario", str(scenario))
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr


BAD_SCENARIO = """\
rate: fast
duration: 0s
latncy: 10ms
phases:
  - {at: 0s, faults: ["nope"]}
  - {at: soon}
  - {at: 30s}
  - {at: 30s, name: again}
  - {at: 2m, faults: {x: 1}}
"""


def test_a_bad_scenario_file_lists_every_problem_with_its_line_through_the_real_cli(tmp_path):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(BAD_SCENARIO)
    result = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", "simulate", "--scenario", str(scenario)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"llmfail: error: 7 problems in the scenario file {scenario}:"
    assert [line.split(": ")[0].strip() for line in lines[1:8]] == [
        f"{scenario}:1:7",  # rate
        f"{scenario}:2:11",  # duration
        f"{scenario}:3:1",  # unknown key latncy
        f"{scenario}:5:23",  # phases[0].faults[0]
        f"{scenario}:6:10",  # phases[1].at
        f"{scenario}:8:10",  # phases[3].at: the same start as phases[2]
        f"{scenario}:9:22",  # phases[4].faults
    ]
    assert "did you mean 'latency'" in lines[3]
    assert "phases[0].faults[0]: bad --fail-rate 'nope'" in lines[4]
    assert "phases[3].at: two phases start at 30s (the other on line 7)" in lines[6]
    assert lines[8].startswith("  hint: a scenario reads like: {rate: 2/s") and "Traceback" not in result.stderr


def test_a_scenario_with_one_problem_is_one_line_with_its_location(tmp_path):
    scenario = tmp_path / "late.yaml"
    scenario.write_text("rate: 1/s\nduration: 1m\nphases:\n  - {at: 0s}\n  - {at: 2m, name: outage}\n")
    result = cli("simulate", "--scenario", str(scenario))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"llmfail: error: {scenario}:5:10: phases[1].at: phase 'outage' starts at or after the end of the run (60s)"
    )


def test_a_scenario_given_as_data_names_the_key_without_a_line():
    from llmfail.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_scenario({"rate": "1/s", "duration": "1m", "phases": [{"at": "soon"}]})
    assert caught.value.message.startswith("<scenario>: phases[0].at: ")


# --------------------------------------------------------------------------- isolation


def test_the_operators_state_db_is_never_touched(tmp_path, monkeypatch):
    operator_db = tmp_path / "operator.db"
    monkeypatch.setenv("LLMFAIL_DB", str(operator_db))
    with SqliteStore(str(operator_db)) as store:
        store.bench("anthropic/claude-sonnet-4-5", until=4e9, now=1e9, manual=True, reason="maintenance", kind=None)
    before = operator_db.read_bytes()
    report = sim_json("--chain", "prod", "--fail-rate", "429", "--requests", "20")
    # The operator's manual bench of the secondary does not leak into the simulation ...
    assert report["models"]["anthropic/claude-sonnet-4-5"]["ok"] == 20
    # ... and the simulation wrote nothing into the operator's DB.
    with SqliteStore(str(operator_db)) as store:
        assert store.events() == [] and [s.model for s in store.benches(now=2e9)] == ["anthropic/claude-sonnet-4-5"]
    assert operator_db.read_bytes() == before


def test_with_db_the_simulation_writes_its_events_there(tmp_path):
    db = tmp_path / "sim.db"
    result = cli("--db", str(db), "simulate", "--chain", "prod", "--fail-rate", "429", "--requests", "5", "--json")
    assert result.exit_code == 0, result.stderr
    with SqliteStore(str(db)) as store:
        types = [e.type for e in store.events()]
    assert types.count("request") == 5 and "benched" in types and "failover" in types


def test_no_key_is_read_and_no_configured_url_is_contacted(monkeypatch):
    """A config whose URLs cannot resolve and whose keys are unset simulates fine: only fakes are reached."""
    config = parse_config(
        textwrap.dedent("""
        providers:
          a: {type: openai, base_url: "https://does-not-exist.example/v1", api_key_env: NEVER_SET_KEY_A}
        chains:
          main: [a/m, mock/echo]
        """),
        "test.yaml",
    )
    monkeypatch.delenv("NEVER_SET_KEY_A", raising=False)
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("simulate tried to open a network connection")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    report = simulate(config, Plan("main", parse_fault_specs(["503=0.3"]), requests=30, seed=1))
    assert report.succeeded == 30 and report.models["a/m"].ok > 0


# --------------------------------------------------------------------------- faults on each protocol


KINDS = {
    "429": "rate_limited",
    "503": "transient",
    "500": "transient",
    "401": "auth",
    "timeout": "timeout",
    "reset": "transient",
    "malformed": "transient",
    "stream-cut": "transient",
    "content-filter": "content_filter",
    "context-length": "context_length",
    "slow:8s": "timeout",
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("protocol", ["openai", "anthropic", "ollama", "gemini"])
@pytest.mark.parametrize("fault", list(KINDS))
def test_every_fault_reaches_the_engine_as_its_kind_on_every_protocol(protocol, fault, stream):
    config = small_chain(protocol)
    report = simulate(config, Plan("main", parse_fault_specs([fault]), requests=3, seed=1, stream=stream))
    primary = report.models["p/primary"]
    assert primary.ok == 0
    assert set(primary.errors) == {KINDS[fault]}, primary.errors


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "ollama", "gemini"])
def test_a_healthy_fake_of_every_protocol_answers_whole_and_streamed(protocol):
    for stream in (False, True):
        report = simulate(small_chain(protocol), Plan("main", requests=5, seed=1, stream=stream))
        assert report.models["p/primary"].ok == 5 and report.models["p/primary"].errors == {}


def test_529_is_anthropics_overloaded_answer_and_is_retried_as_transient():
    report = simulate(small_chain("anthropic"), Plan("main", parse_fault_specs(["529"]), requests=1, seed=1))
    assert report.models["p/primary"].errors == {"transient": 2}  # attempts: 2, then benched
    assert report.models["p/primary"].benched == 1


def test_a_429_waits_the_retry_after_on_virtual_time(tmp_path):
    db = tmp_path / "sim.db"
    report = simulate(
        small_chain("openai"), Plan("main", parse_fault_specs(["429"]), requests=1, seed=1, latency=0.0), db=str(db)
    )
    with SqliteStore(str(db)) as store:
        waits = [e.data["wait_s"] for e in store.events() if e.type == "retry"]
    assert waits == [1.0]  # the fake's Retry-After: 1, honoured once (attempts: 2)
    assert report.latencies_ms[0] == pytest.approx(1000.0, abs=1.0)


def test_a_timeout_costs_exactly_the_entrys_timeout_in_simulated_time():
    report = simulate(small_chain(), Plan("main", parse_fault_specs(["timeout"]), requests=1, seed=1, latency=0.0))
    assert report.models["p/primary"].errors == {"timeout": 1}  # no retry on a timeout
    assert report.latencies_ms == [pytest.approx(7000.0, abs=1.0)]  # the entry's timeout: 7s


def test_slow_under_the_timeout_answers_late_and_over_it_times_out():
    slow = simulate(small_chain(), Plan("main", parse_fault_specs(["slow:3s"]), requests=1, seed=1, latency=0.0))
    assert slow.models["p/primary"].ok == 1 and slow.latencies_ms == [pytest.approx(3000.0, abs=1.0)]
    late = simulate(small_chain(), Plan("main", parse_fault_specs(["slow:20s"]), requests=1, seed=1, latency=0.0))
    assert late.models["p/primary"].errors == {"timeout": 1}
    assert late.latencies_ms == [pytest.approx(7000.0, abs=1.0)]


def test_rates_of_several_faults_on_one_model_add_up():
    config = parse_config(
        textwrap.dedent("""
        defaults: {attempts: 10, backoff: {base: 10ms, max: 10ms}}
        chains:
          main: [mock/primary, mock/backup]
        """),
        "test.yaml",
    )
    report = simulate(
        config, Plan("main", parse_fault_specs(["429=0.3", "mock/primary:503=0.2"]), requests=1000, seed=5, latency=1.0)
    )
    primary = report.models["mock/primary"]
    # Every attempt on the primary draws once: ~30 % 429s, ~20 % 503s, ~50 % answers.
    share = {kind: n / primary.attempts for kind, n in primary.errors.items()}
    assert primary.attempts > 1500
    assert share["rate_limited"] == pytest.approx(0.3, abs=0.04)
    assert share["transient"] == pytest.approx(0.2, abs=0.04)
    assert primary.ok / primary.attempts == pytest.approx(0.5, abs=0.04)


def test_mock_entries_keep_their_configured_fault():
    report = simulate(load_default_config(), Plan("demo", requests=10, seed=1))
    assert report.models["flaky/gpt-4o"].ok == 0 and set(report.models["flaky/gpt-4o"].errors) == {"transient"}
    assert report.models["mock/echo"].ok == 10


def test_a_fault_without_model_targets_the_first_entry_and_with_model_that_entry():
    report = simulate(small_chain(), Plan("main", parse_fault_specs(["b/backup:503", "401"]), requests=3, seed=1))
    assert set(report.models["p/primary"].errors) == {"auth"}
    assert set(report.models["b/backup"].errors) == {"transient"}
    assert report.models["mock/last"].ok == 3


# --------------------------------------------------------------------------- virtual time


def test_concurrent_requests_share_one_virtual_clock():
    config = small_chain()
    serial = simulate(config, Plan("main", requests=100, concurrency=1, seed=1, latency=1.0))
    parallel = simulate(config, Plan("main", requests=100, concurrency=10, seed=1, latency=1.0))
    # 100 answers of 0.5-1.5 s each: ~100 s one at a time, ~10 s ten at a time.
    assert 70 <= serial.simulated_s <= 130
    assert 7 <= parallel.simulated_s <= 13
    assert serial.latency(50) == pytest.approx(parallel.latency(50), rel=0.2)


def test_the_engines_own_timeouts_run_on_virtual_time():
    async def main() -> tuple[float, bool]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(30):
                await asyncio.sleep(3600)
        except TimeoutError:
            return loop.time(), True
        return loop.time(), False

    assert run_virtual(main()) == (30.0, True)


def test_a_simulation_that_can_never_progress_says_so(monkeypatch):
    from llmfail.simulate import vtime

    monkeypatch.setattr(vtime, "STALL_AFTER_S", 0.01)

    async def wait_forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(SimulationStalled):
        run_virtual(wait_forever())


def test_an_hour_of_traffic_finishes_on_virtual_time(tmp_path):
    scenario = parse_scenario({"rate": "1/s", "duration": "1h", "phases": [{"at": "0m", "faults": ["503=0.2"]}]})
    report = simulate(load_default_config(), Plan("prod", scenario=scenario, seed=1))
    assert report.requests == 3600 and report.simulated_s >= 3599


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("429", FaultSpec(None, Fault("429", 1.0))),
        ("503=0.5", FaultSpec(None, Fault("503", 0.5))),
        ("openai/gpt-4o:503=0.9", FaultSpec("openai/gpt-4o", Fault("503", 0.9))),
        ("slow:2s", FaultSpec(None, Fault("slow:2s", 1.0))),
        ("ollama/llama3.2:3b:slow:1500ms=0.25", FaultSpec("ollama/llama3.2:3b", Fault("slow:1500ms", 0.25))),
        ("ollama/llama3.2:3b:timeout", FaultSpec("ollama/llama3.2:3b", Fault("timeout", 1.0))),
        ("STREAM-CUT=0", FaultSpec(None, Fault("stream-cut", 0.0))),
    ],
)
def test_fail_rate_specs_parse_model_fault_and_rate(text, expected):
    assert parse_fault_spec(text) == expected


@pytest.mark.parametrize("text", ["", "nope", "999", "503=", "503=-0.1", "x:slow:", "slow"])
def test_bad_fail_rate_specs_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_fault_spec(text)


def test_scenario_rates_and_an_implicit_healthy_start():
    scenario = parse_scenario({"rate": "120/m", "duration": "10m", "phases": [{"at": "5m", "faults": "503"}]})
    assert scenario.rate == 2.0 and scenario.requests == 1200
    assert [(p.name, p.start) for p in scenario.phases] == [("start", 0.0), ("phase 1", 300.0)]
    assert scenario.phase_at(299.9) == 0 and scenario.phase_at(300) == 1


def test_a_phase_may_carry_its_own_rate_and_a_file_without_one_arrives_as_before():
    steady = parse_scenario(
        {"rate": "2/s", "duration": "10s", "phases": [{"at": "0s"}, {"at": "4.3s", "faults": "503"}]}
    )
    assert list(steady.arrivals()) == [k / 2 for k in range(20)]  # one stream at 2/s, phases or not
    varied = parse_scenario(
        {
            "rate": "2/s",
            "duration": "10s",
            "phases": [{"at": "0s"}, {"at": "4s", "rate": "0"}, {"at": "6s", "rate": "10/s", "faults": "503"}],
        }
    )
    arrivals = list(varied.arrivals())
    assert arrivals[:8] == [k / 2 for k in range(8)]
    assert not [t for t in arrivals if 4 <= t < 6]  # a quiet stretch
    assert len([t for t in arrivals if t >= 6]) == 40 and varied.requests == 48
    assert varied.rate_of(2) == 10.0 and varied.rate_of(0) == 2.0


def test_a_scenario_phase_rate_must_be_a_rate():
    with pytest.raises(ScenarioError, match="expected a request rate like 2/s, 120/m or 0"):
        parse_scenario({"rate": "2/s", "duration": "10s", "phases": [{"at": "0s", "rate": "fast"}]})


def test_a_scenario_with_varying_rates_runs_that_many_requests():
    config = parse_config("chains:\n  c: [mock/a, mock/b]\n", "t.yaml")
    scenario = parse_scenario(
        {
            "rate": "1/s",
            "duration": "30s",
            "phases": [{"at": "0s"}, {"at": "10s", "rate": "3/s", "faults": "mock/a:429@20s"}],
        }
    )
    report = simulate(config, Plan("c", scenario=scenario))
    assert report.requests == 70 and report.succeeded == 70
    assert report.models["mock/a"].errors == {"rate_limited": 1}  # 20 s is past max_retry_wait: benched at once


# --------------------------------------------------------------------------- the README's first command


def test_the_readme_command_runs_with_no_config_no_keys_and_no_network(tmp_path):
    """`llmfail simulate --chain prod --fail-rate 429 --requests 200 --seed 1` from an empty directory."""
    assert not (tmp_path / "chains.yaml").exists()
    result = cli("simulate", "--chain", "prod", "--fail-rate", "429", "--requests", "200", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    assert "using the built-in example config" in result.stderr
    assert "200/200 answered (100.0%)" in result.stdout


def test_the_simulation_core_never_imports_the_cli_or_its_renderers():
    """Apps and CI scripts can `import llmfail.simulate` without Typer or our Rich rendering
    (httpx itself may pull in Rich for its own CLI; that is not ours to police)."""
    code = (
        "import sys, llmfail.simulate, llmfail.simulate.junit; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'textual') "
        "or m in ('llmfail.cli', 'llmfail.output', 'llmfail.simulate.render')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_readme_and_docs_document_the_simulate_contract():
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "llmfail simulate --chain prod --fail-rate 429 --requests 200 --seed 1" in first_block.splitlines()[1]
    section = (root / "docs" / "simulate.md").read_text() + (root / "docs" / "scenarios.md").read_text()
    for needle in (
        "--fail-rate",
        "stream-cut",
        "content-filter",
        "context-length",
        "slow:",
        "phases:",
        '"latency_ms"',
        "--junit",
        "exit",
    ):
        assert needle in section


def test_the_readme_shows_what_its_first_command_really_prints():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    result = runner.invoke(
        app,
        ["simulate", "--chain", "prod", "--fail-rate", "429", "--requests", "200", "--seed", "1"],
        env={"COLUMNS": "120"},
    )
    assert result.exit_code == 0, result.stderr
    for line in result.stdout.splitlines():
        assert line.rstrip() in readme, f"the README's sample output is stale: {line.rstrip()!r}"


def test_a_simulated_outage_never_reaches_the_configs_real_alert_sinks(server, tmp_path):
    hits: list[object] = []
    server.expect_request("/hooks").respond_with_handler(lambda request: hits.append(request) or "ok")
    config = tmp_path / "alerting.yaml"
    config.write_text(
        textwrap.dedent(f"""
        alerts:
          dedup: 1s
          sinks: [{{webhook: "{server.url_for("/hooks")}"}}]
        chains:
          main: [openai/gpt-4o, mock/echo]
        """)
    )
    result = cli(
        "--config", str(config), "simulate", "--chain", "main", "--fail-rate", "503", "--requests", "50", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["models"]["openai/gpt-4o"]["benched"] >= 1
    assert hits == []
