"""`--fail-rate [MODEL:]FAULT[=RATE]`: which entry misbehaves, how, and how often.

The FAULT vocabulary is the fakes' (`llmfail.fakes.parse_fault`), shared with
the `mock` provider's `fail:` and `mock-server`. MODEL is a chain entry as
written (`openai/gpt-4o`); it may itself contain colons (Ollama tags such as
`ollama/llama3.2:3b`), so the FAULT is recognised from the right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..fakes import Fault, parse_fault


@dataclass(frozen=True)
class FaultSpec:
    """One parsed `--fail-rate`: `model` None means "the chain's first entry" (or every model, for mock-server)."""

    model: str | None
    fault: Fault

    def __str__(self) -> str:
        rate = "" if self.fault.rate == 1.0 else f"={self.fault.rate:g}"
        return f"{self.model + ':' if self.model else ''}{self.fault.what}{rate}"


def _rate(text: str, spec: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise UsageError(
            f"bad --fail-rate {spec!r}: RATE must be a probability between 0 and 1, got {text!r}",
            hint="for example --fail-rate 503=0.5",
        )
    return rate


def parse_fault_spec(spec: str) -> FaultSpec:
    """`[MODEL:]FAULT[=RATE]` -> FaultSpec; a UsageError (exit 2) names what is wrong."""
    text = spec.strip()
    head, eq, rate_text = text.rpartition("=")
    if not eq:
        head, rate_text = text, ""
    rate = _rate(rate_text, spec) if eq else 1.0
    parts = head.split(":")
    # The fault is the last segment, or the last two for `slow:DURATION`.
    for width in (2, 1):
        if len(parts) < width:
            continue
        word = ":".join(parts[-width:])
        if width == 2 and parts[-2].lower() != "slow":
            continue
        try:
            what = parse_fault(word)
        except ValueError as exc:
            if width == 2:
                raise UsageError(f"bad --fail-rate {spec!r}: {exc}", hint="for example --fail-rate slow:2s") from None
            break
        model = ":".join(parts[:-width]) or None
        return FaultSpec(model, Fault(what, rate))
    raise UsageError(
        f"bad --fail-rate {spec!r}: expected [MODEL:]FAULT[=RATE] where FAULT is an HTTP status, "
        "timeout, reset, malformed, slow:DURATION, stream-cut, content-filter or context-length",
        hint="for example --fail-rate 429 or --fail-rate openai/gpt-4o:503=0.5",
    )


def parse_fault_specs(specs: Iterable[str]) -> tuple[FaultSpec, ...]:
    return tuple(parse_fault_spec(s) for s in specs)


def faults_by_model(
    specs: Sequence[FaultSpec], models: Sequence[str], where: str = "--fail-rate"
) -> dict[str, tuple[Fault, ...]]:
    """Each chain entry's faults, in the order given; a spec without MODEL targets the first entry.

    An unknown MODEL is a usage error rather than a silent no-op: a typo would
    otherwise make a CI check pass without injecting anything.
    """
    out: dict[str, list[Fault]] = {m: [] for m in models}
    for spec in specs:
        model = spec.model or models[0]
        if model not in out:
            from difflib import get_close_matches

            close = get_close_matches(model, models, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the chain's entries: {', '.join(models)}"
            raise UsageError(f"{where} {str(spec)!r}: {model!r} is not an entry of this chain", hint=hint)
        out[model].append(spec.fault)
    return {m: tuple(f) for m, f in out.items()}
