"""The config loader: typed objects from YAML, and located, complete problem reports."""

from __future__ import annotations

import textwrap
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmfail.config import (
    BUILTIN_PROVIDERS,
    POLICY_PARSERS,
    Alerts,
    Backoff,
    Config,
    Credential,
    Location,
    MockBehaviour,
    Policy,
    Sink,
    StateConfig,
    load_config,
    load_default_config,
    parse_config,
)
from llmfail.errors import ConfigError, ExitCode
from llmfail.redact import redact

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "chains.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def rejection(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


FULL = """
defaults:
  attempts: 2
  backoff: {base: 100ms, max: 4s}
  cooldown: 1m
  max_cooldown_factor: 4
  timeout: 20s
  on_all_benched: fail
  mid_stream: restart
  max_tokens: 2048
alerts:
  dedup: 5m
  sinks:
    - webhook: https://hooks.example.com/llm/
    - command: "notify-send llmfail"
providers:
  local-vllm:
    type: openai
    base_url: ${TEST_VLLM_HOST}/v1/
    api_key_env: VLLM_KEY
    headers: {X-Team: "${TEST_TEAM:-platform}", X-Version: 2}
  openai: {base_url: https://proxy.example.com/v1}
  chaos: {type: mock, fail: 429, fail_rate: 0.25, latency: 250ms, reply: "yes"}
  slowpoke: {type: mock, fail: "slow:2s"}
chains:
  prod:
    - openai/gpt-4o
    - model: anthropic/claude-sonnet-4-5
      timeout: 90s
      backoff: {base: 1s}
      credentials: [{api_key_env: ANTHROPIC_KEY_A}, {api_key_env: ANTHROPIC_KEY_B}]
    - chain: cheap
    - chaos/gpt-4o
  cheap:
    - model: local-vllm/meta/llama-3.1-8b
      daily_quota: 5000
      api_key_env: OTHER_VLLM_KEY
    - ollama/llama3.2
"""


@pytest.fixture
def full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("TEST_VLLM_HOST", "http://10.0.0.5:8000")
    monkeypatch.delenv("TEST_TEAM", raising=False)
    return load(tmp_path, FULL)


def test_defaults_fill_one_policy_and_unnamed_keys_keep_their_default(full: Config) -> None:
    assert full.policy == Policy(
        attempts=2,
        backoff=Backoff(base=0.1, max=4.0),
        cooldown=60.0,
        max_cooldown_factor=4.0,
        timeout=20.0,
        on_all_benched="fail",
        mid_stream="restart",
        max_tokens=2048,
    )


def test_nested_chains_are_flattened_in_place(full: Config) -> None:
    assert full.chain("prod").models == [
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4-5",
        "local-vllm/meta/llama-3.1-8b",
        "ollama/llama3.2",
        "chaos/gpt-4o",
    ]
    assert full.chain("cheap").models == ["local-vllm/meta/llama-3.1-8b", "ollama/llama3.2"]


def test_the_wire_model_is_everything_after_the_first_slash(full: Config) -> None:
    vllm = full.chain("cheap").entries[0]
    assert (vllm.provider.name, vllm.wire_model) == ("local-vllm", "meta/llama-3.1-8b")


def test_an_entry_overrides_only_the_keys_it_names_on_top_of_the_defaults(full: Config) -> None:
    primary, claude, *_ = full.chain("prod").entries
    assert primary.policy == full.policy
    assert claude.policy.timeout == 90.0
    assert claude.policy.backoff == Backoff(base=1.0, max=4.0)
    assert claude.policy.attempts == 2


def test_credentials_come_from_the_list_else_the_entry_else_the_provider(full: Config) -> None:
    primary, claude, vllm, ollama, chaos = full.chain("prod").entries
    assert primary.credentials == (Credential("OPENAI_API_KEY"),)
    assert claude.credentials == (Credential("ANTHROPIC_KEY_A"), Credential("ANTHROPIC_KEY_B"))
    assert claude.bench_key(1) == "anthropic/claude-sonnet-4-5#1"
    assert vllm.credentials == (Credential("OTHER_VLLM_KEY"),)
    assert ollama.credentials == (Credential(None),)
    assert chaos.credentials == (Credential(None),)


def test_daily_quota_is_kept_per_entry(full: Config) -> None:
    assert [e.daily_quota for e in full.chain("cheap").entries] == [5000, None]


def test_a_mock_provider_carries_its_behaviour(full: Config) -> None:
    chaos = full.providers["chaos"]
    assert (chaos.type, chaos.base_url) == ("mock", None)
    assert chaos.mock == MockBehaviour(fail="429", fail_rate=0.25, latency=0.25, reply="yes")
    assert full.providers["slowpoke"].mock == MockBehaviour(fail="slow:2s")
    assert full.providers["mock"].mock == MockBehaviour()


def test_base_url_and_headers_are_interpolated_from_the_environment(full: Config) -> None:
    vllm = full.providers["local-vllm"]
    assert vllm.base_url == "http://10.0.0.5:8000/v1"
    assert dict(vllm.headers) == {"X-Team": "platform", "X-Version": "2"}
    assert vllm.api_key_env == "VLLM_KEY"


def test_overriding_a_builtin_keeps_its_key_variable(full: Config) -> None:
    openai = full.providers["openai"]
    assert (openai.type, openai.base_url, openai.api_key_env) == (
        "openai",
        "https://proxy.example.com/v1",
        "OPENAI_API_KEY",
    )
    assert full.chain("prod").entries[0].provider is openai


def test_alerts_hold_the_dedup_window_and_every_sink(full: Config) -> None:
    assert full.alerts == Alerts(
        dedup=300.0,
        sinks=(Sink(webhook="https://hooks.example.com/llm"), Sink(command="notify-send llmfail")),
    )


def test_each_entry_knows_where_it_is_written(full: Config, tmp_path: Path) -> None:
    claude = full.chain("prod").entries[1]
    vllm = full.chain("prod").entries[2]
    assert full.path == str(tmp_path / "chains.yaml")
    assert claude.location == Location(full.path, 27, 7)
    assert vllm.location == Location(full.path, 34, 7)  # where it is written: in `cheap`


def test_builtin_providers_exist_without_a_providers_section(tmp_path: Path) -> None:
    config = load(tmp_path, "chains: {x: [gemini/gemini-2.0-flash, mock/echo]}")
    assert dict(config.providers) == dict(BUILTIN_PROVIDERS)
    assert config.providers["gemini"].base_url == "https://generativelanguage.googleapis.com"
    assert config.providers["anthropic"].api_key_env == "ANTHROPIC_API_KEY"
    assert config.providers["ollama"].api_key_env is None
    assert config.alerts == Alerts()
    assert config.policy == Policy()


def test_a_new_endpoint_is_never_sent_a_builtin_key(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        providers:
          openai: {type: ollama}
          groq: {type: openai, base_url: https://api.groq.com/openai/v1}
        chains: {x: [groq/llama-3.3-70b]}
        """,
    )
    assert config.providers["groq"].api_key_env is None
    assert config.providers["openai"].api_key_env is None
    assert config.providers["openai"].base_url == "http://127.0.0.1:11434"


def test_yaml_merge_keys_share_settings_between_entries(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        chains:
          x:
            - &slow {model: openai/o3, timeout: 2m, first_token_timeout: 60s}
            - {<<: *slow, model: openai/o4-mini}
        """,
    )
    assert [(e.model, e.policy.timeout, e.policy.first_token_timeout) for e in config.chain("x").entries] == [
        ("openai/o3", 120.0, 60.0),
        ("openai/o4-mini", 120.0, 60.0),
    ]


def test_every_policy_field_can_be_set_in_the_config() -> None:
    """Except `explicit`, which records which of them the file set."""
    assert set(POLICY_PARSERS) == {f.name for f in fields(Policy)} - {"explicit"}


# ----------------------------------------------------------------------- bad configs

BAD = [
    pytest.param("defaults:\n  timeout: -5s\nchains: {x: [mock/a]}\n", 2, "cannot be negative", id="negative-duration"),
    pytest.param("defaults:\n  cooldown: soon\nchains: {x: [mock/a]}\n", 2, "expected a duration", id="junk-duration"),
    pytest.param("defaults:\n  attempts: 0\nchains: {x: [mock/a]}\n", 2, "whole number >= 1", id="attempts-below-1"),
    pytest.param("defaults:\n  attempts: three\nchains: {x: [mock/a]}\n", 2, "whole number >= 1", id="wrong-type"),
    pytest.param(
        "defaults:\n  max_cooldown_factor: 0.5\nchains: {x: [mock/a]}\n", 2, "number >= 1", id="factor-below-1"
    ),
    pytest.param(
        "defaults:\n  on_all_benched: panic\nchains: {x: [mock/a]}\n", 2, "expected one of try_all, fail", id="enum"
    ),
    pytest.param("defaults:\n  mid_stream: no\nchains: {x: [mock/a]}\n", 2, "error, restart", id="yaml-boolean-enum"),
    pytest.param(
        "providers:\n  m: {type: mock, fail_rate: 1.5}\nchains: {x: [m/a]}\n", 2, "from 0 to 1", id="fail-rate"
    ),
    pytest.param("providers:\n  m: {type: mock, fail: boom}\nchains: {x: [m/a]}\n", 2, "HTTP status", id="mock-fail"),
    pytest.param(
        "providers:\n  p: {type: grpc}\nchains: {x: [p/a]}\n", 2, "expected one of openai", id="provider-type"
    ),
    pytest.param("providers:\n  p: {base_url: http://x}\nchains: {x: [p/a]}\n", 2, "missing key 'type'", id="no-type"),
    pytest.param("chains:\n  x:\n    - foo/model\n", 3, "unknown provider 'foo'", id="unknown-provider"),
    pytest.param("chains:\n  x:\n    - gpt-4o\n", 3, "expected provider/model", id="no-slash"),
    pytest.param("chains:\n  x:\n    - chain: nope\n", 3, "unknown chain 'nope'", id="unknown-nested-chain"),
    pytest.param("chains:\n  x: []\n", 2, "the chain is empty", id="empty-chain"),
    pytest.param("chains: {}\n", 1, "no chains defined", id="no-chains"),
    pytest.param("defaults: {attempts: 2}\n", 1, "no chains defined", id="chains-missing"),
    pytest.param(
        "chains:\n  x:\n    - model: mock/a\n      daily_quota: 0\n", 4, "whole number >= 1", id="daily-quota"
    ),
    pytest.param("chains:\n  x: [mock/a]\n  x: [mock/b]\n", 3, "duplicate key 'x'", id="duplicate-key"),
    pytest.param("chains:\n  x: [mock/a\n", 3, "invalid YAML", id="yaml-syntax"),
    pytest.param("- just\n- a list\n", 1, "expected a mapping", id="not-a-mapping"),
    pytest.param("", 1, "the file is empty", id="empty-file"),
    pytest.param(
        "providers:\n  p: {type: openai, base_url: 'http://${LLMFAIL_TEST_UNSET}/v1'}\nchains: {x: [p/a]}\n",
        2,
        "LLMFAIL_TEST_UNSET",
        id="unset-variable",
    ),
    pytest.param(
        "providers:\n  p: {type: openai, base_url: api.x.com}\nchains: {x: [p/a]}\n", 2, "http(s) URL", id="url"
    ),
    pytest.param(
        "alerts:\n  sinks:\n    - {webhook: http://x, command: y}\nchains: {x: [mock/a]}\n",
        3,
        "exactly one of webhook",
        id="sink",
    ),
    pytest.param(
        "chains:\n  x:\n    - model: mock/a\n      credentials: []\n", 4, "at least one credential", id="no-credentials"
    ),
    pytest.param(
        "chains:\n  x:\n    - {chain: y, timeout: 5s}\n  y: [mock/a]\n", 3, "takes only 'chain:'", id="chain+keys"
    ),
]


@pytest.mark.parametrize(("text", "line", "expected"), BAD)
def test_a_bad_config_is_rejected_with_file_line_and_what_was_expected(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    path = tmp_path / "chains.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{path}:{line}:" in message
    assert expected in message
    assert caught.value.exit_code == ExitCode.USAGE


def test_every_problem_carries_its_dotted_key_path_and_column(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains:\n  prod:\n    - mock/a\n    - model: mock/b\n      timeout: -1\n")
    [problem] = error.problems
    assert (problem.line, problem.column, problem.path) == (5, 16, "chains.prod[1].timeout")


def test_an_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains:\n  x:\n    - model: mock/a\n      timout: 5s\n")
    assert "unknown key 'timout'; did you mean 'timeout'?" in str(error)
    assert error.problems[0].path == "chains.x[0].timout"


def test_an_unknown_top_level_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chain:\n  x: [mock/a]\n")
    assert "unknown key 'chain'; did you mean 'chains'?" in str(error.problems[0])


def test_a_misspelt_provider_gets_a_did_you_mean(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains: {x: [opnai/gpt-4o]}\n")
    assert "unknown provider 'opnai'; did you mean 'openai'?" in str(error)


def test_a_cycle_of_nested_chains_is_named_once(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains:\n  a:\n    - chain: b\n  b:\n    - chain: a\n")
    assert [str(p) for p in error.problems] == [
        f"{tmp_path / 'chains.yaml'}:5:14: chains.b[0].chain: cyclic nested chains: a -> b -> a"
    ]


def test_a_chain_that_nests_itself_is_a_cycle(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains:\n  a: [mock/x, {chain: a}]\n")
    assert "cyclic nested chains: a -> a" in str(error)


def test_a_chain_name_written_as_an_entry_says_how_to_nest_it(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains:\n  a: [cheap]\n  cheap: [mock/x]\n")
    assert "write `- chain: cheap`" in str(error)


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    error = rejection(
        tmp_path,
        """
        defaults:
          atempts: 3
          timeout: -1s
        chains:
          x:
            - foo/bar
            - chain: missing
          y: []
        """,
    )
    assert [(p.line, p.path) for p in error.problems] == [
        (2, "defaults.atempts"),
        (3, "defaults.timeout"),
        (6, "chains.x[0]"),
        (7, "chains.x[1].chain"),
        (8, "chains.y"),
    ]
    assert "(and 4 more problems)" in str(error)


def test_a_key_pasted_into_api_key_env_is_never_repeated(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains:\n  x:\n    - {model: openai/gpt-4o, api_key_env: sk-live-0123456789abcdef}\n")
    assert "NAME of an environment variable" in str(error)
    assert "0123456789abcdef" not in str(error)


def test_an_interpolated_auth_header_is_scrubbed_from_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFAIL_TEST_TOKEN", "tok-9f8e7d6c5b4a")
    config = load(
        tmp_path,
        """
        providers:
          p: {type: openai, base_url: http://x, headers: {X-Api-Token: "${LLMFAIL_TEST_TOKEN}"}}
        chains: {x: [p/a]}
        """,
    )
    assert config.providers["p"].headers["X-Api-Token"] == "tok-9f8e7d6c5b4a"
    assert redact("echoed tok-9f8e7d6c5b4a") == "echoed ***"


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: config file not found"
    assert "--config" in (caught.value.hint or "")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "file" / "chains.yaml")


def test_a_directory_is_named_as_a_directory_not_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: this is a directory, not a config file"
    assert caught.value.hint == f"pass the config file itself, like {tmp_path / 'chains.yaml'}"


def test_a_file_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "chains.yaml"
    path.write_bytes(b"chains:\n  x: [mock/\xff]\n")
    with pytest.raises(ConfigError, match=r"chains.yaml:2:\d+: the file is not UTF-8"):
        load_config(path)


def test_a_yaml_syntax_error_is_located_at_the_bad_character(tmp_path: Path) -> None:
    error = rejection(tmp_path, "chains:\n  x: [mock/a]\n  y: {z: 1\n")
    assert error.problems[0].line == 4
    assert error.problems[0].message.startswith("invalid YAML:")


def test_parse_config_names_the_string_it_was_given() -> None:
    with pytest.raises(ConfigError, match=r"^<string>:1:1: chains: no chains defined"):
        parse_config("defaults: {}\n")
    assert parse_config("chains: {x: [mock/a]}").path == "<string>"


# ------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("45", 45.0),
        ("1.5", 1.5),
        ("0", 0.0),
    ],
)
def test_durations_accept_units_and_bare_seconds(tmp_path: Path, written: str, seconds: float) -> None:
    config = load(tmp_path, f"defaults:\n  cooldown: {written}\nchains: {{x: [mock/a]}}\n")
    assert config.policy.cooldown == seconds


@pytest.mark.parametrize("written", ["-1", "-5s", "soon", "10 minutes", "5x", "1s2", ".inf", "true", "[1]", "''"])
def test_junk_and_negative_durations_are_rejected(tmp_path: Path, written: str) -> None:
    error = rejection(tmp_path, f"defaults:\n  cooldown: {written}\nchains: {{x: [mock/a]}}\n")
    assert [(p.line, p.path) for p in error.problems] == [(2, "defaults.cooldown")]


def test_a_timeout_of_zero_is_rejected(tmp_path: Path) -> None:
    error = rejection(tmp_path, "defaults:\n  deadline: 0s\nchains: {x: [mock/a]}\n")
    assert "above zero" in str(error)


# -------------------------------------------------------------------- example config


def test_the_shipped_example_is_a_copy_of_the_repository_one() -> None:
    master = (REPO / "chains.example.yaml").read_bytes()
    assert (REPO / "llmfail" / "chains.example.yaml").read_bytes() == master


def test_the_example_loads_and_has_a_demo_chain_that_needs_no_network() -> None:
    config = load_default_config()
    assert config.path == "built-in example config"
    demo = config.chain("demo")
    assert demo.models == ["flaky/gpt-4o", "mock/echo"]
    assert all(e.provider.type == "mock" for e in demo.entries)
    assert demo.entries[0].provider.mock == MockBehaviour(fail="503")
    assert demo.entries[1].provider.mock == MockBehaviour()


def test_the_example_spells_out_every_default_at_its_default_value() -> None:
    assert load_default_config().policy == Policy()


def test_the_example_prod_chain_fails_over_to_the_cheap_chain() -> None:
    config = load_config(REPO / "chains.example.yaml")
    assert config.chain("prod").models[:2] == ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"]
    assert config.chain("prod").models[2:] == config.chain("cheap").models
    assert config.chain("cheap").entries[0].daily_quota == 5000
    assert len(config.chain("prod").entries[1].credentials) == 2


# ------------------------------------------------------------------------ robustness

EDITS = st.lists(
    st.tuples(
        st.integers(min_value=0),
        st.sampled_from(
            ["", ":", "-", "[", "]", "{", "}", "&a", "*a", "!!", "<<: ", "\n", "  ", "x", "-1", "null", "'"]
        ),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None, database=None)
@given(EDITS)
def test_any_damaged_config_gives_a_config_or_a_config_error_never_a_traceback(edits: list[tuple[int, str]]) -> None:
    text = textwrap.dedent(FULL).lstrip("\n").replace("${TEST_VLLM_HOST}", "http://h")
    for position, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + 1 :]
    try:
        parse_config(text)
    except ConfigError as error:
        assert error.problems
        assert {p.file for p in error.problems} == {"<string>"}


# ----------------------------------------------------------- explicit settings, defaulted()


def test_a_policy_remembers_which_settings_the_file_gave_at_defaults_and_entry_level(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        defaults: {attempts: 2, backoff: {base: 1s}}
        chains:
          prod:
            - mock/a
            - {model: mock/b, mid_stream: error, timeout: 5s}
          other: [{chain: prod}]
        """,
    )
    assert config.policy.explicit == {"attempts", "backoff"}
    a, b = config.chain("prod").entries
    assert a.policy.explicit == {"attempts", "backoff"}
    assert b.policy.explicit == {"attempts", "backoff", "mid_stream", "timeout"}
    assert config.chain("other").entries[1].policy.explicit == b.policy.explicit
    assert parse_config("chains: {x: [mock/a]}\n").policy.explicit == frozenset()


def test_explicit_is_provenance_not_behaviour_so_equal_settings_compare_equal(tmp_path: Path) -> None:
    config = load(tmp_path, "defaults: {attempts: 3}\nchains: {x: [mock/a]}\n")
    assert config.policy == Policy() and config.policy.explicit == {"attempts"}


def test_defaulted_changes_only_the_settings_the_file_did_not_give(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        chains:
          prod:
            - mock/a
            - {model: mock/b, mid_stream: error}
          other: [{chain: prod}, mock/c]
        """,
    )
    restarting = config.defaulted(mid_stream="restart")
    assert [e.policy.mid_stream for e in restarting.chain("prod").entries] == ["restart", "error"]
    assert [e.policy.mid_stream for e in restarting.chain("other").entries] == ["restart", "error", "restart"]
    assert restarting.policy.mid_stream == "restart"
    assert restarting.chain("other").entries[0] is restarting.chain("prod").entries[0]  # still one entry
    assert config.chain("prod").entries[0].policy.mid_stream == "error"  # the original is untouched
    assert restarting.chain("prod").entries[1].location == config.chain("prod").entries[1].location


def test_defaulted_keeps_a_setting_given_in_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "defaults: {mid_stream: error}\nchains: {x: [mock/a]}\n")
    assert config.defaulted(mid_stream="restart").chain("x").entries[0].policy.mid_stream == "error"


def test_defaulted_refuses_unknown_settings_and_choices() -> None:
    config = parse_config("chains: {x: [mock/a]}\n")
    with pytest.raises(TypeError, match="mid_strem"):
        config.defaulted(mid_strem="restart")
    with pytest.raises(TypeError, match="explicit"):
        config.defaulted(explicit=frozenset())
    with pytest.raises(ValueError, match="restart"):
        config.defaulted(mid_stream="resume")
    assert config.defaulted() is config


# -------------------------------------------------------------------------------- state:


def test_a_state_section_names_the_store_its_password_variable_and_namespace(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        state:
          url: redis://10.0.0.5:6379/0
          password_env: REDIS_PASSWORD
          namespace: prod-eu.1
        chains: {x: [mock/a]}
        """,
    )
    assert config.state == StateConfig("redis://10.0.0.5:6379/0", "REDIS_PASSWORD", "prod-eu.1")
    assert load(tmp_path, "state: {url: /var/lib/llmfail/state.db}\nchains: {x: [mock/a]}\n").state == StateConfig(
        "/var/lib/llmfail/state.db"
    )
    assert load(tmp_path, "chains: {x: [mock/a]}\n").state is None
    assert load(tmp_path, "state:\nchains: {x: [mock/a]}\n").state is None


def test_a_password_in_the_state_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    error = rejection(
        tmp_path,
        """
        state:
          url: redis://:hunter2-secret@10.0.0.5:6379/0
        chains: {x: [mock/a]}
        """,
    )
    [problem] = error.problems
    assert (problem.line, problem.column, problem.path) == (2, 8, "state.url")
    assert "password_env" in problem.message
    assert "hunter2" not in str(error) and "hunter2" not in problem.message
    rejection(tmp_path, "state: {url: 'rediss://user:pw@host:6380'}\nchains: {x: [mock/a]}\n")


def test_every_problem_of_a_state_section_is_reported(tmp_path: Path) -> None:
    error = rejection(
        tmp_path,
        """
        state:
          password_env: not a name
          namespace: "prod eu"
          nmespace: x
        chains: {x: [mock/a]}
        """,
    )
    found = {(p.line, p.path): p.message for p in error.problems}
    assert set(found) == {(2, "state"), (2, "state.password_env"), (3, "state.namespace"), (4, "state.nmespace")}
    assert "missing key 'url'" in found[(2, "state")]
    assert "did you mean 'namespace'" in found[(4, "state.nmespace")]
    assert "letters, digits" in found[(3, "state.namespace")]
    assert rejection(tmp_path, "state: redis://x\nchains: {x: [mock/a]}\n").problems[0].path == "state"


# -------------------------------------------------------------- duplicates, chain names


def test_a_model_listed_twice_in_one_chain_is_an_error_located_at_the_second(tmp_path: Path) -> None:
    error = rejection(
        tmp_path,
        """
        chains:
          prod:
            - openai/gpt-4o
            - mock/echo
            - {model: openai/gpt-4o, timeout: 5s}
        """,
    )
    [problem] = error.problems
    assert (problem.line, problem.column, problem.path) == (5, 7, "chains.prod[2]")
    assert "'openai/gpt-4o' is already in chain 'prod' (entry 1, line 3)" in problem.message


def test_a_nested_chain_that_repeats_a_model_is_an_error_at_the_nesting_item(tmp_path: Path) -> None:
    error = rejection(
        tmp_path,
        """
        chains:
          backup: [mock/a, mock/b, mock/c]
          prod:
            - mock/b
            - mock/c
            - chain: backup
          fine: [mock/z, {chain: backup}]
        """,
    )
    [problem] = error.problems
    assert (problem.line, problem.path) == (6, "chains.prod[2]")
    assert (
        "nested chain 'backup' repeats 'mock/b' and 1 more model(s), already in chain 'prod' (entry 1, line 4)"
        in problem.message
    )


def test_the_same_model_in_two_chains_is_fine(tmp_path: Path) -> None:
    config = load(tmp_path, "chains:\n  a: [mock/x, mock/y]\n  b: [mock/y, mock/x]\n")
    assert config.chain("b").models == ["mock/y", "mock/x"]


@pytest.mark.parametrize("name", ["''", "'x y'", "'-x'", "'prod/eu'", "'tab\\there'", "'é'"])
def test_a_chain_name_that_cannot_be_typed_as_an_option_is_an_error(tmp_path: Path, name: str) -> None:
    error = rejection(tmp_path, f"chains:\n  {name}: [mock/a]\n")
    [problem] = error.problems
    assert problem.line == 2 and "is not a usable name" in problem.message, problem


@pytest.mark.parametrize("name", ["prod", "prod-eu", "v1.2", "a_b", "1st", "PROD"])
def test_usual_chain_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert list(load(tmp_path, f"chains:\n  {name}: [mock/a]\n").chains) == [name]


# ------------------------------------------------------------------- the bundled example


def test_the_built_in_example_passes_its_own_check_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """With its keys set (an unset key is a fact about the environment, not about the file)."""
    from typer.testing import CliRunner

    from llmfail.cli import app

    for var in ("OPENAI_API_KEY", "ANTHROPIC_KEY_A", "ANTHROPIC_KEY_B", "VLLM_KEY"):
        monkeypatch.setenv(var, "sk-test")
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["built-in example config: ok (3 chains, 8 entries, 0 warnings)"]
    assert "<default>" not in result.output


def test_check_given_a_directory_says_it_is_a_directory(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmfail.cli import app

    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [f"{tmp_path}: this is a directory, not a config file"]
    assert "not found" not in result.output


# ----------------------------------------------------------------- the provider registry


def test_every_provider_type_names_an_adapter_that_speaks_for_it() -> None:
    from llmfail.config import PROVIDER_TYPES, TYPE_DEFAULTS
    from llmfail.providers import adapter_for
    from llmfail.providers.base import Adapter

    assert set(PROVIDER_TYPES) == set(BUILTIN_PROVIDERS) == set(TYPE_DEFAULTS)
    for name, provider in BUILTIN_PROVIDERS.items():
        adapter = adapter_for(provider)
        assert isinstance(adapter, Adapter)
        assert type(adapter).__module__ == f"llmfail.providers.{name}"
        assert (provider.base_url, provider.api_key_env) == TYPE_DEFAULTS[name]


def test_a_config_accepts_exactly_the_registered_provider_types(tmp_path: Path) -> None:
    from llmfail.config import PROVIDER_TYPES

    error = rejection(tmp_path, "providers:\n  x: {type: opnai}\nchains: {c: [x/m]}\n")
    assert "expected one of " + ", ".join(PROVIDER_TYPES) in error.problems[0].message
    assert "did you mean 'openai'" in error.problems[0].message


def test_the_examples_commented_state_section_is_valid_once_uncommented() -> None:
    text = (REPO / "chains.example.yaml").read_text(encoding="utf-8")
    block = [
        line
        for line in text.splitlines()
        if line.startswith(("# state:", "#   url:", "#   password_env:", "#   namespace:"))
    ]
    assert len(block) == 4
    for line in block:
        text = text.replace(line, line.removeprefix("# "))
    assert parse_config(text).state == StateConfig("redis://127.0.0.1:6379/0", "REDIS_PASSWORD", "prod")
