"""A fast local OpenAI-compatible server for the benchmarks (127.0.0.1 only).

Raw asyncio (no framework): HTTP/1.1 with keep-alive, precomputed answers,
so one core serves well over 10,000 requests/s and the server is never the
bottleneck of a client benchmark. pytest-httpserver is far too slow for that.

The model name picks the behaviour (a prefix, so a chain can use several
distinct models with the same behaviour):

    ok*        200, a whole chat completion
    toolarge*  429 "Request too large ... (TPM)": waiting never helps, so
               llmfail files it as context_length (no retry, no bench)
    limited*   429 rate limit with `retry-after: 60` (longer than max_retry_wait)
    plain429*  429 rate limit without any Retry-After
    busy*      503

`GET /stats` answers {model: hits}; `POST /reset` answers them and zeroes them.

Run alone: `python benchmarks/server.py` prints `PORT <n>` and serves until
stdin closes or it is killed; `serve()` below does that as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

HOST = "127.0.0.1"

_MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')

_COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
_TOO_LARGE = {
    "error": {
        "message": "Request too large for gpt-4o in organization org-BENCH on tokens per min (TPM): "
        "Limit 30000, Requested 31538. The input or output tokens must be reduced in order to run successfully.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
_RATE_LIMITED = {
    "error": {
        "message": "Rate limit reached for requests per min (RPM). Please try again in 60s.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
_BUSY = {"error": {"message": "The server is overloaded.", "type": "server_error", "param": None, "code": None}}

_REASONS = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 503: b"Service Unavailable"}


def _response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
        % (status, _REASONS[status], len(body), extra)
    ) + body


def answer_for(model: str) -> bytes:
    """The whole HTTP response (head and body) this server gives `model`."""
    if model.startswith("toolarge"):
        return _response(429, json.dumps(_TOO_LARGE).encode())
    if model.startswith("limited"):
        return _response(429, json.dumps(_RATE_LIMITED).encode(), b"retry-after: 60\r\n")
    if model.startswith("plain429"):
        return _response(429, json.dumps(_RATE_LIMITED).encode())
    if model.startswith("busy"):
        return _response(503, json.dumps(_BUSY).encode())
    return _response(200, json.dumps({**_COMPLETION, "model": model}).encode())


class _Http(asyncio.Protocol):
    """One keep-alive connection; handles pipelined requests in order."""

    answers: dict[bytes, bytes] = {}
    hits: Counter[str] = Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else None])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            self.transport.write(self._handle(head, body))  # type: ignore[attr-defined]
            if b"\r\nconnection: close" in lower:
                self.transport.close()
                return

    def _handle(self, head: bytes, body: bytes) -> bytes:
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        method, _, rest = line.partition(b" ")
        path = rest.partition(b" ")[0]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            match = _MODEL.search(body)
            wire = match.group(1) if match else b""
            answer = self.answers.get(wire)
            if answer is None:
                answer = self.answers[wire] = answer_for(wire.decode())
            self.hits[wire.decode()] += 1
            return answer
        if path == b"/stats":
            return _response(200, json.dumps(dict(self.hits)).encode())
        if path == b"/reset":
            counts = json.dumps(dict(self.hits)).encode()
            self.hits.clear()
            return _response(200, counts)
        return _response(404, b'{"error": {"message": "not found"}}')


async def _main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, HOST, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    done = asyncio.Event()
    # Stop when the parent goes away (stdin closes), so a crashed benchmark leaves nothing behind.
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    async with server:
        await done.wait()


@contextlib.contextmanager
def serve() -> Iterator[int]:
    """Start the server as a subprocess on a free loopback port; yields the port."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hits(port: int, reset: bool = False) -> dict[str, int]:
    """The server's per-model counts (and zero them with `reset`), via a plain socket."""
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("POST" if reset else "GET", "/reset" if reset else "/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
