"""YAML config -> typed, frozen objects; every problem located by file:line:col and key path.

- `model`: the frozen types the rest of llmfail reads (Config, Chain, Entry, Policy, ...);
  each Policy setting is declared there once, with how it is written.
- `yaml_nodes`: the located YAML node reader and its problem collector (scenario files reuse it).
- `fields`: value parsers, and the Policy's parsers derived from its declarations.
- `provider_types`: the one registry of provider types (adapter, default URL, key variable).
- `build`: loading a file, its sections, nesting and flattening of chains.
"""

from __future__ import annotations

from .build import (
    BUILTIN_EXAMPLE,
    EXAMPLE_RESOURCE,
    MAX_CHAIN_ENTRIES,
    MAX_CONFIG_BYTES,
    load_config,
    load_default_config,
    parse_config,
)
from .fields import MOCK_FAULTS, POLICY_PARSERS
from .model import (
    Alerts,
    Backoff,
    Chain,
    Config,
    Credential,
    Entry,
    Location,
    MockBehaviour,
    Policy,
    ProviderConfig,
    Sink,
    StateConfig,
    unique_entries,
)
from .provider_types import (
    BUILTIN_PROVIDERS,
    PROVIDER_TYPES,
    TYPE_DEFAULTS,
    ProviderType,
)
from .yaml_nodes import MAX_NESTING

__all__ = [
    "BUILTIN_EXAMPLE",
    "BUILTIN_PROVIDERS",
    "EXAMPLE_RESOURCE",
    "MAX_CHAIN_ENTRIES",
    "MAX_CONFIG_BYTES",
    "MAX_NESTING",
    "MOCK_FAULTS",
    "POLICY_PARSERS",
    "PROVIDER_TYPES",
    "TYPE_DEFAULTS",
    "Alerts",
    "Backoff",
    "Chain",
    "Config",
    "Credential",
    "Entry",
    "Location",
    "MockBehaviour",
    "Policy",
    "ProviderConfig",
    "ProviderType",
    "Sink",
    "StateConfig",
    "load_config",
    "load_default_config",
    "parse_config",
    "unique_entries",
]
