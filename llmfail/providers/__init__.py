"""Provider adapters, one per wire protocol, loaded only when a chain uses them."""

from __future__ import annotations

from importlib import import_module

from ..config import ProviderConfig
from .base import Adapter

_ADAPTERS = {
    "openai": ("openai", "OpenAIAdapter"),
    "mock": ("mock", "MockAdapter"),
    "anthropic": ("anthropic", "AnthropicAdapter"),
    "ollama": ("ollama", "OllamaAdapter"),
    "gemini": ("gemini", "GeminiAdapter"),
}


def adapter_for(provider: ProviderConfig) -> Adapter:
    """The adapter for a provider's type; its module is imported on first use."""
    module, name = _ADAPTERS[provider.type]
    cls: type[Adapter] = getattr(import_module(f"{__name__}.{module}"), name)
    return cls(provider)
