"""`llmfail replay`: a window of the event log becomes a scenario, replayed on today's config (then vs now)."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from random import Random

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner
from werkzeug import Request, Response

from llmfail.cli import app
from llmfail.events import ATTEMPT_FAILED, BENCHED, REQUEST, Event
from llmfail.simulate import load_scenario, parse_scenario
from llmfail.simulate.replay import Span, derive, fault_word, read_window, scenario_mapping
from llmfail.store import StoreTarget
from llmfail.store.sqlite import SqliteStore

from .conftest import openai_answer, openai_error

runner = CliRunner()

PRIMARY, BACKUP, THIRD = "mock/primary", "mock/backup", "mock/third"

CONFIG = f"""
defaults: {{cooldown: 30s}}
chains:
  prod: [{PRIMARY}, {BACKUP}]
  other: [{BACKUP}]
"""

#: A 40-minute outage: 503s, then 429s that ask for 20 s, then timeouts, then recovery.
OUTAGE = f"""
chain: prod
rate: 1/s
duration: 40m
latency: 200ms
phases:
  - {{at: 0m, name: healthy, faults: []}}
  - {{at: 10m, name: outage, faults: ["{PRIMARY}:503=0.9", "{BACKUP}:429@20s=0.3"]}}
  - {{at: 20m, name: slow, faults: ["{PRIMARY}:timeout=0.5"]}}
  - {{at: 30m, name: recovered, faults: []}}
"""


def cli(tmp_path: Path, *args: str, config: str = CONFIG) -> tuple[int, str, str]:
    path = tmp_path / "chains.yaml"
    path.write_text(textwrap.dedent(config).lstrip("\n"), encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(path), "--db", str(tmp_path / "state.db"), *args])
    return result.exit_code, result.stdout, result.stderr


def simulate_outage(tmp_path: Path, scenario: str = OUTAGE) -> Path:
    """The incident, written into the test's state DB by `simulate --db` (stamped so it ends now)."""
    path = tmp_path / "incident.yaml"
    path.write_text(textwrap.dedent(scenario).lstrip("\n"), encoding="utf-8")
    code, _, err = cli(tmp_path, "simulate", "--scenario", str(path), "--json")
    assert code == 0, err
    return path


def replay_json(tmp_path: Path, *args: str, config: str = CONFIG) -> dict:
    code, out, err = cli(tmp_path, "replay", "--since", "1h", "--json", *args, config=config)
    assert code == 0, err
    return json.loads(out)


def simulate_json(tmp_path: Path, scenario: Path) -> dict:
    path = tmp_path / "chains.yaml"
    result = runner.invoke(app, ["--config", str(path), "simulate", "--scenario", str(scenario), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def phase_at(scenario: dict, model: str, fault: str, offset: float) -> float:
    """The rate of `fault` on `model` in the scenario's phase running at `offset` seconds."""
    parsed = parse_scenario(scenario)
    phase = parsed.phases[parsed.phase_at(offset)]
    return sum(f.fault.rate for f in phase.faults if f.model == model and f.fault.what.partition("@")[0] == fault)


# ------------------------------------------------------------------------------- round trip


def test_an_outage_replayed_from_the_log_gives_back_its_phases_rates_and_outcome(tmp_path: Path):
    original = simulate_outage(tmp_path)
    saved = tmp_path / "derived.yaml"
    report = replay_json(tmp_path, "--save", str(saved))
    derived = yaml.safe_load(saved.read_text())
    assert derived == report["scenario"]
    bucket = 40.0  # 1/60 of the 40 minutes the requests span
    starts = [parse_duration_s(p["at"]) for p in derived["phases"]]
    for boundary in (600.0, 1200.0, 1800.0):
        assert min(abs(s - boundary) for s in starts) <= bucket, starts
    source = yaml.safe_load(textwrap.dedent(OUTAGE))
    for offset in range(0, 2400, 20):
        if min(abs(offset - b) for b in (600, 1200, 1800)) <= bucket:
            continue
        for model, fault in ((PRIMARY, "503"), (BACKUP, "429"), (PRIMARY, "timeout")):
            expected = phase_at(source, model, fault, offset)
            assert abs(phase_at(derived, model, fault, offset) - expected) <= 0.1, (model, fault, offset)
    assert any("429@20s" in f for p in derived["phases"] for f in p["faults"]), "the Retry-After comes back"
    first, second = simulate_json(tmp_path, original), simulate_json(tmp_path, saved)
    assert abs(first["success_rate"] - second["success_rate"]) <= 0.02

    def order(report: dict) -> list[str]:
        return sorted(report["models"], key=lambda m: -report["models"][m]["ok"])

    assert order(first) == order(second)


def parse_duration_s(text: str) -> float:
    from llmfail.durations import parse_duration

    return parse_duration(text)


def test_then_is_the_log_exactly_and_now_follows_the_current_config(tmp_path: Path):
    simulate_outage(tmp_path)
    before = replay_json(tmp_path)
    events = SqliteStore(str(tmp_path / "state.db"))
    try:
        rows = events.events(types=[REQUEST])
    finally:
        events.close()
    assert before["then"]["requests"] == len(rows) == 2400
    assert before["then"]["succeeded"] == sum(1 for e in rows if e.data.get("ok"))
    longer = CONFIG.replace("cooldown: 30s", "cooldown: 5m")
    third = CONFIG.replace(f"prod: [{PRIMARY}, {BACKUP}]", f"prod: [{PRIMARY}, {BACKUP}, {THIRD}]")
    with_cooldown, with_third = replay_json(tmp_path, config=longer), replay_json(tmp_path, config=third)
    assert with_cooldown["then"] == before["then"] == {**with_third["then"], "served_by": before["then"]["served_by"]}
    assert with_cooldown["now"]["models"][PRIMARY]["ok"] < before["now"]["models"][PRIMARY]["ok"]
    assert with_third["now"]["success_rate"] > before["now"]["success_rate"]
    assert with_third["now"]["models"][THIRD]["ok"] > 0
    assert before["now"]["success_rate"] == pytest.approx(before["then"]["success_rate"], abs=0.03)


def test_the_json_has_the_documented_shape_and_an_unmet_expectation_exits_1_with_junit(tmp_path: Path):
    simulate_outage(tmp_path)
    junit = tmp_path / "out.xml"
    code, out, err = cli(
        tmp_path, "replay", "--since", "1h", "--json", "--expect-success-rate", "0.999", "--junit", str(junit)
    )
    assert code == 1, err
    body = json.loads(out)
    assert {"chain", "window", "then", "now", "scenario"} <= set(body)
    assert body["chain"] == "prod"
    assert set(body["window"]) == {"from", "to"} and body["window"]["to"].endswith("Z")
    assert {"requests", "succeeded", "failed", "success_rate", "failovers", "served_by"} <= set(body["then"])
    assert body["now"]["expectations"][0]["name"] == "success_rate" and not body["now"]["expectations"][0]["ok"]
    assert "expectation not met" in err
    assert 'failures="1"' in junit.read_text()


def test_the_report_for_people_puts_then_beside_now_with_phases_and_timeline(tmp_path: Path):
    simulate_outage(tmp_path)
    code, out, err = cli(tmp_path, "replay", "--since", "1h")
    assert code == 0, err
    assert "then vs now" in out and "then (the log)" in out and "phases of the derived scenario" in out
    assert "timeline" in out and "Traceback" not in out + err


# ------------------------------------------------------------------------------- from real traffic


@pytest.mark.slow
def test_real_run_traffic_through_a_503_stretch_is_counted_exactly_and_phased(tmp_path: Path, server: HTTPServer):
    """~60 `llmfail run` requests over real HTTP; the primary answers 503 for the middle third."""
    outage = {"on": False}

    def primary(request: Request) -> Response:
        if outage["on"]:
            return openai_error(503, message="upstream canary-host.internal is down")
        return Response(json.dumps(openai_answer("hi")), content_type="application/json")

    server.expect_request("/p/chat/completions").respond_with_handler(primary)
    server.expect_request("/b/chat/completions").respond_with_json(openai_answer("from backup"))
    base = server.url_for("").rstrip("/")
    config = f"""
    defaults: {{attempts: 2, backoff: {{base: 10ms, max: 20ms}}, cooldown: 200ms}}
    providers:
      p: {{type: openai, base_url: "{base}/p"}}
      b: {{type: openai, base_url: "{base}/b"}}
    chains:
      prod: [p/model-a, b/model-b]
    """
    path = tmp_path / "chains.yaml"
    path.write_text(textwrap.dedent(config).lstrip("\n"), encoding="utf-8")
    db = str(tmp_path / "state.db")
    answers: dict[str, int] = {}
    failovers = 0
    for i in range(60):
        outage["on"] = 20 <= i < 40
        result = runner.invoke(app, ["--config", str(path), "--db", db, "run", "hi", "--chain", "prod", "--json"])
        body = json.loads(result.stdout)
        answers[body["model"]] = answers.get(body["model"], 0) + 1
        failovers += body["failovers"]
        time.sleep(0.25)  # pacing the traffic over ~15 s: one-second buckets see the stretch
    report = replay_json(tmp_path, config=textwrap.dedent(config))
    then = report["then"]
    assert then["requests"] == 60 and then["succeeded"] == 60
    assert {m: round(s * 60) for m, s in then["served_by"].items()} == answers
    assert then["failovers"] == failovers  # a benched primary is skipped, not failed over from
    rates = [phase_rate(p, "p/model-a", "503") for p in report["scenario"]["phases"]]
    assert rates[0] == 0 and rates[-1] == 0, report["scenario"]
    assert max(rates) >= 0.9, report["scenario"]


def phase_rate(phase: dict, model: str, fault: str) -> float:
    return sum(
        float(f.rpartition("=")[2]) if "=" in f else 1.0 for f in phase["faults"] if f.startswith(f"{model}:{fault}")
    )


# ------------------------------------------------------------------------------- privacy


def test_no_message_host_url_or_prompt_from_the_log_reaches_the_scenario_or_the_json(tmp_path: Path):
    canaries = ["CANARY-detail-7c1", "canary-host-93a.internal", "https://canary-url-51f.example/v1", "sk-canary4242"]
    store = SqliteStore(str(tmp_path / "state.db"))
    now = time.time()
    rows: list[Event] = []
    for i in range(40):
        t = now - 600 + i * 5
        fails = 10 <= i < 30
        if fails:
            rows.append(
                Event(
                    ATTEMPT_FAILED,
                    t + 0.1,
                    request_id=f"req-{canaries[0]}-{i}",
                    chain="prod",
                    model=PRIMARY,
                    kind="transient",
                    status=503,
                    latency_ms=100,
                    detail=f"{canaries[0]} at {canaries[2]} via {canaries[1]} key {canaries[3]}",
                    data={"credential": canaries[1], "retry_after_s": 3},
                )
            )
        model = BACKUP if fails else PRIMARY
        rows.append(
            Event(
                REQUEST,
                t + 0.3,
                request_id=f"req-{canaries[1]}",
                chain="prod",
                model=model,
                latency_ms=300,
                detail=canaries[2],
                data={
                    "ok": True,
                    "answered_by": model,
                    "failovers": int(fails),
                    "attempt_ms": 150,
                    "note": canaries[3],
                },
            )
        )
    store.append(rows)
    store.close()
    saved = tmp_path / "s.yaml"
    code, out, err = cli(tmp_path, "replay", "--since", "1h", "--json", "--save", str(saved))
    assert code == 0, err
    code, table, table_err = cli(tmp_path, "replay", "--since", "1h")
    assert code == 0, table_err
    for text in (out, saved.read_text(), err, table, table_err):
        for canary in canaries:
            assert canary.lower() not in text.lower()
    assert "503@3s" in saved.read_text()
    load_scenario(saved)  # and the file is a valid scenario


# ------------------------------------------------------------------------------- bad input


def test_a_window_without_requests_exits_1_naming_it(tmp_path: Path):
    code, _, err = cli(tmp_path, "replay", "--from", "2026-01-01T00:00Z", "--to", "2026-01-01T01:00Z")
    assert code == 1
    assert "no requests between 2026-01-01T00:00:00.000Z and 2026-01-01T01:00:00.000Z" in err
    simulate_outage(tmp_path)
    code, _, err = cli(tmp_path, "replay", "--from", "2026-01-01T00:00Z", "--to", "2026-01-01T01:00Z")
    assert code == 1 and "no requests between" in err and "Traceback" not in err


def test_a_chain_in_neither_the_log_nor_the_config_exits_2_with_a_did_you_mean(tmp_path: Path):
    simulate_outage(tmp_path)
    code, _, err = cli(tmp_path, "replay", "--chain", "prdo")
    assert code == 2 and "'prdo'" in err and "did you mean 'prod'" in err
    code, _, err = cli(tmp_path, "replay", "--chain", "other")  # configured, but no traffic in the window
    assert code == 2 and "has no requests" in err and "prod (2400)" in err


def test_a_model_the_config_no_longer_has_is_reported_and_its_traffic_replayed(tmp_path: Path):
    simulate_outage(tmp_path)
    renamed = CONFIG.replace(f"prod: [{PRIMARY}, {BACKUP}]", f"prod: [mock/new-primary, {BACKUP}]")
    code, out, err = cli(tmp_path, "replay", "--since", "1h", "--json", config=renamed)
    assert code == 0, err
    body = json.loads(out)
    assert f"{PRIMARY} is in the log" in err and "Traceback" not in err
    assert PRIMARY in body["models_not_in_config"] and PRIMARY in body["then"]["served_by"]
    assert body["now"]["requests"] == body["then"]["requests"]
    assert all(PRIMARY not in f for p in body["scenario"]["phases"] for f in p["faults"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "1h", "--from", "2026-01-01T00:00Z"], "--since does not mix with --from/--to"),
        (["--to", "2026-01-01T00:00Z"], "--to needs --from"),
        (["--from", "yesterday"], "expected an ISO 8601 time"),
        (["--since", "soon"], "--since"),
        (["--from", "2026-01-02T00:00Z", "--to", "2026-01-01T00:00Z"], "is not after"),
        (["--since", "0s"], "--since 0s: an empty window"),
        (["--from", "2999-01-01T00:00Z"], "--from 2999-01-01T00:00:00.000Z is in the future"),
    ],
)
def test_a_bad_window_is_a_usage_error(tmp_path: Path, args: list[str], message: str):
    code, _, err = cli(tmp_path, "replay", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_busy_window_is_simulated_thinned_and_says_so(tmp_path: Path):
    simulate_outage(tmp_path)
    code, out, err = cli(tmp_path, "replay", "--since", "1h", "--json", "--max-requests", "600")
    assert code == 0, err
    body = json.loads(out)
    assert body["thinned"] == 0.25 and body["now"]["requests"] == 600 and body["then"]["requests"] == 2400
    assert "simulated 600 of the window's 2400 arrivals" in err
    assert parse_scenario(body["scenario"]).requests == 2400  # the scenario itself keeps the real rate
    assert "failovers, benches and tail latency do not scale with the traffic" in err
    code, out, _ = cli(tmp_path, "replay", "--since", "1h", "--max-requests", "600")
    assert code == 0 and "simulated on 1 in 4 requests" in " ".join(out.split())


# ------------------------------------------------------------------------------- any store backend


def test_the_window_is_read_through_the_store_interface_on_every_backend(store_target: StoreTarget):
    store = store_target.open()
    try:
        rows = [Event(REQUEST, 1000.0 + i, chain="prod", model=PRIMARY, data={"ok": True}) for i in range(10)]
        store.append(rows)
        got = read_window(store, Span(1002.0, 1007.0), page=2)
    finally:
        store.close()
    assert [e.ts for e in got] == [1002.0 + i for i in range(6)]


def test_a_window_long_past_stops_reading_once_the_log_is_well_beyond_it(store: SqliteStore):
    store.append([Event(REQUEST, 1000.0 + i * 100, chain="prod", data={"ok": True}) for i in range(100)])
    calls: list[int | None] = []

    class Counting:
        def events(self, **kwargs):
            calls.append(kwargs["after_id"])
            return store.events(**kwargs)

    got = read_window(Counting(), Span(1000.0, 1500.0), page=5)  # type: ignore[arg-type]
    assert [e.ts for e in got] == [1000.0 + i * 100 for i in range(6)]
    assert len(calls) <= 4  # not the 20 pages of the whole log


# ------------------------------------------------------------------------------- the derivation


def synthetic(profile: Sequence[tuple[float, float]], rate: float, seed: int) -> list[Event]:
    """Traffic at `rate`/s where, during (start, 503 share) phase, the primary fails that share of
    attempts and the backup answers instead; events as the engine writes them."""
    rng = Random(seed)
    out: list[Event] = []
    end = profile[-1][0] + 120
    k = 0
    while (t := k / rate) < end:
        share = [p for start, p in profile if start <= t][-1]
        failed = rng.random() < share
        if failed:
            out.append(
                Event(
                    ATTEMPT_FAILED, t + 0.1, chain="prod", model=PRIMARY, kind="transient", status=503, latency_ms=100
                )
            )
        model = BACKUP if failed else PRIMARY
        out.append(
            Event(
                REQUEST,
                t + 0.2 + 0.1 * failed,
                chain="prod",
                model=model,
                latency_ms=200 + 100 * failed,
                data={"ok": True, "answered_by": model, "attempt_ms": 100},
            )
        )
        k += 1
    return out


# The same 50 cases every run (`derandomize`): a fresh draw can make a log whose chance run
# contradicts its own profile, e.g. profile 0 -> 0.4 at 60 s with seed 746 has 2 failures in the
# 24 tries of 60-66 s (p ~ 0.0007), and the likeliest cut, at 66 s, is then two buckets "late";
# no derivation from that log could place it nearer. Fresh draws of 50 hit one in about one run
# of ten, which the README's test command must not.
@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(min_value=60, max_value=180), min_size=1, max_size=3),
    shares=st.lists(st.sampled_from([0.0, 0.4, 0.95]), min_size=4, max_size=4),
    seed=st.integers(0, 1000),
)
@example(lengths=[60], shares=[0.4, 0.0, 0.0, 0.0], seed=92)  # once cut a 3 s 'healthy' start off by chance
def test_derived_phases_and_rates_follow_any_generated_profile(lengths: list[int], shares: list[float], seed: int):
    starts = [0.0]
    for length in lengths:
        starts.append(starts[-1] + length)
    profile = [(s, shares[i]) for i, s in enumerate(starts)]
    # neighbouring phases with the same share are one phase
    rate = 4.0
    events = synthetic(profile, rate, seed)
    derivation = derive(events, "prod", [PRIMARY, BACKUP], Span(-1, 10_000))
    scenario = derivation.scenario
    bucket = derivation.bucket_s
    assert bucket == pytest.approx(max(1, (profile[-1][0] + 120) / 60), abs=0.5)  # whole seconds from 10 s
    for t in range(0, int(scenario.duration), 5):
        if (
            len(profile) > 1 and min(abs(t - s) for s, _ in profile[1:]) <= bucket
        ):  # a cut falls within a bucket of the change
            continue
        expected = [p for s, p in profile if s <= t][-1]
        phase = scenario.phases[scenario.phase_at(t)]
        got = sum(f.fault.rate for f in phase.faults if f.model == PRIMARY and f.fault.what == "503")
        assert abs(got - expected) <= 0.1, (t, expected, got, scenario.phases)
        assert abs(scenario.rate_of(scenario.phase_at(t)) - rate) <= 0.1 * rate
    changes = [s for (s, p), (_, before) in zip(profile[1:], profile, strict=False) if p != before]
    derived = [p.start for p in scenario.phases[1:]]
    assert len(derived) == len(changes), (profile, scenario.phases)  # no phase made of a mixed bucket alone
    assert all(abs(a - b) <= bucket for a, b in zip(derived, changes, strict=True))
    assert scenario_mapping(parse_scenario(scenario_mapping(scenario))) == scenario_mapping(scenario)


def benched_outage(
    probe_fails_at: Sequence[float], recovered_at: float, *, cooldown: float = 5.0, per_s: int = 1
) -> list[Event]:
    """`per_s` requests a second for a minute; the primary fails (503) at each of `probe_fails_at`
    and is benched `cooldown` after each, so it is not tried in between; from `recovered_at` it answers."""
    out: list[Event] = []
    fails = list(probe_fails_at)
    benched_until = -1.0
    for t in (k / per_s for k in range(60 * per_s)):
        if fails and t >= fails[0]:
            fails.pop(0)
            out.append(
                Event(
                    ATTEMPT_FAILED, t + 0.1, chain="prod", model=PRIMARY, kind="transient", status=503, latency_ms=100
                )
            )
            benched_until = t + 0.1 + cooldown
            out.append(
                Event(
                    BENCHED,
                    t + 0.1,
                    chain="prod",
                    model=PRIMARY,
                    kind="transient",
                    status=503,
                    benched_until=benched_until,
                )
            )
            model = BACKUP
        else:
            model = BACKUP if t < benched_until or (probe_fails_at[0] <= t < recovered_at) else PRIMARY
        out.append(
            Event(
                REQUEST,
                t + 0.2,
                chain="prod",
                model=model,
                latency_ms=150,
                data={"ok": True, "answered_by": model, "attempt_ms": 50},
            )
        )
    return out


def test_an_outage_seen_only_through_a_few_failed_probes_still_becomes_its_own_phase():
    """With a realistic cooldown a failing primary is tried once per bench: 4 failures in 20 s.
    Benched between two failures alike, it was failing throughout: healthy, 503, recovered."""
    scenario = derive(benched_outage([20, 25, 30, 35], 40), "prod", [PRIMARY, BACKUP], Span(-1, 100)).scenario
    assert [p.name for p in scenario.phases] == ["healthy", "incident 1", "recovered"], scenario.phases
    assert [str(f) for f in scenario.phases[1].faults] == [f"{PRIMARY}:503"]
    assert abs(scenario.phases[1].start - 20) <= 1.5 and abs(scenario.phases[2].start - 40) <= 2.5, scenario.phases


def test_a_bench_weighs_as_many_failed_attempts_as_the_model_usually_makes_in_its_time():
    """Three requests a second: two failed probes 5 s apart are a 503 phase too, the bench
    between them counted as the attempts three requests a second would have made."""
    events = benched_outage([20, 25], 30, per_s=3)
    scenario = derive(events, "prod", [PRIMARY, BACKUP], Span(-1, 100)).scenario
    assert [p.name for p in scenario.phases] == ["healthy", "incident 1", "recovered"], scenario.phases
    assert [str(f) for f in scenario.phases[1].faults] == [f"{PRIMARY}:503"]


def test_a_bench_ended_by_an_answer_is_not_taken_for_a_failing_stretch():
    """One 503 and a successful probe 5 s later: nothing says the primary failed in between."""
    scenario = derive(benched_outage([20], 20), "prod", [PRIMARY, BACKUP], Span(-1, 100)).scenario
    assert all(f.fault.rate < 0.1 for p in scenario.phases for f in p.faults), scenario.phases


SIM_CONFIG = f"""
defaults: {{cooldown: 2s}}
chains:
  prod: [{PRIMARY}, {BACKUP}]
"""


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same ten cases every run: see the docstring for why not fresh ones
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    lengths=st.lists(st.integers(min_value=60, max_value=120), min_size=1, max_size=2),
    shares=st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=3, max_size=3),
    seed=st.integers(0, 100),
)
def test_a_generated_scenario_simulated_into_the_log_comes_back_from_it(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], shares: list[float], seed: int
):
    """The round trip through the real engine: simulate --db writes the log, the derivation reads it back.

    Checked away from each change by two buckets, and outside the stretch where the log itself
    cannot tell the two sides apart (`undecided`): next to a change a bench can hide the primary
    for seconds, and a run of chance failures at 0.5 reads like 1.0.

    The cases are fixed (`derandomize`), not fresh each run. With a 2 s cooldown at 4 requests a
    second, every try at a 0.5 primary is a probe after a bench, and a case may hold a chance run
    of failed probes at 0.5 that the log shows as an outage (seed 76 with a 0.5 phase of 101 s:
    six failed probes in a row, 86-98 s), which the derivation then reports; no derivation from
    that log could say otherwise. Fresh draws of ten cases hit such a run for three hypothesis
    seeds out of six. The derivation's own property test
    (`test_derived_phases_and_rates_follow_any_generated_profile`) draws fresh cases."""
    from llmfail.config import parse_config
    from llmfail.simulate import Plan, simulate

    starts = [0]
    for length in lengths:
        starts.append(starts[-1] + length)
    phases = [
        {"at": f"{s}s", "faults": [f"{PRIMARY}:503={shares[i]}"] if shares[i] else []} for i, s in enumerate(starts)
    ]
    source = parse_scenario({"rate": "4/s", "duration": f"{starts[-1] + 90}s", "phases": phases})
    config = parse_config(SIM_CONFIG, "chains.yaml")
    db = str(tmp_path_factory.mktemp("log") / "state.db")
    simulate(config, Plan("prod", scenario=source, seed=seed), db=db)
    store = SqliteStore(db)
    try:
        derivation = derive(read_window(store, Span(0, time.time() + 60)), "prod", [PRIMARY, BACKUP], Span(0, 1e12))
    finally:
        store.close()
    derived, bucket = derivation.scenario, derivation.bucket_s
    assert derived.requests == pytest.approx(source.requests, rel=0.01)
    rate = [p.faults[0].fault.rate if p.faults else 0.0 for p in source.phases]
    around = [
        undecided(derivation.events, derivation.epoch, p.start, rate[i], rate[i + 1])
        for i, (q, p) in enumerate(zip(source.phases, source.phases[1:], strict=False))
        if p.faults != q.faults
    ]
    for t in range(0, int(source.duration), 3):
        if any(lo - 2 * bucket <= t <= hi + 2 * bucket for lo, hi in around):
            continue
        expected = source.phases[source.phase_at(t)].faults
        got = derived.phases[derived.phase_at(t)].faults
        want = expected[0].fault.rate if expected else 0.0
        assert abs((got[0].fault.rate if got else 0.0) - want) <= 0.1, (t, source.phases, derived.phases)


def undecided(events: Sequence[Event], epoch: float, change: float, left: float, right: float) -> tuple[float, float]:
    """Where the log cannot place the primary's change of fault rate from `left` to `right`: from
    the last try before the change that `right` rules out to the first after it that `left` rules
    out (a rate of 0 rules out a failure, a rate of 1 an answer; 0.5 rules out neither)."""

    def ruled_out(rate: float, failed: bool) -> bool:
        return (rate == 0.0 and failed) or (rate == 1.0 and not failed)

    tries = [
        (e.ts - epoch, e.type == ATTEMPT_FAILED)
        for e in events
        if e.model == PRIMARY and (e.type == ATTEMPT_FAILED or (e.type == REQUEST and e.data.get("ok")))
    ]
    lo = max((t for t, failed in tries if t <= change and ruled_out(right, failed)), default=change)
    hi = min((t for t, failed in tries if t >= change and ruled_out(left, failed)), default=change)
    return lo, hi


@pytest.mark.parametrize(
    ("kind", "status", "data", "detail", "word"),
    [
        ("transient", 503, {}, None, "503"),
        ("rate_limited", 429, {"retry_after_s": 20}, None, "429@20s"),
        ("rate_limited", 429, {"retry_after_s": 1.5}, None, "429@1.5s"),
        ("timeout", None, {}, None, "timeout"),
        ("timeout", 408, {}, None, "408"),
        ("transient", None, {}, "connection reset by peer", "reset"),
        ("transient", None, {}, "the stream ended before its completion signal", "stream-cut"),
        ("transient", 200, {}, "unparseable response body", "malformed"),
        ("content_filter", 400, {}, None, "content-filter"),
        ("context_length", 413, {}, None, "context-length"),
        ("cancelled", None, {}, None, None),
    ],
)
def test_each_failed_attempt_becomes_the_fault_word_that_replays_it(
    kind: str, status: int | None, data: dict, detail: str | None, word: str | None
):
    event = Event(ATTEMPT_FAILED, 0.0, model=PRIMARY, kind=kind, status=status, data=data, detail=detail)
    assert fault_word(event) == word


def test_slow_first_tokens_become_a_slow_fault_and_a_quiet_stretch_a_near_zero_rate():
    events: list[Event] = []
    for k in range(600):
        t = float(k)
        if 200 <= t < 300:
            continue  # nobody asked for ten minutes... of this short log
        first = 3200.0 if 400 <= t < 500 else 200.0
        events.append(
            Event(
                REQUEST,
                t + first / 1000,
                chain="prod",
                model=PRIMARY,
                latency_ms=first,
                data={"ok": True, "answered_by": PRIMARY, "attempt_ms": first, "attempt_ttft_ms": first},
            )
        )
    scenario = derive(events, "prod", [PRIMARY, BACKUP], Span(-1, 10_000)).scenario
    assert scenario.latency == pytest.approx(0.2)
    quiet = scenario.phases[scenario.phase_at(250)]
    assert quiet.rate is not None and quiet.rate < 0.05  # at most the one arrival sharing its edge bucket
    slow = scenario.phases[scenario.phase_at(450)]
    assert [f.fault.what for f in slow.faults] == ["slow:3s"] and slow.faults[0].fault.rate >= 0.95
    assert scenario.requests == pytest.approx(500, abs=20)
