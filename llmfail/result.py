"""What a request through a chain gives back: the answer, every attempt, and stream items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LlmfailError, ProviderError
from .providers.base import Usage


@dataclass(frozen=True)
class Attempt:
    """One HTTP try (or a skip that counted as one, like a quota refusal)."""

    model: str
    ok: bool
    kind: str | None = None
    status: int | None = None
    latency_ms: float = 0.0
    error: str | None = None  # redacted message

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "kind": self.kind,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "error": self.error,
        }


@dataclass
class Result:
    """A whole answer and how it was obtained."""

    text: str
    model: str  # the entry that answered ("provider/model")
    chain: str
    request_id: str
    failovers: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    attempts: list[Attempt] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    panic: bool = False
    finish_reason: str | None = None  # the answering provider's own word ("stop", "end_turn", "STOP"...)

    def to_json(self) -> dict[str, Any]:
        """The `run --json` shape (docs/events.md)."""
        return {
            "ok": True,
            "chain": self.chain,
            "model": self.model,
            "text": self.text,
            "failovers": self.failovers,
            "latency_ms": round(self.latency_ms, 1),
            "usage": self.usage.to_json(),
            "attempts": [a.to_json() for a in self.attempts],
            "error": None,
            "warnings": list(self.warnings),
        }


def failure_json(chain: str, error: LlmfailError, attempts: list[Attempt], latency_ms: float) -> dict[str, Any]:
    """The `run --json` shape for a request that failed."""
    kind = getattr(error, "kind", None)
    status = getattr(error, "status", None)
    return {
        "ok": False,
        "chain": chain,
        "model": None,
        "text": getattr(error, "partial_text", None) or "",
        "failovers": max(0, len({a.model for a in attempts}) - 1),
        "latency_ms": round(latency_ms, 1),
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "attempts": [a.to_json() for a in attempts],
        "error": {"kind": str(kind) if kind else None, "status": status, "message": error.message},
    }


@dataclass(frozen=True)
class Token:
    """Text handed to a streaming caller, and the entry that sent it."""

    text: str
    model: str | None = None
    failovers: int = 0  # failovers before this text (a gateway's response headers quote them)


@dataclass(frozen=True)
class Restart:
    """mid_stream: restart — discard what was shown; `model`'s whole answer follows."""

    failed_model: str
    model: str | None
    cause: ProviderError


StreamItem = Token | Restart
