"""`llmfail mock-server`: the simulate fakes on a real loopback port, for testing your own app.

Point an app, SDK or gateway at it and it answers like OpenAI, Anthropic,
Ollama and Gemini (each on its own paths, side by side), misbehaving at the
rates you ask for, with the same fault vocabulary as `simulate --fail-rate`:

    POST /v1/chat/completions                          openai (any base_url ending in /v1)
    POST /v1/messages                                  anthropic
    POST /api/chat                                     ollama
    POST /v1beta/models/{model}:generateContent        gemini (:streamGenerateContent?alt=sse to stream)

Each request is answered by `llmfail.fakes.FakeTransport`, exactly what
`simulate` and the `mock` provider use; this module only speaks HTTP/1.1
over asyncio streams (no new dependency). On the wire the faults look like
this: an HTTP status is that status with the vendor's error body and headers;
`timeout` holds the request without answering; `reset` drops the connection
with a TCP reset; `stream-cut` ends a stream before its completion signal (a
whole answer: a truncated body); `slow:D` answers after D.

It listens on loopback only unless told otherwise: a fake that answers
anything would be a poor thing to expose on a network by accident.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from random import Random
from typing import Any

import httpx

from .errors import UsageError
from .fakes import FakeBehaviour, FakeTransport, Fault, model_of
from .fakes.protocols import PROTOCOLS
from .providers.base import Runtime
from .simulate.faults import FaultSpec
from .simulate.scenario import Scenario

#: How long a `timeout` fault holds a request: longer than any client should wait.
HANG_S = 3600.0

#: Largest request head and body accepted (a fake has no business with more).
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

ALL_PROTOCOLS = ("openai", "anthropic", "ollama", "gemini")


def protocol_for(path: str) -> str | None:
    """Which vendor a request path belongs to (None: not an LLM endpoint we fake)."""
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/v1/messages") or path == "/messages":
        return "anthropic"
    if path.endswith("/api/chat"):
        return "ollama"
    if "/models/" in path and path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    return None


def check_host(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback listening address unless explicitly allowed."""
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UsageError(
            f"refusing to listen on {host}: mock-server serves loopback only by default",
            hint="use --host 127.0.0.1, or pass --allow-remote to expose it on purpose",
        )


class _Close(Exception):
    """End this connection now (after a `timeout` or `reset` fault)."""


class MockServer:
    """The fakes behind an asyncio HTTP/1.1 server. Use `await start()`/`close()` inside a loop,
    or `start_in_thread()`/`stop()` (or `with MockServer(...) as server:`) from plain code."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        protocols: Sequence[str] = ALL_PROTOCOLS,
        faults: Sequence[FaultSpec] = (),
        scenario: Scenario | None = None,
        latency: float = 0.0,
        seed: int | None = None,
        allow_remote: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        check_host(host, allow_remote=allow_remote)
        unknown = sorted(set(protocols) - set(ALL_PROTOCOLS))
        if unknown:
            raise UsageError(f"unknown protocol {unknown[0]!r}", hint=f"choose from {', '.join(ALL_PROTOCOLS)}")
        self.host, self.port = host, port
        self.protocols = tuple(p for p in protocols if p in PROTOCOLS)
        self.always = tuple(faults)
        self.faults = self.always
        self.scenario = scenario
        self.phase: str | None = None
        self._phases: asyncio.Task[None] | None = None
        self.latency = latency
        self.log = log
        self._rng = Random(seed)
        self._fakes: dict[tuple[str, str], FakeTransport] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.scenario is not None:
            self._enter(0)
            self._phases = asyncio.create_task(self._switch_phases(self.scenario))

    async def close(self) -> None:
        if self._phases is not None:
            self._phases.cancel()
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_urls(self) -> dict[str, str]:
        """What to put in each protocol's `base_url` (each vendor SDK's own convention: OpenAI's ends in /v1)."""
        return {protocol: self.url + ("/v1" if protocol == "openai" else "") for protocol in self.protocols}

    def start_in_thread(self, timeout: float = 10.0) -> int:
        """Serve from a daemon thread; returns the bound port once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.close())
                loop.close()

        self._thread = threading.Thread(target=run, name="llmfail-mock-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("mock-server did not start in time")
        if failure:
            raise failure[0]
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> MockServer:
        self.start_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ fakes

    def _fake(self, protocol: str, model: str) -> FakeTransport:
        """One fake per (protocol, model): faults with a MODEL apply to that model only."""
        fake = self._fakes.get((protocol, model))
        if fake is None:
            fake = FakeTransport(
                protocol,
                FakeBehaviour(faults=self._faults_for(model), latency=self.latency, hang=HANG_S),
                Runtime(time.time, asyncio.sleep, self._rng),
                observer=self._observe,
            )
            if len(self._fakes) < 1024:  # a client inventing model names must not grow us forever
                self._fakes[(protocol, model)] = fake
        return fake

    def _enter(self, index: int) -> None:
        """Switch every fake (and those made later) to a scenario phase's faults."""
        assert self.scenario is not None
        phase = self.scenario.phases[index]
        self.phase, self.faults = phase.name, self.always + phase.faults
        for (_, model), fake in self._fakes.items():
            fake.behaviour = FakeBehaviour(faults=self._faults_for(model), latency=self.latency, hang=HANG_S)
        if self.log is not None:
            self.log(f"phase {phase.name!r}: {', '.join(map(str, phase.faults)) or 'no faults'}")

    async def _switch_phases(self, scenario: Scenario) -> None:
        """Phases follow the wall clock from the server's start; the last one lasts until it stops
        (clients drive the traffic, so the scenario's rate and duration do not apply)."""
        began = time.monotonic()
        for index, phase in enumerate(scenario.phases[1:], 1):
            await asyncio.sleep(max(0.0, began + phase.start - time.monotonic()))
            self._enter(index)

    def _faults_for(self, model: str) -> tuple[Fault, ...]:
        """The faults for a request asking for `model`: a fault's MODEL may be the name on the wire
        (`gpt-4o`) or a chain entry as written in a config (`openai/gpt-4o`), as simulate takes it."""
        return tuple(s.fault for s in self.faults if s.model is None or model in (s.model, s.model.partition("/")[2]))

    def _observe(self, model: str, fault: str | None) -> None:
        if self.log is not None:
            self.log(f"{model}: {fault or 'ok'}")

    # ------------------------------------------------------------------ HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (_Close, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:  # our own close(): end quietly, asyncio would log it otherwise
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; False when the connection should end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers.append((name.strip(), value.strip()))
        fields = {k.lower(): v for k, v in headers}
        if "chunked" in fields.get("transfer-encoding", "").lower():
            await self._write(writer, 411, {}, b'{"error": "send a Content-Length"}')
            return False
        length = int(fields.get("content-length") or 0)
        if length > MAX_BODY:
            await self._write(writer, 413, {}, b'{"error": "request body too large"}')
            return False
        body = await reader.readexactly(length) if length else b""
        keep_alive = version.strip() == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]
        protocol = protocol_for(path) if method == "POST" else None
        if method == "GET" and path in ("/", "/health"):
            await self._write(
                writer, 200, {}, json.dumps({"llmfail": "mock-server", "protocols": self.protocols}).encode()
            )
            return keep_alive
        if protocol is None or protocol not in self.protocols:
            served = ", ".join(self.protocols)
            await self._write(
                writer,
                404,
                {},
                json.dumps({"error": {"message": f"no fake at {method} {path} (serving: {served})"}}).encode(),
            )
            return keep_alive
        try:
            decoded = json.loads(body or b"{}")
            if not isinstance(decoded, dict):
                raise ValueError("not an object")
        except ValueError:
            await self._write(writer, 400, {}, b'{"error": {"message": "request body is not a JSON object"}}')
            return keep_alive
        request = httpx.Request(method, f"http://{self.host}:{self.port}{target}", headers=headers, content=body)
        fake = self._fake(protocol, model_of(request, decoded))
        try:
            response = await fake.handle_async_request(request)
        except httpx.TimeoutException:  # the fake held the request for HANG_S: give up silently
            raise _Close from None
        except httpx.TransportError:  # `reset`: a TCP reset, not a polite close
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            raise _Close from None
        await self._send(writer, response)
        return keep_alive

    async def _send(self, writer: asyncio.StreamWriter, response: httpx.Response) -> None:
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "transfer-encoding")
        }
        if isinstance(response.stream, httpx.ByteStream):  # a whole body
            await self._write(writer, response.status_code, headers, await response.aread())
            return
        writer.write(self._head(response.status_code, {**headers, "transfer-encoding": "chunked"}))
        async for chunk in response.aiter_raw():
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = {529: "Overloaded"}.get(status, "")
        lines = [f"HTTP/1.1 {status} {phrase}"] + [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _write(self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> None:
        headers = {"content-type": "application/json", **headers, "content-length": str(len(body))}
        writer.write(self._head(status, headers) + body)
        await writer.drain()
