"""HTTP/2 upstream connections: streams multiplexed over few connections per endpoint.

The request lifecycle and the endpoint pools (``pool.py``) deal in *connections* that
carry one exchange at a time and go back to an idle list afterwards. Here such a
"connection" is an :class:`H2Slot`: the right to one stream on an
:class:`H2ClientSession` (one TCP connection). A session hands out as many slots as
the backend's SETTINGS_MAX_CONCURRENT_STREAMS allows; a released slot goes back to the
endpoint's idle list and carries the next request on a new stream of the same
connection, so the common case is synchronous (no task, no connect). When every slot
of every session is busy, :class:`H2Connector` opens another session; requests
arriving while one is being opened wait for it instead of opening their own.

Prior knowledge (h2c) for plaintext backends (Linkerd's plaintext h2 clients do the
same); with TLS, ALPN "h2" (the connector's ``ssl`` context).

Backend trouble stays with the streams it concerns: a RST_STREAM fails that request
(REFUSED_STREAM: it never reached the application, so the lifecycle may send it again);
a GOAWAY fails only the streams above its last stream id and lets the others finish,
while the session takes no new streams and closes when they are done.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, InformationalResponseReceived, RemoteSettingsChanged, ResponseReceived,
    StreamEnded, StreamReset, TrailersReceived, WindowUpdated,
)
from h2.exceptions import ProtocolError

from ...dtab.path import Path
from ...tls import ClientTlsParams
from ..transport import CONNECT_TIMEOUT_S, Connector
from .conn import CLIENT_STREAMS_CAP, H2Conn, H2Settings, Sender, reset
from .heads import parse_response, request_headers

if TYPE_CHECKING:  # pragma: no cover
    from ..lifecycle import Lifecycle
    from ..pool import Endpoint
    from ..routing import RouteTable

log = logging.getLogger("namerouter.proxy.h2")
_INITIAL_WINDOW = 0x4
_MAX_STREAMS = 0x3


class NotHttp2(ConnectionError):
    """A TLS backend did not negotiate ``h2`` by ALPN."""


class StreamRefused(ConnectionError):
    """The backend refused the stream (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last
    stream id): it was not processed."""


class H2Slot(Sender):
    """One stream's worth of a session, as the pool and the lifecycle see a connection."""

    def __init__(self, session: "H2ClientSession") -> None:
        self.session = session
        self.conn = session
        self.endpoint = session.endpoint
        self.lc: Optional["Lifecycle"] = None
        self.reused = False
        self.got_bytes = False
        self.idle_since = 0.0
        self.dead = False
        self.paused = False
        self.deferred = 0
        #: the error code of a backend reset of the current stream
        self.reset_code: Optional[int] = None

    @property
    def closed(self) -> bool:
        return self.dead or self.session.closing

    @property
    def transport(self) -> Any:
        """The session's transport (what ``protected.py`` looks at after a connect)."""
        return self.session.transport

    def abort_connection(self) -> None:
        """Give up the whole session (it reached a protected address: never to be used)."""
        self.close()
        self.session.close()

    # --- the upstream interface (called by the lifecycle) ---------------------------------
    def send_request(self, lc: "Lifecycle", body: Optional[list[bytes]]) -> None:
        session = self.session
        h2 = session.h2
        self.lc = lc
        self.pending = None
        self.pending_end = None
        self.local_ended = self.remote_ended = False
        self.unacked = self.deferred = 0
        self.reset_code = None
        self.got_bytes = False
        head = lc.head
        leaf = lc.leaf
        client = leaf.client  # type: ignore[union-attr]
        cert = head.client_cert
        if cert is not None and not (lc.server.forward_client_cert or client.forward_client_cert):
            cert = None
        headers = request_headers(head, lc.uri, client.authority, session.default_authority,
                                  leaf.dst, lc.trace_block, lc.deadline, cert)  # type: ignore[union-attr]
        if lc.added is not None:  # timestampHeader, forwarded (forwarded.py)
            headers += lc.added
        trailers = head.trailers
        end = lc.upload_complete and not body and not trailers
        try:
            sid = h2.get_next_available_stream_id()
            h2.send_headers(sid, headers, end_stream=end)
        except ProtocolError as e:  # e.g. the backend lowered its stream limit meanwhile
            session.kick()
            self.dead = True
            asyncio.get_running_loop().call_soon(lc.upstream_lost, self, StreamRefused(str(e)))
            return
        self.sid = sid
        session.streams[sid] = self
        session.kick()
        if end:
            self.local_ended = True
            return
        if body:
            for c in body:
                self.send_data(c)
        if lc.upload_complete:
            self.send_end(trailers)

    def send_body(self, data: bytes) -> None:
        self.send_data(data)

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.send_end(fields)

    def end_body(self) -> None:
        self.send_end(self.lc.head.trailers if self.lc is not None else None)

    def pause_reading(self) -> None:
        """The client cannot take the response faster: stop opening this stream's window."""
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            n, self.deferred = self.deferred, 0
            if n and self.sid:
                self.session.consumed(self, n)

    def close(self) -> None:
        """Done with this slot: an unfinished stream is cancelled, the slot is given back."""
        if self.sid and not (self.local_ended and self.remote_ended):
            self._cancel(ErrorCodes.CANCEL)
        self.lc = None
        if not self.dead:
            self.dead = True
            self.session.slot_closed()

    def abort(self) -> None:
        self.close()

    def _cancel(self, code: int) -> None:
        self.drop_pending()
        sid = self.sid
        self.local_ended = self.remote_ended = True
        reset(self.session, sid, code)
        self.session.stream_done(self)

    # --- Sender hooks ------------------------------------------------------------------------
    def blocked(self) -> None:
        lc = self.lc
        if lc is not None:
            lc.down.pause_request_body(self)

    def unblocked(self) -> None:
        lc = self.lc
        if lc is not None:
            lc.down.resume_request_body(self)

    def ended_locally(self) -> None:
        if self.remote_ended:
            self.session.stream_done(self)

    # --- from the session -------------------------------------------------------------------
    def on_response(self, ev: ResponseReceived) -> None:
        self.got_bytes = True
        lc = self.lc
        if lc is None:
            return
        try:
            resp = parse_response(ev.headers, ev.stream_ended is not None)
        except ValueError as e:
            self._cancel(ErrorCodes.PROTOCOL_ERROR)
            lc.upstream_broken(self, f"malformed response from {self.endpoint.label}: {e}")
            return
        lc.response_head(resp)

    def on_data(self, data: bytes, flow: int) -> None:
        lc = self.lc
        if lc is not None:
            lc.response_body(data)
        if self.paused:
            self.deferred += flow
        else:
            self.session.consumed(self, flow)

    def on_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        lc = self.lc
        if lc is not None:
            lc.response_trailers(headers)

    def on_end(self) -> None:
        self.remote_ended = True
        lc = self.lc
        done = self.local_ended and self.pending is None
        if done:
            self.session.stream_done(self)
        if lc is not None:
            lc.response_end(done and not self.dead)

    def on_reset(self, code: int) -> None:
        self.reset_code = code
        self.drop_pending()
        self.local_ended = self.remote_ended = True
        self.session.stream_done(self)
        lc = self.lc
        if lc is None:
            return
        name = _code_name(code)
        if code == ErrorCodes.REFUSED_STREAM:
            # not processed by the backend: the lifecycle may send it again
            lc.upstream_lost(self, StreamRefused(f"stream refused (RST_STREAM REFUSED_STREAM)"))
            return
        down = lc.down
        if hasattr(down, "abort_code"):
            down.abort_code = code  # a reset mid-response reaches the client with the backend's code
        lc.upstream_broken(self, f"{self.endpoint.label} reset the stream (RST_STREAM {name})")

    def on_lost(self, exc: Optional[BaseException]) -> None:
        self.drop_pending()
        lc = self.lc
        if lc is not None:
            lc.upstream_lost(self, exc)


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


_Handler = Callable[["H2ClientSession", Any], None]


class H2ClientSession(H2Conn):
    """One HTTP/2 connection to a backend endpoint."""

    def __init__(self, endpoint: "Endpoint", connector: "H2Connector") -> None:
        self.endpoint = endpoint
        self.connector = connector
        self.settings = connector.settings
        self.default_authority = endpoint.label.encode()
        #: slots handed out (idle in the pool or carrying a stream)
        self.slots = 0
        #: the backend's stream limit (from its SETTINGS)
        self.capacity = 0
        self.closing = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- slots -------------------------------------------------------------------------------
    def new_slot(self) -> Optional[H2Slot]:
        if self.closing or self.closed or self.slots >= self.capacity:
            return None
        self.slots += 1
        return H2Slot(self)

    def slot_closed(self) -> None:
        self.slots -= 1
        if self.slots <= 0 and (self.closing or self.endpoint.retired):
            self.close()

    def stream_done(self, slot: H2Slot) -> None:
        if self.streams.get(slot.sid) is slot:
            del self.streams[slot.sid]
        if self.closing and not self.streams:
            self.close()

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.start(transport, client_side=True, socket_options=self.endpoint.stage.socket_options)
        self.endpoint.conn_opened()
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            alpn = ssl_object.selected_alpn_protocol()
            if alpn != "h2":  # TLS without HTTP/2: the backend cannot take our streams
                self.ready.set_exception(NotHttp2(
                    f"{self.endpoint.label} did not choose HTTP/2 over TLS (ALPN: {alpn or 'none'})"))
                self.ready.exception()
                self.closed = True
                transport.close()
                return
        self.h2.initiate_connection()
        self.open_connection_window()
        self.flush()

    def data_received(self, data: bytes) -> None:
        if not self.closed:
            self.feed(data)

    def protocol_error(self, e: ProtocolError) -> None:
        self._broken(f"protocol error from {self.endpoint.label}: {e}")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self.closing = True
        self.transport = None
        self.endpoint.conn_lost()
        self.connector.forget(self)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.endpoint.label} closed the connection"))
            self.ready.exception()  # retrieved: a waiter may not exist
        streams, self.streams = self.streams, {}
        for slot in streams.values():
            slot.on_lost(exc)

    def eof_received(self) -> Optional[bool]:
        return False

    # --- events ----------------------------------------------------------------------------------
    def _slot(self, sid: int) -> Optional[H2Slot]:
        return self.streams.get(sid)

    def _on_response(self, ev: ResponseReceived) -> None:
        s = self.streams.get(ev.stream_id)
        if s is not None:
            s.on_response(ev)

    def _on_interim(self, ev: InformationalResponseReceived) -> None:
        s = self.streams.get(ev.stream_id)
        if s is not None and s.lc is not None:
            status = next((int(v) for n, v in ev.headers if n == b":status"), 100)
            s.lc.response_interim(status, b"")

    def _on_data(self, ev: DataReceived) -> None:
        s = self.streams.get(ev.stream_id)
        if s is None:
            self.consumed(None, ev.flow_controlled_length)
            return
        s.on_data(ev.data, ev.flow_controlled_length)

    def _on_trailers(self, ev: TrailersReceived) -> None:
        s = self.streams.get(ev.stream_id)
        if s is not None:
            s.on_trailers(list(ev.headers))

    def _on_end(self, ev: StreamEnded) -> None:
        s = self.streams.get(ev.stream_id)
        if s is not None:
            s.on_end()

    def _on_reset(self, ev: StreamReset) -> None:
        s = self.streams.get(ev.stream_id)
        if s is not None:
            s.on_reset(ev.error_code)

    def _on_window(self, ev: WindowUpdated) -> None:
        if ev.stream_id == 0:
            self.drain_streams()
        else:
            s = self.streams.get(ev.stream_id)
            if s is not None and s.pending is not None:
                s.drain()

    def _on_settings(self, ev: RemoteSettingsChanged) -> None:
        if _MAX_STREAMS in ev.changed_settings or not self.ready.done():
            limit = self.h2.remote_settings.max_concurrent_streams
            self.capacity = min(limit, CLIENT_STREAMS_CAP)
        if _INITIAL_WINDOW in ev.changed_settings:
            self.drain_streams()
        if not self.ready.done():
            self.ready.set_result(None)

    def _on_goaway(self, ev: ConnectionTerminated) -> None:
        """The backend takes no new streams; streams up to ``last_stream_id`` finish."""
        self.closing = True
        last = ev.last_stream_id if ev.last_stream_id is not None else 0
        code = _code_name(ev.error_code) if ev.error_code is not None else "NO_ERROR"
        for sid, slot in sorted(self.streams.items()):
            if sid > last:
                del self.streams[sid]
                slot.local_ended = slot.remote_ended = True
                slot.reset_code = ErrorCodes.REFUSED_STREAM  # not processed: as safe to resend as a refusal
                slot.drop_pending()
                lc = slot.lc
                if lc is not None:
                    lc.upstream_lost(slot, StreamRefused(f"{self.endpoint.label} sent GOAWAY ({code}) before "
                                                         f"processing the stream"))
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.endpoint.label} sent GOAWAY ({code})"))
            self.ready.exception()
        if not self.streams:
            self.close()

    def _broken(self, message: str) -> None:
        """The backend broke the protocol: every stream of this connection fails."""
        log.info("h2 connection to %s: %s", self.endpoint.label, message)
        streams, self.streams = self.streams, {}
        self.closing = True
        for slot in streams.values():
            slot.drop_pending()
            if slot.lc is not None:
                slot.lc.upstream_broken(slot, message)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.closing = True
        t = self.transport
        if t is not None:
            try:
                self.h2.close_connection()
            except ProtocolError:
                pass
            self.flush()
            t.close()


_HANDLERS: dict[type, _Handler] = {
    ResponseReceived: H2ClientSession._on_response,
    InformationalResponseReceived: H2ClientSession._on_interim,
    DataReceived: H2ClientSession._on_data,
    TrailersReceived: H2ClientSession._on_trailers,
    StreamEnded: H2ClientSession._on_end,
    StreamReset: H2ClientSession._on_reset,
    WindowUpdated: H2ClientSession._on_window,
    RemoteSettingsChanged: H2ClientSession._on_settings,
    ConnectionTerminated: H2ClientSession._on_goaway,
}
H2ClientSession.handlers = _HANDLERS


class H2Connector(Connector):
    """Opens HTTP/2 sessions for one client (bound id) and hands out their slots:
    prior knowledge (h2c) in plaintext; with ``tls`` (the client's ``ClientTlsParams``:
    the context of the moment, which offers ALPN ``h2``, and the checked server name) a
    TLS session on which the backend must have chosen ``h2``."""

    __slots__ = ("settings", "sessions", "opening")

    def __init__(self, settings: H2Settings, tls: Optional[ClientTlsParams] = None,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        super().__init__(tls, timeout_s)
        self.settings = settings
        #: open sessions per endpoint
        self.sessions: dict[Any, list[H2ClientSession]] = {}
        #: a session being opened per endpoint (others wait for it)
        self.opening: dict[Any, asyncio.Future[None]] = {}

    async def connect(self, endpoint: "Endpoint") -> Any:
        """A slot on a session of ``endpoint`` with room for a stream (a new session when
        none has room)."""
        while True:
            for s in self.sessions.get(endpoint, ()):
                slot = s.new_slot()
                if slot is not None:
                    return slot
            fut = self.opening.get(endpoint)
            if fut is not None:
                await asyncio.shield(fut)
                continue
            fut = asyncio.get_running_loop().create_future()
            self.opening[endpoint] = fut
            try:
                session = await self._open(endpoint)
            except BaseException as e:
                if not isinstance(e, asyncio.CancelledError):
                    fut.set_exception(e)
                    fut.exception()
                else:
                    fut.set_result(None)
                raise
            finally:
                del self.opening[endpoint]
                if not fut.done():
                    fut.set_result(None)
            self.sessions.setdefault(endpoint, []).append(session)

    async def _open(self, endpoint: "Endpoint") -> H2ClientSession:
        """A new session whose SETTINGS arrived (so its stream limit is known)."""
        loop = asyncio.get_running_loop()
        tls = self.tls

        async def attempt() -> H2ClientSession:
            if tls is None:
                _, proto = await loop.create_connection(
                    lambda: H2ClientSession(endpoint, self), endpoint.host, endpoint.port)
            else:
                _, proto = await loop.create_connection(
                    lambda: H2ClientSession(endpoint, self), endpoint.host, endpoint.port,
                    ssl=tls.context, server_hostname=tls.server_hostname or endpoint.host,
                    ssl_handshake_timeout=self.timeout_s)
            session: H2ClientSession = proto
            try:
                await session.ready
            except BaseException:
                session.close()
                raise
            return session

        task = loop.create_task(attempt())
        expired: list[bool] = []
        timer = endpoint.stage.table.wheel().after(self.timeout_s, _give_up, (task, expired))
        try:
            return await task
        except asyncio.CancelledError:
            if expired:
                raise asyncio.TimeoutError(f"no HTTP/2 connection after {self.timeout_s:g} s") from None
            raise
        except ConnectionError as e:
            raise OSError(str(e)) from None
        finally:
            timer.cancel()

    def forget(self, session: H2ClientSession) -> None:
        lst = self.sessions.get(session.endpoint)
        if lst is not None and session in lst:
            lst.remove(session)
            if not lst:
                del self.sessions[session.endpoint]


def _give_up(arg: tuple["asyncio.Task[Any]", list[bool]]) -> None:
    attempt, expired = arg
    if not attempt.done():
        expired.append(True)
        attempt.cancel()


def h2_connector(table: "RouteTable", client_id: Path, tls: Optional[ClientTlsParams]) -> H2Connector:
    """``RouteTable.connector_factory`` of an h2 router: one connector per client stage,
    with the HTTP/2 settings of the client configs matching its bound id and its TLS
    parameters (None: plaintext, prior knowledge)."""
    keys, _ = table.policies.clients.for_path(client_id)
    return H2Connector(H2Settings.of_client(keys), tls)
