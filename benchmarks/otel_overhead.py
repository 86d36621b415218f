"""What `llmfail.otel.instrument` costs per request: the same engine, with and without it, in one run.

    python benchmarks/otel_overhead.py [--requests 2000] [--repeat 3]

Each case walks `--requests` requests, one after another, through a chain of
mock providers (no network: what is measured is the engine, its SQLite store
and the observer), on a fresh state DB:

    healthy    the first entry answers: 2 events per request
    failover   the first entry always answers 503 (`attempts: 2`, no backoff, no bench):
               each request fails twice, fails over and is answered: 5 events

first bare (the baseline), then instrumented with the OpenTelemetry SDK: a
TracerProvider whose spans go to a processor that drops them (the cost of
building and ending spans, not of an exporter's I/O) and a MeterProvider with an
in-memory reader. It prints one JSON line per case: process CPU per request
(best of `--repeat`) for both, the difference in µs and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from llmfail.config import parse_config
from llmfail.engine import Engine
from llmfail.otel import instrument

CONFIG = """
defaults: {attempts: 2, backoff: {base: 0s, max: 0s}, cooldown: 0s}
providers:
  down: {type: mock, fail: 503}
chains:
  healthy: [mock/a, mock/b]
  failover: [down/a, mock/b]
"""


class _Drop(SpanProcessor):
    """Ends spans and keeps nothing: the SDK's own cost without an exporter's."""


def cpu_per_request(chain: str, requests: int, instrumented: bool) -> float:
    """µs of process CPU per request for `requests` sequential requests on a fresh state DB."""
    with tempfile.TemporaryDirectory() as directory:
        engine = Engine(parse_config(CONFIG), db_path=os.path.join(directory, "state.db"))
        if instrumented:
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(_Drop())
            instrument(engine, tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))

        async def walk() -> float:
            await engine.complete(chain, "warm up")
            start = time.process_time()
            for _ in range(requests):
                await engine.complete(chain, "hi")
            spent = time.process_time() - start
            await engine.aclose()
            return spent

        return asyncio.run(walk()) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for chain in ("healthy", "failover"):
        bare = min(cpu_per_request(chain, args.requests, False) for _ in range(args.repeat))
        traced = min(cpu_per_request(chain, args.requests, True) for _ in range(args.repeat))
        row: dict[str, Any] = {
            "case": chain,
            "requests": args.requests,
            "bare_us": round(bare, 1),
            "instrumented_us": round(traced, 1),
            "added_us": round(traced - bare, 1),
            "ratio": round(traced / bare, 3),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
