"""In-process fake providers: real wire protocols, injected faults, no network.

The `mock` provider and `simulate` plug a `FakeTransport` into httpx, so the
real adapter, classifier and engine run and only the network is replaced. A
`Fault` uses the vocabulary of `simulate --fail-rate` and `mock` providers'
`fail:`: an HTTP status, `timeout`, `reset`, `malformed`, `stream-cut`,
`content-filter`, `context-length` or `slow:DURATION`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ..durations import parse_duration
from ..providers.base import Runtime
from .protocols import PROTOCOLS

NAMED_FAULTS = ("timeout", "reset", "malformed", "stream-cut", "content-filter", "context-length")


@dataclass(frozen=True)
class Fault:
    """One kind of misbehaviour and how often it happens."""

    what: str  # "503", "timeout", "slow:2s", ...
    rate: float = 1.0

    @property
    def status(self) -> int | None:
        return int(self.what) if self.what.isdigit() else None

    @property
    def slow(self) -> float | None:
        return parse_duration(self.what[5:]) if self.what.startswith("slow:") else None


def parse_fault(text: str) -> str:
    """Validate a FAULT word; returns it normalised or raises ValueError."""
    word = str(text).strip().lower()
    if word.isdigit() and 100 <= int(word) <= 599:
        return word
    if word in NAMED_FAULTS:
        return word
    if word.startswith("slow:"):
        parse_duration(word[5:])
        return word
    raise ValueError(
        f"unknown fault {text!r}: expected an HTTP status or one of {', '.join(NAMED_FAULTS)}, slow:DURATION"
    )


# --------------------------------------------------------------------------- transport


@dataclass
class FakeBehaviour:
    """What a fake server does: faults checked in order, then an answer."""

    faults: tuple[Fault, ...] = ()
    latency: float = 0.0
    reply: str | None = None


class _Body(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], runtime: Runtime, gap: float, error: Exception | None) -> None:
        self._chunks, self._runtime, self._gap, self._error = chunks, runtime, gap, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._chunks):
            if i and self._gap:
                await self._runtime.sleep(self._gap)
            yield chunk
        if self._error is not None:
            raise self._error


class FakeTransport(httpx.AsyncBaseTransport):
    """An httpx transport that answers like `protocol`'s server, misbehaving as told.

    Randomness and waiting come from the engine's `Runtime`, so a seeded run on
    virtual time is reproducible bit for bit.
    """

    def __init__(self, protocol: str, behaviour: FakeBehaviour, runtime: Runtime) -> None:
        self.protocol = PROTOCOLS[protocol]()
        self.behaviour = behaviour
        self.runtime = runtime
        self.requests = 0

    def _pick(self) -> Fault | None:
        for fault in self.behaviour.faults:
            if fault.rate >= 1.0 or self.runtime.rng.random() < fault.rate:
                return fault
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await request.aread()
        body = json.loads(request.content or b"{}")
        streaming = bool(body.get("stream")) or "stream" in request.url.path or request.url.params.get("alt") == "sse"
        fault = self._pick()
        if self.behaviour.latency:
            await self.runtime.sleep(self.behaviour.latency * (0.5 + self.runtime.rng.random()))
        if fault is not None and fault.slow is not None:
            await self.runtime.sleep(fault.slow)
            fault = None
        what = fault.what if fault else None
        if what == "timeout":
            raise httpx.ReadTimeout("fake provider did not answer", request=request)
        if what == "reset":
            raise httpx.RemoteProtocolError("fake provider reset the connection", request=request)
        if fault is not None and fault.status is not None and fault.status >= 300:
            headers, err = self.protocol.error(fault.status)
            return httpx.Response(fault.status, headers=headers, json=err)
        if what == "content-filter":
            status, err = self.protocol.content_filter()
            return httpx.Response(status, json=err)
        if what == "context-length":
            status, err = self.protocol.context_length()
            return httpx.Response(status, json=err)
        text = self.behaviour.reply if self.behaviour.reply is not None else self.protocol.prompt(body) or "ok"
        model = str(body.get("model", "mock"))
        usage = (max(1, len(self.protocol.prompt(body).split())), max(1, len(text.split())))
        if what == "malformed":
            return httpx.Response(200, headers={"content-type": "application/json"}, content=b"{not json")
        if streaming:
            events = self.protocol.stream_events(text, model, usage, cut=what == "stream-cut")
            return httpx.Response(
                200,
                headers={"content-type": self.protocol.stream_content_type},
                stream=_Body(events, self.runtime, 0.0, None),
            )
        if what == "stream-cut":
            cut = json.dumps(self.protocol.answer(text, model, usage)).encode()
            return httpx.Response(200, headers={"content-type": "application/json"}, content=cut[: len(cut) // 2])
        return httpx.Response(200, json=self.protocol.answer(text, model, usage))
