"""OpenTelemetry traces and metrics for an app that embeds llmfail: `instrument(engine)`.

    from llmfail.otel import instrument
    stop = instrument(engine)            # the global tracer and meter providers, or pass your own
    ...
    stop()                               # unsubscribes; nothing more is recorded

Needs only `opentelemetry-api` (`pip install 'llmfail[otel]'`); the app brings the
SDK and exporters it already runs. Nothing here is imported unless the app
imports it, and an engine that is not instrumented has no observer for it: no
cost at all.

Why it is built from events: the engine already writes every fact of a walk as
an event (`llmfail.events`), through one journal whose observers see each one
(`Engine.on_event`). Subscribing to them, rather than hooking spans into the
engine's walk, keeps telemetry out of the hot path and guarantees the traces
say what `llmfail events` says. The price is that spans are made after the
fact: a request's events are held (by request id) until its `request` outcome
row arrives, then its spans are created with explicit start and end times,
taken from the events' own timestamps (the engine's clock, so virtual time in
`simulate` stays virtual):

- one span per request, `llmfail.request {chain}` (INTERNAL): from the walk's
  start (`ts - latency_ms` of the outcome row) to its end;
- a child span per attempt, `chat {model}` (CLIENT, as the GenAI conventions
  name a chat call): each failed attempt from its `attempt_failed` event
  (`ts - latency_ms` to `ts`), and the answering one from the outcome row's
  `attempt_ms` (it ends when the outcome is written, a few microseconds after
  the answer arrived);
- span events on the request span for what happened between attempts:
  `llmfail.failover`, `llmfail.bench`, `llmfail.retry`, `llmfail.panic`,
  `llmfail.quota_skip`, `llmfail.stream_interrupted`.

Metrics are recorded as events arrive: `llmfail.requests` (by outcome, chain and
answering model), `llmfail.failovers`, `llmfail.benches` (automatic and manual),
and the histograms `llmfail.request.duration`, `llmfail.time_to_first_token`
(seconds) and the GenAI conventions' `gen_ai.client.operation.duration` (per
attempt) and `gen_ai.client.token.usage`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as missing:  # say which extra brings it, not just the module's name
    raise ImportError(
        f"llmfail.otel needs OpenTelemetry's API ({missing}): pip install 'llmfail[otel]'", name=missing.name
    ) from missing

from . import events as ev
from .events import Event

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["instrument"]

SCOPE = "llmfail"

#: Requests whose outcome row has not arrived yet, at most (a process killed mid-walk never sends it).
MAX_PENDING = 10_000

#: Event types shown as span events on the request span, and their names there.
SPAN_EVENTS = {
    ev.FAILOVER: "llmfail.failover",
    ev.BENCHED: "llmfail.bench",
    ev.RETRY: "llmfail.retry",
    ev.PANIC: "llmfail.panic",
    ev.QUOTA_SKIP: "llmfail.quota_skip",
    ev.STREAM_INTERRUPTED: "llmfail.stream_interrupted",
}


#: The events a request's spans are made of (held until the request's outcome row arrives).
_SPAN_PARTS = frozenset({ev.ATTEMPT_FAILED, *SPAN_EVENTS})


@dataclass(frozen=True)
class _Model:
    """What the GenAI conventions call a model's system and name, for one `provider/model`."""

    system: str  # the provider's type: openai, anthropic, gemini, ollama, mock
    name: str  # the model name sent on the wire


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _answer(model: _Model | None, usage: Mapping[str, Any]) -> dict[str, Any]:
    """The GenAI conventions' attributes of an answer: who gave it and its token counts."""
    if model is None:
        return {}
    return _attributes(
        gen_ai__system=model.system,
        gen_ai__response__model=model.name,
        gen_ai__usage__input_tokens=usage.get("input_tokens"),
        gen_ai__usage__output_tokens=usage.get("output_tokens"),
    )


def _failed(span: trace.Span, kind: str | None, message: str | None) -> None:
    span.set_attribute("error.type", kind or "failed")
    span.set_status(Status(StatusCode.ERROR, message or kind or "failed"))


def _attributes(**values: Any) -> dict[str, Any]:
    """Attributes without the unset ones (OpenTelemetry refuses None)."""
    return {key.replace("__", "."): value for key, value in values.items() if value is not None}


class _Telemetry:
    """The engine observer: spans once a request ends, metrics as events come."""

    def __init__(self, engine: Engine, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self._tracer = tracer
        self._models = {
            entry.model: _Model(entry.provider.type, entry.wire_model)
            for chain in engine.config.chains.values()
            for entry in chain.entries
        }
        self._pending: OrderedDict[str, list[Event]] = OrderedDict()
        self._lock = threading.Lock()  # observers run in the writing thread; an app may walk from several
        self._requests = meter.create_counter("llmfail.requests", "{request}", "Requests by outcome and model.")
        self._failovers = meter.create_counter(
            "llmfail.failovers", "{failover}", "Times a request left an entry for the next one."
        )
        self._benches = meter.create_counter("llmfail.benches", "{bench}", "Benches, automatic and manual.")
        self._duration = meter.create_histogram(
            "llmfail.request.duration", "s", "A request's whole walk through its chain."
        )
        self._ttft = meter.create_histogram(
            "llmfail.time_to_first_token", "s", "From a request's start to the first token its caller saw."
        )
        self._attempt_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", "s", "One attempt: a chat call to one provider."
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", "{token}", "Tokens used by answered requests, by type."
        )

    def model(self, model: str | None) -> _Model:
        """A bench key `provider/model#N` is its entry's model; a model no chain has keeps its own name."""
        key = (model or "").partition("#")[0]
        provider, _, name = key.partition("/")
        return self._models.get(key) or _Model(provider, name or key)

    # ---------------------------------------------------------------- the observer

    def __call__(self, event: Event) -> None:
        self._measure(event)
        if event.request_id is None or (event.type != ev.REQUEST and event.type not in _SPAN_PARTS):
            return  # (an alert_failed, written after its request ended, must not wait for it forever)
        with self._lock:
            if event.type != ev.REQUEST:
                self._pending.setdefault(event.request_id, []).append(event)
                while len(self._pending) > MAX_PENDING:
                    self._pending.popitem(last=False)
                return
            walked = self._pending.pop(event.request_id, [])
        self._trace(event, walked)

    def _measure(self, event: Event) -> None:
        chain = event.chain
        if event.type == ev.REQUEST:
            data = event.data
            ok = bool(data.get("ok"))
            common = _attributes(llmfail__chain=chain, llmfail__outcome="ok" if ok else "failed")
            self._requests.add(1, {**common, **_attributes(llmfail__model=event.model, llmfail__kind=event.kind)})
            if event.latency_ms is not None:
                self._duration.record(event.latency_ms / 1000, common)
            if data.get("ttft_ms") is not None:
                self._ttft.record(data["ttft_ms"] / 1000, _attributes(llmfail__chain=chain, llmfail__model=event.model))
            usage = data.get("usage") or {}
            model = self.model(event.model)
            for token_type, key in (("input", "input_tokens"), ("output", "output_tokens")):
                if usage.get(key) is not None:
                    self._tokens.record(usage[key], self._gen_ai(model, gen_ai__token__type=token_type))
            if ok and data.get("attempt_ms") is not None:
                self._attempt_duration.record(data["attempt_ms"] / 1000, self._gen_ai(model))
        elif event.type == ev.ATTEMPT_FAILED and event.latency_ms is not None:
            self._attempt_duration.record(
                event.latency_ms / 1000, self._gen_ai(self.model(event.model), error__type=event.kind)
            )
        elif event.type == ev.FAILOVER:
            self._failovers.add(
                1, _attributes(llmfail__chain=chain, llmfail__model=event.model, llmfail__kind=event.kind)
            )
        elif event.type == ev.BENCHED:
            manual = bool(event.data.get("manual"))
            self._benches.add(
                1, _attributes(llmfail__model=event.model, llmfail__kind=event.kind, llmfail__manual=manual)
            )

    @staticmethod
    def _gen_ai(model: _Model, **more: Any) -> dict[str, Any]:
        return _attributes(
            gen_ai__operation__name="chat", gen_ai__system=model.system, gen_ai__request__model=model.name, **more
        )

    # ---------------------------------------------------------------- spans, after the fact

    def _trace(self, outcome: Event, walked: list[Event]) -> None:
        data = outcome.data
        ok = bool(data.get("ok"))
        end = outcome.ts
        start = end - (outcome.latency_ms or 0) / 1000
        answered = self.model(outcome.model) if outcome.model else None
        usage = data.get("usage") or {}
        request = self._tracer.start_span(
            f"llmfail.request {outcome.chain}",
            kind=SpanKind.INTERNAL,
            start_time=_ns(start),
            attributes={
                "gen_ai.operation.name": "chat",
                **_answer(answered, usage),
                **_attributes(
                    llmfail__chain=outcome.chain,
                    llmfail__request_id=outcome.request_id,
                    llmfail__model=outcome.model,
                    llmfail__kind=outcome.kind,
                    llmfail__failovers=data.get("failovers"),
                    llmfail__attempts=data.get("attempts"),
                    llmfail__panic=bool(data.get("panic")),
                    llmfail__time_to_first_token_ms=data.get("ttft_ms"),
                ),
            },
        )
        parent = trace.set_span_in_context(request)
        for event in walked:
            if event.type == ev.ATTEMPT_FAILED:
                self._attempt(parent, event.model, event.ts, event.latency_ms, event=event)
            elif event.type in SPAN_EVENTS:
                request.add_event(SPAN_EVENTS[event.type], self._event_attributes(event), timestamp=_ns(event.ts))
        if ok and outcome.model:
            self._attempt(parent, outcome.model, end, data.get("attempt_ms"), usage=usage)
        if not ok:
            _failed(request, outcome.kind, None)
        request.end(end_time=_ns(end))

    def _attempt(
        self,
        parent: Context,
        model_key: str | None,
        end: float,
        latency_ms: float | None,
        *,
        event: Event | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        model = self.model(model_key)
        span = self._tracer.start_span(
            f"chat {model.name}",
            context=parent,
            kind=SpanKind.CLIENT,
            start_time=_ns(end - (latency_ms or 0) / 1000),
            attributes={
                **self._gen_ai(model),
                **({} if event else _answer(model, usage or {})),
                **_attributes(
                    llmfail__model=model_key,
                    llmfail__kind=event.kind if event else None,
                    llmfail__attempt=event.attempt if event else None,
                    llmfail__credential=event.data.get("credential") if event else None,
                    http__response__status_code=event.status if event else None,
                ),
            },
        )
        if event is not None:
            _failed(span, event.kind, event.detail)
        span.end(end_time=_ns(end))

    @staticmethod
    def _event_attributes(event: Event) -> dict[str, Any]:
        return _attributes(
            llmfail__model=event.model,
            llmfail__next_model=event.next_model,
            llmfail__kind=event.kind,
            http__response__status_code=event.status,
            llmfail__attempt=event.attempt,
            llmfail__benched_until=event.benched_until,
            llmfail__detail=event.detail,
        )


def instrument(
    engine: Engine,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Callable[[], None]:
    """Trace and measure every request `engine` walks; returns a function that stops it.

    Without providers, OpenTelemetry's global ones are used (what the app set with
    `trace.set_tracer_provider` / `metrics.set_meter_provider`, or a no-op).
    """
    from . import __version__

    tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
    meter = metrics.get_meter(SCOPE, __version__, meter_provider)
    return engine.on_event(_Telemetry(engine, tracer, meter))
