"""In-process fake providers: real wire protocols, injected faults, no network.

The `mock` provider and `simulate` plug a `FakeTransport` into httpx, so the
real adapter, classifier and engine run and only the network is replaced. A
`Fault` uses the vocabulary of `simulate --fail-rate` and `mock` providers'
`fail:`: an HTTP status, `timeout`, `reset`, `malformed`, `stream-cut`,
`content-filter`, `context-length` or `slow:DURATION`; a status may carry the
wait its answer asks for, `429@20s` (a 429 whose Retry-After says 20 s).

A silent server (`timeout`, or `slow:` longer than the client's timeout) is
played on the runtime's clock: it holds the request for `hang` seconds and
then raises `httpx.ReadTimeout`, so on `simulate`'s virtual time a timeout
costs exactly the entry's policy timeout and no wall time. Without `hang`
(the `mock` provider on real time) it fails at once, as a demo should.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
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

    what: str  # "503", "429@20s", "timeout", "slow:2s", ...
    rate: float = 1.0

    @property
    def status(self) -> int | None:
        code = self.what.partition("@")[0]
        return int(code) if code.isdigit() else None

    @property
    def retry_after(self) -> float | None:
        """The wait a `STATUS@DURATION` answer asks for (None: the fake's usual one)."""
        code, at, wait = self.what.partition("@")
        return parse_duration(wait) if at and code.isdigit() else None

    @property
    def slow(self) -> float | None:
        return parse_duration(self.what[5:]) if self.what.startswith("slow:") else None


def parse_fault(text: str) -> str:
    """Validate a FAULT word; returns it normalised or raises ValueError."""
    word = str(text).strip().lower()
    if word.isdigit() and 100 <= int(word) <= 599:
        return word
    code, at, wait = word.partition("@")
    if at and code.isdigit() and 100 <= int(code) <= 599:
        try:
            parse_duration(wait)
        except ValueError as exc:
            raise ValueError(f"bad wait in {text!r} (STATUS@DURATION, like 429@20s): {exc}") from None
        return word
    if word in NAMED_FAULTS:
        return word
    if word.startswith("slow:"):
        parse_duration(word[5:])
        return word
    raise ValueError(
        f"unknown fault {text!r}: expected an HTTP status (429@20s adds a Retry-After) or one of "
        f"{', '.join(NAMED_FAULTS)}, slow:DURATION"
    )


# --------------------------------------------------------------------------- transport


@dataclass
class FakeBehaviour:
    """What a fake server does: faults checked in order, then an answer.

    `latency` is the base time to answer (jittered ×0.5–1.5); `hang` is how
    long a silent server keeps the client waiting before the client's own
    timeout fires (None: the timeout is raised at once).
    """

    faults: tuple[Fault, ...] = ()
    latency: float = 0.0
    reply: str | None = None
    hang: float | None = None


#: Called once per request with (model, fault played or None), e.g. to log it.
RequestObserver = Callable[[str, str | None], None]


def model_of(request: httpx.Request, body: dict[str, Any]) -> str:
    """The model a request asks for: in the body, or in the path for Gemini (`models/M:generate…`)."""
    model = body.get("model")
    if isinstance(model, str) and model:
        return model
    path = request.url.path
    if "/models/" in path:
        return path.split("/models/", 1)[1].split(":", 1)[0]
    return "mock"


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


_JSON = {"content-type": "application/json"}


def _response(status: int, headers: dict[str, str], content: bytes) -> httpx.Response:
    """A whole-body response built from raw header bytes, its body already in place.

    Several times cheaper than `httpx.Response(json=...)`, which matters at
    thousands of simulated answers a second. `_content` is what httpx's own
    `read()` fills in: with it set, `aread()` returns at once instead of pumping
    the bytes through its stream, decoder and chunker machinery (a tenth of a
    simulated request's cost). Nothing depends on it: should an httpx release
    stop looking there, the stream holds the same bytes.
    """
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(content)).encode()))
    response = httpx.Response(status, headers=raw, stream=httpx.ByteStream(content))
    response._content = content
    return response


def _json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return _response(status, {**(headers or {}), **_JSON}, json.dumps(obj).encode())


class FakeTransport(httpx.AsyncBaseTransport):
    """An httpx transport that answers like `protocol`'s server, misbehaving as told.

    Randomness and waiting come from the engine's `Runtime`, so a seeded run on
    virtual time is reproducible bit for bit.
    """

    def __init__(
        self, protocol: str, behaviour: FakeBehaviour, runtime: Runtime, observer: RequestObserver | None = None
    ) -> None:
        self.protocol = PROTOCOLS[protocol]()
        self.behaviour = behaviour
        self.runtime = runtime
        self.observer = observer
        self.requests = 0
        self._answers: dict[tuple[str, str, tuple[int, int]], bytes] = {}
        self._requests: dict[bytes, dict[str, Any]] = {}

    def _answer(self, text: str, model: str, usage: tuple[int, int]) -> bytes:
        """A whole answer's JSON, rendered once per distinct answer: `simulate` asks for the same
        one thousands of times a second and rendering it was a visible share of the run."""
        key = (text, model, usage)
        body = self._answers.get(key)
        if body is None:
            if len(self._answers) >= 256:
                self._answers.clear()
            body = self._answers[key] = json.dumps(self.protocol.answer(text, model, usage)).encode()
        return body

    def _parse(self, content: bytes) -> dict[str, Any]:
        """A request's JSON, parsed once per distinct body (a simulation sends one body thousands
        of times). The dict is shared: nothing here changes it."""
        body = self._requests.get(content)
        if body is None:
            if len(self._requests) >= 256:
                self._requests.clear()
            body = self._requests[content] = json.loads(content or b"{}")
        return body

    def _pick(self) -> Fault | None:
        """At most one fault per request, from one draw: the rates of several faults add up
        (`429=0.3` and `503=0.2` give 30 % 429s and 20 % 503s); past a total of 1 the later
        ones get what is left."""
        faults = self.behaviour.faults
        if not faults:
            return None
        draw = self.runtime.rng.random()
        total = 0.0
        for fault in faults:
            total += fault.rate
            if draw < total:
                return fault
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        body = self._parse(await request.aread())
        streaming = bool(body.get("stream")) or "stream" in request.url.path  # Gemini: :streamGenerateContent
        fault = self._pick()
        model = model_of(request, body)
        if self.observer is not None:
            self.observer(model, fault.what if fault else None)
        behaviour = self.behaviour
        if behaviour.latency:
            await self.runtime.sleep(behaviour.latency * (0.5 + self.runtime.rng.random()))
        slow = fault.slow if fault is not None else None
        if slow is not None:
            if behaviour.hang is None or slow < behaviour.hang:
                await self.runtime.sleep(slow)
                fault = None
            else:  # slower than the client waits: from the client's side, a timeout
                fault = Fault("timeout")
        what = fault.what if fault else None
        if what == "timeout":
            if behaviour.hang:
                await self.runtime.sleep(behaviour.hang)
            raise httpx.ReadTimeout("fake provider did not answer", request=request)
        if what == "reset":
            raise httpx.RemoteProtocolError("fake provider reset the connection", request=request)
        if fault is not None and fault.status is not None and fault.status >= 300:
            headers, err = self.protocol.error(fault.status)
            if fault.retry_after is not None:
                headers = self.protocol.with_wait(headers, err, fault.retry_after)
            return _json_response(fault.status, err, headers)
        if what == "content-filter":
            status, err = self.protocol.content_filter()
            return _json_response(status, err)
        if what == "context-length":
            status, err = self.protocol.context_length()
            return _json_response(status, err)
        prompt = self.protocol.prompt(body)
        text = behaviour.reply if behaviour.reply is not None else prompt or "ok"
        usage = (max(1, len(prompt.split())), max(1, len(text.split())))
        if what == "malformed":
            return _response(200, _JSON, b"{not json")
        if streaming:
            events = self.protocol.stream_events(text, model, usage, cut=what == "stream-cut")
            return httpx.Response(
                200,
                headers={"content-type": self.protocol.stream_content_type},
                stream=_Body(events, self.runtime, 0.0, None),
            )
        answer = self._answer(text, model, usage)
        if what == "stream-cut":  # a whole answer cut short is unparseable JSON
            answer = answer[: len(answer) // 2]
        return _response(200, _JSON, answer)
