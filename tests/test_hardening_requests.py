"""Issue 17, item 6: small request/response framing holes, each reproduced with the
attack itself against a real router and real (or raw-socket) backends.

- ``Connection: close`` / HTTP/1.0 followed by more bytes: the request is answered,
  then the connection closes (no ``400 Data after Connection: close``);
- an HTTP/0.9 request line: 400 and close, no hang;
- ``l5d-ctx-deadline``: invalid values dropped, valid ones enforced;
- any RFC 9110 token method is proxied;
- a backend response cut after its head counts as a failure (with the exception name).
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from urllib.parse import unquote_plus

from tests.support.backends import Backend, RawClient, RouterHarness, get, request


def err_text(r) -> str:
    return unquote_plus(r.header("l5d-err") or "")


# --- Connection: close followed by more bytes -----------------------------------------

async def test_bytes_after_connection_close_are_ignored_and_the_request_answered():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        for first in (get("/pong", headers={"Connection": "close"}), get("/pong", version="HTTP/1.0")):
            before = len(b.requests)
            async with RawClient(h.port) as c:
                # one write: the request, then a second one the client should not have sent
                await c.send(first + get("/echo") + b"garbage that is not HTTP at all\r\n\r\n")
                r = await c.read_response()
                assert r.status == 200 and r.body == b"pong", r
                assert r.header("connection") == "close" or r.version == "HTTP/1.0"
                assert await c.closed_by_peer()
            assert len(b.requests) == before + 1  # the extra bytes were not executed


async def test_bytes_after_a_close_request_with_a_body():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        body = b"x" * 1000
        chunked = (b"POST /upload HTTP/1.1\r\nHost: pong\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3e8\r\n" + body + b"\r\n0\r\n\r\n")
        for raw in (get("/upload", method="POST", body=body, headers={"Connection": "close"}), chunked):
            async with RawClient(h.port) as c:
                await c.send(raw + get("/echo"))
                r = await c.read_response()
                assert r.status == 200 and r.json()["bytes"] == 1000, r
                assert await c.closed_by_peer()


# --- HTTP/0.9 ------------------------------------------------------------------------

async def test_http_09_request_line_gets_400_and_close():
    async with RouterHarness("/svc/pong => /$/inet/127.1/9") as h:
        for raw in (b"GET /\r\n", b"GET /index.html\n"):
            async with RawClient(h.port) as c:
                await c.send(raw)
                r = await c.read_response(timeout=5.0)  # no hang waiting for a version
                assert r.status == 400 and "HTTP/0.9" in err_text(r)
                assert await c.closed_by_peer()


# --- l5d-ctx-deadline ------------------------------------------------------------------

async def test_invalid_deadlines_are_dropped_valid_ones_forwarded():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        for bad in ("garbage", "0 1", "1 2", "12", "-5 10", f"{time.time_ns()} {time.time_ns() - 10**9}"):
            r = await request(h.port, get("/pong", headers={"l5d-ctx-deadline": bad}))
            assert r.status == 200, (bad, r)
            assert b.last.header("l5d-ctx-deadline") is None, bad
        now = time.time_ns()
        good = f"{now} {now + 60 * 10**9}"
        r = await request(h.port, get("/pong", headers={"l5d-ctx-deadline": good}))
        assert r.status == 200 and b.last.header_all("l5d-ctx-deadline") == [good]
        # several values: the strictest valid one goes on, the invalid ones are dropped
        raw = get("/pong", headers={"l5d-ctx-deadline": "garbage"})
        raw = raw[:-2] + f"l5d-ctx-deadline: {now} {now + 30 * 10**9}\r\n\r\n".encode()
        r = await request(h.port, raw)
        assert r.status == 200 and b.last.header_all("l5d-ctx-deadline") == [f"{now} {now + 30 * 10**9}"]


async def test_valid_deadlines_are_enforced():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        now = time.time_ns()
        passed = f"{now - 2 * 10**9} {now - 10**9}"
        r = await request(h.port, get("/pong", headers={"l5d-ctx-deadline": passed}))
        assert r.status == 503 and "l5d-ctx-deadline" in err_text(r)
        # a deadline 300 ms ahead bounds a request the backend never answers
        t0 = time.monotonic()
        now = time.time_ns()
        r = await request(h.port, get("/hang", headers={"l5d-ctx-deadline": f"{now} {now + 3 * 10**8}"}))
        assert r.status == 503 and "l5d-ctx-deadline" in err_text(r)
        assert time.monotonic() - t0 < 5.0
        assert h.metric("rt/outgoing/service/svc/pong/failures") == 2


# --- methods -----------------------------------------------------------------------------

async def test_any_token_method_is_proxied():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            for method in ("FOOBAR", "PURGE", "X-Custom.Method!", "foobar"):
                await c.send(get("/echo", method=method))
                r = await c.read_response()
                assert r.status == 200, (method, r)
                assert b.last.method == method
            # with a body, and repeated byte for byte (the connection's memo of the head)
            for _ in range(2):
                await c.send(get("/upload", method="FOOBAR", body=b"hello"))
                r = await c.read_response()
                assert r.status == 200 and r.json()["bytes"] == 5
            await c.send(b"FOOBAR /upload HTTP/1.1\r\nHost: pong\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\n\r\n")
            r = await c.read_response()
            assert r.status == 200 and r.json()["bytes"] == 5 and b.last.method == "FOOBAR"
        r = await request(h.port, b"FOO(BAR /echo HTTP/1.1\r\nHost: pong\r\n\r\n")
        assert r.status == 400


# --- a response cut after its head ---------------------------------------------------------

class CuttingBackend:
    """Answers with a head and part of the body, then closes (``reset``: with an RST)."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.05)
        if self.reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async def __aenter__(self) -> "CuttingBackend":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()


async def test_truncated_or_reset_response_counts_as_a_failure(caplog):
    for reset in (False, True):
        async with CuttingBackend(reset) as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
            async with RawClient(h.port) as c:
                await c.send(get("/pong"))
                head = await c.reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                got = 0
                try:
                    while True:
                        piece = await asyncio.wait_for(c.reader.read(65536), 5.0)
                        if not piece:
                            break
                        got += len(piece)
                except ConnectionError:
                    pass
                assert got < 100000  # the client sees a cut connection, not a complete body
            for _ in range(200):
                if h.metric("rt/outgoing/service/svc/pong/requests") == 1:
                    break
                await asyncio.sleep(0.01)
            exc = "com.twitter.finagle.ChannelClosedException"
            for scope in ("server/127.0.0.1/%d" % h.port, "service/svc/pong", f"client/$/inet/127.1/{b.port}"):
                assert h.metric(f"rt/outgoing/{scope}/requests") == 1, scope
                assert h.metric(f"rt/outgoing/{scope}/failures") == 1, scope
                assert h.metric(f"rt/outgoing/{scope}/success") == 0, scope
                assert h.metric(f"rt/outgoing/{scope}/failures/{exc}") == 1, scope
    assert any("closed before the response was complete" in r.getMessage() for r in caplog.records)
