"""Streaming (docs/providers.md) for every wire protocol, against real loopback servers.

Each hazard runs once per protocol: the same engine code must read OpenAI and
Gemini SSE, Anthropic's named SSE events and Ollama's NDJSON. Real-time
timers are at most 0.15 s; everything else runs on the virtual clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from werkzeug import Response

from llmfail import events as ev
from llmfail.cli import app
from llmfail.engine import Engine
from llmfail.errors import FailFast, Kind, StreamInterrupted
from llmfail.result import Restart, Result, Token
from llmfail.store.sqlite import SqliteStore

from .conftest import Calls, FakeClock, make_config, openai_chunk, sse
from .wires import ALL, Wire

QUICK = 0.15  # the real-time timers under test: long enough to be reliable, short enough to keep the suite fast
WORDS = "one two three four"


def chain(wire: Wire, *, attempts: int = 1, **policy: str) -> str:
    """Two entries on the same protocol; `policy` overrides the defaults (e.g. idle_timeout="150ms")."""
    settings = {
        "attempts": str(attempts),
        "backoff": "{base: 1ms, max: 2ms}",
        "timeout": "2s",
        "first_token_timeout": "2s",
        "idle_timeout": "2s",
        **policy,
    }
    defaults = "\n  ".join(f"{key}: {value}" for key, value in settings.items())
    return f"""
defaults:
  {defaults}
providers:
  {wire.provider("p", "P_KEY")}
  {wire.provider("s", "S_KEY")}
chains:
  main: [p/m1, s/m2]
"""


def patient_secondary(text: str) -> str:
    """The secondary keeps a 2 s first_token_timeout: only the primary's timer is under test, and
    a loaded machine may take longer than QUICK to send even a healthy stream's headers."""
    return text.replace("main: [p/m1, s/m2]", "main: [p/m1, {model: s/m2, first_token_timeout: 2s}]")


def route(server: Any, wire: Wire, label: str, *responses: Any) -> Calls:
    calls = Calls(*responses)
    wire.route(server, label, "m1" if label == "p" else "m2", calls)
    return calls


def stream_items(engine: Engine) -> tuple[list[Any], BaseException | None]:
    """Everything `Engine.stream` hands over, and the error that ended it (if any)."""
    items: list[Any] = []

    async def go() -> BaseException | None:
        try:
            async for item in engine.stream("main", "hi"):
                items.append(item)
        except Exception as error:  # returned for the test to inspect
            return error
        finally:
            await engine.aclose()
        return None

    return items, asyncio.run(go())


def collect(engine: Engine) -> Result:
    async def go() -> Result:
        try:
            return await engine.complete("main", "hi", stream=True)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def tokens(items: list[Any]) -> str:
    return "".join(i.text for i in items if isinstance(i, Token))


def gated(
    before: Sequence[bytes], gate: threading.Event, after: Sequence[bytes] = (), opened: list[bool] | None = None
) -> Iterator[bytes]:
    """Send `before`, then hold the stream open until the test opens `gate` (2 s at most).

    `opened` records whether the test opened the gate (True) or the wait ran out (False).
    """
    yield b""  # the headers go out now, whatever `before` holds
    yield from before
    released = gate.wait(2)
    if opened is not None:
        opened.append(released)
    yield from after


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event a stalling handler waits on; always opened at the end so no server thread lingers."""
    event = threading.Event()
    yield event
    event.set()


parametrize_wires = pytest.mark.parametrize("wire", ALL, ids=lambda w: w.name)


# ---------------------------------------------------------------- failover before / after the first token


@parametrize_wires
def test_a_primary_failing_before_the_first_token_falls_over_and_the_secondary_stream_arrives_whole(
    wire: Wire, server, make_engine, store
):
    primary = route(server, wire, "p", wire.error(503))
    route(server, wire, "s", wire.stream(WORDS, usage=(5, 4)))
    items, error = stream_items(make_engine(chain(wire)))
    assert error is None
    assert tokens(items) == WORDS
    assert not any(isinstance(i, Restart) for i in items)
    result = items[-1]
    assert isinstance(result, Result) and result.text == WORDS and result.model == "s/m2"
    assert result.usage.to_json() == {"input_tokens": 5, "output_tokens": 4}
    assert primary.count == 1 and result.failovers == 1


@parametrize_wires
def test_a_stream_cut_after_the_first_token_raises_stream_interrupted_with_the_partial_text(
    wire: Wire, server, make_engine, store
):
    route(server, wire, "p", wire.stream(WORDS, cut=True))
    secondary = route(server, wire, "s", wire.stream("never shown"))
    items, error = stream_items(make_engine(chain(wire, attempts=3)))
    assert isinstance(error, StreamInterrupted)
    assert error.partial_text == "one two " == tokens(items)
    assert error.kind == Kind.TRANSIENT and error.model == "p/m1"
    assert secondary.count == 0, "after a token reached the caller, mid_stream: error never falls over"
    assert [e.data["action"] for e in store.events(types=[ev.STREAM_INTERRUPTED])] == ["error"]
    (request,) = store.events(types=[ev.REQUEST])
    assert request.data["ok"] is False


@parametrize_wires
def test_mid_stream_restart_emits_a_restart_marker_then_the_next_entrys_whole_answer(
    wire: Wire, server, make_engine, store
):
    primary = route(server, wire, "p", wire.stream(WORDS, cut=True))
    route(server, wire, "s", wire.stream("a whole new answer"))
    items, error = stream_items(make_engine(chain(wire, mid_stream="restart", attempts=3)))
    assert error is None
    (marker,) = [i for i in items if isinstance(i, Restart)]
    at = items.index(marker)
    assert tokens(items[:at]) == "one two "
    assert (marker.failed_model, marker.model, marker.cause.kind) == ("p/m1", "s/m2", Kind.TRANSIENT)
    assert tokens(items[at:]) == "a whole new answer"
    result = items[-1]
    assert result.text == "a whole new answer" and result.model == "s/m2"
    assert primary.count == 1, "the restarted answer comes from the next entry, not a retry of the cut one"
    assert [e.data["action"] for e in store.events(types=[ev.STREAM_INTERRUPTED])] == ["restart"]


def test_mid_stream_restart_on_the_last_entry_raises_stream_interrupted_keeping_the_partial_text(
    server, make_engine, store
):
    wire = Wire("ollama")
    route(server, wire, "p", wire.error(503))
    route(server, wire, "s", wire.stream(WORDS, cut=True))
    items, error = stream_items(make_engine(chain(wire, mid_stream="restart")))
    assert isinstance(error, StreamInterrupted) and error.partial_text == "one two " == tokens(items)
    assert not any(isinstance(i, Restart) for i in items)


def no_quota_left(store: SqliteStore, model: str) -> None:
    """Today's whole quota of 1 request for `model` (on the tests' virtual clock), spent."""
    assert store.take_quota(model, day=datetime.fromtimestamp(FakeClock().now, UTC).date().isoformat(), limit=1)


def three(wire: Wire, **policy: str) -> str:
    """`chain` with s/m2 limited to 1 request a day, and a third entry t/m3."""
    text = chain(wire, **policy).replace(
        "main: [p/m1, s/m2]", "main:\n    - p/m1\n    - {model: s/m2, daily_quota: 1}\n    - t/m3"
    )
    return text.replace("providers:\n", f"providers:\n  {wire.provider('t', 'T_KEY')}\n", 1)


def test_mid_stream_restart_names_the_entry_that_really_answers_not_one_skipped_for_its_quota(
    server, make_engine, store
):
    wire = Wire("openai")
    no_quota_left(store, "s/m2")
    route(server, wire, "p", wire.stream(WORDS, cut=True))
    calls = Calls(wire.stream("from t"))
    wire.route(server, "t", "m3", calls)
    items, error = stream_items(make_engine(three(wire, mid_stream="restart")))
    assert error is None
    (marker,) = [i for i in items if isinstance(i, Restart)]
    assert (marker.failed_model, marker.model) == ("p/m1", "t/m3")
    assert items[-1].model == "t/m3" and items[-1].failovers == 1
    assert [(e.model, e.next_model) for e in store.events(types=[ev.FAILOVER])] == [("p/m1", "t/m3")]


def test_mid_stream_restart_with_every_later_entry_skipped_raises_stream_interrupted_keeping_the_text(
    server, make_engine, store
):
    wire = Wire("openai")
    no_quota_left(store, "s/m2")
    route(server, wire, "p", wire.stream(WORDS, cut=True))
    items, error = stream_items(
        make_engine(
            chain(wire, mid_stream="restart").replace(
                "main: [p/m1, s/m2]", "main:\n    - p/m1\n    - {model: s/m2, daily_quota: 1}"
            )
        )
    )
    assert isinstance(error, StreamInterrupted) and error.partial_text == "one two " == tokens(items)
    assert not any(isinstance(i, Restart) for i in items), "no marker promising an answer that never comes"
    assert [e.data["action"] for e in store.events(types=[ev.STREAM_INTERRUPTED])] == ["error"]
    assert store.events(types=[ev.FAILOVER]) == []


@parametrize_wires
def test_the_first_token_reaches_the_caller_before_the_server_sends_the_last_one(wire: Wire, server, make_engine, gate):
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")
    sending_last = threading.Event()

    def body() -> Iterator[bytes]:
        yield from events[: first + 1]
        gate.wait(2)
        sending_last.set()
        yield from events[first + 1 :]

    route(server, wire, "p", lambda request: wire.stream_of(body()))
    engine = make_engine(chain(wire))
    seen_before_last: list[bool] = []

    async def go() -> Result:
        try:
            async for item in engine.stream("main", "hi"):
                if isinstance(item, Token) and not seen_before_last:
                    seen_before_last.append(not sending_last.is_set())
                    gate.set()
                if isinstance(item, Result):
                    return item
        finally:
            await engine.aclose()
        raise AssertionError("no result")

    result = asyncio.run(go())
    assert seen_before_last == [True]
    assert result.text == WORDS and result.model == "p/m1"


# ---------------------------------------------------------------- timers


@parametrize_wires
def test_a_slow_first_token_moves_to_the_next_entry_after_first_token_timeout(
    wire: Wire, server, make_engine, store, gate
):
    events = wire.events(WORDS)
    leading = events[: wire.first_text_index(events, "one ")]  # text-less events (role chunk, message_start...)
    primary = route(server, wire, "p", lambda request: wire.stream_of(gated(leading, gate, events)))
    route(server, wire, "s", wire.stream("from s"))
    started = time.monotonic()
    result = collect(make_engine(patient_secondary(chain(wire, first_token_timeout=f"{QUICK}s", attempts=3))))
    elapsed = time.monotonic() - started
    assert result.text == "from s" and result.model == "s/m2"
    assert [a.kind for a in result.attempts] == ["timeout", None]
    assert "no first token" in (result.attempts[0].error or "")
    assert primary.count == 1, "a silent provider is not retried"
    assert QUICK <= elapsed < 1.5
    assert ev.BENCHED in [e.type for e in store.events()]


def test_a_stream_whose_headers_never_come_is_cut_at_first_token_timeout_not_timeout(server, make_engine, gate):
    """A silent upstream on a stream is detected in first_token_timeout (10 s by default), not timeout (30 s)."""
    wire = Wire("openai")

    def silent(request: Any) -> Response:
        gate.wait(2)  # the headers would come only after timeout
        return wire.stream("late")

    primary = route(server, wire, "p", silent)
    route(server, wire, "s", wire.stream("from s"))
    started = time.monotonic()
    result = collect(
        make_engine(patient_secondary(chain(wire, first_token_timeout=f"{QUICK}s", timeout="2s", attempts=3)))
    )
    assert time.monotonic() - started < 1.0
    assert result.model == "s/m2" and primary.count == 1
    assert result.attempts[0].kind == "timeout"
    assert "first_token_timeout" in (result.attempts[0].error or "")


def test_a_whole_answer_waits_for_its_headers_up_to_timeout(server, make_engine, gate):
    """Without streaming there is no first token to wait for: only `timeout` bounds the headers."""
    wire = Wire("openai")

    def slow(request: Any) -> Response:
        gate.wait(3 * QUICK)
        return Response(
            json.dumps(
                {
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "slow"}, "finish_reason": "stop"}
                    ]
                }
            ),
            content_type="application/json",
        )

    route(server, wire, "p", slow)
    engine = make_engine(chain(wire, first_token_timeout=f"{QUICK}s", timeout="2s"))

    async def go() -> Result:
        try:
            return await engine.complete("main", "hi")
        finally:
            await engine.aclose()

    assert asyncio.run(go()).text == "slow"


def test_text_less_chunks_do_not_extend_the_first_token_timeout(server, make_engine):
    """A reasoning model streams `reasoning_content` deltas (no answer text) for as long as it
    thinks: the wire is never silent, but no token arrives, so first_token_timeout decides."""
    wire = Wire("openai")
    stop = threading.Event()
    thinking = json.dumps(
        {"choices": [{"index": 0, "delta": {"content": None, "reasoning_content": "hmm"}, "finish_reason": None}]}
    )

    def reasoning() -> Iterator[bytes]:
        for _ in range(40):  # a chunk every 25 ms for up to a second
            if stop.wait(0.025):
                return
            yield f"data: {thinking}\n\n".encode()

    route(server, wire, "p", lambda request: wire.stream_of(reasoning()))
    route(server, wire, "s", wire.stream("from s"))
    started = time.monotonic()
    try:
        result = collect(make_engine(patient_secondary(chain(wire, first_token_timeout=f"{QUICK}s"))))
    finally:
        stop.set()
    assert result.model == "s/m2" and result.attempts[0].kind == "timeout"
    assert time.monotonic() - started < 0.8


@parametrize_wires
def test_a_stall_mid_stream_is_cut_after_idle_timeout(wire: Wire, server, make_engine, store, gate):
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")
    route(server, wire, "p", lambda request: wire.stream_of(gated(events[: first + 1], gate, events[first + 1 :])))
    secondary = route(server, wire, "s", wire.stream("from s"))
    started = time.monotonic()
    items, error = stream_items(make_engine(chain(wire, idle_timeout=f"{QUICK}s")))
    assert QUICK <= time.monotonic() - started < 1.5
    assert isinstance(error, StreamInterrupted) and error.partial_text == "one " == tokens(items)
    assert error.kind == Kind.TIMEOUT and "stalled" in error.cause.message
    assert secondary.count == 0


def test_a_stall_mid_stream_for_a_collecting_caller_is_a_failed_attempt_and_the_next_entry_answers(
    server, make_engine, gate
):
    wire = Wire("anthropic")
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")
    route(server, wire, "p", lambda request: wire.stream_of(gated(events[: first + 1], gate)))
    route(server, wire, "s", wire.stream("whole"))
    result = collect(make_engine(chain(wire, idle_timeout=f"{QUICK}s")))
    assert result.text == "whole" and result.model == "s/m2"
    assert [a.kind for a in result.attempts] == ["timeout", None]


# ---------------------------------------------------------------- completion signal, malformed events, in-band errors


@parametrize_wires
def test_a_stream_that_ends_without_its_completion_signal_is_a_transient_failure_never_a_success(
    wire: Wire, server, make_engine, store
):
    primary = route(server, wire, "p", wire.stream(WORDS, cut=True))
    route(server, wire, "s", wire.stream("whole"))
    result = collect(make_engine(chain(wire, attempts=3)))
    assert result.text == "whole" and result.model == "s/m2"
    assert primary.count == 3
    assert [a.kind for a in result.attempts] == ["transient"] * 3 + [None]
    assert all(re.fullmatch(r"stream cut after \d+ characters?", a.error or "") for a in result.attempts[:3])


def test_an_anthropic_stream_is_cut_without_message_stop_even_after_its_stop_reason(server, make_engine):
    wire = Wire("anthropic")
    events = wire.events(WORDS)
    assert b"message_delta" in events[-2] and b"message_stop" in events[-1]
    route(server, wire, "p", wire.stream_of(events[:-1]))
    route(server, wire, "s", wire.stream("whole"))
    result = collect(make_engine(chain(wire)))
    assert result.model == "s/m2" and result.attempts[0].kind == "transient"


@pytest.mark.parametrize("wire", [w for w in ALL if w.name != "openai"], ids=lambda w: w.name)
def test_the_answer_is_complete_at_its_completion_signal_even_if_the_server_holds_the_connection(
    wire: Wire, server, make_engine, gate
):
    """Anthropic's message_stop, Ollama's done line and Gemini's finishReason chunk are last:
    nothing is worth waiting idle_timeout for after them. (OpenAI's usage chunk follows its
    finish_reason, so OpenAI reads on to the end.)"""
    route(server, wire, "p", lambda request: wire.stream_of(gated(wire.events(WORDS), gate)))
    started = time.monotonic()
    result = collect(make_engine(chain(wire)))  # idle_timeout: 2s
    assert result.text == WORDS and time.monotonic() - started < 1.0


def test_a_stream_ended_right_after_its_headers_is_cut_too(server, make_engine):
    wire = Wire("gemini")
    route(server, wire, "p", wire.stream_of([]))
    route(server, wire, "s", wire.stream("whole"))
    assert collect(make_engine(chain(wire))).model == "s/m2"


def test_a_missing_done_after_the_finish_reason_is_a_success_for_a_streaming_caller_too(server, make_engine):
    wire = Wire("openai")
    body = sse(
        openai_chunk("all "),
        openai_chunk("here", "stop"),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
        done=False,
    )
    route(server, wire, "p", Response(body, content_type="text/event-stream"))
    items, error = stream_items(make_engine(chain(wire)))
    assert error is None and tokens(items) == "all here"
    assert items[-1].model == "p/m1" and items[-1].usage.to_json() == {"input_tokens": 7, "output_tokens": 2}


@parametrize_wires
def test_one_malformed_event_in_a_stream_that_completes_is_skipped_with_a_warning(wire: Wire, server, make_engine):
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")
    route(server, wire, "p", wire.stream_of(events[: first + 1] + [wire.malformed_event()] + events[first + 1 :]))
    items, error = stream_items(make_engine(chain(wire)))
    assert error is None
    result = items[-1]
    assert result.text == WORDS == tokens(items) and result.model == "p/m1"
    assert len(result.warnings) == 1 and "malformed" in result.warnings[0]


@parametrize_wires
def test_a_malformed_event_fails_the_attempt_of_a_caller_that_wants_the_whole_answer(
    wire: Wire, server, make_engine, store
):
    """Skipping it could leave a hole in the text: the attempt is retried (or fails over) instead."""
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")
    primary = route(
        server,
        wire,
        "p",
        wire.stream_of(events[: first + 1] + [wire.malformed_event()] + events[first + 1 :]),
        wire.stream("whole"),
    )
    result = collect(make_engine(chain(wire, attempts=2)))
    assert result.text == "whole" and result.model == "p/m1" and result.warnings == []
    assert primary.count == 2
    assert [(a.kind, a.status) for a in result.attempts] == [("transient", 200), (None, None)]
    assert "malformed stream event" in (result.attempts[0].error or "")


def test_a_malformed_event_before_the_first_token_fails_over_silently_for_a_streaming_caller(server, make_engine):
    wire = Wire("openai")
    events = wire.events(WORDS)
    leading = events[: wire.first_text_index(events, "one ")]
    route(server, wire, "p", wire.stream_of(leading + [wire.malformed_event()] + events[len(leading) :]))
    route(server, wire, "s", wire.stream("whole"))
    items, error = stream_items(make_engine(chain(wire)))
    assert error is None and tokens(items) == "whole" and items[-1].model == "s/m2"
    assert items[-1].warnings == [] and not any(isinstance(i, Restart) for i in items)


@parametrize_wires
def test_an_in_band_error_event_after_a_200_fails_the_attempt_with_its_kind(wire: Wire, server, make_engine, store):
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")
    primary = route(server, wire, "p", wire.stream_of(events[: first + 1] + [wire.in_band_error("Overloaded")]))
    route(server, wire, "s", wire.stream("whole"))
    result = collect(make_engine(chain(wire, attempts=2)))
    assert result.text == "whole" and result.model == "s/m2"
    assert primary.count == 2
    assert [(a.kind, a.status) for a in result.attempts[:2]] == [("transient", 200)] * 2
    assert "Overloaded" in (result.attempts[0].error or "")


@parametrize_wires
def test_an_in_band_error_before_the_first_token_falls_over_silently_for_a_streaming_caller(
    wire: Wire, server, make_engine
):
    events = wire.events(WORDS)
    leading = events[: wire.first_text_index(events, "one ")]
    route(server, wire, "p", wire.stream_of(leading + [wire.in_band_error("Overloaded")]))
    route(server, wire, "s", wire.stream("whole"))
    items, error = stream_items(make_engine(chain(wire)))
    assert error is None and tokens(items) == "whole"
    assert not any(isinstance(i, Restart) for i in items)


def test_an_anthropic_rate_limit_error_event_is_rate_limited_and_waits_as_told(server, make_engine, clock):
    wire = Wire("anthropic")
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")
    route(
        server,
        wire,
        "p",
        wire.stream_of(events[:first] + [wire.in_band_error("slow down", "rate_limit")]),
        wire.stream(WORDS),
    )
    result = collect(make_engine(chain(wire, attempts=2)))
    assert result.model == "p/m1" and result.attempts[0].kind == "rate_limited"
    assert len(clock.sleeps) == 1, "a rate limit without a wait backs off like a transient error"


def test_a_refusal_after_streamed_text_is_a_content_filter_with_the_providers_reason(server, make_engine):
    wire = Wire("anthropic")
    events = wire.events(WORDS)
    refusal = [
        e.replace(
            b'"stop_reason": "end_turn"',
            b'"stop_reason": "refusal", "stop_details": {"type": "refusal", "explanation": "declined"}',
        )
        for e in events
    ]
    route(server, wire, "p", wire.stream_of(refusal))
    route(server, wire, "s", wire.stream("from s"))
    _, error = stream_items(make_engine(chain(wire)))
    assert error is not None and error.kind == Kind.CONTENT_FILTER
    assert error.reason == "stop_reason refusal: declined"


def test_a_content_filter_that_fails_fast_after_streamed_text_keeps_the_partial_text(server, make_engine, store):
    wire = Wire("anthropic")
    refusal = [e.replace(b'"stop_reason": "end_turn"', b'"stop_reason": "refusal"') for e in wire.events(WORDS)]
    route(server, wire, "p", wire.stream_of(refusal))
    secondary = route(server, wire, "s", wire.stream("from s"))
    items, error = stream_items(make_engine(chain(wire)))  # on_content_filter: fail
    assert isinstance(error, FailFast) and error.kind == Kind.CONTENT_FILTER
    assert error.partial_text == WORDS == tokens(items)
    assert secondary.count == 0 and [e.type for e in store.events(types=[ev.FAIL_FAST])] == [ev.FAIL_FAST]


def test_a_content_filter_before_any_text_fails_fast_with_no_partial_text(server, make_engine):
    wire = Wire("openai")
    route(server, wire, "p", Response(sse(openai_chunk(None, "content_filter")), content_type="text/event-stream"))
    _, error = stream_items(make_engine(chain(wire)))
    assert isinstance(error, FailFast) and error.kind == Kind.CONTENT_FILTER and error.partial_text is None


# ---------------------------------------------------------------- TTFT and latency on the request event


def test_ttft_and_total_latency_are_on_the_request_event_for_a_streaming_caller(server, store, gate):
    wire = Wire("anthropic")
    clock = FakeClock()  # moved forward by the loopback handler, so the figures are exact
    events = wire.events(WORDS)
    first = wire.first_text_index(events, "one ")

    def body() -> Iterator[bytes]:
        yield from events[:first]
        clock.advance(0.25)  # thinking before the first token
        yield events[first]
        gate.wait(2)  # until the caller has the first token
        clock.advance(1.0)
        yield from events[first + 1 :]

    route(server, wire, "p", lambda request: wire.stream_of(body()))
    engine = Engine(make_config(chain(wire), server), store, clock=clock, sleep=clock.sleep)

    async def go() -> Result:
        try:
            async for item in engine.stream("main", "hi"):
                gate.set()
                if isinstance(item, Result):
                    return item
        finally:
            await engine.aclose()
        raise AssertionError("no result")

    result = asyncio.run(go())
    (request,) = store.events(types=[ev.REQUEST])
    assert request.data["ttft_ms"] == pytest.approx(250, abs=1) == result.ttft_ms
    assert request.latency_ms == pytest.approx(1250, abs=1)


def test_a_streaming_callers_ttft_is_the_first_token_it_saw_even_from_an_entry_that_then_failed(server, store):
    wire = Wire("gemini")
    clock = FakeClock()

    def cut() -> Iterator[bytes]:
        clock.advance(0.2)
        yield from wire.events(WORDS, cut=True)

    def whole() -> Iterator[bytes]:
        clock.advance(1.0)
        yield from wire.events(WORDS)

    route(server, wire, "p", lambda request: wire.stream_of(cut()))
    route(server, wire, "s", lambda request: wire.stream_of(whole()))
    engine = Engine(make_config(chain(wire, mid_stream="restart"), server), store, clock=clock, sleep=clock.sleep)
    items, error = stream_items(engine)
    assert error is None and items[-1].model == "s/m2"
    (request,) = store.events(types=[ev.REQUEST])
    assert request.data["ttft_ms"] == pytest.approx(200, abs=1)


def test_a_stream_interrupted_request_still_records_its_ttft(server, store):
    wire = Wire("openai")
    clock = FakeClock()

    def cut() -> Iterator[bytes]:
        clock.advance(0.3)
        yield from wire.events(WORDS, cut=True)

    route(server, wire, "p", lambda request: wire.stream_of(cut()))
    engine = Engine(make_config(chain(wire), server), store, clock=clock, sleep=clock.sleep)
    _, error = stream_items(engine)
    assert isinstance(error, StreamInterrupted)
    (request,) = store.events(types=[ev.REQUEST])
    assert request.data["ok"] is False and request.data["ttft_ms"] == pytest.approx(300, abs=1)


def test_for_a_collecting_caller_ttft_is_the_answering_attempts_first_token_not_a_failed_ones(server, store):
    wire = Wire("ollama")
    clock = FakeClock()

    def cut() -> Iterator[bytes]:
        clock.advance(0.2)
        yield from wire.events(WORDS, cut=True)

    def whole() -> Iterator[bytes]:
        clock.advance(1.0)
        yield from wire.events(WORDS)

    route(server, wire, "p", lambda request: wire.stream_of(cut()))
    route(server, wire, "s", lambda request: wire.stream_of(whole()))
    engine = Engine(make_config(chain(wire), server), store, clock=clock, sleep=clock.sleep)
    result = collect(engine)
    (request,) = store.events(types=[ev.REQUEST])
    assert result.model == "s/m2"
    assert request.data["ttft_ms"] == pytest.approx(1200, abs=1)
    assert request.latency_ms == pytest.approx(1200, abs=1)


# ---------------------------------------------------------------- `llmfail run --stream`


runner = CliRunner()
CLI_WIRE = Wire("anthropic")


def cli_config(tmp_path: Path, server: Any, **policy: str) -> Path:
    path = tmp_path / "chains.yaml"
    path.write_text(chain(CLI_WIRE, **policy).replace("{url}", server.url_for("").rstrip("/")))
    return path


def cli_env(tmp_path: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "PYTHONUNBUFFERED"}
    env.update(LLMFAIL_CONFIG=str(config), LLMFAIL_DB=str(tmp_path / "cli.db"), NO_COLOR="1")
    return env  # buffered stdout, as in production: tokens show only if run flushes them


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a CLI child that a failed assertion left running (only ever our own child)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def read_until(stream: Any, needle: bytes, limit: float = 5.0) -> bytes:
    """Read a pipe/pty byte by byte until `needle` shows up (or fail after `limit` seconds)."""
    seen = b""
    deadline = time.monotonic() + limit
    fd = stream if isinstance(stream, int) else stream.fileno()
    while needle not in seen:
        assert time.monotonic() < deadline, f"never saw {needle!r}; got {seen!r}"
        chunk = os.read(fd, 1)
        if not chunk:
            break
        seen += chunk
    return seen


def test_run_stream_prints_each_token_as_it_arrives(server, tmp_path, gate):
    events = CLI_WIRE.events(WORDS)
    first = CLI_WIRE.first_text_index(events, "one ")
    opened: list[bool] = []
    route(
        server,
        CLI_WIRE,
        "p",
        lambda request: CLI_WIRE.stream_of(gated(events[: first + 1], gate, events[first + 1 :], opened)),
    )
    config = cli_config(tmp_path, server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfail.cli", "run", "hi", "--stream"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(tmp_path, config),
    )
    try:
        assert read_until(proc.stdout, b"one ") == b"one "  # printed while the server still holds the rest
        gate.set()
        rest, err = proc.communicate(timeout=10)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert rest == b"two three four\n"
    assert opened == [True], "the first token was on stdout while the server still held the rest"


def test_run_streams_by_default_when_stdout_is_a_terminal(server, tmp_path):
    primary = route(server, CLI_WIRE, "p", CLI_WIRE.stream(WORDS))
    config = cli_config(tmp_path, server)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfail.cli", "run", "hi"],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=cli_env(tmp_path, config),
    )
    os.close(follower)
    try:
        out = read_until(leader, b"four")
        _, err = proc.communicate(timeout=10)
    finally:
        os.close(leader)
        stop(proc)
    assert proc.returncode == 0, err
    assert b"one two three four" in out
    assert json.loads(primary.requests[0].get_data())["stream"] is True


def test_run_does_not_stream_by_default_when_stdout_is_a_pipe(server, tmp_path):
    primary = route(server, CLI_WIRE, "p", CLI_WIRE.answer("whole answer"))
    config = cli_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi"])
    assert result.exit_code == 0 and result.stdout == "whole answer\n"
    assert "stream" not in json.loads(primary.requests[0].get_data())


def test_run_stream_with_json_collects_the_whole_answer_and_prints_it_once(server, tmp_path):
    primary = route(server, CLI_WIRE, "p", CLI_WIRE.stream(WORDS, usage=(6, 4)))
    config = cli_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--stream", "--json"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["text"] == WORDS and out["usage"] == {"input_tokens": 6, "output_tokens": 4}
    assert json.loads(primary.requests[0].get_data())["stream"] is True


def test_run_stream_json_retries_a_stream_with_a_malformed_event_instead_of_printing_a_hole(server, tmp_path):
    events = CLI_WIRE.events(WORDS)
    first = CLI_WIRE.first_text_index(events, "one ")
    route(
        server,
        CLI_WIRE,
        "p",
        CLI_WIRE.stream_of(events[: first + 1] + [CLI_WIRE.malformed_event()] + events[first + 1 :]),
        CLI_WIRE.stream("whole"),
    )
    config = cli_config(tmp_path, server, attempts="2")
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--stream", "--json"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["text"] == "whole" and [a["kind"] for a in out["attempts"]] == ["transient", None]
    assert "warning" not in result.stderr


def test_run_stream_prints_the_secondarys_whole_answer_when_the_primary_fails_before_its_first_token(server, tmp_path):
    route(server, CLI_WIRE, "p", CLI_WIRE.error(529))
    route(server, CLI_WIRE, "s", CLI_WIRE.stream(WORDS))
    config = cli_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--stream"])
    assert result.exit_code == 0
    assert result.stdout == WORDS + "\n"
    assert result.stderr.strip() == "llmfail: p/m1 failed (transient) -> trying s/m2"


def test_run_stream_notes_a_restart_on_stderr_and_prints_the_new_answer_on_its_own_line(server, tmp_path):
    route(server, CLI_WIRE, "p", CLI_WIRE.stream(WORDS, cut=True))
    route(server, CLI_WIRE, "s", CLI_WIRE.stream("fresh answer"))
    config = cli_config(tmp_path, server, mid_stream="restart")
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--stream"])
    assert result.exit_code == 0
    assert result.stdout == "one two \nfresh answer\n"
    assert "[p/m1 cut off — restarting with s/m2]" in result.stderr


def test_run_stream_interrupted_keeps_the_partial_answer_on_stdout_and_exits_1(server, tmp_path):
    route(server, CLI_WIRE, "p", CLI_WIRE.stream(WORDS, cut=True))
    config = cli_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--stream"])
    assert result.exit_code == 1
    assert result.stdout == "one two \n"
    assert "llmfail: error: p/m1: stream cut after 8 characters (HTTP 200)" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_prints_a_skipped_malformed_event_as_a_warning_on_stderr(server, tmp_path):
    events = CLI_WIRE.events(WORDS)
    route(server, CLI_WIRE, "p", CLI_WIRE.stream_of(events[:4] + [CLI_WIRE.malformed_event()] + events[4:]))
    config = cli_config(tmp_path, server)
    result = runner.invoke(app, ["--config", str(config), "run", "hi", "--stream"])
    assert result.exit_code == 0 and result.stdout == WORDS + "\n"
    assert "llmfail: warning: skipped a malformed stream event" in result.stderr


def test_ctrl_c_during_a_stream_exits_130_prints_what_arrived_and_benches_nothing(server, tmp_path, gate):
    events = CLI_WIRE.events(WORDS)
    first = CLI_WIRE.first_text_index(events, "one ")
    route(
        server, CLI_WIRE, "p", lambda request: CLI_WIRE.stream_of(gated(events[: first + 1], gate, events[first + 1 :]))
    )
    config = cli_config(tmp_path, server)
    env = cli_env(tmp_path, config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfail.cli", "run", "hi", "--stream"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        shown = read_until(proc.stdout, b"one ")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=10)
    finally:
        stop(proc)
    assert proc.returncode == 130, err
    assert shown + rest == b"one \n"
    assert b"interrupted" in err and b"Traceback" not in err
    store = SqliteStore(env["LLMFAIL_DB"])
    try:
        assert store.benches(0) == [] and ev.BENCHED not in [e.type for e in store.events()]
        (request,) = store.events(types=[ev.REQUEST])
        assert request.kind == "cancelled"
    finally:
        store.close()
