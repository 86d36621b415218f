"""`llmfail schema` and docs/configuration.md: generated from the loader's declarations, and agreeing with it.

The schema is checked three ways: the shipped copies and the reference page are
what the generator makes now (a stale one names the command that rewrites it),
the example config validates with the `jsonschema` package, and a property test
feeds generated configs to both the loader and the schema and requires the same
verdict (accept or refuse).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmfail.cli import app
from llmfail.config import parse_config
from llmfail.config.build import (
    ALERTS_KEYS,
    CREDENTIAL_KEYS,
    ENTRY_KEYS,
    MOCK_KEYS,
    PROVIDER_KEYS,
    SINK_KEYS,
    STATE_KEYS,
)
from llmfail.config.fields import POLICY_PARSERS, Field
from llmfail.config.schema import REGENERATE, SCHEMA_FILE, config_schema, reference_markdown, schema_text
from llmfail.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = (ROOT / "chains.example.yaml", ROOT / "llmfail" / "chains.example.yaml")
VALIDATOR = jsonschema.Draft202012Validator(config_schema())


def loader_accepts(text: str) -> bool:
    try:
        parse_config(text)
    except ConfigError:
        return False
    return True


def schema_accepts(text: str) -> bool:
    return VALIDATOR.is_valid(yaml.safe_load(text))


# ------------------------------------------------------------------------------ generated files


def test_llmfail_schema_prints_a_valid_draft_2020_12_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert printed["required"] == ["chains"]
    assert result.stdout == schema_text()


@pytest.mark.parametrize("copy", [ROOT / SCHEMA_FILE, ROOT / "llmfail" / SCHEMA_FILE], ids=["repository", "package"])
def test_the_shipped_schema_files_are_what_llmfail_schema_prints(copy: Path) -> None:
    assert copy.read_text(encoding="utf-8") == schema_text(), f"{copy.name} is stale: run `{REGENERATE}`"


def test_the_configuration_reference_is_generated_from_the_declarations() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert written == reference_markdown(), f"docs/configuration.md is stale: run `{REGENERATE}`"


def test_the_reference_lists_every_key_with_its_default() -> None:
    page = reference_markdown()
    for keys in (POLICY_PARSERS, PROVIDER_KEYS, MOCK_KEYS, ENTRY_KEYS, CREDENTIAL_KEYS, ALERTS_KEYS, SINK_KEYS):
        for name in keys:
            assert f"| `{name}` |" in page
    assert "| `cooldown` | duration | `30s` |" in page
    assert "| `on_slow` | one of `demote`, `ignore` | `demote` |" in page


def test_the_schema_carries_each_settings_meaning_and_default_for_editors() -> None:
    cooldown = config_schema()["properties"]["defaults"]["properties"]["cooldown"]
    assert cooldown["default"] == "30s"
    assert "benched" in cooldown["description"]
    entry = config_schema()["$defs"]["chain_item"]["oneOf"][2]
    assert entry["properties"]["cooldown"] == cooldown  # an entry takes every defaults key


@pytest.mark.parametrize("example", EXAMPLES, ids=["repository", "package"])
def test_each_example_config_names_the_schema_beside_it_and_validates_against_it(example: Path) -> None:
    first = example.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema={SCHEMA_FILE}"
    assert (example.parent / SCHEMA_FILE).is_file()
    errors = [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(yaml.safe_load(example.read_text()))]
    assert errors == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("chains: {x: [mock/a]}\ndefaults: {cooldwn: 30s}\n", "$.defaults"),
        ("chains: {x: [mock/a]}\ndefaults: {attempts: 0}\n", "$.defaults.attempts"),
        ("chains: {x: [mock/a]}\ndefaults: {timeout: 0s}\n", "$.defaults.timeout"),
        ("chains: {x: [mock/a]}\ndefaults: {on_slow: sometimes}\n", "$.defaults.on_slow"),
        ("chains: {x: [{model: mock/a, api_key_env: sk-abc}]}\n", "$.chains.x[0]"),
        ("chains: {x: [{model: mock/a, api_key_env: null}]}\n", "$.chains.x[0]"),
        ("chains: {x: [mock/a]}\nproviders: {p: {base_url: 'http://h'}}\n", "$.providers.p"),
        ("chains: {x: [mock/a]}\nproviders: {p: {type: openai, fail: 503}}\n", "$.providers.p"),
        ("chains: {x: [mock/a]}\nstate: {url: 'redis://:hunter2@h:6379/0'}\n", "$.state.url"),
    ],
)
def test_the_schema_and_the_loader_both_refuse_a_typical_mistake(text: str, where: str) -> None:
    assert not loader_accepts(text)
    paths = [error.json_path for error in VALIDATOR.iter_errors(yaml.safe_load(text))]
    assert where in paths


# ------------------------------------------------------------------------------ property test

#: Values to try per kind of value (`Field.shape`): (good ones, bad ones). A new kind must be added here.
VALUES: dict[str, tuple[list[Any], list[Any]]] = {
    "duration": (
        [0, 1.5, 30, "250ms", "30s", "1h30m", "2.5m", "10 S", "0s", "90", "+5", "1e3", "5."],
        ["-5s", "3 apples", "", -1, True, [1], ".5s", "1e3s", "inf", "s"],
    ),
    "duration above zero": ([0.5, 30, "1ms", "2m", "1H", "2e-3"], ["0s", "0.0m", 0, -3, "x", "0e5", "+0"]),
    "whole number ≥ 1": ([1, 3, 5000], [0, -2, 2.5, "3", True, None]),
    "number ≥ 1": ([1, 1.5, 4], [0.5, -1, "2", False]),
    "number from 0 to 1": ([0, 0.25, 1], [1.5, -0.1, "0.5", True]),
    "text": (["pong", "a b", 42, True], ["", "   ", None, [1]]),
    "environment variable name": (["OPENAI_KEY", "_K1", "null"], ["1BAD", "sk-abc123", "", None, True, 7]),
    "environment variable name, or null": (["VLLM_KEY", None], ["two words", "", False]),
    "http(s) URL": (["http://127.0.0.1:9000/hook", "HTTPS://example.com"], ["ftp://x", "nope", "", 5]),
    "http(s) URL, ${VAR} allowed": (
        ["http://127.0.0.1:8000/v1", "https://api.example.com", "${LLMFAIL_SCHEMA_TEST_UNSET:-http://127.0.0.1:1}"],
        ["file:///x", "api.example.com", None],
    ),
    "mapping of header name to text, ${VAR} allowed": ([{"X-Team": "a"}, {}], [{"bad name": "x"}, {"X": ""}, ["X"]]),
    "HTTP status or fault name": (
        [None, 503, "429", "0503", "timeout", "stream-cut", "slow:2s"],
        [200, 600, "0600", "slow:x", "boom"],
    ),
    "mapping: base, max": ([{"base": "1s"}, {"max": 20}, {}], [{"base": "-1s"}, {"mx": "1s"}, "1s", None]),
    "provider/model": (["mock/a", "mock/b/c"], ["nomodel", "/x", 42]),
    "list of {api_key_env: NAME}": (
        [[{"api_key_env": "KEY_A"}, {"api_key_env": "KEY_B"}]],
        [[], [{"api_key_env": "sk-1"}], [{"key": "A"}], "KEY_A"],
    ),
    "list of sinks": (
        [[], [{"webhook": "http://127.0.0.1:9/h"}, {"command": "true"}]],
        [[{"webhook": "http://h/", "command": "x"}], [{}], [{"webhook": "nope"}], "x"],
    ),
    "store URL or path": (["redis://127.0.0.1:6379/0", "/tmp/state.db", "redis://u:@h/0", 5], ["redis://:pw@h/0", ""]),
    "name": (["prod", "prod-eu.1"], ["bad ns", ""]),
    "one of `openai`, `anthropic`, `ollama`, `gemini`, `mock`": (["openai", "mock", "ollama"], ["openia", None]),
}
for _choices in ("try_all", "fail"), ("next", "fail"), ("fail", "next"), ("error", "restart"), ("demote", "ignore"):
    VALUES["one of " + ", ".join(f"`{c}`" for c in _choices)] = (list(_choices), ["sometimes", 1, None])


def mostly(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """A good value five times in six: most generated configs should be near-valid, to test both verdicts."""
    return st.integers(0, 5).flatmap(lambda roll: st.sampled_from(bad if roll == 5 else good))


def mapping_of(keys: Mapping[str, Field], *, required: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with some of `keys` (and sometimes a mistyped one), each with a good or bad value."""
    names = mostly(list(keys), ["colour"])
    chosen = st.lists(names, unique=True, max_size=3).map(lambda picked: [*required, *picked])
    return chosen.flatmap(
        lambda picked: st.fixed_dictionaries(
            {name: mostly(*VALUES[keys[name].shape]) if name in keys else st.just(1) for name in picked}
        )
    )


def chain_items(providers: list[str]) -> st.SearchStrategy[list[Any]]:
    """Entries naming only providers that exist (a missing one is the loader's own check), each model once."""

    def item(index: int) -> st.SearchStrategy[Any]:
        model = st.sampled_from(providers).map(lambda provider: f"{provider}/m{index}")
        entry = model.flatmap(lambda m: mapping_of({**ENTRY_KEYS, **POLICY_PARSERS}).map(lambda d: {**d, "model": m}))
        bad = ["nomodel", 42, None, {"chain": "base", "model": "mock/x"}, {"colour": 1}]
        return st.integers(0, 5).flatmap(lambda roll: st.sampled_from(bad) if roll == 5 else st.one_of(model, entry))

    return st.integers(0, 3).flatmap(lambda n: st.tuples(*(item(i) for i in range(n))).map(list))


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if draw(st.booleans()):
        config["defaults"] = draw(st.one_of(mapping_of(POLICY_PARSERS), st.none()))
    providers = draw(
        st.dictionaries(
            mostly(["openai", "mock", "ollama", "local", "fake"], ["bad/name", " "]),
            mapping_of({**PROVIDER_KEYS, **MOCK_KEYS}),
            max_size=2,
        )
    )
    if providers or draw(st.booleans()):
        config["providers"] = providers or None
    if draw(st.booleans()):
        config["alerts"] = draw(st.one_of(mapping_of(ALERTS_KEYS), st.none()))
    if draw(st.booleans()):
        config["state"] = draw(st.one_of(mapping_of(STATE_KEYS, required=("url",)), mapping_of(STATE_KEYS)))
    usable = ["mock", "openai", *(name for name in providers if "/" not in name)]
    chains = {"base": ["mock/echo"]}
    for name in draw(st.lists(mostly(["prod", "demo-1", "eu.2"], ["bad name", "-x"]), unique=True, max_size=2)):
        chains[name] = draw(chain_items(usable))
    if draw(st.booleans()):
        chains["nested"] = [{"chain": "base"}, "openai/gpt-4o"]
    config["chains"] = draw(mostly([chains], [{}, None, ["mock/a"]]))
    if draw(st.integers(0, 19)) == 19:
        config["colour"] = "blue"
    return config


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_the_schema_and_the_loader_accept_and_refuse_the_same_configs(config: dict[str, Any]) -> None:
    text = yaml.safe_dump(config, sort_keys=False)
    assert schema_accepts(text) == loader_accepts(text), text


def test_the_generated_configs_cover_every_kind_of_value_the_declarations_use() -> None:
    shapes = {
        field.shape
        for keys in (POLICY_PARSERS, PROVIDER_KEYS, MOCK_KEYS, ENTRY_KEYS, CREDENTIAL_KEYS, ALERTS_KEYS, STATE_KEYS)
        for field in keys.values()
    }
    shapes |= {field.shape for field in SINK_KEYS.values()}
    assert shapes <= set(VALUES), f"add values for {shapes - set(VALUES)} to VALUES"
    assert all(good and bad for good, bad in VALUES.values())


def test_an_editor_explains_a_bad_duration_or_key_name_in_words_rather_than_quoting_a_pattern() -> None:
    cooldown = config_schema()["properties"]["defaults"]["properties"]["cooldown"]
    (as_text,) = [option for option in cooldown["anyOf"] if option.get("type") == "string"]
    assert "like 250ms, 30s" in as_text["patternErrorMessage"]
    key = config_schema()["properties"]["providers"]["additionalProperties"]["properties"]["api_key_env"]
    (named,) = [option for option in key["anyOf"] if option.get("type") == "string"]
    assert "not a key" in named["patternErrorMessage"]


def test_the_state_sections_documented_defaults_are_the_redis_stores_own() -> None:
    pytest.importorskip("redis")
    from llmfail.store import redis as redis_store

    assert STATE_KEYS["password_env"].default == redis_store.PASSWORD_ENV
    assert STATE_KEYS["namespace"].default == redis_store.DEFAULT_NAMESPACE
    assert "| `namespace` | name | `default` |" in reference_markdown()
