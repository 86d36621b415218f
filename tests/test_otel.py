"""`llmfail.otel.instrument`: spans and metrics from a real engine, read back with the OpenTelemetry SDK.

A real engine walks a real chain against loopback fakes on virtual time (each fake
advances the clock while it "works", so every attempt has a known length); the
SDK's in-memory span exporter and metric reader collect what the instrumentation
made, and the tests compare it with the walk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from werkzeug import Request, Response

from llmfail.engine import Engine
from llmfail.errors import ChainExhausted
from llmfail.otel import instrument

from .conftest import Calls, FakeClock, ok, openai_error
from .redis_server import private_redis, redis_namespace, redis_server, redis_store, redis_url
from .test_engine import chain, route, run

# fixtures, imported to be found
__all__ = ["private_redis", "redis_namespace", "redis_server", "redis_store", "redis_url"]

T0 = 1_760_000_000.0  # FakeClock's start
NS = 1_000_000_000


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def instrumented(
    make_engine: Callable[..., Engine], spans: InMemorySpanExporter, reader: InMemoryMetricReader
) -> Iterator[Callable[[str], Engine]]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])

    def build(text: str) -> Engine:
        engine = make_engine(text)
        instrument(engine, tracer_provider=tracer_provider, meter_provider=meter_provider)
        return engine

    yield build
    meter_provider.shutdown()
    tracer_provider.shutdown()


def taking(seconds: float, clock: FakeClock, answer: Response) -> Callable[[Request], Response]:
    """A fake provider whose call lasts `seconds` of virtual time."""

    def handle(request: Request) -> Response:
        clock.advance(seconds)
        return answer

    return handle


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        found.setdefault(span.name, []).append(span)
    return found


def test_a_failover_is_one_request_span_with_a_child_span_per_attempt_at_the_walks_own_times(
    server, instrumented, spans, clock
) -> None:
    route(server, "a", Calls(taking(0.25, clock, openai_error(503))))
    route(server, "b", Calls(taking(0.5, clock, ok("from b"))))
    result = run(instrumented(chain()))
    assert result.model == "b/m2"

    named = by_name(spans.get_finished_spans())
    (request,) = named["llmfail.request main"]
    failed, answered = named["chat m1"], named["chat m2"]
    assert len(failed) == 3 and len(answered) == 1
    assert request.kind is SpanKind.INTERNAL and answered[0].kind is SpanKind.CLIENT
    for child in [*failed, *answered]:
        assert child.parent is not None and child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
        assert request.start_time <= child.start_time <= child.end_time <= request.end_time

    # The spans carry the walk's virtual times: 3 tries of 0.25 s with two backoff sleeps, then 0.5 s.
    assert request.start_time == T0 * NS
    assert request.end_time == pytest.approx((T0 + 3 * 0.25 + sum(clock.sleeps) + 0.5) * NS, abs=1000)
    assert [s.end_time - s.start_time for s in failed] == [pytest.approx(0.25 * NS, abs=1000)] * 3
    assert answered[0].end_time - answered[0].start_time == pytest.approx(0.5 * NS, abs=1000)

    attributes = dict(request.attributes or {})
    walk_ms = (request.end_time - request.start_time) / 1_000_000
    assert attributes.pop("llmfail.time_to_first_token_ms") == pytest.approx(walk_ms, abs=0.1)  # not streamed
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.response.model": "m2",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 2,
        "llmfail.chain": "main",
        "llmfail.request_id": result.request_id,
        "llmfail.model": "b/m2",
        "llmfail.failovers": 1,
        "llmfail.attempts": 4,
        "llmfail.panic": False,
    }
    assert request.status.status_code is StatusCode.UNSET
    first = failed[0].attributes or {}
    assert first["gen_ai.system"] == "openai" and first["gen_ai.request.model"] == "m1"
    assert first["llmfail.kind"] == first["error.type"] == "transient"
    assert first["http.response.status_code"] == 503 and first["llmfail.attempt"] == 1
    assert "gen_ai.response.model" not in first
    assert failed[0].status.status_code is StatusCode.ERROR
    ok_attrs = answered[0].attributes or {}
    assert ok_attrs["gen_ai.response.model"] == "m2" and ok_attrs["gen_ai.usage.output_tokens"] == 2

    names = [e.name for e in request.events]
    assert names == ["llmfail.retry", "llmfail.retry", "llmfail.bench", "llmfail.failover"]
    failover = request.events[-1].attributes or {}
    assert failover["llmfail.model"] == "a/m1" and failover["llmfail.next_model"] == "b/m2"
    assert failover["llmfail.kind"] == "transient"


def test_metrics_count_requests_by_outcome_and_model_failovers_benches_and_time_attempts(
    server, instrumented, reader, clock
) -> None:
    route(server, "a", Calls(taking(0.25, clock, openai_error(503))))
    route(server, "b", Calls(taking(0.5, clock, ok("from b"))))
    run(instrumented(chain()))
    points = metric_points(reader)
    (requests,) = points["llmfail.requests"]
    assert requests.value == 1
    assert dict(requests.attributes) == {"llmfail.chain": "main", "llmfail.outcome": "ok", "llmfail.model": "b/m2"}
    (failovers,) = points["llmfail.failovers"]
    assert failovers.value == 1 and failovers.attributes["llmfail.model"] == "a/m1"
    (benches,) = points["llmfail.benches"]
    assert benches.value == 1 and benches.attributes["llmfail.manual"] is False
    (duration,) = points["llmfail.request.duration"]
    assert duration.count == 1 and duration.sum == pytest.approx(1.25 + sum(clock.sleeps), abs=1e-6)
    attempts = {p.attributes.get("error.type"): p for p in points["gen_ai.client.operation.duration"]}
    assert attempts["transient"].count == 3 and attempts["transient"].sum == pytest.approx(0.75, abs=1e-6)
    assert attempts[None].count == 1 and attempts[None].attributes["gen_ai.request.model"] == "m2"
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": 3, "output": 2}
    (ttft,) = points["llmfail.time_to_first_token"]
    assert ttft.count == 1


def test_a_request_that_fails_everywhere_is_an_error_span_and_a_failed_outcome(
    server, instrumented, spans, reader
) -> None:
    for name in ("a", "b", "c"):
        route(server, name, Calls(openai_error(401, err_type="invalid_api_key")))
    with pytest.raises(ChainExhausted):
        run(instrumented(chain()))
    (request,) = by_name(spans.get_finished_spans())["llmfail.request main"]
    assert request.status.status_code is StatusCode.ERROR
    attributes = request.attributes or {}
    assert attributes["error.type"] == attributes["llmfail.kind"] == "auth"
    assert "gen_ai.response.model" not in attributes and attributes["llmfail.failovers"] == 2
    assert len([s for s in spans.get_finished_spans() if s.name.startswith("chat ")]) == 3
    (requests,) = metric_points(reader)["llmfail.requests"]
    assert requests.attributes["llmfail.outcome"] == "failed" and requests.attributes["llmfail.kind"] == "auth"


def test_a_manual_bench_is_counted_but_makes_no_span(instrumented, spans, reader) -> None:
    engine = instrumented(chain())
    engine.bench("a/m1", "10m", reason="deploy")
    assert spans.get_finished_spans() == ()
    (benches,) = metric_points(reader)["llmfail.benches"]
    assert benches.attributes["llmfail.manual"] is True and benches.attributes["llmfail.model"] == "a/m1"


def test_stopping_the_instrumentation_stops_the_spans(server, make_engine, spans: InMemorySpanExporter, clock) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    engine = make_engine(chain())
    stop = instrument(engine, tracer_provider=provider)
    route(server, "a", Calls(ok("one"), ok("two")))
    import asyncio

    async def twice() -> None:
        await engine.complete("main", "hi")
        stop()
        await engine.complete("main", "hi")
        await engine.aclose()

    asyncio.run(twice())
    assert [s.name for s in spans.get_finished_spans()] == ["chat m1", "llmfail.request main"]


def test_concurrent_requests_each_get_their_own_trace_with_their_own_attempts(server, instrumented, spans) -> None:
    import asyncio

    route(server, "a", Calls(openai_error(503), ok("late")))  # the first call fails (and is retried), the rest answer
    engine = instrumented(chain())

    async def many() -> list[Any]:
        try:
            return list(await asyncio.gather(*(engine.complete("main", f"q{i}") for i in range(5))))
        finally:
            await engine.aclose()

    results = asyncio.run(many())
    assert sum(not attempt.ok for result in results for attempt in result.attempts) == 1
    finished = spans.get_finished_spans()
    requests = {s.attributes["llmfail.request_id"]: s for s in finished if s.name == "llmfail.request main"}
    assert set(requests) == {r.request_id for r in results}
    for result in results:
        request = requests[result.request_id]
        children = [s for s in finished if s.parent is not None and s.parent.span_id == request.context.span_id]
        assert len(children) == len(result.attempts)
        assert [c.status.status_code is StatusCode.ERROR for c in children] == [not a.ok for a in result.attempts]
        assert len({s.context.trace_id for s in [request, *children]}) == 1
    assert len({s.context.trace_id for s in requests.values()}) == 5


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_request_span_is_a_child_of_the_span_the_app_called_the_engine_in_on_either_store(
    backend: str, request: pytest.FixtureRequest, store, spans: InMemorySpanExporter
) -> None:
    import asyncio

    from llmfail.config import parse_config

    if backend == "redis":
        pytest.importorskip("redis")
        store = request.getfixturevalue("redis_store")  # its journal writes from a thread of its own
    config = parse_config("providers: {flaky: {type: mock, fail: 503}}\nchains: {demo: [flaky/m1, mock/echo]}\n")
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))

    async def no_wait(seconds: float) -> None:
        pass

    engine = Engine(config, store, sleep=no_wait)
    instrument(engine, tracer_provider=tracer_provider)
    app = tracer_provider.get_tracer("app")

    async def handler(name: str) -> None:
        with app.start_as_current_span(name):
            await engine.complete("demo", name)

    async def two_handlers() -> None:
        try:
            await asyncio.gather(handler("GET /a"), handler("GET /b"))
        finally:
            await engine.aclose()

    asyncio.run(two_handlers())
    finished = spans.get_finished_spans()
    handlers = {s.name: s for s in finished if s.name.startswith("GET")}
    requests = [s for s in finished if s.name == "llmfail.request demo"]
    assert len(handlers) == 2 and len(requests) == 2
    parents = sorted(s.parent.span_id for s in requests if s.parent is not None)
    assert parents == sorted(s.context.span_id for s in handlers.values())
    trace_of = {h.context.span_id: h.context.trace_id for h in handlers.values()}
    assert all(s.parent is not None and s.context.trace_id == trace_of[s.parent.span_id] for s in requests)


def test_without_opentelemetry_installed_the_import_error_names_the_extra_to_install() -> None:
    import subprocess
    import sys

    blocked = "import sys; sys.modules['opentelemetry'] = None; import llmfail.otel"
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "ImportError: llmfail.otel needs OpenTelemetry's API" in result.stderr
    assert "pip install 'llmfail[otel]'" in result.stderr
