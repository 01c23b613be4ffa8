"""Paced (open-loop) HTTP load for the failure-injection tests, and scriptable backends.

``Load(port, rate, duration, ...)`` sends ``rate`` requests per second for ``duration``
seconds to 127.0.0.1:port, each one started on schedule whether or not earlier ones have
answered (open loop, like slow_cooker: a slow router cannot slow the offered load down),
over a pool of keep-alive connections. ``await load.run()`` returns a ``Report``:
status counts, transport errors, latencies, and the responses' ``l5d-*`` headers.

``FlakyBackend`` is a small HTTP/1.1 server (httptools) whose answer per request is
decided by a ``mode``:

- ``ok``: 200;
- ``flaky``: 500 for a fraction ``fail_rate`` of requests (random, seeded), else 200;
- ``fail``: always 500;
- ``hang``: never answers (the connection stays open until the client gives up);
- ``fail_first=N``: the first N requests get 500 whatever the mode;

It counts requests by method and status and tracks its open connections, so tests can
assert what the router actually sent (attempts, retries) and that nothing leaked.
"""
from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from typing import Optional

import httptools

from .ports import free_port


# --- load generator ----------------------------------------------------------------------------

@dataclass
class Report:
    sent: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    l5d: collections.Counter = field(default_factory=collections.Counter)
    elapsed: float = 0.0

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 400)

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    @property
    def success_rate(self) -> float:
        return self.ok / self.sent if self.sent else 0.0

    def __str__(self) -> str:
        return (f"sent={self.sent} ok={self.ok} statuses={dict(self.statuses)} errors={dict(self.errors)} "
                f"elapsed={self.elapsed:.1f}s")


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


class Load:
    def __init__(self, port: int, rate: float, duration: float, *, host: str = "web", path: str = "/",
                 method: str = "GET", body: bytes = b"", headers: Optional[dict[str, str]] = None,
                 timeout: float = 10.0, max_conns: int = 256) -> None:
        self.port = port
        self.rate = rate
        self.duration = duration
        self.timeout = timeout
        self.max_conns = max_conns
        hdrs = {"Host": host, **(headers or {})}
        if body or method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = str(len(body))
        self.raw = (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                    + "\r\n").encode("latin-1") + body
        self.head_request = method == "HEAD"
        self.idle: list[_Conn] = []
        self.open = 0
        self.report = Report()

    async def run(self) -> Report:
        loop = asyncio.get_running_loop()
        n = int(self.rate * self.duration)
        t0 = loop.time()
        tasks = []
        for i in range(n):
            at = t0 + i / self.rate
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(self._one()))
        self.report.sent = n
        if tasks:
            await asyncio.gather(*tasks)
        self.report.elapsed = loop.time() - t0
        for c in self.idle:
            c.close()
        self.idle.clear()
        return self.report

    async def _conn(self) -> _Conn:
        while self.idle:
            c = self.idle.pop()
            if not c.writer.is_closing() and not c.reader.at_eof():
                return c
        r, w = await asyncio.open_connection("127.0.0.1", self.port)
        return _Conn(r, w)

    async def _one(self) -> None:
        t = time.monotonic()
        c: Optional[_Conn] = None
        try:
            c = await asyncio.wait_for(self._conn(), self.timeout)
            c.writer.write(self.raw)
            status, headers, keep = await asyncio.wait_for(self._read(c.reader), self.timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            self.report.errors[type(e).__name__] += 1
            if c is not None:
                c.close()
            return
        self.report.latencies.append(time.monotonic() - t)
        self.report.statuses[status] += 1
        for k, v in headers.items():
            if k.startswith("l5d-"):
                self.report.l5d[f"{k}: {v}" if k != "l5d-err" else k] += 1
        if keep and len(self.idle) < self.max_conns:
            self.idle.append(c)
        else:
            c.close()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if not self.head_request and status not in (204, 304):
            if "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
            elif "chunked" in headers.get("transfer-encoding", ""):
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.read()
                return status, headers, False
        return status, headers, headers.get("connection", "").lower() != "close"


async def run_load(port: int, rate: float, duration: float, **kw) -> Report:
    return await Load(port, rate, duration, **kw).run()


# --- scriptable backend ----------------------------------------------------------------------------

class _BackendConn(asyncio.Protocol):
    def __init__(self, backend: "FlakyBackend") -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Optional[asyncio.Transport] = None
        self.method = b""
        self.body_len = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.backend.conns.add(self)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.backend.conns.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_headers_complete(self) -> None:
        self.method = self.parser.get_method()
        self.body_len = 0

    def on_body(self, body: bytes) -> None:
        self.body_len += len(body)

    def on_message_complete(self) -> None:
        self.backend.bodies.append(self.body_len)
        status = self.backend.decide(self.method)
        if status is None or self.transport is None:
            return  # hang
        body = b"ok\n" if status < 500 else b"flaky failure\n"
        extra = b"l5d-retryable: true\r\n" if status >= 500 and self.backend.mark_retryable else b""
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nX-Backend: %s\r\n%s\r\n%s" % (
            status, b"OK" if status < 500 else b"Internal Server Error", len(body),
            self.backend.name.encode(), extra, body))


class FlakyBackend:
    def __init__(self, name: str = "backend", mode: str = "ok", fail_rate: float = 1 / 3, seed: int = 1,
                 port: Optional[int] = None, fail_first: int = 0, mark_retryable: bool = False) -> None:
        self.name = name
        #: failures carry ``l5d-retryable: true`` (as a router further down would set it)
        self.mark_retryable = mark_retryable
        self.mode = mode
        #: the first ``fail_first`` requests get 500 whatever the mode
        self.fail_first = fail_first
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.port = port or free_port()
        self.requests: collections.Counter = collections.Counter()  # (method, status) -> n
        self.conns: set[_BackendConn] = set()
        #: body length of every request received, in order
        self.bodies: list[int] = []
        self._server: Optional[asyncio.AbstractServer] = None

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def count(self, method: Optional[str] = None, status: Optional[int] = None) -> int:
        return sum(n for (m, s), n in self.requests.items()
                   if (method is None or m == method) and (status is None or s == status))

    def decide(self, method: bytes) -> Optional[int]:
        m = method.decode()
        if self.mode == "hang":
            self.requests[(m, 0)] += 1
            return None
        if self.fail_first > 0:
            self.fail_first -= 1
            status = 500
        elif self.mode == "fail" or (self.mode == "flaky" and self.rng.random() < self.fail_rate):
            status = 500
        else:
            status = 200
        self.requests[(m, status)] += 1
        return status

    async def start(self) -> "FlakyBackend":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _BackendConn(self), "127.0.0.1", self.port,
                                                reuse_address=True)
        return self

    async def stop(self) -> None:
        """Stop listening and reset every open connection (a crashed process)."""
        if self._server is not None:
            self._server.close()
            for c in list(self.conns):
                if c.transport is not None:
                    c.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "FlakyBackend":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


# --- closed-loop sampler -------------------------------------------------------------------------

async def sample(port: int, *, host: str = "web", path: str = "/", count: Optional[int] = None,
                 until: Optional[asyncio.Event] = None, concurrency: int = 8,
                 out: Optional[list] = None) -> list[tuple[float, str, int]]:
    """Closed-loop GETs over ``concurrency`` keep-alive connections, as fast as they are
    answered, until ``count`` responses or ``until`` is set. Returns (monotonic time of
    the response, its ``X-Backend``, status) per response, in completion order (into
    ``out`` as they come, when given, so a test can watch live traffic)."""
    results: list[tuple[float, str, int]] = out if out is not None else []
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    def done() -> bool:
        return (count is not None and len(results) >= count) or (until is not None and until.is_set())

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not done():
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ")[1])
                hdrs = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                await reader.readexactly(int(hdrs.get("content-length", "0")))
                results.append((time.monotonic(), hdrs.get("x-backend", "?"), status))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results
