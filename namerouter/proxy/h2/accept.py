"""How an h2 router's server takes a connection: which codec speaks on it.

:func:`h2_accept` and :func:`h2_connection` are the h2 router's codec factories of
``transport.py`` (``PLAIN_CODECS["h2"]`` and ``SERVER_CODECS["h2"]``):

- TLS: ALPN chose ``h2`` → HTTP/2 at once (:func:`h2_connection`:
  :class:`H2ServerConnection`); the router's TLS servers advertise ``h2`` only;
- plaintext, or TLS where the client negotiated nothing (:func:`h2_accept`): the first
  bytes tell. The HTTP/2 connection preface (anything starting
  ``PRI ``) → HTTP/2 with prior knowledge (gRPC, ``curl --http2-prior-knowledge``). An HTTP/1.1 request with
  ``Upgrade: h2c`` and ``HTTP2-Settings`` → ``101 Switching Protocols`` and HTTP/2, the
  request becoming stream 1 (RFC 7540 §3.2; its body, at most ``UPGRADE_BODY_LIMIT``,
  is read over HTTP/1.1 first). Any other HTTP/1.1 request is answered ``505`` with
  an explanation (an h2 router speaks HTTP/2 only, as Linkerd's).

What a connection may send before it is classified is bounded (``SNIFF_LIMIT``).
"""
from __future__ import annotations

import asyncio
import re
import weakref
from typing import TYPE_CHECKING, Any, Optional

import httptools

from ..errors import error_response
from ..h1.heads import FramingError, parse_request
from ..transport import set_nodelay
from .conn import H2Settings
from .server import H2ServerConnection

if TYPE_CHECKING:  # pragma: no cover
    from ..router import HttpServer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: the largest HTTP/1.1 head (plus upgrade body) read before deciding
SNIFF_LIMIT = 64 * 1024
#: the largest request body an ``Upgrade: h2c`` request may carry
UPGRADE_BODY_LIMIT = 64 * 1024
_SETTINGS = re.compile(rb"\r\nhttp2-settings[ \t]*:[ \t]*([^\r]*)", re.IGNORECASE)
_SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


#: each server's HTTP/2 settings, read once from its config block
_SETTINGS_OF: "weakref.WeakKeyDictionary[HttpServer, H2Settings]" = weakref.WeakKeyDictionary()


def server_settings(server: "HttpServer") -> H2Settings:
    s = _SETTINGS_OF.get(server)
    if s is None:
        s = _SETTINGS_OF[server] = H2Settings.of_server(server.config)
    return s


def h2_accept(server: "HttpServer") -> "H2Accept":
    """The codec of a plaintext connection (or TLS without ALPN): decides by the first bytes."""
    return H2Accept(server, server_settings(server))


def h2_connection(server: "HttpServer") -> H2ServerConnection:
    """The codec of a TLS connection that negotiated ``h2``."""
    return H2ServerConnection(server, server_settings(server))


class H2Accept(asyncio.Protocol):
    """A connection of an h2 router's server until its protocol is known."""

    def __init__(self, server: "HttpServer", settings: H2Settings) -> None:
        self.server = server
        self.settings = settings
        self.transport: Any = None
        self.buf = b""
        self.closed = False
        self.head: Any = None
        self.need = 0
        #: the HTTP2-Settings value of an ``Upgrade: h2c`` request
        self.upgrade_settings = b""
        #: the timer that closes a connection still undecided after headerReadTimeoutMs
        self.deadline: Any = None

    def _too_slow(self) -> None:
        self.deadline = None
        if not self.closed:
            self.server.sessions.header_timeouts.value += 1
            self._refuse(408, "the connection sent no complete HTTP/2 preface or request head in time")

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        set_nodelay(transport, self.server.socket_options)
        refusal = self.server.connection_made(self)
        if refusal is not None:  # over the limits of sessions.py
            self._refuse(503, refusal)
            return
        # a client that never finishes its preface or first head is closed after the
        # server's headerReadTimeoutMs (slowloris), as an HTTP/1.1 connection would be
        sessions = self.server.sessions
        if sessions.header_s is not None:
            self.deadline = self.server.wheel().after(sessions.header_s, H2Accept._too_slow, self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self.buf + data
        self.buf = buf
        if self.head is not None:  # reading the body of an upgrade request
            if len(buf) >= self.need:
                self._upgrade(self.head, buf[:self.need], buf[self.need:])
            return
        n = min(len(buf), len(PREFACE))
        if buf[:n] == PREFACE[:n] or buf[:4] == b"PRI ":
            # HTTP/2 with prior knowledge (a damaged preface: h2 ends it with PROTOCOL_ERROR)
            if len(buf) >= len(PREFACE):
                self._switch(H2ServerConnection(self.server, self.settings, registered=True), buf)
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > SNIFF_LIMIT:
                self._refuse(431, "request head too large")
            return
        self._h1(buf[:end + 4], buf[end + 4:])

    def _h1(self, raw: bytes, rest: bytes) -> None:
        try:
            httptools.HttpRequestParser(_Silent()).feed_data(raw)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as e:
            self._refuse(400, f"malformed request: {e}")
            return
        try:
            head = parse_request(raw, self.server.clear_context)
        except FramingError as e:
            self._refuse(400, f"malformed request: {e}")
            return
        settings = _SETTINGS.search(raw)
        if head.upgrade is None or b"h2c" not in head.upgrade.lower() or settings is None:
            self._refuse(505, "this router speaks HTTP/2 (protocol: h2): use HTTP/2 with prior knowledge "
                              "(curl --http2-prior-knowledge, gRPC), Upgrade: h2c, or TLS with ALPN h2")
            return
        if head.chunked:
            self._refuse(400, "an Upgrade: h2c request with a chunked body is not supported; send it with "
                              "prior knowledge")
            return
        n = head.content_length or 0
        if n > UPGRADE_BODY_LIMIT:
            self._refuse(413, f"an Upgrade: h2c request may carry at most {UPGRADE_BODY_LIMIT} body bytes")
            return
        self.upgrade_settings = settings.group(1).strip()
        if len(rest) >= n:
            self._upgrade(head, rest[:n], rest[n:])
        else:
            self.head = head
            self.need = n
            self.buf = rest

    def _upgrade(self, head: Any, body: bytes, rest: bytes) -> None:
        self.transport.write(_SWITCH)
        conn = H2ServerConnection(self.server, self.settings, upgrade=(head, self.upgrade_settings,
                                                                       [body] if body else []), registered=True)
        self._switch(conn, rest)

    def _switch(self, conn: H2ServerConnection, data: bytes) -> None:
        """Hand the transport to ``conn`` (and what was read so far)."""
        self.closed = True
        self._disarm()
        t = self.transport
        self.transport = None
        self.server.conns.discard(self)
        t.set_protocol(conn)
        conn.connection_made(t)
        if data:
            conn.data_received(data)

    def _refuse(self, status: int, message: str) -> None:
        self.server.record_refused(status)
        t = self.transport
        if t is not None:
            t.write(error_response(status, message, keep_alive=False))
        self.close()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self._disarm()
        self.transport = None
        self.server.connection_lost(self)

    def _disarm(self) -> None:
        d = self.deadline
        if d is not None:
            self.deadline = None
            d.cancel()

    def shutdown(self) -> None:
        self.close()

    def close(self, abort: bool = False) -> None:
        self.closed = True
        t = self.transport
        if t is not None:
            t.abort() if abort else t.close()

    @property
    def idle(self) -> bool:
        return True


class _Silent:
    pass
