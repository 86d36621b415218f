"""Provider adapters, one per wire protocol, loaded only when a chain uses them."""

from __future__ import annotations

from importlib import import_module

from ..config import PROVIDER_TYPES, ProviderConfig
from .base import Adapter


def adapter_for(provider: ProviderConfig) -> Adapter:
    """The adapter for a provider's type (from the one registry, `PROVIDER_TYPES`); its module is
    imported on first use."""
    module, _, name = PROVIDER_TYPES[provider.type].adapter.partition(":")
    cls: type[Adapter] = getattr(import_module(module), name)
    return cls(provider)
