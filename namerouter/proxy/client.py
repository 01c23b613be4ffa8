"""Backend side of the data plane: HTTP/1.1 client connections and per-endpoint pools.

``ClientConnection`` is an asyncio Protocol with an httptools response parser. It
carries one exchange at a time (no pipelining towards backends) and hands every parsed
piece straight to that exchange, which writes it to the downstream client: no task,
no queue, no copy per response. After a complete keep-alive response the connection
goes back to its ``Endpoint``'s idle list (LIFO, so a warm connection is reused).

``Endpoint`` is one backend address: its load-balancer state (``Node``), its idle
connections and its open-connection count.
"""
from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

import httptools

from ..naming.addr import Address
from .balancers import Node
from .batch import BATCH, Coalescing
from .errors import Overloaded

if TYPE_CHECKING:  # pragma: no cover
    from .routing import ClientStage
    from .server import Exchange

#: Hop-by-hop response headers (RFC 7230 §6.1) the router never forwards as-is.
RESP_DROP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
     b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"via")
)

#: Lower-case forms of the header names backends commonly send (saves a .lower() each).
_LOWER = {n: n.lower() for n in (
    b"Server", b"Date", b"Content-Type", b"Content-Length", b"Connection", b"Keep-Alive",
    b"Transfer-Encoding", b"Cache-Control", b"Last-Modified", b"ETag", b"Accept-Ranges",
    b"Vary", b"Expires", b"Location", b"Set-Cookie", b"Content-Encoding", b"Via",
    b"content-type", b"content-length", b"server", b"date", b"connection",
)}

#: Of those, the ones forwarded unchanged (not hop-by-hop, not Content-Length, not l5d-):
#: their lower-case forms, for the fast path of on_header.
_PLAIN = {n: ln for n, ln in _LOWER.items() if ln not in RESP_DROP and ln != b"content-length"}

#: Connection header values that list no forwardable header (nothing to strip).
_CONN_PLAIN = frozenset((b"keep-alive", b"Keep-Alive"))

_monotonic = time.monotonic

CONNECT_TIMEOUT_S = 3.0
#: Idle connections kept per endpoint; more are closed on release.
MAX_IDLE = 256


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle on a proxied connection: a small head or body must leave at once
    (batching already makes one send per read event)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class ClientConnection(Coalescing, asyncio.Protocol):
    __slots__ = (
        "endpoint", "transport", "parser", "exchange", "closed", "reused", "got_bytes",
        "status", "reason", "lines", "content_length", "chunked", "via", "conn_tokens",
        "upgrade", "interim", "keep_alive", "tunnel", "skip_body", "head_done", "paused", "out",
        "idle_since",
    )

    def __init__(self, endpoint: "Endpoint") -> None:
        self.endpoint = endpoint
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Optional["Exchange"] = None
        self.closed = False
        self.reused = False
        self.got_bytes = False
        self.tunnel: Any = None  # the ServerConnection once upgraded
        self.paused = False
        self.skip_body = False  # set per exchange (HEAD) by Exchange.attach
        self.idle_since = 0.0
        self.out: Optional[list[bytes]] = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.lines: list[tuple[bytes, bytes]] = []  # (lower-cased name, encoded line)
        self.content_length: Optional[bytes] = None
        self.chunked = False
        self.via: Optional[bytes] = None
        self.conn_tokens: Optional[list[bytes]] = None
        self.upgrade: Optional[bytes] = None
        self.interim = False
        self.keep_alive = True
        self.head_done = False

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        self.endpoint.open_conns += 1
        self.endpoint.stage.connects.value += 1

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        ex = self.exchange
        if ex is None:
            # An idle keep-alive connection must not talk: it is out of sync, drop it.
            self.close()
            return
        self.got_bytes = True
        BATCH.depth += 1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            ex = self.exchange
            if ex is not None:
                ex.on_backend_upgrade(self, data[e.args[0]:])
        except httptools.HttpParserError as e:
            ex = self.exchange
            if ex is not None:
                ex.on_backend_broken(self, f"malformed response from {self.endpoint.label}: {e}")
            self.close()
        finally:
            BATCH.depth -= 1
            if not BATCH.depth and BATCH.dirty:
                BATCH.flush()

    def eof_received(self) -> Optional[bool]:
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self.transport = None
        self.endpoint.conn_lost()
        t = self.tunnel
        if t is not None:
            self.tunnel = None
            t.close_tunnel()
            return
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.on_backend_lost(self, exc)

    def pause_writing(self) -> None:
        # Backend is slower than the upload: stop reading the client.
        ex = self.exchange
        if ex is not None:
            ex.conn.pause_reading_for(self)
        elif self.tunnel is not None:
            self.tunnel.pause_reading_for(self)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.conn.resume_reading_for(self)
        elif self.tunnel is not None:
            self.tunnel.resume_reading_for(self)

    # reading the backend, paced by the client ----------------------------------------
    def stop_reading(self) -> None:
        """The client reads slower than this backend sends: stop reading it."""
        t = self.transport
        if t is not None and not self.paused:
            self.paused = True
            t.pause_reading()

    def start_reading(self) -> None:
        """Undo :meth:`stop_reading` (the client caught up, or the exchange ended)."""
        if self.paused:
            self.paused = False
            t = self.transport
            if t is not None:
                t.resume_reading()

    # httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = _PLAIN.get(name)
        if lname is not None:  # common, forwarded as is: no further checks
            self.lines.append((lname, name + b": " + value + b"\r\n"))
            return
        lname = _LOWER.get(name)
        if lname is None:
            lname = name.lower()
        if lname in RESP_DROP:
            if lname == b"transfer-encoding":
                if b"chunked" in value.lower():
                    self.chunked = True
            elif lname == b"connection":
                if value in _CONN_PLAIN:
                    # "keep-alive" names a header that is dropped anyway (RESP_DROP):
                    # nothing to strip; keep-alive itself comes from the parser.
                    return
                toks = [t.strip().lower() for t in value.split(b",")]
                self.conn_tokens = (self.conn_tokens or []) + toks
            elif lname == b"via":
                self.via = value if self.via is None else self.via + b", " + value
            elif lname == b"upgrade":
                self.upgrade = value
            return
        if lname == b"content-length":
            self.content_length = value
        elif lname[:4] == b"l5d-" and self.exchange is not None and self.exchange.conn.clear_context:
            return
        self.lines.append((lname, name + b": " + value + b"\r\n"))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.status = status
        ex = self.exchange
        if ex is None:
            return
        if 100 <= status < 200 and status != 101:
            self.interim = True
            ex.on_resp_interim(status, self.reason)
            return
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        ex.on_resp_head(self)
        if self.skip_body:
            # Response to HEAD: llhttp would wait for Content-Length bytes; there are none.
            self.parser = httptools.HttpResponseParser(self)
            ex.on_resp_done(self)

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.on_resp_body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.skip_body or self.status == 101:
            return
        ex = self.exchange
        if ex is not None:
            ex.on_resp_done(self)

    # --------------------------------------------------------------------------------
    def header_lines(self) -> list[bytes]:
        """Forwardable header lines (minus those named in ``Connection``)."""
        toks = self.conn_tokens
        if toks:
            return [line for lname, line in self.lines if lname not in toks]
        return [line for _, line in self.lines]

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            t = self.transport
            if t is not None:
                t.close()

    def abort(self) -> None:
        self.closed = True
        t = self.transport
        if t is not None:
            t.abort()


class PoolSettings:
    """A client's ``hostConnectionPool`` (Finagle's per-host pool), read once per client.

    ``maxSize``: at most this many open connections per endpoint; further requests wait
    for one to be released (at most ``maxWaiters`` of them; beyond that 503).
    ``idleTimeMs``: pooled connections idle that long are closed, keeping ``minSize``.
    """

    __slots__ = ("min_size", "max_size", "idle_time_s", "max_waiters")

    def __init__(self, block: Any = None) -> None:
        def get(key: str) -> Any:
            if block is None:
                return None
            return block.get(key) if isinstance(block, dict) else getattr(block, key, None)

        self.min_size = int(get("minSize") or 0)
        mx = get("maxSize")
        self.max_size: Optional[int] = int(mx) if mx else None
        it = get("idleTimeMs")
        self.idle_time_s: Optional[float] = float(it) / 1000.0 if it else None
        mw = get("maxWaiters")
        self.max_waiters: Optional[int] = int(mw) if mw is not None else None


#: No limits (the default, as in Linkerd).
UNBOUNDED = PoolSettings()


class PoolExhausted(Overloaded):
    """``hostConnectionPool.maxWaiters`` requests are already waiting for a connection (503)."""


class Endpoint(Node):
    """One backend address of a client: LB state, idle pool, connection count."""

    __slots__ = ("address", "host", "port", "stage", "idle", "open_conns", "retired", "label", "accrual",
                 "pool", "connecting", "waiters")

    def __init__(self, address: Address, stage: "ClientStage", pool: PoolSettings = UNBOUNDED) -> None:
        super().__init__(address.weight)
        self.address = address
        self.host = address.host
        self.port = address.port
        self.stage = stage
        self.idle: list[ClientConnection] = []
        self.open_conns = 0
        self.retired = False
        self.label = f"{self.host}:{self.port}"
        #: failure accrual state (policy/failure_accrual.py), set by the ClientStage
        self.accrual: Any = None
        self.pool = pool
        self.connecting = 0
        #: requests waiting for a connection when the pool is at maxSize (FIFO)
        self.waiters: Optional[deque[asyncio.Future]] = None

    def get_idle(self) -> Optional[ClientConnection]:
        idle = self.idle
        while idle:
            c = idle.pop()
            if not c.closed:
                c.reused = True
                return c
        return None

    async def connect(self) -> ClientConnection:
        """A new connection — or, when the pool is at ``maxSize``, the next released one."""
        pool = self.pool
        if pool.max_size is not None and self.open_conns + self.connecting >= pool.max_size:
            if self.waiters is None:
                self.waiters = deque()
            if pool.max_waiters is not None and len(self.waiters) >= pool.max_waiters:
                raise PoolExhausted(
                    f"{self.label}: all {pool.max_size} connections busy and {len(self.waiters)} "
                    "requests already waiting (hostConnectionPool maxSize/maxWaiters)")
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                conn = await fut
            except asyncio.CancelledError:
                # Cancelled after a connection was handed over: give it back, not leak it.
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    self.release(fut.result())
                elif fut.done() and not fut.cancelled():
                    self._wake_for_slot()  # pass the free slot on
                raise
            if conn is not None:
                return conn
            # else: a connection closed, its slot is ours
        loop = asyncio.get_running_loop()
        self.connecting += 1
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: ClientConnection(self), self.host, self.port),
                CONNECT_TIMEOUT_S,
            )
        finally:
            self.connecting -= 1
            if self.waiters:
                self._wake_for_slot()
        return proto  # type: ignore[return-value]

    def _wake_for_slot(self) -> None:
        """A slot may have freed up (a connection closed, a connect failed)."""
        pool = self.pool
        ws = self.waiters
        while ws and (pool.max_size is None or self.open_conns + self.connecting < pool.max_size):
            w = ws.popleft()
            if not w.done():
                w.set_result(None)
                return

    def conn_lost(self) -> None:
        self.open_conns -= 1
        if self.waiters:
            self._wake_for_slot()

    def release(self, conn: ClientConnection) -> None:
        """Back to the idle pool after a complete keep-alive exchange (or straight to a
        request waiting for a connection)."""
        conn.exchange = None
        if conn.closed:
            return
        if self.retired:
            conn.close()
            return
        conn.got_bytes = False
        ws = self.waiters
        while ws:
            w = ws.popleft()
            if not w.done():
                conn.reused = True
                w.set_result(conn)
                return
        if len(self.idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = _monotonic()
        self.idle.append(conn)
        if self.pool.idle_time_s is not None:
            self.stage._schedule_idle_sweep()

    def close_idle(self, now: float) -> int:
        """``idleTimeMs``: close pooled connections idle for longer, keeping ``minSize`` open."""
        t = self.pool.idle_time_s
        if t is None or not self.idle:
            return 0
        closed = 0
        keep: list[ClientConnection] = []
        # oldest first (the list is LIFO: index 0 is the longest idle)
        for c in self.idle:
            if (not c.closed and now - c.idle_since > t
                    and self.open_conns - closed > self.pool.min_size):
                c.close()
                closed += 1
            elif not c.closed:
                keep.append(c)
        self.idle = keep
        return closed

    def retire(self) -> None:
        """Address removed by the namer: close idle connections; busy ones close on release."""
        self.retired = True
        if self.accrual is not None:
            self.accrual.retire()
        idle, self.idle = self.idle, []
        for c in idle:
            c.close()
        ws, self.waiters = self.waiters, None
        for w in ws or ():
            if not w.done():
                w.set_result(None)  # they connect on their own (and close on release)

    def __repr__(self) -> str:
        return f"Endpoint({self.label}, w={self.weight}, out={self.outstanding})"
