"""What both sides of an HTTP/2 connection share: settings, the ``h2`` connection object,
output batching, flow control in both directions, and draining after GOAWAY.

The ``h2`` package (python-hyper, sans-IO) does the framing, HPACK, stream states and
the peer's protocol errors; this module drives it from an asyncio protocol:

- **Output.** ``h2`` collects frames; :meth:`H2Conn.kick` joins the loop's write batch
  (``batch.py``), so all the frames one read produced leave in one ``send``.
- **Inbound flow control.** ``h2`` never opens a window by itself here
  (``acknowledge_received_data`` is not used). Bytes received on a stream are
  *consumed* when the other side of the proxy took them (or they were dropped);
  :meth:`H2Conn.consumed` then opens the stream's and the connection's windows once
  the open part fell to ``windowUpdateRatio`` of the window (Linkerd's rule). A stream
  whose bytes cannot go on yet is paused: its bytes are not consumed, so the peer
  stops at the window — what a stream buffers here is bounded by
  ``initialStreamWindowBytes``, what a connection buffers by its connection window.
- **Outbound flow control.** :class:`Sender` writes DATA within the peer's windows and
  frame size and keeps the rest (and the trailers or the end behind it) until a
  WINDOW_UPDATE; while it keeps something, the stream feeding it is paused.
- **Draining.** ``h2``'s connection state machine treats GOAWAY as the end of the
  connection: after one is sent or received it refuses every frame, so streams the
  GOAWAY lets finish could not. :class:`DrainingStateMachine` keeps the per-stream
  rules of ``h2`` and only lets frames of existing streams through after GOAWAY
  (``h2`` still refuses new streams on the side that must not open any). Our own
  graceful GOAWAY is serialized with ``hyperframe`` (``h2``'s framing layer) and
  written beside ``h2``'s output, so ``h2`` keeps serving the open streams.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

from h2.config import H2Configuration
from h2.connection import ConnectionInputs, ConnectionState, H2Connection, H2ConnectionStateMachine
from h2.exceptions import FlowControlError, ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from ..batch import BATCH
from ..transport import set_nodelay

#: defaults (Linkerd's and netty's)
DEFAULT_WINDOW = 65535
DEFAULT_RATIO = 0.99
DEFAULT_MAX_FRAME = 16384
DEFAULT_HEADER_TABLE = 4096
DEFAULT_MAX_HEADER_LIST = 8192
DEFAULT_MAX_STREAMS = 1000
#: the connection window: this many stream windows, at most CONN_WINDOW_MAX
CONN_WINDOW_STREAMS = 16
CONN_WINDOW_MAX = 16 * 1024 * 1024
#: streams a client connection opens at most before the server's SETTINGS says its limit
CLIENT_STREAMS_CAP = 1000

_STREAM_ERRORS = (StreamClosedError, ProtocolError, KeyError, ValueError)


class DrainingStateMachine(H2ConnectionStateMachine):
    """``h2``'s connection state machine, except that after GOAWAY (state CLOSED) frames of
    existing streams still pass (see the module docstring). Stream-level rules are
    ``h2``'s own, unchanged."""

    _transitions = dict(H2ConnectionStateMachine._transitions)
    for _input in ConnectionInputs:
        _transitions.setdefault((ConnectionState.CLOSED, _input), (None, ConnectionState.CLOSED))
    del _input


class H2Settings:
    """One side's HTTP/2 settings (Linkerd's keys), read once from a config block."""

    __slots__ = ("window", "ratio", "max_frame", "header_table", "max_header_list", "max_streams", "conn_window",
                 "stream_threshold", "conn_threshold")

    def __init__(self, window: Optional[int] = None, ratio: Optional[float] = None,
                 max_frame: Optional[int] = None, header_table: Optional[int] = None,
                 max_header_list: Optional[int] = None, max_streams: Optional[int] = None) -> None:
        self.window: int = window or DEFAULT_WINDOW
        self.ratio: float = ratio or DEFAULT_RATIO
        self.max_frame: int = max_frame or DEFAULT_MAX_FRAME
        self.header_table: int = DEFAULT_HEADER_TABLE if header_table is None else header_table
        self.max_header_list: int = max_header_list or DEFAULT_MAX_HEADER_LIST
        self.max_streams: int = max_streams or DEFAULT_MAX_STREAMS
        self.conn_window = max(DEFAULT_WINDOW, min(self.window * CONN_WINDOW_STREAMS, CONN_WINDOW_MAX))
        # a window is opened again once its open part is at most ratio × its size
        self.stream_threshold = max(1, int(self.window * (1.0 - self.ratio)))
        self.conn_threshold = max(1, int(self.conn_window * (1.0 - self.ratio)))

    @classmethod
    def of_server(cls, cfg: Any) -> "H2Settings":
        """A server's settings (a validated ``H2ServerConfig``)."""
        return cls(cfg.initialStreamWindowBytes, cfg.windowUpdateRatio, cfg.maxFrameBytes, cfg.headerTableBytes,
                   cfg.maxHeaderListBytes or cfg.maxHeaderListByts, cfg.maxConcurrentStreamsPerConnection)

    @classmethod
    def of_client(cls, keys: dict[str, Any]) -> "H2Settings":
        """A client's settings (the merged keys of its ``client`` configs)."""
        get = keys.get
        return cls(get("initialStreamWindowBytes"), get("windowUpdateRatio"), get("maxFrameBytes"),
                   get("headerTableBytes"), get("maxHeaderListBytes") or get("maxHeaderListByts"))

    def connection(self, client_side: bool) -> H2Connection:
        """A new ``h2`` connection with these settings as its initial local settings."""
        # Received header lists are validated (names lower case, pseudo-headers, no
        # connection-specific fields); they are not normalized (cookie crumbs stay apart,
        # as they may in HTTP/2). Ours are built valid and lower case, so h2 does not
        # check them again.
        config = H2Configuration(client_side=client_side, header_encoding=None, validate_inbound_headers=True,
                                 normalize_inbound_headers=False, validate_outbound_headers=False,
                                 normalize_outbound_headers=False)
        h2 = H2Connection(config)
        values = {
            SettingCodes.HEADER_TABLE_SIZE: self.header_table,
            SettingCodes.INITIAL_WINDOW_SIZE: self.window,
            SettingCodes.MAX_FRAME_SIZE: self.max_frame,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.max_header_list,
        }
        if client_side:
            values[SettingCodes.ENABLE_PUSH] = 0
            values[SettingCodes.MAX_CONCURRENT_STREAMS] = 0  # a backend may not open streams to us
        else:
            values[SettingCodes.MAX_CONCURRENT_STREAMS] = self.max_streams
        # Our settings apply from the first frame (h2 would otherwise enforce its defaults
        # until the peer acknowledges them): the limits that bound memory hold at once.
        h2.local_settings = Settings(client=client_side, initial_values=values)
        h2.max_inbound_frame_size = self.max_frame
        h2.decoder.max_header_list_size = self.max_header_list
        h2.decoder.max_allowed_table_size = self.header_table
        h2.state_machine = DrainingStateMachine()
        return h2


class H2Conn(asyncio.Protocol):
    """Base of the server and client HTTP/2 connection protocols."""

    h2: H2Connection
    transport: Any = None
    #: queued in the loop's write batch
    queued = False
    #: the transport's buffer is full (pause_writing): streams keep their output
    write_paused = False
    closed = False
    settings: H2Settings
    conn_unacked = 0
    #: streams by id
    streams: dict[int, Any]

    def start(self, transport: asyncio.BaseTransport, client_side: bool, socket_options: Any = None) -> None:
        self.transport = transport
        set_nodelay(transport, socket_options)
        self.streams = {}
        self.h2 = self.settings.connection(client_side)

    #: event type -> the subclass's handler (its module's ``_HANDLERS``)
    handlers: dict[type, Callable[[Any, Any], None]]

    def feed(self, data: bytes) -> None:
        """Bytes from the peer: ``h2``'s events, each to its handler, in one write batch;
        a protocol violation goes to :meth:`protocol_error`."""
        BATCH.enter()
        try:
            try:
                events = self.h2.receive_data(data)
            except ProtocolError as e:
                self.protocol_error(e)
                return
            handlers = self.handlers
            for ev in events:
                h = handlers.get(type(ev))
                if h is not None:
                    h(self, ev)
        finally:
            BATCH.leave()

    def protocol_error(self, e: ProtocolError) -> None:
        raise NotImplementedError

    def open_connection_window(self) -> None:
        extra = self.settings.conn_window - DEFAULT_WINDOW
        if extra > 0:
            self.h2.increment_flow_control_window(extra)

    # --- output ----------------------------------------------------------------------
    def kick(self) -> None:
        """``h2`` has frames to send: send them at the end of this read (or now)."""
        if self.queued:
            return
        if BATCH.depth:
            self.queued = True
            BATCH.others.append(self)
        else:
            self.flush()

    def flush(self) -> None:
        self.queued = False
        data = self.h2.data_to_send()
        t = self.transport
        if data and t is not None:
            t.write(data)

    def send_goaway(self, last_stream_id: int, error_code: int = 0) -> None:
        """A GOAWAY that leaves ``h2`` serving the open streams (see the module docstring)."""
        self.flush()
        t = self.transport
        if t is not None:
            t.write(GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code).serialize())

    # --- inbound flow control -----------------------------------------------------------
    def consumed(self, st: Any, n: int) -> None:
        """``n`` flow-controlled bytes received on stream ``st`` (None: a stream we no
        longer track) were taken or dropped: open the windows again when due."""
        if not n:
            return
        s = self.settings
        self.conn_unacked += n
        if self.conn_unacked >= s.conn_threshold:
            try:
                self.h2.increment_flow_control_window(self.conn_unacked)
            except (ProtocolError, ValueError):
                return
            self.conn_unacked = 0
            self.kick()
        if st is not None and not st.remote_ended:
            st.unacked += n
            if st.unacked >= s.stream_threshold:
                try:
                    self.h2.increment_flow_control_window(st.unacked, st.sid)
                except _STREAM_ERRORS:
                    pass
                st.unacked = 0
                self.kick()

    # --- outbound flow control -----------------------------------------------------------
    def push_data(self, sid: int, data: bytes, end: bool) -> bytes:
        """Send what the windows allow of ``data`` (the last frame ends the stream when
        ``end`` and all of it went); returns what is left."""
        h2 = self.h2
        view = memoryview(data)
        try:
            while view:
                window = h2.local_flow_control_window(sid)
                if window <= 0:
                    break
                n = min(len(view), window, h2.max_outbound_frame_size)
                last = n == len(view)
                h2.send_data(sid, data if n == len(data) else view[:n], end_stream=end and last)  # no copy when whole
                view = view[n:]
        except _STREAM_ERRORS:
            return b""  # the stream is gone (reset): nothing more goes out on it
        finally:
            self.kick()
        return bytes(view) if view else b""

    def drain_streams(self) -> None:
        """Windows opened (or the transport can take more): streams send what they kept."""
        for st in list(self.streams.values()):
            if st.pending is not None:
                st.drain()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.drain_streams()


class Sender:
    """The sending half of a stream: DATA within the windows, the rest kept in order with
    the trailers or end behind it (see the module docstring)."""

    conn: H2Conn
    sid = 0
    #: kept DATA (None when nothing is kept)
    pending: Optional[list[bytes]] = None
    #: what ends the stream after the kept DATA: True (END_STREAM), trailers, or None
    pending_end: Any = None
    local_ended = False
    remote_ended = False
    unacked = 0

    def send_data(self, data: bytes) -> None:
        if self.local_ended or not data:
            return
        if self.pending is not None:
            self.pending.append(data)
            return
        conn = self.conn
        if conn.write_paused:
            self.pending = [data]
            self.blocked()
            return
        rest = conn.push_data(self.sid, data, False)
        if rest:
            self.pending = [rest]
            self.blocked()

    def send_end(self, trailers: Optional[list[tuple[bytes, bytes]]] = None) -> None:
        """End the stream (with trailers when given) after what is kept."""
        if self.local_ended:
            return
        if self.pending is not None:
            self.pending_end = trailers if trailers else True
            return
        self._end_now(trailers)

    def _end_now(self, trailers: Optional[list[tuple[bytes, bytes]]]) -> None:
        self.local_ended = True
        conn = self.conn
        try:
            if trailers:
                conn.h2.send_headers(self.sid, trailers, end_stream=True)
            else:
                conn.h2.end_stream(self.sid)
        except _STREAM_ERRORS:
            pass
        conn.kick()
        self.ended_locally()

    def drain(self) -> None:
        pending = self.pending
        if pending is None:
            return
        conn = self.conn
        while pending:
            if conn.write_paused:
                return
            last = len(pending) == 1 and self.pending_end is True
            rest = conn.push_data(self.sid, pending[0], last)
            if rest:
                pending[0] = rest
                return
            pending.pop(0)
            if last:
                self.pending = None
                self.pending_end = None
                self.local_ended = True
                self.ended_locally()
                self.unblocked()
                return
        self.pending = None
        end, self.pending_end = self.pending_end, None
        if end is not None:
            self._end_now(None if end is True else end)
        self.unblocked()

    def drop_pending(self) -> None:
        self.pending = None
        self.pending_end = None

    # --- hooks ---------------------------------------------------------------------------
    def blocked(self) -> None:
        """Output is kept: pause what feeds this stream."""

    def unblocked(self) -> None:
        """Nothing is kept any more: resume what feeds this stream."""

    def ended_locally(self) -> None:
        """Our side of the stream is closed."""


def reset(conn: H2Conn, sid: int, code: int) -> None:
    """RST_STREAM, unless the stream is already closed."""
    try:
        conn.h2.reset_stream(sid, code)
    except _STREAM_ERRORS:
        return
    conn.kick()


__all__ = ["H2Conn", "H2Settings", "Sender", "DrainingStateMachine", "reset", "FlowControlError"]
