"""The incident dashboard (`llmfail tui`).

Only `app` and `screens` import Textual; `feed` and `health` are plain data,
so this package loads Textual only when the app itself is asked for
(`create_app`, `Dashboard`), never on import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Dashboard, create_app

__all__ = ["Dashboard", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
