"""HTTP/2 client-facing connections: one request lifecycle per stream.

``H2ServerConnection`` drives an ``h2`` server connection (``conn.py``): each request
stream becomes an :class:`H2ServerStream`, the *downstream* of a
:class:`~..lifecycle.Lifecycle` (the interface in docs/architecture.md), so routing,
retries, timeouts, l5d headers and metrics are the lifecycle's, as for HTTP/1.1.
Streams are independent: a RST_STREAM from the client cancels that stream's lifecycle
only; a protocol error of the peer ends the connection with the GOAWAY ``h2`` chose
(PROTOCOL_ERROR, FLOW_CONTROL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM for an
oversized header list, …) and never anything beyond that connection.

Router-made answers: a gRPC request (``content-type: application/grpc…``) gets HTTP
200 with ``grpc-status``/``grpc-message`` (trailers-only, ``heads.grpc_error_headers``);
any other request gets the HTTP router's status, ``l5d-err`` and text body. A server with
``clearContext: true`` answers the status only, as HTTP/1.1 servers do (gRPC: the
``grpc-status`` with the status's generic reason as ``grpc-message``), and no ``l5d-*``
field (ours or the backend's, trailers included) reaches its clients.

Shutdown (``shutdown()``): a GOAWAY naming the last stream taken; later streams are
refused (REFUSED_STREAM, safe for the client to retry elsewhere); the connection closes
when the open streams are done (``HttpServer.close`` cuts it after its grace period).

Connection admission and limits go through ``HttpServer.connection_made`` as for
HTTP/1.1; ``idle`` says whether a connection carries no stream (for idle timeouts).
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, RemoteSettingsChanged, RequestReceived, StreamEnded, StreamReset,
    TrailersReceived, WindowUpdated,
)
from h2.connection import ConnectionState
from h2.exceptions import ProtocolError

from ..batch import BATCH
from ..errors import BadRequest, RouterError, error_body, l5d_err_value, log_hidden, reason
from ..lifecycle import Lifecycle
from ..message import HeaderBlock, ResponseHead
from ..transport import client_cert_of
from .conn import H2Conn, H2Settings, Sender, reset
from .heads import (
    H2RequestHead, VIA, error_headers, grpc_code_for, grpc_error_headers, parse_request, response_headers,
)
from .stats import stream_done

if TYPE_CHECKING:  # pragma: no cover
    from ..router import HttpServer

log = logging.getLogger("namerouter.proxy.h2")
_now = time.monotonic
_INITIAL_WINDOW = 0x4  # SettingCodes.INITIAL_WINDOW_SIZE


class H2ServerStream(Sender):
    """One request stream: the downstream of its lifecycle."""

    conn: "H2ServerConnection"

    __slots__ = ("conn", "sid", "lc", "head", "pause_keys", "deferred", "reset_after", "abort_code", "t0", "t_resp",
                 "req_bytes", "req_frames", "resp_bytes", "resp_frames", "resp", "trailers", "req_done_t",
                 "resp_done_t", "failed")

    def __init__(self, conn: "H2ServerConnection", sid: int, head: H2RequestHead) -> None:
        self.conn = conn
        self.sid = sid
        self.head = head
        self.lc: Optional[Lifecycle] = None
        self.pause_keys: Optional[set[Any]] = None
        #: flow-controlled bytes received while paused (consumed on resume)
        self.deferred = 0
        self.reset_after = False
        self.abort_code = ErrorCodes.INTERNAL_ERROR
        self.t0 = _now()
        self.t_resp = 0.0
        self.req_bytes = self.req_frames = self.resp_bytes = self.resp_frames = 0
        self.resp: Optional[ResponseHead] = None
        self.trailers: Optional[list[tuple[bytes, bytes]]] = None
        self.req_done_t = self.resp_done_t = 0.0
        #: the stream ended in a reset (by either side)
        self.failed = False

    # --- what the lifecycle reads ---------------------------------------------------------
    @property
    def write_paused(self) -> bool:
        return self.pending is not None or self.conn.write_paused

    @property
    def closing(self) -> bool:
        return self.conn.draining

    @property
    def peer(self) -> str:
        return self.conn.peer

    @property
    def remote(self) -> Optional[tuple[str, int]]:
        return self.conn.remote

    # --- the downstream interface ---------------------------------------------------------
    def send_response_head(self, lc: Lifecycle, resp: ResponseHead, extra: HeaderBlock,
                           unrewrite: Optional[tuple[bytes, bytes]]) -> None:
        self.resp = resp
        self.t_resp = _now()
        end = getattr(resp, "end_stream", False)
        headers = response_headers(resp, extra, self.conn.clear_context, unrewrite)
        self._headers(headers, end)

    def _headers(self, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        conn = self.conn
        try:
            conn.h2.send_headers(self.sid, headers, end_stream=end)
        except (ProtocolError, KeyError):
            return  # the stream is gone (the client reset it meanwhile)
        conn.kick()
        if end:
            self.local_ended = True
            self.ended_locally()

    def send_body(self, chunk: bytes) -> None:
        self.resp_bytes += len(chunk)
        self.resp_frames += 1
        self.send_data(chunk)

    def end_response(self) -> None:
        self.send_end()

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        if self.conn.clear_context:
            fields = [f for f in fields if f[0][:4] != b"l5d-"]  # no l5d-* reaches the client
        self.trailers = fields
        self.send_end(fields)

    def send_interim(self, status: int, reason_phrase: bytes) -> None:
        try:
            self.conn.h2.send_headers(self.sid, [(b":status", b"%d" % status)])
        except (ProtocolError, KeyError):
            return
        self.conn.kick()

    def send_error(self, lc: Lifecycle, err: RouterError, drainable: bool) -> bool:
        self.answer_error(err)
        return lc.upload_complete

    def answer_error(self, err: RouterError) -> None:
        """A router-made answer (gRPC or HTTP, see the module docstring)."""
        core = self.conn.server.core
        self.t_resp = _now()
        if self.conn.clear_context:
            # clearContext (a server facing untrusted clients): the status only — gRPC keeps
            # its grpc-status with a generic grpc-message; the explanation goes to the log
            log_hidden(err.status, err.message)
            if self.head.grpc:
                self._headers(grpc_error_headers(grpc_code_for(err), reason(err.status), None, False), True)
            else:
                self._headers(error_headers(err.status, None, False, 0), True)
            return
        l5d_err = l5d_err_value(err.message, 8192)
        if self.head.grpc:
            self._headers(grpc_error_headers(grpc_code_for(err), err.message.split("\n", 1)[0], l5d_err,
                                             err.retryable), True)
            return
        body = error_body(err.message, core.max_err_bytes)
        if self.head.method == b"HEAD":
            self._headers(error_headers(err.status, l5d_err, err.retryable, len(body)), True)
            return
        self._headers(error_headers(err.status, l5d_err, err.retryable, len(body)), False)
        self.send_data(body)
        self.send_end()

    def send_status(self, lc: Lifecycle, status: int, drainable: bool) -> bool:
        self.t_resp = _now()
        self._headers([(b":status", b"%d" % status), (b"content-length", b"0"), (b"via", VIA)], True)
        return lc.upload_complete

    def close_after(self) -> None:
        self.reset_after = True

    def abort(self) -> None:
        """Part of the response is out and the rest cannot come: reset the stream."""
        self.failed = True
        self.drop_pending()
        self.local_ended = self.remote_ended = True
        reset(self.conn, self.sid, self.abort_code)
        self.conn.forget(self)

    def pause_request_body(self, key: Any) -> None:
        if self.pause_keys is None:
            self.pause_keys = {key}
        else:
            self.pause_keys.add(key)

    def resume_request_body(self, key: Any) -> None:
        keys = self.pause_keys
        if keys is None or key not in keys:
            return
        keys.discard(key)
        if not keys:
            self.pause_keys = None
            n, self.deferred = self.deferred, 0
            self.conn.consumed(self, n)

    def finished(self, lc: Lifecycle) -> None:
        """The exchange is over (answered, failed, or cancelled)."""
        self.lc = None
        if self.reset_after and not self.remote_ended:
            if self.pending is None:
                self._stop_request()
            # else: after the kept DATA went out (ended_locally)
        stream_done(self, lc)
        if self.local_ended and self.remote_ended:
            self.conn.forget(self)

    def start_tunnel(self, lc: Lifecycle, up: Any, rest: bytes) -> None:
        up.close()  # no upgrades inside HTTP/2
        self.abort()

    # --- Sender hooks -----------------------------------------------------------------------
    def blocked(self) -> None:
        lc = self.lc
        if lc is not None and lc.up is not None:
            lc.up.pause_reading()

    def unblocked(self) -> None:
        lc = self.lc
        if lc is not None and lc.up is not None:
            lc.up.resume_reading()

    def ended_locally(self) -> None:
        if self.resp_done_t == 0.0:
            self.resp_done_t = _now()
        if self.remote_ended:
            if self.lc is None:
                self.conn.forget(self)
        elif self.reset_after and self.lc is None:
            self._stop_request()

    def _stop_request(self) -> None:
        """Answered before the request ended: ask the client to stop sending (RFC 9113
        §8.1, RST_STREAM NO_ERROR after a complete response)."""
        self.remote_ended = True
        reset(self.conn, self.sid, ErrorCodes.NO_ERROR)
        if self.local_ended:
            self.conn.forget(self)

    # --- from the connection -------------------------------------------------------------------
    def on_data(self, data: bytes, flow: int) -> None:
        self.req_bytes += len(data)
        self.req_frames += 1
        lc = self.lc
        if lc is not None:
            lc.request_body(data)
        if self.pause_keys is not None:
            self.deferred += flow
        else:
            self.conn.consumed(self, flow)

    def on_end(self) -> None:
        if self.remote_ended:
            return
        self.remote_ended = True
        self.req_done_t = _now()
        lc = self.lc
        if lc is not None:
            lc.request_end()
        if self.local_ended and self.lc is None:
            self.conn.forget(self)

    def on_reset(self) -> None:
        self.failed = True
        self.drop_pending()
        self.local_ended = self.remote_ended = True
        lc = self.lc
        if lc is not None:
            lc.cancel()
            self.finished(lc)


_Handler = Callable[["H2ServerConnection", Any], None]


class H2ServerConnection(H2Conn):
    """One client connection speaking HTTP/2 (prior knowledge, after ``Upgrade: h2c``, or
    negotiated by ALPN)."""

    streams: dict[int, H2ServerStream]

    def __init__(self, server: "HttpServer", settings: H2Settings,
                 upgrade: Optional[tuple[Any, bytes, list[bytes]]] = None, registered: bool = False) -> None:
        self.server = server
        self.settings = settings
        self.clear_context = server.clear_context
        #: (request head, HTTP2-Settings value, body pieces) of an ``Upgrade: h2c`` request
        self.upgrade = upgrade
        #: the sniffer that handed this connection over already counted it
        self.registered = registered
        self.draining = False
        self.last_sid = 0
        self.peer = "-"
        #: (ip, port) of the client: the remote endpoint of server spans
        self.remote: Optional[tuple[str, int]] = None
        #: the ``x-forwarded-client-cert`` value of the verified client certificate (TLS,
        #: when this server or a client forwards it), read once per connection
        self.client_cert: Optional[bytes] = None
        #: serverSession limits (sessions.py): the watch, reads seen, and since when quiet
        self.sessions: Any = None
        self.watch: Any = None
        self.activity = 0
        self.seen_activity = 0
        self.born = 0.0
        self.quiet_since = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.start(transport, client_side=False, socket_options=self.server.socket_options)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "-"
        self.remote = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
        if self.server.collect_client_cert:
            self.client_cert = client_cert_of(transport)
        refusal: Optional[str] = None
        if self.registered:
            self.server.conns.add(self)
        else:
            refusal = self.server.connection_made(self)
        sessions = self.sessions = self.server.sessions
        self.born = self.quiet_since = _now()
        if refusal is None:
            self.watch = sessions.watch(self, self.born + _first_wait(sessions))
        BATCH.enter()
        try:
            up = self.upgrade
            if up is None:
                self.h2.initiate_connection()
            else:
                self.h2.initiate_upgrade_connection(up[1])
            self.open_connection_window()
            self.kick()
            if refusal is not None:  # over the limits of sessions.py: say why in the GOAWAY
                log.info("refusing an h2 connection from %s: %s", self.peer, refusal)
                self.h2.close_connection(error_code=ErrorCodes.REFUSED_STREAM,
                                         additional_data=refusal.encode("utf-8", "replace")[:256])
                self.draining = True
                self.close()
                return
            if up is not None:
                self.upgrade = None
                self._upgraded(up[0], up[2])
        finally:
            BATCH.leave()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.activity += 1
        self.feed(data)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self.transport = None
        for st in list(self.streams.values()):
            st.on_reset()
        self.streams.clear()
        w = self.watch
        if w is not None:
            self.watch = None
            w.cancel()
        self.server.connection_lost(self)

    def session_check(self, now: float) -> Optional[float]:
        """serverSession limits (sessions.ConnectionWatch): a connection without streams
        that sent nothing for ``idleTimeMs`` is closed (GOAWAY first); one older than
        ``lifeTimeMs`` is drained (GOAWAY, open streams finish). When to look again."""
        if self.closed:
            return None
        s = self.sessions
        if self.activity != self.seen_activity:
            self.seen_activity = self.activity
            self.quiet_since = now
        nxt = math.inf
        life, idle = s.life_s, s.idle_s
        if life is not None and not self.draining:
            end = self.born + life
            if now >= end:
                s.expired_life.value += 1
                self.shutdown()
                if self.closed:
                    return None
            else:
                nxt = end
        if idle is not None:
            if not self.streams and now - self.quiet_since >= idle:
                s.expired_idle.value += 1
                self.close()
                return None
            nxt = min(nxt, now + idle / 2)
        period = s.socket_period()
        if period is not None:  # socketOptions.readTimeoutMs / writeTimeoutMs
            if s.socket_check(now, self.quiet_since, 0.0) is not None:
                self.close()
                return None
            nxt = min(nxt, now + period)
        if nxt == math.inf:
            return None if self.draining else now + 60.0
        return nxt

    def eof_received(self) -> Optional[bool]:
        return None

    # --- events -------------------------------------------------------------------------------
    def _on_request(self, ev: RequestReceived) -> None:
        sid = ev.stream_id
        if self.draining:
            reset(self, sid, ErrorCodes.REFUSED_STREAM)  # after our GOAWAY: retry elsewhere
            return
        self.last_sid = sid
        try:
            head = parse_request(ev.headers, self.clear_context, ev.stream_ended is not None)
        except BadRequest as e:
            self._refuse(sid, ev, e)
            return
        self._begin(sid, head, ev.stream_ended is not None)

    def _begin(self, sid: int, head: H2RequestHead, ended: bool) -> H2ServerStream:
        if self.client_cert is not None:
            head.client_cert = self.client_cert
        st = H2ServerStream(self, sid, head)
        self.streams[sid] = st
        lc = Lifecycle(st, self.server, head)
        adds = self.server.added_headers
        if adds is not None:  # timestampHeader, addForwardedHeader (forwarded.py)
            lc.added = adds.fields(head, self)
        st.lc = lc
        if ended:
            st.remote_ended = True
            st.req_done_t = st.t0
            lc.request_end()
        lc.start()
        return st

    def _refuse(self, sid: int, ev: RequestReceived, err: RouterError) -> None:
        """A request the router cannot even read: answered without a lifecycle."""
        head = H2RequestHead()
        head.fwd = []
        head.grpc = any(n == b"content-type" and v[:16] == b"application/grpc" for n, v in ev.headers)
        st = H2ServerStream(self, sid, head)
        self.streams[sid] = st
        st.remote_ended = ev.stream_ended is not None
        self.server.record_refused(400)
        st.reset_after = True
        st.answer_error(err)
        if st.pending is None and not st.remote_ended:
            st._stop_request()
        if st.local_ended and st.remote_ended:
            self.forget(st)

    def _on_data(self, ev: DataReceived) -> None:
        st = self.streams.get(ev.stream_id)
        if st is None:
            self.consumed(None, ev.flow_controlled_length)
            return
        st.on_data(ev.data, ev.flow_controlled_length)

    def _on_trailers(self, ev: TrailersReceived) -> None:
        st = self.streams.get(ev.stream_id)
        if st is not None and st.lc is not None:
            st.lc.request_trailers(list(ev.headers))

    def _on_end(self, ev: StreamEnded) -> None:
        st = self.streams.get(ev.stream_id)
        if st is not None:
            st.on_end()

    def _on_reset(self, ev: StreamReset) -> None:
        st = self.streams.pop(ev.stream_id, None)
        if st is not None:
            st.on_reset()
        self._maybe_done()

    def _on_window(self, ev: WindowUpdated) -> None:
        if ev.stream_id == 0:
            self.drain_streams()
        else:
            st = self.streams.get(ev.stream_id)
            if st is not None and st.pending is not None:
                st.drain()

    def _on_settings(self, ev: RemoteSettingsChanged) -> None:
        if _INITIAL_WINDOW in ev.changed_settings:
            self.drain_streams()

    def _on_goaway(self, ev: ConnectionTerminated) -> None:
        """The client will open no more streams; those open finish."""
        self.draining = True
        self._maybe_done()

    def _upgraded(self, head: Any, body: list[bytes]) -> None:
        """``Upgrade: h2c``: the HTTP/1.1 request is stream 1 (half-closed remote)."""
        from .heads import parse_request as _parse

        try:
            h2head = _parse(upgrade_headers(head), self.clear_context, True)
        except BadRequest as e:
            st = H2ServerStream(self, 1, H2RequestHead())
            st.head.fwd = []
            st.remote_ended = True
            self.streams[1] = st
            self.server.record_refused(400)
            st.answer_error(e)
            return
        self.last_sid = 1
        if body:
            # the body came over HTTP/1.1 (buffered, bounded by the sniffer)
            h2head.chunked = False
            h2head.content_length = sum(len(b) for b in body)
        st = H2ServerStream(self, 1, h2head)
        self.streams[1] = st
        lc = Lifecycle(st, self.server, h2head)
        st.lc = lc
        for b in body:
            lc.request_body(b)
        st.remote_ended = True
        lc.request_end()
        lc.start()

    # --- connection state ------------------------------------------------------------------------
    def forget(self, st: H2ServerStream) -> None:
        if self.streams.get(st.sid) is st:
            del self.streams[st.sid]
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.draining and not self.streams and not self.closed:
            self.close()

    def protocol_error(self, e: ProtocolError) -> None:
        """The peer broke the protocol: GOAWAY with the error code (``h2`` queued it, except
        for a damaged preface) and close this connection — only this one."""
        log.debug("h2 connection from %s: protocol error: %s", self.peer, e)
        if self.h2.state_machine.state is not ConnectionState.CLOSED:
            try:
                self.h2.close_connection(error_code=getattr(e, "error_code", None) or ErrorCodes.PROTOCOL_ERROR)
            except ProtocolError:
                pass
        self.draining = True  # no second GOAWAY from close()
        self.close()

    def shutdown(self) -> None:
        """Graceful close: GOAWAY, finish the open streams, then close."""
        if self.draining or self.closed:
            if not self.streams:
                self.close()
            return
        self.draining = True
        self.send_goaway(self.last_sid)
        self._maybe_done()

    def close(self, abort: bool = False) -> None:
        if self.closed:
            if abort and self.transport is not None:
                self.transport.abort()
            return
        self.closed = True
        t = self.transport
        if t is None:
            return
        if abort:
            t.abort()
            return
        if not self.draining:
            try:
                self.h2.close_connection()
            except ProtocolError:
                pass
        self.flush()
        t.close()

    @property
    def idle(self) -> bool:
        return not self.streams


def _first_wait(sessions: Any) -> float:
    """How long after its start an HTTP/2 connection is first checked (a head-read limit
    does not apply: ``h2`` bounds header blocks by ``maxHeaderListBytes``)."""
    limits = [x for x in (sessions.idle_s, sessions.life_s, sessions.read_s) if x is not None]
    return min(limits) if limits else 60.0


_HANDLERS: dict[type, _Handler] = {
    RequestReceived: H2ServerConnection._on_request,
    DataReceived: H2ServerConnection._on_data,
    TrailersReceived: H2ServerConnection._on_trailers,
    StreamEnded: H2ServerConnection._on_end,
    StreamReset: H2ServerConnection._on_reset,
    WindowUpdated: H2ServerConnection._on_window,
    RemoteSettingsChanged: H2ServerConnection._on_settings,
    ConnectionTerminated: H2ServerConnection._on_goaway,
}
H2ServerConnection.handlers = _HANDLERS


def upgrade_headers(head: Any) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header list of an HTTP/1.1 ``Upgrade: h2c`` request (RFC 7540 §3.2):
    its fields without the connection-specific ones, ``Host`` as ``:authority``."""
    out = [(b":method", head.method), (b":scheme", b"http"), (b":path", head.uri)]
    if head.host is not None:
        out.append((b":authority", head.host))
    for name, value in head.fields():
        ln = name.lower()
        if ln in (b"host", b"http2-settings", b"content-length"):
            continue
        out.append((ln, value))
    if head.via is not None:
        out.append((b"via", head.via))
    if head.dtab is not None:
        out.append((b"l5d-dtab", head.dtab))
    if head.dtab_ctx is not None:
        out.append((b"l5d-ctx-dtab", head.dtab_ctx))
    return out
