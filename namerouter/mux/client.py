"""A Mux client session: what Finagle's ThriftMux client does on one connection.

* handshake: ``Rerr(1, "tinit check")``; when the server echoes it, ``Tinit`` (version
  1, ``tls: off``) and wait for ``Rinit``; a server that answers anything else is used
  without negotiation;
* ``dispatch(payload)`` sends ``Tdispatch`` on the smallest free tag and waits for
  ``Rdispatch``. Many dispatches share the connection. Cancelling the caller (a router
  no longer watching a name) sends ``Tdiscarded``; the tag stays reserved until the
  server's ``Rdiscarded``/``Rdispatch`` frees it;
* liveness: a ``Tping`` every ``ping_interval``; no ``Rping`` within ``ping_timeout``
  closes the session (Finagle's failure detector: ``failureThreshold.minPeriodMs`` /
  ``closeTimeoutMs``), so a namerd host that vanished without closing the connection is
  noticed; the server's pings are answered;
* ``Tdrain`` from the server (it is shutting down): answered ``Rdrain``; the session
  takes no new dispatches (``draining``) and closes when the last one is answered.

Every failure of the connection fails its outstanding dispatches with
:class:`MuxClosed`, which callers treat as "reconnect".
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from . import message as m

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0
MAX_REPLY_FRAME = 64 * 1024 * 1024


class MuxClosed(ConnectionError):
    """The session is closed (connection lost, ping timeout, drained, refused)."""


class MuxRemoteError(Exception):
    """The server answered ``Rerr`` or an error ``Rdispatch`` (its text)."""


class MuxNack(MuxRemoteError):
    """The server refused the dispatch (overloaded); safe to retry."""


class _Protocol(asyncio.Protocol):
    def __init__(self, session: "MuxSession") -> None:
        self.session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.session._data(data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.session._lost(exc)


class MuxSession:
    def __init__(self, ping_interval: float = 5.0, ping_timeout: float = 4.0) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._transport: Optional[asyncio.Transport] = None
        self._reader = m.FrameReader(MAX_REPLY_FRAME)
        self._reassembler = m.Reassembler(MAX_REPLY_FRAME)
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._discarded: set[int] = set()
        self._handshake: Optional[asyncio.Future[m.Message]] = None
        self._ping_task: Optional[asyncio.Task[None]] = None
        self._pong: Optional[asyncio.Future[None]] = None
        self.closed = False
        self.close_reason = ""
        self.draining = False
        self.negotiated = False
        self.last_rtt: Optional[float] = None

    # -- connecting ---------------------------------------------------------------------
    @classmethod
    async def connect(cls, host: str, port: int, *, ssl: Any = None, server_hostname: Optional[str] = None,
                      connect_timeout: float = 2.0, ping_interval: float = 5.0,
                      ping_timeout: float = 4.0) -> "MuxSession":
        """Connect (over TLS when ``ssl`` is a context: Mux starts after the TLS
        handshake, as Finagle's TLS clients do) and negotiate."""
        self = cls(ping_interval, ping_timeout)
        loop = asyncio.get_running_loop()
        kw: dict[str, Any] = {}
        if ssl is not None:
            kw = {"ssl": ssl, "server_hostname": server_hostname or host}
        try:
            async with asyncio.timeout(connect_timeout + (5.0 if ssl is not None else 0.0)):
                await loop.create_connection(lambda: _Protocol(self), host, port, **kw)
        except (OSError, TimeoutError) as e:
            raise MuxClosed(f"cannot connect to {host}:{port}: {e or type(e).__name__}") from e
        try:
            await self._negotiate()
        except BaseException:
            self.close("handshake failed")
            raise
        self._ping_task = loop.create_task(self._ping_loop())
        return self

    async def _negotiate(self) -> None:
        loop = asyncio.get_running_loop()
        self._handshake = loop.create_future()
        self._write(m.frame(m.BAD_RERR, m.INIT_TAG, m.CAN_TINIT.encode()))
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                reply: m.Message = await self._handshake
                if reply.typ in (m.RERR, m.BAD_RERR) and reply.body == m.CAN_TINIT.encode():
                    self._handshake = loop.create_future()
                    self._write(m.frame(m.TINIT, m.INIT_TAG, m.init_body(m.VERSION, [(m.TLS_KEY, b"off")])))
                    reply = await self._handshake
                    if reply.typ != m.RINIT:
                        raise MuxClosed(f"server refused the session: {m.text(reply.body)}")
                    self.negotiated = True
        except TimeoutError:
            raise MuxClosed("no answer to the Mux handshake") from None
        finally:
            self._handshake = None

    # -- calls ------------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.closed and not self.draining

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def _free_tag(self) -> int:
        tag = m.CONTROL_TAG + 1
        while tag in self._pending or tag in self._discarded:
            tag += 1
        if tag > m.MAX_TAG:
            raise MuxClosed("no free Mux tag")
        return tag

    async def dispatch(self, payload: bytes) -> bytes:
        if self.closed:
            raise MuxClosed(self.close_reason or "session closed")
        if self.draining:
            raise MuxClosed("session is draining")
        tag = self._free_tag()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[tag] = fut
        self._write(m.frame(m.TDISPATCH, tag, m.tdispatch_body(payload)))
        try:
            return await fut
        except asyncio.CancelledError:
            if not self.closed and (fut.cancelled() or not fut.done()):
                # Keep the tag until the server says it is done with it.
                self._discarded.add(tag)
                self._write(m.frame(m.BAD_TDISCARDED, 0, m.tdiscarded_body(tag, "request interrupted")))
            raise
        finally:
            if self._pending.get(tag) is fut:
                del self._pending[tag]
            self._maybe_finish_drain()

    # -- incoming -----------------------------------------------------------------------------
    def _data(self, data: bytes) -> None:
        try:
            for raw in self._reader.feed(data):
                msg = self._reassembler.push(raw)
                if msg is not None:
                    self._message(msg)
        except m.MuxError as e:
            self.close(f"protocol error from server: {e}")

    def _message(self, msg: m.Message) -> None:
        typ, tag, body = msg
        if self._handshake is not None and not self._handshake.done() and tag == m.INIT_TAG \
                and typ in (m.RERR, m.BAD_RERR, m.RINIT):
            self._handshake.set_result(msg)
            return
        if typ == m.RDISPATCH or typ == m.RREQ:
            self._discarded.discard(tag)
            fut = self._pending.get(tag)
            if fut is None or fut.done():
                return
            try:
                if typ == m.RDISPATCH:
                    status, payload = m.parse_rdispatch(body)
                else:
                    status, payload = body[0], body[1:]
            except (m.MuxError, IndexError) as e:
                fut.set_exception(MuxRemoteError(f"malformed reply: {e}"))
                return
            if status == m.STATUS_OK:
                fut.set_result(payload)
            elif status == m.STATUS_NACK:
                fut.set_exception(MuxNack("server nacked the request"))
            else:
                fut.set_exception(MuxRemoteError(m.text(payload)))
        elif typ == m.RDISCARDED:
            self._discarded.discard(tag)
            self._maybe_finish_drain()
        elif typ in (m.RERR, m.BAD_RERR):
            self._discarded.discard(tag)
            fut = self._pending.get(tag)
            if fut is not None and not fut.done():
                fut.set_exception(MuxRemoteError(m.text(body)))
        elif typ == m.RPING:
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
        elif typ == m.TPING:
            self._write(m.frame(m.RPING, tag))
        elif typ == m.TDRAIN:
            self._write(m.frame(m.RDRAIN, tag))
            self.draining = True
            self._maybe_finish_drain()
        elif typ > 0 and typ != m.TLEASE:
            self._write(m.frame(m.BAD_RERR, tag, f"Unexpected mux message type {typ}".encode()))

    def _maybe_finish_drain(self) -> None:
        if self.draining and not self._pending and not self._discarded:
            self.close("drained by the server")

    async def _ping_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await asyncio.sleep(self.ping_interval)
            if self.closed:
                return
            self._pong = loop.create_future()
            t0 = time.monotonic()
            self._write(m.frame(m.TPING, m.CONTROL_TAG))
            try:
                async with asyncio.timeout(self.ping_timeout):
                    await self._pong
                self.last_rtt = time.monotonic() - t0
            except TimeoutError:
                self.close(f"no ping reply within {self.ping_timeout:g} s")
                return

    # -- closing ---------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        t = self._transport
        if t is not None and not t.is_closing():
            t.write(data)

    def _lost(self, exc: Optional[Exception]) -> None:
        self.close(f"connection lost: {exc}" if exc else "connection closed by the server")

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(MuxClosed(reason))
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(MuxClosed(reason))
        if self._ping_task is not None and self._ping_task is not asyncio.current_task():
            self._ping_task.cancel()
        if self._transport is not None:
            self._transport.close()
