"""HTTP/1.1 upstream connections: bytes to and from a backend, nothing else.

``H1ClientConnection`` carries one request lifecycle at a time (no pipelining towards
backends). It writes the request through ``encode.request_head`` and reads the response
the way the server side reads requests: the head's end is found in the bytes, httptools
validates it, ``heads.parse_response`` classifies it with one scan, and the lifecycle gets
an ``H1ResponseHead`` (kept as bytes). A Content-Length body is counted and handed on
as the received bytes; a chunked body goes through a second httptools parser with body
callbacks (the codec re-frames it for the client); a body without either ends at EOF.
After a complete keep-alive response the lifecycle returns the connection to its pool.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Optional

import httptools

from ..batch import BATCH, Coalescing
from ..sessions import ConnectionWatch
from ..transport import set_nodelay
from .encode import LAST_CHUNK, chunk, request_head
from .heads import FramingError, H1ResponseHead, parse_response

if TYPE_CHECKING:  # pragma: no cover
    from ..lifecycle import Lifecycle
    from ..pool import Endpoint

#: A response head larger than this is a broken backend (it bounds what one head buffers).
MAX_RESPONSE_HEAD = 256 * 1024

# read states
HEAD, LENGTH, CHUNKED, EOF = 0, 1, 2, 3

_SILENT = object()  # a parser protocol without callbacks: httptools only validates
_now = time.monotonic
#: what a response body cut for stalling counts as (Finagle's name for a read timeout)
STALLED = "com.twitter.finagle.ReadTimedOutException"


class _ChunkedBody:
    """httptools callbacks for a chunked response body."""

    __slots__ = ("conn", "complete")

    def __init__(self, conn: "H1ClientConnection") -> None:
        self.conn = conn
        self.complete = False

    def on_message_begin(self) -> None:
        if self.complete:  # a backend must not send a second response unasked
            raise FramingError("unexpected data after the response")

    def on_body(self, body: bytes) -> None:
        lc = self.conn.lc
        if lc is not None:
            lc.response_body(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.conn._response_done(True)


class H1ClientConnection(Coalescing):
    def __init__(self, endpoint: "Endpoint") -> None:
        self.endpoint = endpoint
        self.default_host = endpoint.label.encode()
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(_SILENT)
        self.body_parser: Any = None
        #: the lifecycle this connection serves (None while pooled)
        self.lc: Optional["Lifecycle"] = None
        self.closed = False
        self.reused = False
        self.got_bytes = False
        self.tunnel: Any = None  # the downstream connection once upgraded
        self.paused = False
        self.idle_since = 0.0
        self.out: Optional[list[bytes]] = None
        self.buf = b""
        self.state = HEAD
        self.left = 0
        self.skip_body = False
        self.chunked_up = False
        self.resp: Optional[H1ResponseHead] = None
        #: the last response head with a Content-Length, reused when repeated byte for byte
        self.memo: Optional[H1ResponseHead] = None
        #: httptools follows the current response (False while a reused head's body is read)
        self.tracked = True
        #: when the connection was made (clientSession.lifeTimeMs), the last read, and the
        #: watch of a response body that may stall (sessions.py)
        self.born = 0.0
        self.rx_at = 0.0
        self.stall_s = 0.0
        self.watch: Optional[ConnectionWatch] = None
        #: whether response bodies may be cut for stalling on this router at all
        self.watch_bodies: bool = endpoint.stage.watch_bodies
        #: socketOptions.readTimeoutMs / writeTimeoutMs of this client (None: unbounded):
        #: a backend silent that long while a response is due, or not reading our
        #: request that long, is cut (socket_options.py)
        self.read_s: Optional[float] = endpoint.stage.read_s
        self.write_s: Optional[float] = endpoint.stage.write_s
        self.write_paused_at = 0.0

    # --- the upstream interface (called by the lifecycle) -------------------------------
    def send_request(self, lc: "Lifecycle", body: Optional[list[bytes]]) -> None:
        head = lc.head
        self.skip_body = head.method == b"HEAD"
        self.chunked_up = head.chunked
        leaf = lc.leaf
        dst = leaf.dst.h1  # type: ignore[union-attr]
        cert = head.client_cert
        if cert is not None and (lc.server.forward_client_cert or leaf.client.forward_client_cert):  # type: ignore[union-attr]
            dst = dst + b"x-forwarded-client-cert: " + cert + b"\r\n"
        added = lc.added
        if added is not None:  # timestampHeader, Forwarded (forwarded.py)
            dst = dst + b"".join(b"%b: %b\r\n" % f for f in added)
        parts = request_head(head, lc.uri, leaf.client.authority, self.default_host,  # type: ignore[union-attr]
                             dst, lc.trace_block, lc.deadline)
        if body:
            if head.chunked:
                parts += [chunk(c) for c in body]
            else:
                parts += body
        if head.chunked and lc.upload_complete:
            parts.append(LAST_CHUNK)
        self.write(b"".join(parts))
        if self.read_s is not None or self.write_s is not None:
            self._watch_socket()

    def send_body(self, data: bytes) -> None:
        self.write(chunk(data) if self.chunked_up else data)

    def end_body(self) -> None:
        if self.chunked_up:
            self.write(LAST_CHUNK)

    def pause_reading(self) -> None:
        """The client reads slower than this backend sends: stop reading it."""
        t = self.transport
        if t is not None and not self.paused:
            self.paused = True
            t.pause_reading()

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            self.rx_at = _now()  # the silence while paused was ours, not the backend's
            t = self.transport
            if t is not None:
                t.resume_reading()

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

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.born = _now()
        set_nodelay(transport, self.endpoint.stage.socket_options)
        self.endpoint.conn_opened()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        lc = self.lc
        if lc is None:
            # An idle keep-alive connection must not talk: it is out of sync, drop it.
            self.close()
            return
        self.got_bytes = True
        if self.watch is not None:
            self.rx_at = _now()
        BATCH.enter()
        try:
            self._read(data)
        except httptools.HttpParserUpgrade:
            self.close()
        except (httptools.HttpParserError, FramingError) as e:
            lc = self.lc
            if lc is not None:
                lc.upstream_broken(self, f"malformed response from {self.endpoint.label}: {e}")
            self.close()
        finally:
            BATCH.leave()

    def eof_received(self) -> Optional[bool]:
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self.transport = None
        self._unwatch()
        self.endpoint.conn_lost()
        t = self.tunnel
        if t is not None:
            self.tunnel = None
            t.close_tunnel()
            return
        lc = self.lc
        if lc is not None:
            if self.state == EOF:
                self.state = HEAD
                lc.response_end(False)  # a close-delimited response ends with the connection
            else:
                lc.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        # The backend is slower than the upload: stop reading the client.
        if self.write_s is not None:
            self.write_paused_at = _now()
        lc = self.lc
        if lc is not None:
            lc.down.pause_request_body(self)
        elif self.tunnel is not None:
            self.tunnel.pause_request_body(self)

    def resume_writing(self) -> None:
        self.write_paused_at = 0.0
        lc = self.lc
        if lc is not None:
            lc.down.resume_request_body(self)
        elif self.tunnel is not None:
            self.tunnel.resume_request_body(self)

    # --- reading the response -------------------------------------------------------------
    def _read(self, data: bytes) -> None:
        state = self.state
        if state == LENGTH:
            left = self.left
            n = len(data)
            if n <= left:  # the common case: the read is all body
                if self.tracked:
                    self.parser.feed_data(data)
                self.left = left - n
                self.lc.response_body(data)  # type: ignore[union-attr]
                if n == left:
                    self._response_done(True)
                return
            self._length_body(data[:left])
            self._extra(data[left:])
            return
        if state == CHUNKED:
            self.body_parser.feed_data(data)
            return
        if state == EOF:
            self.lc.response_body(data)  # type: ignore[union-attr]
            return
        self._head(data)

    def _head(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        pos = 0
        while True:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(data) - pos > MAX_RESPONSE_HEAD:
                    raise FramingError(f"response head larger than {MAX_RESPONSE_HEAD // 1024} KB")
                self.buf = data[pos:]
                return
            end += 4
            raw = data if pos == 0 and end == len(data) else data[pos:end]
            resp = self.memo
            fresh = resp is None or raw != resp.raw
            if fresh:
                resp = parse_response(raw)
            status = resp.status  # type: ignore[union-attr]
            if status < 200 and status != 101:  # 1xx interim (100 Continue): another head follows
                self.parser.feed_data(raw)
                lc = self.lc
                if lc is not None:
                    lc.response_interim(status, resp.reason)  # type: ignore[union-attr]
                pos = end
                continue
            break
        assert resp is not None
        rest = data[end:] if end < len(data) else b""
        if resp.chunked and not self.skip_body:
            self.resp = resp
            self.state = CHUNKED
            self.body_parser = httptools.HttpResponseParser(_ChunkedBody(self))
            self.body_parser.feed_data(raw)
            self.lc.response_head(resp)  # type: ignore[union-attr]
            if self.watch_bodies:
                self._watch_body()
            if rest and self.state == CHUNKED:
                self.body_parser.feed_data(rest)
            return
        if fresh:
            try:
                self.parser.feed_data(raw)
            except httptools.HttpParserUpgrade:
                if status != 101:
                    raise
            # A backend repeating a head byte for byte (most do, on a keep-alive
            # connection) gets it reused: checked and classified once. httptools then
            # does not see the repeat (it is at a message boundary before and after).
            self.memo = resp if resp.content_length is not None and status != 101 else None
        self.tracked = fresh
        self.resp = resp
        lc = self.lc
        if status == 101:  # Switching Protocols: from here on a byte tunnel
            lc.response_head(resp)  # type: ignore[union-attr]
            lc.upstream_upgraded(self, rest)  # type: ignore[union-attr]
            return
        if self.skip_body or status == 204 or status == 304:
            if self.skip_body and fresh:
                # A response to HEAD: llhttp would wait for Content-Length bytes; there are none.
                self.parser = httptools.HttpResponseParser(_SILENT)
            lc.response_head(resp)  # type: ignore[union-attr]
            self._response_done(not rest)
            if rest:
                self._extra(rest)
            return
        n = resp.content_length
        if n is None:
            self.state = EOF  # the body ends with the connection
            lc.response_head(resp)  # type: ignore[union-attr]
            if self.watch_bodies:
                self._watch_body()
            if rest and self.lc is not None:
                self.lc.response_body(rest)
            return
        lc.response_head(resp)  # type: ignore[union-attr]
        if n == 0:
            self._response_done(not rest)
            if rest:
                self._extra(rest)
            return
        self.state = LENGTH
        self.left = n
        if self.watch_bodies:
            self._watch_body()
        if rest:
            self._read(rest)

    def _length_body(self, data: bytes) -> None:
        if self.tracked:
            self.parser.feed_data(data)
        self.left -= len(data)
        lc = self.lc
        if lc is not None:
            lc.response_body(data)
        if self.left == 0:
            self._response_done(False)

    def _extra(self, data: bytes) -> None:
        """Bytes after a complete response: the backend is out of sync; never reuse it."""
        self.close()

    # --- a response body that stalls (sessions.py) ------------------------------------------
    def _watch_body(self) -> None:
        """The response head went on and its body follows: when the request has a bound
        (clientSession.idleTimeMs, requestAttemptTimeoutMs, totalTimeoutMs), a body that
        sends nothing for that long is cut. Nothing is armed otherwise."""
        lc = self.lc
        if lc is None or self.state == HEAD:
            return
        s = lc.body_stall_s()
        if s is None:
            return
        self.stall_s = s
        now = self.rx_at = _now()
        w = self.watch
        if w is None:
            self.watch = ConnectionWatch(self, self.endpoint.stage.table.wheel(), now + s)
        else:
            w.arm(now + s)

    def _watch_socket(self) -> None:
        """socketOptions: a request went out; watch for a silent backend (readTimeoutMs)
        and one that does not read it (writeTimeoutMs)."""
        now = self.rx_at = _now()
        due = min(x for x in (self.read_s, self.write_s) if x is not None)
        w = self.watch
        if w is None:
            self.watch = ConnectionWatch(self, self.endpoint.stage.table.wheel(), now + due)
        else:
            w.arm(now + due)

    def session_check(self, now: float) -> Optional[float]:
        lc = self.lc
        head_wait = self.state == HEAD and (self.read_s is not None or self.write_s is not None)
        if lc is None or (self.state == HEAD and not head_wait) or self.closed:
            self._unwatch()
            return None
        ws = self.write_s
        if ws is not None and self.write_paused_at:
            if now - self.write_paused_at >= ws:
                return self._socket_timeout(lc, f"the request to {self.endpoint.label} was not read for "
                                                f"{ws * 1000:.0f} ms (socketOptions.writeTimeoutMs)")
        stall = self.stall_s if not head_wait else self.read_s
        if not stall:  # writeTimeoutMs only: look again while the response is due
            return now + (ws or 1.0) / 2
        if self.paused:
            return now + stall
        end = self.rx_at + stall
        if now < end:
            return end if ws is None else min(end, now + ws / 2)
        if head_wait:
            return self._socket_timeout(lc, f"no response head from {self.endpoint.label}: nothing received for "
                                            f"{stall * 1000:.0f} ms (socketOptions.readTimeoutMs)")
        self._unwatch()
        lc.upstream_broken(self, f"the response body from {self.endpoint.label} stalled: nothing received for "
                                 f"{self.stall_s * 1000:.0f} ms (clientSession.idleTimeMs / request timeouts)",
                           STALLED)
        self.abort()
        return None

    def _socket_timeout(self, lc: "Lifecycle", message: str) -> Optional[float]:
        self._unwatch()
        lc.upstream_broken(self, message, STALLED)
        self.abort()
        return None

    def _unwatch(self) -> None:
        w = self.watch
        if w is not None:
            self.watch = None
            w.cancel()

    def _response_done(self, reusable: bool) -> None:
        self.state = HEAD
        if self.watch is not None:
            self._unwatch()
        self.body_parser = None
        resp = self.resp
        self.resp = None
        lc = self.lc
        if lc is not None:
            lc.response_end(reusable and resp is not None and resp.keep_alive and not self.closed)
