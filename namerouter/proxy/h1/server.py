"""HTTP/1.1 client-facing connections: bytes in and out, one request lifecycle per request.

``H1ServerConnection`` finds each request head's end in the bytes, lets httptools
validate it (a parser without callbacks: no Python per header), classifies it with one
scan (``heads.parse_request``) and hands a :class:`~..lifecycle.Lifecycle` the raw head.
A Content-Length body is counted and passed on as received; a chunked one switches the
connection to a second httptools parser with callbacks (it decodes the chunks and,
since it also parses whatever follows in the same read, builds the next heads from its
header callbacks) until the connection is back at a message boundary.

As the lifecycle's *downstream* it writes the answer: the response head (``encode``),
chunk-framing a body of unknown length for HTTP/1.1 clients (close-delimiting it for
HTTP/1.0 ones), router-made errors, and it keeps the connection's state: pipelined
requests queue behind the active one (reading pauses while one waits), ``Connection:
close``, lingering close after a refused request, the upgrade tunnel.

Flow control both ways: an upstream that cannot take the upload pauses reading from the
client; a client that cannot take the download pauses reading from the upstream.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

import httptools

from ..batch import BATCH, Coalescing
from ..compression import GzipDown
from ..errors import BadRequest, RequestReadTimeout, RouterError, error_response
from ..lifecycle import Lifecycle
from ..phases import RESPONDING
from ..message import HeaderBlock, ResponseHead
from ..transport import client_cert_of, set_nodelay
from . import encode
from .heads import (
    FramingError, H1RequestHead, check_method, head_limit_error, parse_request, request_line_error, skip_empty_lines,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..router import HttpServer
    from ..sessions import ConnectionWatch

#: How long a refused connection keeps reading (and dropping) input before it closes.
LINGER_S = 2.0

#: read states: at a head, in a counted body, callback parsing, input over (the last
#: request said ``Connection: close`` or was HTTP/1.0: what follows is dropped)
HEAD, LENGTH, PARSED, IGNORE = 0, 1, 2, 3
_PIPELINE = object()  # pause key: a pipelined request waits for its turn
_SILENT = object()  # a parser protocol without callbacks: httptools only validates
#: methods llhttp parses (a chunked request with another one is shown to llhttp as a POST)
_LLHTTP_COMMON = frozenset((b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS", b"TRACE",
                            b"CONNECT"))
_now = time.monotonic
log = logging.getLogger("namerouter.proxy")


class _LimitExceeded(Exception):
    pass


class _Parsed:
    """httptools callbacks for the rare stretch that needs them (chunked request bodies
    and whatever follows them in the same read): rebuild each head, then the same path."""

    __slots__ = ("conn", "url", "lines", "size", "in_message", "in_head", "method")

    def __init__(self, conn: "H1ServerConnection", method: Optional[bytes] = None) -> None:
        self.conn = conn
        self.url = b""
        self.lines: list[bytes] = []
        self.size = 0
        self.in_message = False
        self.in_head = False
        #: the first head's method when llhttp was shown another one (see _switch_to_parsed)
        self.method = method

    def on_message_begin(self) -> None:
        self.in_message = self.in_head = True
        self.url = b""
        self.lines = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        c = self.conn
        if len(self.url) > c.max_line:
            c.limit_error = f"request line longer than maxInitialLineKB ({c.max_line // 1024} KB)"
            raise _LimitExceeded()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value) + 4
        c = self.conn
        if self.size > c.max_headers:
            c.limit_error = f"request headers larger than maxHeadersKB ({c.max_headers // 1024} KB)"
            raise _LimitExceeded()
        self.lines.append(b"%b: %b\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        p = self.conn.full
        method = self.method or p.get_method()
        self.method = None
        raw = b"%b %b HTTP/%b\r\n%b\r\n" % (method, self.url, p.get_http_version().encode(),
                                            b"".join(self.lines))
        head = parse_request(raw, self.conn.clear_context)
        head.client_cert = self.conn.client_cert
        self.conn._head(head, False)

    def on_body(self, body: bytes) -> None:
        lc = self.conn.reading
        if lc is not None:
            lc.request_body(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self.conn._request_done()


class H1ServerConnection(Coalescing):
    """One accepted client connection."""

    def __init__(self, server: "HttpServer") -> None:
        self.server = server
        core = server.core
        self.clear_context = server.clear_context
        self.max_line = core.max_initial_line_bytes
        self.max_headers = core.max_header_bytes
        self.transport: Any = None
        self.out: Optional[list[bytes]] = None
        self.parser = httptools.HttpRequestParser(_SILENT)
        #: the callback parser while the connection needs one (see _Parsed), else None
        self.full: Any = None
        self.reader: Optional[_Parsed] = None
        self.buf = b""
        #: the last bodyless request head: a client repeating it byte for byte (most do on
        #: a keep-alive connection) gets it reused, not re-parsed
        self.memo: Optional[H1RequestHead] = None
        self.state = HEAD
        self.left = 0
        #: the lifecycle whose request body is being read
        self.reading: Optional[Lifecycle] = None
        #: the lifecycle of the request parsed last
        self.parsing: Optional[Lifecycle] = None
        #: lifecycles in arrival order; the first is the one being answered
        self.queue: deque[Lifecycle] = deque()
        self.limit_error: Optional[str] = None
        self.closing = False
        self.closed = False
        self.close_after_answer = False
        self.abort_after = False
        self.linger = False
        self.write_paused = False
        #: since when our writes are blocked (socketOptions.writeTimeoutMs; 0: not blocked)
        self.write_paused_at = 0.0
        self.pause_keys: set[Any] = set()
        self.tunnel: Any = None
        self.upgrade_buf: Optional[list[bytes]] = None
        self.resp_chunked = False
        self.peer = "-"
        #: x-forwarded-client-cert of the verified client certificate (TLS servers that
        #: forward it), given to every request head of this connection
        self.client_cert: Optional[bytes] = None
        self.remote: Optional[tuple[str, int]] = None
        #: the session's time limits (sessions.py): when the connection opened, when the
        #: head being read began (0.0: no head pending), and a count of reads and answers
        #: (cheaper per request than a timestamp) with what the last check saw of it
        self.sessions: Any = None
        self.watch: Optional["ConnectionWatch"] = None
        self.born = 0.0
        self.head_since = 0.0
        self.activity = 0
        self.seen_activity = -1
        self.quiet_since = 0.0
        #: a refused connection lingering while its 503 goes out (counted by the admission)
        self.refused = False

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        set_nodelay(transport, self.server.socket_options)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "-"
        if self.server.collect_client_cert:
            self.client_cert = client_cert_of(transport)
        # (ip, port) of the client, kept per connection: the remote endpoint of server spans
        self.remote = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
        now = _now()
        self.born = self.head_since = self.quiet_since = now
        refusal = self.server.connection_made(self)
        sessions = self.sessions = self.server.sessions
        if refusal is not None:
            self._refuse(refusal)
            return
        self.watch = sessions.watch(self, sessions.first_check(now))

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgrade_buf is not None:
            self.upgrade_buf.append(data)
            return
        if self.closed:
            return
        self.activity += 1
        state = self.state
        if state == IGNORE:
            self.linger = True  # the client sent more: close gently when answered
            return
        BATCH.enter()
        try:
            if state == PARSED:
                self._parsed(data)
            else:
                self._read(data)
        except (httptools.HttpParserError, FramingError) as e:
            if self.state == IGNORE:  # llhttp refusing what follows a "close" request
                self.linger = True
            else:
                self.bad_request(self.limit_error or (str(e.args[0]) if e.args else str(e)))
        finally:
            BATCH.leave()

    def eof_received(self) -> Optional[bool]:
        """The client half-closed its side: answer what it already sent, then close (a
        tunnel passes the half-close on by closing). Nothing in flight: close now."""
        if self.queue and self.tunnel is None:
            self.close_after_answer = True
            return True
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        t = self.tunnel
        if t is not None:
            self.tunnel = None
            t.tunnel = None
            t.close()
        for lc in self.queue:
            lc.cancel()
        self.queue.clear()
        self.transport = None
        w = self.watch
        if w is not None:
            self.watch = None
            w.cancel()
        if self.refused:
            self.refused = False
            self.sessions.lingered()
        self.server.connection_lost(self)

    def pause_writing(self) -> None:
        # The client reads slower than the upstream sends: stop reading the upstream.
        self.write_paused = True
        self.write_paused_at = _now()
        up = self._upstream()
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_paused_at = 0.0
        up = self._upstream()
        if up is not None:
            up.resume_reading()

    def _upstream(self) -> Any:
        """The upstream connection feeding this client: the tunnel's, or the active lifecycle's."""
        if self.tunnel is not None:
            return self.tunnel
        return self.queue[0].up if self.queue else None

    # --- reading requests -------------------------------------------------------------
    def _read(self, data: bytes) -> None:
        """The fast path: heads found in the bytes, bodies counted."""
        n = len(data)
        pos = 0
        while pos < n and not self.closed:
            state = self.state
            if state == LENGTH:
                left = self.left
                piece = data if pos == 0 and n <= left else data[pos:pos + left]
                self.parser.feed_data(piece)
                self.left = left - len(piece)
                pos += len(piece)
                lc = self.reading
                if lc is not None:
                    lc.request_body(piece)
                if not self.left:
                    self._request_done()
                continue
            if state == IGNORE:
                self.linger = True
                return
            if self.buf:
                data = self.buf + data[pos:]
                self.buf = b""
                n = len(data)
                pos = 0
            start = skip_empty_lines(data, pos) if data[pos] == 13 else pos
            end = data.find(b"\r\n\r\n", start)
            if end < 0:
                err = (head_limit_error(data, start, n, self.max_line, self.max_headers)
                       or request_line_error(data, start, n))
                if err is not None:
                    raise FramingError(err)
                if start < n:
                    self.buf = data[start:]
                    if not self.head_since:
                        self._head_started()
                return
            end += 4
            raw = data if start == 0 and end == n else data[start:end]
            head = self.memo
            if head is None or raw != head.raw:
                # Not the same bytes as the previous head of this connection (which were
                # checked and classified already): check and classify these.
                err = head_limit_error(data, start, end, self.max_line, self.max_headers)
                if err is not None:
                    raise FramingError(err)
                head = parse_request(raw, self.clear_context)
                if self.client_cert is not None:
                    head.client_cert = self.client_cert
                if head.chunked:
                    self._switch_to_parsed(data[start:], head.method)
                    return
                try:
                    try:
                        self.parser.feed_data(raw)  # validates the head (no callbacks)
                    except httptools.HttpParserInvalidMethodError:
                        self._validate_other_method(head, raw)
                except httptools.HttpParserUpgrade:
                    self._upgrade(head, data[end:])
                    return
                # Only a head without a body is reused: its message ends with the head, so
                # httptools is back at a message boundary whether it sees a repeat or not.
                self.memo = head if head.content_length is None else None
            n_body = head.content_length
            if not n_body and not head.keep_alive:
                self._input_over(end < n)
                self._head(head, True)
                return
            self._head(head, not n_body)
            pos = end
            if n_body:
                self.state = LENGTH
                self.left = n_body

    def _validate_other_method(self, head: H1RequestHead, raw: bytes) -> None:
        """llhttp knows a fixed list of methods; HTTP allows any token (RFC 9110 §9.1).
        A token it does not know is checked here, and llhttp validates the rest of the
        head (and tracks the body's framing, which does not depend on the method) as if
        it were a POST."""
        check_method(head.method)
        self.parser = httptools.HttpRequestParser(_SILENT)
        self.parser.feed_data(b"POST" + raw[len(head.method):])

    def _switch_to_parsed(self, data: bytes, method: bytes) -> None:
        override: Optional[bytes] = None
        if method not in _LLHTTP_COMMON:
            # possibly a method llhttp does not know: show it a POST, keep the real one
            check_method(method)
            override = method
            data = b"POST" + data[len(method):]
        self.reader = _Parsed(self, override)
        self.full = httptools.HttpRequestParser(self.reader)
        self.state = PARSED
        self._parsed(data)

    def _input_over(self, more: bool) -> None:
        """The request just read is the connection's last (``Connection: close``, or
        HTTP/1.0 without keep-alive): it is answered, then the connection closes;
        whatever the client sends after it is read and dropped (``more``: it did)."""
        self.state = IGNORE
        if more:
            self.linger = True

    def _parsed(self, data: bytes) -> None:
        """The callback parser's stretch; back to the fast path at a message boundary."""
        reader = self.reader
        assert reader is not None
        if reader.in_head:
            # httptools holds a header line until it ends: bound what one head may take.
            reader.size += len(data)
            if reader.size > self.max_line + self.max_headers + 4096:
                raise FramingError(f"request headers larger than maxHeadersKB ({self.max_headers // 1024} KB)")
        try:
            self.full.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            lc = self.parsing
            if lc is not None:
                self._upgrade(lc.head, data[e.args[0]:], lc)
            return
        if reader.in_head and not self.head_since:
            self._head_started()
        if not reader.in_message and self.state != HEAD:
            if self.state == PARSED:
                self.state = HEAD
            self.full = self.reader = None

    def _head(self, head: Any, complete: bool) -> Lifecycle:
        """A request head was read: queue its lifecycle (it starts when its turn comes)."""
        self.head_since = 0.0
        lc = Lifecycle(self, self.server, head)
        adds = self.server.added_headers
        if adds is not None:  # timestampHeader, addForwardedHeader (forwarded.py)
            lc.added = adds.fields(head, self)
        gz = self.server.core.compression
        if gz is not None and gz.wants(head):  # compressionLevel (compression.py)
            lc.down = GzipDown(self, gz)
        self.parsing = lc
        if complete:
            lc.request_end()
        else:
            self.reading = lc
        q = self.queue
        q.append(lc)
        if len(q) == 1:
            lc.start()
        else:
            self.pause_reading_for(_PIPELINE)
        return lc

    def _request_done(self) -> None:
        if self.state == LENGTH:
            self.state = HEAD
        lc = self.reading
        self.reading = None
        if lc is not None:
            head = lc.head
            if not head.keep_alive and head.upgrade is None:
                self._input_over(False)
            lc.request_end()

    def _upgrade(self, head: Any, rest: bytes, lc: Optional[Lifecycle] = None) -> None:
        """An upgrade request's head is complete; what follows belongs to the new protocol."""
        if head.upgrade is None and head.method != b"CONNECT":
            raise FramingError("unexpected protocol upgrade")
        self.upgrade_buf = [rest] if rest else []
        if lc is None:
            self._head(head, True)
        else:
            self._request_done()

    # --- the downstream interface (called by the lifecycle) ------------------------------
    def send_response_head(self, lc: Lifecycle, resp: ResponseHead, extra: HeaderBlock,
                           unrewrite: Optional[tuple[bytes, bytes]]) -> None:
        head = lc.head
        status = resp.status
        if status == 101:
            self.write(encode.switching_protocols(resp, extra.h1))
            return
        if head.method == b"CONNECT" and 200 <= status < 300:
            self.write(encode.connect_established(status, resp.reason))  # the tunnel follows
            return
        close = not head.keep_alive or self.closing or head.upgrade is not None
        framing = b""
        self.resp_chunked = False
        if resp.content_length is None and status != 204 and status != 304 and head.method != b"HEAD":
            # A body of unknown length: re-chunk it for HTTP/1.1 clients, close-delimit it
            # for HTTP/1.0 ones.
            if head.version != "1.0" and not close:
                framing = encode.CHUNKED
                self.resp_chunked = True
            else:
                close = True
        if close:
            self.close_after_answer = True
            framing += encode.CLOSE
        elif head.version == "1.0":
            framing += encode.KEEP_ALIVE
        # clearContext: no l5d-* line reaches the client, the router's classification included
        self.write(encode.response_head(resp, b"" if self.clear_context else extra.h1, framing, bool(extra),
                                        self.clear_context, unrewrite, head.version == "1.0"))

    def send_body(self, data: bytes) -> None:
        self.write(encode.chunk(data) if self.resp_chunked else data)

    def end_response(self) -> None:
        if self.resp_chunked:
            self.write(encode.LAST_CHUNK)

    def send_interim(self, status: int, reason_phrase: bytes) -> None:
        q = self.queue
        if q and q[0].head.version == "1.0":
            return  # no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
        self.write(encode.interim(status, reason_phrase))

    def send_error(self, lc: Lifecycle, err: RouterError, drainable: bool) -> bool:
        head = lc.head
        keep = head.keep_alive and drainable and not self.closing and head.upgrade is None
        core = self.server.core
        http10 = head.version == "1.0"
        self.write(error_response(
            err.status, err.message, keep_alive=keep, retryable=err.retryable, max_body=core.max_err_bytes,
            max_header=core.max_header_bytes, head_only=head.method == b"HEAD", hide=self.clear_context,
            extra_headers=encode.KEEP_ALIVE if keep and http10 else b"", http10=http10))
        return keep

    def send_status(self, lc: Lifecycle, status: int, drainable: bool) -> bool:
        keep = lc.head.keep_alive and drainable and not self.closing
        self.write(encode.status_only(status, close=not keep, http10=lc.head.version == "1.0"))
        return keep

    def close_after(self) -> None:
        self.close_after_answer = True

    def abort(self) -> None:
        self.close_after_answer = True
        self.abort_after = True

    def pause_request_body(self, key: Any) -> None:
        self.pause_reading_for(key)

    def resume_request_body(self, key: Any) -> None:
        if self.pause_keys:
            self.resume_reading_for(key)

    def start_tunnel(self, lc: Lifecycle, up: Any, rest: bytes) -> None:
        """101 Switching Protocols: from now on both connections are a raw byte tunnel."""
        self._dequeue(lc)
        self.tunnel = up
        up.tunnel = self
        if rest:
            self.write(rest)
        pending = self.upgrade_buf
        self.upgrade_buf = None
        if pending:
            up.write(b"".join(pending))

    def finished(self, lc: Lifecycle) -> None:
        """``lc`` is answered: the next request's turn, or close."""
        q = self._dequeue(lc)
        self.resp_chunked = False
        if not q:
            self.activity += 1  # idle from now on (sessions.py)
        if self.close_after_answer or (self.closing and not q):
            self.close(abort=self.abort_after)
            return
        if q:
            if len(q) == 1:
                self.resume_reading_for(_PIPELINE)
            q[0].start(_now())
        elif self.pause_keys:
            self.resume_reading_for(_PIPELINE)

    def _dequeue(self, lc: Lifecycle) -> deque[Lifecycle]:
        q = self.queue
        if q and q[0] is lc:
            q.popleft()
        else:
            try:
                q.remove(lc)
            except ValueError:
                pass
        return q

    # --- the tunnel's side (called by the upstream connection) ------------------------------
    def close_tunnel(self) -> None:
        """The upstream side of a tunnel closed."""
        self.tunnel = None
        self.close()

    # --- flow control ------------------------------------------------------------------
    def pause_reading_for(self, key: Any) -> None:
        if not self.pause_keys and self.transport is not None:
            self.transport.pause_reading()
        self.pause_keys.add(key)

    def resume_reading_for(self, key: Any) -> None:
        keys = self.pause_keys
        if key in keys:
            keys.discard(key)
            if not keys and self.transport is not None and not self.closed:
                self.activity += 1  # a body stalled by our pause is not the client's fault
                self.transport.resume_reading()

    # --- session limits (sessions.py) ---------------------------------------------------------
    def _head_started(self) -> None:
        """A request head began and is not complete: it is due within headerReadTimeoutMs."""
        now = self.head_since = _now()
        s = self.sessions
        w = self.watch
        if w is not None and s.header_s is not None:
            w.arm(now + s.header_s)

    def session_check(self, now: float) -> Optional[float]:
        """Act on overdue time limits; when to look again (None: stop watching).

        Silence is measured without a timestamp per read: ``activity`` counts reads and
        answers, and a check that sees it unchanged since the previous one knows the
        connection was quiet since then. Checked every half ``idleTimeMs``, an idle or
        stalled connection is closed after ``idleTimeMs`` to 1.5 times it."""
        if self.closed or self.tunnel is not None:
            return None
        s = self.sessions
        life: Optional[float] = s.life_s
        header: Optional[float] = s.header_s
        idle: Optional[float] = s.idle_s
        if self.activity != self.seen_activity:
            self.seen_activity = self.activity
            self.quiet_since = now
        nxt = math.inf
        if life is not None and not self.closing:
            end = self.born + life
            if now >= end:
                s.expired_life.value += 1
                self.shutdown()  # finish what is in flight, then close
                if self.closed:
                    return None
            else:
                nxt = end
        if self.head_since and header is not None and self.state != IGNORE:
            end = self.head_since + header
            if now >= end:
                self._header_timeout(s)
                return None if self.closed else now + header
            nxt = min(nxt, end)
        elif not self.queue and idle is not None:
            if now - self.quiet_since >= idle:
                s.expired_idle.value += 1
                self.close()
                return None
            nxt = min(nxt, now + idle / 2)
        lc = self.reading
        if lc is not None and not self.pause_keys and idle is not None:
            if now - self.quiet_since >= idle:
                self._body_timeout(s, lc)
                return None if self.closed else now + idle
            nxt = min(nxt, now + idle / 2)
        period = s.socket_period()
        if period is not None:  # socketOptions.readTimeoutMs / writeTimeoutMs
            if s.socket_check(now, self.quiet_since, self.write_paused_at) is not None:
                self.close(abort=True)
                return None
            nxt = min(nxt, now + period)
        if nxt == math.inf:  # busy answering: nothing is due from the client; look again later
            nxt = now + min(x for x in (idle / 2 if idle is not None else None, header, life) if x is not None)
        return nxt

    def _header_timeout(self, s: Any) -> None:
        s.header_timeouts.value += 1
        message = f"request head not complete after headerReadTimeoutMs ({s.header_s * 1000:.0f} ms)"
        if self.queue:
            # a pipelined head trickles in behind an answer in progress: that answer
            # finishes, then the connection closes
            self.buf = b""
            self.state = IGNORE
            self.close_after_answer = True
            return
        got = bool(self.buf) or (self.reader is not None and self.reader.in_head)
        if got:  # a client that never sent a byte gets no answer (nginx does the same)
            self.server.record_refused(408)
            self.write(error_response(408, message, keep_alive=False, max_body=self.server.core.max_err_bytes,
                                      max_header=self.max_headers, hide=self.clear_context))
            self.linger = True
        self.close()

    def _body_timeout(self, s: Any, lc: Lifecycle) -> None:
        s.body_timeouts.value += 1
        if lc.phase >= RESPONDING:
            self.close(abort=lc.phase == RESPONDING)  # the answer has begun: cut it
            return
        self.closing = True  # the answer says "Connection: close"
        lc.fail(RequestReadTimeout(
            f"request body stalled: nothing received for idleTimeMs ({s.idle_s * 1000:.0f} ms)"))

    def _refuse(self, message: str) -> None:
        """Admission said no: 503 with the reason, then close (lingering while the 503
        goes out, if not too many refused connections do already)."""
        self.write(error_response(503, message, keep_alive=False, retryable=True,
                                  max_body=self.server.core.max_err_bytes, max_header=self.max_headers,
                                  hide=self.clear_context))
        if self.sessions.may_linger():
            self.refused = True
            self.linger = True
        self.close()

    # --- closing ---------------------------------------------------------------------------
    def bad_request(self, message: str) -> None:
        """Malformed input: 400 naming the problem, then close; the active lifecycle (if any)
        is abandoned, since the byte stream can no longer be trusted."""
        self.limit_error = None
        active = self.queue[0] if self.queue else None
        if active is not None and not active.done:
            if active.responding or active is not self.parsing:
                self.close(abort=True)
                return
            self.linger = True
            active.fail(BadRequest(f"malformed request: {message}"))
            self.close()
            return
        # Linkerd answers 400 for every framing error, oversized heads included.
        self.server.record_refused(400)
        self.write(error_response(400, f"malformed request: {message}", keep_alive=False,
                                  max_body=self.server.core.max_err_bytes, max_header=self.max_headers,
                                  hide=self.clear_context))
        self.linger = True
        self.close()

    def close(self, abort: bool = False) -> None:
        if self.closed:
            if abort and self.transport is not None:  # e.g. a lingering close at shutdown
                self.transport.abort()
            return
        if not abort:
            self.flush()
            t = self.transport
            if self.linger and t is not None and t.can_write_eof():
                # Lingering close (as nginx does): the client may still be sending what we
                # refused; closing now would reset the connection and could destroy the 400
                # before it is read. Send FIN, drop further input, close when the client
                # does or after LINGER_S.
                self.closed = True
                self.linger = False
                t.write_eof()
                t.resume_reading()
                self.server.wheel().after(LINGER_S, _close_transport, t)
                return
        self.closed = True
        t = self.transport
        if t is not None:
            if abort:
                t.abort()
            else:
                t.close()

    def shutdown(self) -> None:
        """Graceful close: finish what is in flight, then close."""
        self.closing = True
        if not self.queue and self.tunnel is None:
            self.close()

    @property
    def idle(self) -> bool:
        return not self.queue and self.tunnel is None


def _close_transport(t: asyncio.Transport) -> None:
    t.close()
