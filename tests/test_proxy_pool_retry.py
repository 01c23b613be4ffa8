"""Stale pooled connections: a backend may close a keep-alive connection while it sits
idle in the router's pool, and the router can only find out when it sends the next
request on it. A body-less request that got no byte back on a *reused* connection is
sent again, once, on a fresh connection; a request with a body is not (it may have been
consumed), and neither is one on a fresh connection."""
from __future__ import annotations

import asyncio

import aiohttp

from tests.support.backends import RouterHarness
from tests.support.ports import free_port


class DropsReusedBackend:
    """Answers the first request of every connection (keep-alive); on a connection's
    second request it closes the connection without answering, exactly what the router
    sees when the backend closed an idle pooled connection as the request went out."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.answered: list[str] = []
        self.dropped: list[str] = []
        self._server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                length = 0
                for h in head.decode("latin-1").split("\r\n")[1:]:
                    k, _, v = h.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                if served >= 1:
                    self.dropped.append(line)
                    return  # close without a byte of answer
                if length:
                    await reader.readexactly(length)
                served += 1
                self.answered.append(line)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> "DropsReusedBackend":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def _req(s: aiohttp.ClientSession, port: int, method: str = "GET", data: bytes | None = None) -> tuple[int, str]:
    async with s.request(method, f"http://127.0.0.1:{port}/p", data=data, headers={"Host": "pong"}) as r:
        return r.status, await r.text()


async def test_bodyless_request_on_stale_pooled_connection_is_resent_on_a_fresh_one():
    async with DropsReusedBackend() as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with aiohttp.ClientSession() as s:
            assert await _req(s, h.port) == (200, "pong")   # opens pooled connection #1
            assert b.connections == 1
            # goes out on pooled connection #1, which the backend drops unanswered:
            # the router resends it on a fresh connection and the client sees only success
            assert await _req(s, h.port) == (200, "pong")
            assert b.connections == 2
            assert b.dropped == ["GET /p HTTP/1.1"]
            assert b.answered == ["GET /p HTTP/1.1", "GET /p HTTP/1.1"]
            assert h.metric("rt/outgoing/client/$/inet/127.1/%d/requests" % b.port) == 2

            # HEAD and DELETE are body-less too
            assert (await _req(s, h.port, "DELETE"))[0] == 200
            assert b.dropped[-1] == "DELETE /p HTTP/1.1" and b.answered[-1] == "DELETE /p HTTP/1.1"


async def test_request_with_body_is_not_resent():
    async with DropsReusedBackend() as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with aiohttp.ClientSession() as s:
            assert await _req(s, h.port) == (200, "pong")
            status, text = await _req(s, h.port, "POST", b"x" * 100)
            # the body may have been consumed: no silent replay, a 502 naming the failure
            assert status == 502, text
            assert "closed before the response was complete" in text
            assert b.dropped == ["POST /p HTTP/1.1"] and b.connections == 1


async def test_fresh_connection_failure_is_not_retried():
    """Only a *reused* connection can be stale: a fresh one that closes unanswered is a
    backend failure (502), not resent (or a backend that always drops would be hit twice)."""
    port = free_port()
    seen = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        try:
            await reader.readuntil(b"\r\n\r\n")
            seen += 1
        finally:
            writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", port)
    try:
        async with RouterHarness(f"/svc/pong => /$/inet/127.1/{port}") as h:
            async with aiohttp.ClientSession() as s:
                status, text = await _req(s, h.port)
        assert status == 502 and seen == 1, (status, seen, text)
    finally:
        server.close()
