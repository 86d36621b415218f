"""Loopback HTTP servers written byte by byte, for the transport tests.

Each answer is exactly the bytes a test gives (sized, chunked, read to the close,
cut short, malformed), so a transport's handling of every shape is pinned down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.AbstractServer, str]:
    """A server on a free loopback port running `handler` per connection, and its chat URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request as it came: its head and its `Content-Length` body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    return head + await reader.readexactly(length)


def answers(*answers: bytes, seen: list[bytes] | None = None, connections: list[int] | None = None) -> Handler:
    """One connection's worth of answers, in turn, then the close; `seen` gets each request,
    `connections` a 1 per connection."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(1)
        for response in answers:
            request = await read_request(reader)
            if seen is not None:
                seen.append(request)
            writer.write(response)
            await writer.drain()
        writer.close()

    return answer
