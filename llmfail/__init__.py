"""llmfail: LLM failover chains you can test offline and operate live.

The public library API. Names are re-exported lazily (PEP 562): `import llmfail`
loads nothing heavy, so the CLI's fast commands and apps that only want, say,
the error types never pay for httpx, PyYAML or the provider adapters. Each name
is imported from its module the first time it is used.

    import llmfail

    config = llmfail.load_config("chains.yaml")
    engine = llmfail.Engine(config)            # shares the bench with `llmfail bench`
    result = engine.complete_sync("prod", "Say hello")
    print(result.model, result.text)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "load_config": "llmfail.config",
    "parse_config": "llmfail.config",
    "Config": "llmfail.config",
    "Engine": "llmfail.engine",
    "Result": "llmfail.result",
    "Attempt": "llmfail.result",
    "Token": "llmfail.result",
    "Restart": "llmfail.result",
    "LlmfailError": "llmfail.errors",
    "ChainExhausted": "llmfail.errors",
    "AllBenched": "llmfail.errors",
    "FailFast": "llmfail.errors",
    "ProviderError": "llmfail.errors",
    "StreamInterrupted": "llmfail.errors",
    "ConfigError": "llmfail.errors",
    "StateError": "llmfail.errors",
    "UsageError": "llmfail.errors",
    "Kind": "llmfail.errors",
    "ExitCode": "llmfail.errors",
    "Event": "llmfail.events",
    "Journal": "llmfail.journal",
    "BenchRow": "llmfail.actions",
    "open_store": "llmfail.store",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see; at runtime __getattr__ does the work
    from .actions import BenchRow
    from .config import Config, load_config, parse_config
    from .engine import Engine
    from .errors import (
        AllBenched,
        ChainExhausted,
        ConfigError,
        ExitCode,
        FailFast,
        Kind,
        LlmfailError,
        ProviderError,
        StateError,
        StreamInterrupted,
        UsageError,
    )
    from .events import Event
    from .journal import Journal
    from .result import Attempt, Restart, Result, Token
    from .store import open_store


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name == "__version__":
            from importlib.metadata import version

            return version("llmfail")
        raise AttributeError(f"module 'llmfail' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
