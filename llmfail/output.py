"""Consoles and emitters: data on stdout, diagnostics on stderr, JSON for machines.

Rich decides colour from the stream itself (NO_COLOR, non-TTY), so `--json`
and pipes get plain text without any flag of ours.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

from rich.console import Console

from .errors import LlmfailError


@cache
def stdout() -> Console:
    return Console(soft_wrap=True)


@cache
def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def emit_json(obj: Any) -> None:
    """One JSON document (or one line of a JSON-lines stream) on stdout, flushed."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def note(message: str, style: str = "dim") -> None:
    """A diagnostic line for people on stderr."""
    stderr().print(message, style=style, markup=False)


def warn(message: str) -> None:
    stderr().print(f"llmfail: warning: {message}", style="yellow", markup=False)


def report_error(error: BaseException) -> None:
    """The one clear line (plus a hint) a user sees for an error."""
    from .redact import redact

    message = error.message if isinstance(error, LlmfailError) else f"{type(error).__name__}: {error}"
    stderr().print(f"llmfail: error: {redact(message)}", style="bold red", markup=False)
    hint = getattr(error, "hint", None)
    if hint:
        stderr().print(f"  hint: {redact(hint)}", style="yellow", markup=False)
