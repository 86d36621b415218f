"""The provider types llmfail speaks: type -> adapter, default URL, usual key variable.

The one list both the config (which types a file may name, the built-in
providers, the defaults a provider inherits) and `llmfail.providers` (which
adapter serves a type) read. It lives in the config package, not beside the
adapters, because reading a config must not import them (or httpx): the adapter
is named as `module:Class` and imported only when a request needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .model import MockBehaviour, ProviderConfig


@dataclass(frozen=True)
class ProviderType:
    name: str
    adapter: str  # "module:Class", imported on first use
    base_url: str | None  # the vendor's endpoint; None for mock (no network)
    api_key_env: str | None  # the variable the vendor's docs use; None when the API needs no key
    starter_model: str | None = None  # what `llmfail init` puts in a chain when the key is set


PROVIDER_TYPES: Mapping[str, ProviderType] = {
    kind.name: kind
    for kind in (
        ProviderType(
            "openai", "llmfail.providers.openai:OpenAIAdapter", "https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o"
        ),
        ProviderType(
            "anthropic",
            "llmfail.providers.anthropic:AnthropicAdapter",
            "https://api.anthropic.com",
            "ANTHROPIC_API_KEY",
            "claude-sonnet-4-5",
        ),
        ProviderType("ollama", "llmfail.providers.ollama:OllamaAdapter", "http://127.0.0.1:11434", None),
        ProviderType(
            "gemini",
            "llmfail.providers.gemini:GeminiAdapter",
            "https://generativelanguage.googleapis.com",
            "GEMINI_API_KEY",
            "gemini-2.5-flash",
        ),
        ProviderType("mock", "llmfail.providers.mock:MockAdapter", None, None),
    )
}

#: Default (base_url, api_key_env) per provider type.
TYPE_DEFAULTS: Mapping[str, tuple[str | None, str | None]] = {
    name: (kind.base_url, kind.api_key_env) for name, kind in PROVIDER_TYPES.items()
}

#: A built-in provider per type, named after it: `openai/gpt-4o` works with no `providers:` section.
BUILTIN_PROVIDERS: Mapping[str, ProviderConfig] = {
    name: ProviderConfig(
        name=name,
        type=name,
        base_url=kind.base_url,
        api_key_env=kind.api_key_env,
        mock=MockBehaviour() if name == "mock" else None,
    )
    for name, kind in PROVIDER_TYPES.items()
}
