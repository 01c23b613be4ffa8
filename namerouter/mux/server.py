"""A ThriftMux server: one thrift handler served over Mux and over plain framed thrift.

Like Finagle's ThriftMux servers, the first frame decides. Plain framed thrift and Mux
share the 4-byte size prefix; a strict binary thrift call then starts ``0x80 01 00 01``,
which reads as a Mux ``Rerr`` with tag 65537 (a message no client sends first), and an
old non-strict call starts with a name length, which is no Mux type at all. Either way
the connection is served as plain thrift: one call at a time, replies in order.

Mux connections (``message`` has the format):

* handshake — a client that sends ``Rerr(1, "tinit check")`` gets it echoed, then its
  ``Tinit`` is answered with ``Rinit`` (version 1, ``tls: off``; a client that requires
  TLS is refused with ``Rerr``). A client may also skip the handshake;
* ``Tdispatch`` (and old ``Treq``) run the handler concurrently, at most
  ``max_outstanding`` per connection (more are nacked), and are answered ``Rdispatch``
  (ok, or error with the exception's text); replies are fragmented to the client's
  ``mux-framer`` size when it sent one;
* ``Tdiscarded`` cancels that dispatch (a router closing a long poll) and is answered
  ``Rdiscarded``; ``Tping`` -> ``Rping``; other T-messages -> ``Rerr``.

Bad input: a frame over ``max_frame`` or a malformed Mux message gets ``Rerr`` with the
reason and the connection is closed; it is logged once (rate-limited) and every other
connection is unaffected. A client that stops reading while replies pile up past
``max_write_buffer`` is disconnected. ``close()`` sends ``Tdrain`` to Mux clients (so
Finagle clients move to a new session), then closes every connection.
"""
from __future__ import annotations

import asyncio
import logging
import re
import struct
from typing import TYPE_CHECKING, Any, Optional, Union

from . import message as m
from ..ratelog import RateLimitedLog
from .thrift import Handler, ThriftDecodeError

if TYPE_CHECKING:
    from ..tls.server import TlsServer

log = logging.getLogger(__name__)

MAX_REQUEST_FRAME = 4 * 1024 * 1024
MAX_OUTSTANDING = 10_000
MAX_WRITE_BUFFER = 16 * 1024 * 1024
#: Plain-thrift calls a client may send ahead of their replies.
MAX_PIPELINED = 64


class _BadInputLog:
    def __init__(self) -> None:
        self._log = RateLimitedLog(log)

    def __call__(self, peer: Any, msg: str) -> None:
        # One line per distinct reason (numbers aside) per interval.
        self._log.warn(re.sub(r"\d+", "#", msg)[:80], "thrift/mux client %s: %s", peer, msg)


class _Connection(asyncio.Protocol):
    def __init__(self, server: "MuxServer") -> None:
        self.server = server
        self.reader = m.FrameReader(server.max_frame)
        self.reassembler = m.Reassembler(server.max_frame)
        self.transport: Optional[asyncio.Transport] = None
        self.peer: Any = None
        self.mode: Optional[str] = None  # "mux" | "thrift" once the first frame arrived
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.peer_max_frame: Optional[int] = None
        self.thrift_queue: Optional[asyncio.Queue[bytes]] = None
        self.thrift_worker: Optional[asyncio.Task[None]] = None
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.server.connections.add(self)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for t in self.tasks.values():
            t.cancel()
        self.tasks.clear()
        if self.thrift_worker is not None:
            self.thrift_worker.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            for raw in self.reader.feed(data):
                if self.mode is None:
                    self.mode = "thrift" if _looks_like_thrift(raw) else "mux"
                    self.server.count(f"connects/{self.mode}")
                if self.mode == "thrift":
                    self._thrift_call(bytes([raw.typ & 0xFF]) + raw.tag.to_bytes(3, "big") + raw.body)
                else:
                    msg = self.reassembler.push(raw)
                    if msg is not None:
                        self._mux(msg)
                if self.closed:
                    return
        except m.MuxError as e:
            self._fail(0, str(e))

    # -- helpers ------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        if t.get_write_buffer_size() > self.server.max_write_buffer:
            self.server.bad_input(self.peer, "does not read its replies; disconnecting")
            t.abort()

    def _send(self, typ: int, tag: int, body: bytes = b"") -> None:
        if self.peer_max_frame:
            for f in m.fragments(typ, tag, body, self.peer_max_frame):
                self._write(f)
        else:
            self._write(m.frame(typ, tag, body))

    def _fail(self, tag: int, reason: str) -> None:
        """Protocol error: Rerr with the reason, then close this connection only."""
        self.server.bad_input(self.peer, reason)
        self.server.count("protocol_errors")
        if self.mode != "thrift":
            self._write(m.frame(m.BAD_RERR, tag & m.MAX_TAG, reason.encode("utf-8")))
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- Mux ------------------------------------------------------------------------------
    def _mux(self, msg: m.Message) -> None:
        typ, tag, body = msg
        if typ in (m.RERR, m.BAD_RERR):
            if tag == m.INIT_TAG and body == m.CAN_TINIT.encode():
                self._write(m.frame(m.BAD_RERR, m.INIT_TAG, body))  # "yes, negotiate"
            return
        if typ == m.TINIT:
            version, headers = m.parse_init(body)
            if version != m.VERSION:
                self._fail(tag, f"Unsupported Mux version: {version}")
                return
            if m.header(headers, m.TLS_KEY) == b"required":
                self._fail(tag, "this server does not offer TLS but the client requires it")
                return
            framer = m.header(headers, m.FRAMER_KEY)
            if framer is not None and len(framer) == 4:
                size = struct.unpack(">i", framer)[0]
                self.peer_max_frame = size if size > 0 else None
            self._write(m.frame(m.RINIT, tag, m.init_body(m.VERSION, [(m.TLS_KEY, b"off")])))
            return
        if typ == m.TDISPATCH:
            self._dispatch(tag, m.parse_tdispatch(body).payload, m.RDISPATCH)
        elif typ == m.TREQ:
            self._dispatch(tag, m.parse_treq(body), m.RREQ)
        elif typ == m.TPING:
            self._write(m.frame(m.RPING, tag))
        elif typ in (m.TDISCARDED, m.BAD_TDISCARDED):
            which, _ = m.parse_tdiscarded(body)
            task = self.tasks.pop(which, None)
            if task is not None:
                task.cancel()
                self.server.count("discarded")
                self._write(m.frame(m.RDISCARDED, which))
        elif typ in (m.RPING, m.RDRAIN, m.TLEASE, m.RDISCARDED):
            pass
        elif typ > 0:
            self._write(m.frame(m.BAD_RERR, tag, f"Unexpected mux message type {typ}".encode()))
        # other R-messages: nothing of ours was asked; ignore

    def _dispatch(self, tag: int, payload: bytes, rtyp: int) -> None:
        if tag in self.tasks:
            self._fail(tag, f"tag {tag} is already in use by an outstanding dispatch")
            return
        if len(self.tasks) >= self.server.max_outstanding:
            self.server.count("nacks")
            self._send(rtyp, tag, m.rdispatch_body(m.STATUS_NACK, b"") if rtyp == m.RDISPATCH
                       else bytes([m.STATUS_NACK]))
            return
        self.tasks[tag] = asyncio.get_running_loop().create_task(self._run(tag, payload, rtyp))

    async def _run(self, tag: int, payload: bytes, rtyp: int) -> None:
        try:
            reply = await self.server.handler(payload)
            status, body = m.STATUS_OK, reply
        except asyncio.CancelledError:
            return  # discarded or the connection went away
        except ThriftDecodeError as e:
            status, body = m.STATUS_ERROR, str(e).encode("utf-8")
        except Exception as e:  # a bug answers an error, the session goes on
            log.exception("thrift dispatch failed")
            status, body = m.STATUS_ERROR, f"{type(e).__name__}: {e}".encode("utf-8")
        if self.tasks.pop(tag, None) is None or self.closed:
            return  # discarded meanwhile
        if rtyp == m.RDISPATCH:
            self._send(rtyp, tag, m.rdispatch_body(status, body))
        else:
            self._send(rtyp, tag, bytes([status]) + body)

    # -- plain framed thrift ----------------------------------------------------------------
    def _thrift_call(self, payload: bytes) -> None:
        if self.thrift_queue is None:
            self.thrift_queue = asyncio.Queue()
            self.thrift_worker = asyncio.get_running_loop().create_task(self._thrift_loop())
        if self.thrift_queue.qsize() >= MAX_PIPELINED:
            self._fail(0, f"more than {MAX_PIPELINED} thrift calls sent ahead of their replies")
            return
        self.thrift_queue.put_nowait(payload)

    async def _thrift_loop(self) -> None:
        assert self.thrift_queue is not None
        while not self.closed:
            payload = await self.thrift_queue.get()
            try:
                reply = await self.server.handler(payload)
            except ThriftDecodeError:
                # No method name or seqid to answer: the stream cannot be resynchronised.
                self._fail(0, "not a thrift message")
                return
            except Exception:
                log.exception("thrift call failed")
                self._fail(0, "internal error")
                return
            self._write(struct.pack(">i", len(reply)) + reply)

    def drain(self) -> None:
        if self.mode == "mux":
            self._write(m.frame(m.TDRAIN, m.CONTROL_TAG))


def _looks_like_thrift(first: m.Message) -> bool:
    known = {m.TREQ, m.RREQ, m.TDISPATCH, m.RDISPATCH, m.TDRAIN, m.RDRAIN, m.TPING, m.RPING,
             m.TDISCARDED, m.RDISCARDED, m.TLEASE, m.TINIT, m.RINIT, m.RERR, m.BAD_TDISCARDED, m.BAD_RERR}
    if first.typ not in known:
        return True
    # 0x80010001 / 0x80010004: a strict binary thrift CALL / ONEWAY header.
    return first.typ == m.RERR and first.tag in (0x010001, 0x010004)


class MuxServer:
    """Serves ``handler`` (thrift call payload -> reply payload) on one address."""

    def __init__(self, handler: Handler, max_frame: int = MAX_REQUEST_FRAME,
                 max_outstanding: int = MAX_OUTSTANDING, max_write_buffer: int = MAX_WRITE_BUFFER,
                 metrics: Any = None, scope: str = "mux") -> None:
        self.handler = handler
        self.max_frame = max_frame
        self.max_outstanding = max_outstanding
        self.max_write_buffer = max_write_buffer
        self.metrics = metrics
        self.scope = scope
        self.connections: set[_Connection] = set()
        self.bad_input = _BadInputLog()
        self._server: Union[asyncio.Server, TlsServer, None] = None
        self.port: Optional[int] = None

    def count(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.counter(f"{self.scope}/{name}").incr()

    async def start(self, host: str, port: int, tls: Any = None, failures: Any = None) -> int:
        """Listen; over TLS (``tls``: a ``namerouter.tls.TlsSource``) Mux and thrift start
        after the TLS handshake, as with Linkerd's namerd."""
        server: Union[asyncio.Server, TlsServer]
        if tls is None:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(lambda: _Connection(self), host, port,
                                              reuse_address=True, backlog=1024)
        else:
            from ..tls.server import serve_tls

            server = await serve_tls(lambda: _Connection(self), tls, host, port, failures, backlog=1024)
        self._server = server
        port = int(server.sockets[0].getsockname()[1])
        self.port = port
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            c.drain()
        await asyncio.sleep(0)
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass
            self._server = None
