"""The config file's JSON Schema and its reference page, both built from the loader's own declarations.

Every key's shape, meaning, default and example is declared once, on the `Field`
the loader parses it with (`fields.py`, `build.py`, the Policy in `model.py`);
this module only arranges those declarations into the file's structure. So
`llmfail schema` (for editors: completion, hover text, checks as you type) and
docs/configuration.md cannot drift from what `llmfail check` accepts, and
`tests/test_schema.py` checks that the schema and the loader accept and refuse
the same files.

What a schema cannot see, the loader still checks: that a provider or nested
chain named in a chain exists, cycles and repeated models in a chain, and that
the environment variables a `${VAR}` names are set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .build import (
    ALERTS_KEYS,
    CHAIN_NAME,
    CREDENTIAL_KEYS,
    ENTRY_KEYS,
    MOCK_KEYS,
    MODEL_SCHEMA,
    NESTED_KEYS,
    PROVIDER_KEYS,
    SECTIONS,
    SINK_KEYS,
    STATE_KEYS,
)
from .fields import NO_DEFAULT, POLICY_PARSERS, Field, object_schema
from .provider_types import PROVIDER_TYPES

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: The schema file shipped beside each copy of the example config (kept equal to `llmfail schema` by a test).
SCHEMA_FILE = "chains.schema.json"

#: The command that rewrites the generated files when a declaration changes.
REGENERATE = "python -m llmfail.config.schema --write"

_PROVIDER_NAME = r"^[^/]*[^/\s][^/]*$"


def _nullable(schema: Mapping[str, Any], section: str) -> dict[str, Any]:
    """A section that may also be left empty (`alerts:` with nothing under it counts as absent)."""
    return {**schema, "type": ["object", "null"], "description": SECTIONS[section]}


def _provider(builtin: str | None) -> dict[str, Any]:
    """A provider's mapping: `type` is required unless the name is a built-in's, whose type it defaults to;
    a mock takes the mock keys and no base_url, any other type the reverse."""
    schema = object_schema({**PROVIDER_KEYS, **MOCK_KEYS}, required=() if builtin else ("type",))
    is_mock: dict[str, Any] = {"properties": {"type": {"const": "mock"}}}
    if builtin != "mock":
        is_mock["required"] = ["type"]
    schema["if"] = is_mock
    schema["then"] = {"properties": {"base_url": False}}
    schema["else"] = {"properties": dict.fromkeys(MOCK_KEYS, False)}
    return schema


def _chain_item() -> dict[str, Any]:
    entry = object_schema({**ENTRY_KEYS, **POLICY_PARSERS}, required=("model",))
    entry["not"] = {"required": ["credentials", "api_key_env"]}
    entry["description"] = "an entry with its own settings: model: plus any `defaults` key"
    nested = object_schema(NESTED_KEYS, required=("chain",))
    nested["description"] = "another chain, flattened here"
    return {
        "oneOf": [
            {**MODEL_SCHEMA, "description": "provider/model, with every setting from `defaults`"},
            nested,
            entry,
        ]
    }


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a chains.yaml."""
    chains = {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": f"^{CHAIN_NAME.pattern}$"},
        "additionalProperties": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/chain_item"}},
        "description": SECTIONS["chains"],
    }
    providers = {
        "type": ["object", "null"],
        "propertyNames": {"pattern": _PROVIDER_NAME},
        "properties": {name: _provider(name) for name in PROVIDER_TYPES},
        "additionalProperties": _provider(None),
        "description": SECTIONS["providers"],
    }
    sections = {
        "defaults": _nullable(object_schema(POLICY_PARSERS), "defaults"),
        "alerts": _nullable(object_schema(ALERTS_KEYS), "alerts"),
        "providers": providers,
        "state": _nullable(object_schema(STATE_KEYS, required=("url",)), "state"),
        "chains": chains,
    }
    assert tuple(sections) == tuple(SECTIONS), "every section of the loader has a schema"
    return {
        "$schema": DRAFT,
        "title": "llmfail chains.yaml",
        "description": "LLM failover chains: providers, chains of provider/model entries, and their policy.",
        "type": "object",
        "properties": sections,
        "required": ["chains"],
        "additionalProperties": False,
        "$defs": {"chain_item": _chain_item()},
    }


def schema_text() -> str:
    """`config_schema()` as `llmfail schema` prints it and the shipped file holds it."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------- reference page


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_yaml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    return str(value)


def _table(keys: Mapping[str, Field[Any]]) -> list[str]:
    lines = ["| key | type | default | meaning | example |", "|---|---|---|---|---|"]
    for name, field in keys.items():
        default = "—" if field.default is NO_DEFAULT else f"`{_yaml_value(field.default)}`"
        written = field.example if field.example is not None else _yaml_value(field.default)
        example = f"`{name}: {written}`" if written != "—" else ""
        meaning = field.meaning.replace("|", "\\|")
        lines.append(f"| `{name}` | {field.shape} | {default} | {meaning} | {example} |")
    return lines


def reference_markdown() -> str:
    """docs/configuration.md: every key of the config with its type, default, meaning and example."""
    builtins = ", ".join(f"`{name}`" for name in PROVIDER_TYPES)
    parts = [
        "# Configuration reference",
        "",
        f"<!-- Generated from llmfail's config declarations; do not edit. Regenerate: {REGENERATE} -->",
        "",
        "llmfail reads one YAML file, `chains.yaml` (found by `--config PATH`, `$LLMFAIL_CONFIG`, "
        "`./chains.yaml`, then the user config directory). `llmfail init` writes a starter one, "
        "`llmfail check` lists every problem in one with file:line:col, and `llmfail schema` prints "
        "its JSON Schema for editors (see [Editor support](#editor-support)).",
        "",
        "Durations are written `250ms`, `30s`, `10m`, `2h`, `1d`, `1h30m`, or as a number of seconds. "
        "Keys never go in the file: `api_key_env` and `password_env` name the environment variable "
        "that holds one.",
        "",
        "Top-level sections (only `chains:` is required):",
        "",
        *[f"- `{name}:` {meaning}" for name, meaning in SECTIONS.items()],
        "",
        "## Starting a config",
        "",
        "`llmfail init [PATH]` writes a commented starter file (default `./chains.yaml`) with one chain, "
        "`main`, built from what it finds: an entry for each provider whose key variable is set "
        "(`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`: only the names go in the file, never "
        "the keys), then a local Ollama if one answers at `$OLLAMA_HOST` or 127.0.0.1:11434 (its first "
        'model). With nothing found the chain is the built-in mock, so `llmfail run "hello"` answers at '
        "once. It never replaces an existing file unless you pass `--force` (it exits 1 and says so).",
        "",
        "## `defaults:`",
        "",
        SECTIONS["defaults"] + ". Every key below may also be written on one entry of a chain, "
        "for that entry only (a `backoff` given there may set just `base` or `max`).",
        "",
        *_table(POLICY_PARSERS),
        "",
        "## `providers:`",
        "",
        f"Built-in providers always exist, each named after its type: {builtins}. A name of your own "
        "defines a new endpoint (its `type` is required); a built-in's name overrides that built-in. "
        "A provider name cannot contain `/`.",
        "",
        "```yaml",
        "providers:",
        "  local-vllm:",
        "    type: openai",
        "    base_url: ${VLLM_URL:-http://127.0.0.1:8000/v1}",
        "    api_key_env: VLLM_KEY",
        "```",
        "",
        *_table(PROVIDER_KEYS),
        "",
        "### Keys of a `type: mock` provider",
        "",
        "A mock answers locally, with no network and no key: for demos, tests and `llmfail simulate`. "
        "These keys are refused on any other type, and `base_url` is refused on a mock.",
        "",
        *_table(MOCK_KEYS),
        "",
        "## `chains:`",
        "",
        SECTIONS["chains"] + ". A chain name is letters, digits, `_`, `.` and `-`, starting with a "
        "letter or digit. Each item of the list is one of:",
        "",
        "- `provider/model`: the provider's name, then the model name sent to its API "
        "(everything after the first `/`);",
        "- a mapping with `model:` and any of the keys below, plus any `defaults:` key for this entry only;",
        "- `{chain: NAME}`: another chain, whose entries are put here in order.",
        "",
        "A model may appear once per chain (after nesting), and nested chains may not form a cycle.",
        "",
        "```yaml",
        "chains:",
        "  prod:",
        "    - openai/gpt-4o",
        "    - model: anthropic/claude-sonnet-4-5",
        "      timeout: 40s",
        "    - chain: cheap",
        "  cheap:",
        "    - ollama/llama3.2",
        "```",
        "",
        *_table({**ENTRY_KEYS, **NESTED_KEYS}),
        "",
        "Each item of `credentials:`:",
        "",
        *_table(CREDENTIAL_KEYS),
        "",
        "## `alerts:`",
        "",
        SECTIONS["alerts"] + ".",
        "",
        *_table(ALERTS_KEYS),
        "",
        "Each sink is exactly one of:",
        "",
        *_table(SINK_KEYS),
        "",
        "## `state:`",
        "",
        SECTIONS["state"] + ". `--db` and `$LLMFAIL_DB` take precedence over it. A password never "
        "goes in `url`: name its variable in `password_env`.",
        "",
        *_table(STATE_KEYS),
        "",
        "## Editor support",
        "",
        "`llmfail schema` prints the JSON Schema (draft 2020-12) of this file; the repository ships it as "
        f"`{SCHEMA_FILE}` beside `chains.example.yaml`. Editors that use yaml-language-server "
        "(VS Code's YAML extension, Neovim's yamlls) read a first line like this one:",
        "",
        "```yaml",
        f"# yaml-language-server: $schema={SCHEMA_FILE}",
        "```",
        "",
        "The path is relative to the YAML file. To use it with your own config: "
        f"`llmfail schema > {SCHEMA_FILE}` next to it. The schema checks each key's type and value; "
        "`llmfail check` also checks what a schema cannot: that the providers and nested chains named "
        "exist, cycles and repeated models, and that the environment variables named by `${VAR}` are set. "
        "A few spellings differ at the edges: the schema counts `3.0` as a whole number and `.inf` as a "
        "number where llmfail refuses them, and it flags durations written `1_000` or with spaces inside a "
        "number, which llmfail reads.",
        "",
    ]
    return "\n".join(parts)


def _write() -> None:
    """Rewrite the generated files of a checkout: both schema copies and docs/configuration.md."""
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent
    root = package.parent
    for target in (root / SCHEMA_FILE, package / SCHEMA_FILE):
        target.write_text(schema_text(), encoding="utf-8")
    (root / "docs" / "configuration.md").write_text(reference_markdown(), encoding="utf-8")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {REGENERATE}")
    _write()
