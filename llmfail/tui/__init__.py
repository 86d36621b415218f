"""The incident dashboard (`llmfail tui`).

Only `app` and `screens` import Textual; `feed` and `health` are plain data,
so this package loads Textual only when the app itself is asked for
(`create_app`, `Dashboard`), never on import.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .app import Dashboard, create_app

__all__ = ["Dashboard", "create_app", "missing_terminal"]

#: What the dashboard talks to (Textual reads keys on stdin and draws on stderr), and stdout,
#: which a user who pipes it (`llmfail tui | head`) does not want filled with escape codes.
_STREAMS = (("standard input", "__stdin__"), ("standard output", "__stdout__"), ("standard error", "__stderr__"))


def missing_terminal(streams: tuple[tuple[str, TextIO | None], ...] | None = None) -> str | None:
    """Which standard stream is not a terminal ("standard input", ...), or None when all are.

    Checked before Textual is imported: without a terminal, Textual's driver never
    gets a key or a size and spins, and its escape codes would land in a pipe or file.
    The process's own streams are checked (`sys.__stdin__` ...), not whatever a test
    harness swapped into `sys.stdin`, because those are what Textual uses.
    """
    pairs = streams if streams is not None else tuple((name, getattr(sys, attr)) for name, attr in _STREAMS)
    for name, stream in pairs:
        try:
            if stream is None or not stream.isatty():
                return name
        except (ValueError, OSError):  # a closed stream
            return name
    return None


def __getattr__(name: str) -> Any:
    if name in ("Dashboard", "create_app"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
