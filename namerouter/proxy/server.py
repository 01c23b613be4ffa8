"""Client-facing side of the data plane: the HTTP/1.1 server protocol and the exchange.

``ServerConnection`` is an asyncio Protocol with an httptools request parser. Each
parsed request becomes an ``Exchange`` that relays it to a backend ``ClientConnection``
(see ``client.py``) and the response back, piece by piece from the parsers' callbacks:
the common case (name already bound, idle pooled connection) runs without creating a
task or a future. Only waiting (a pending binding, a new backend connection) goes
through a coroutine, while body pieces that arrive meanwhile are buffered (bounded:
reading from the client pauses above ``BUFFER_LIMIT``).

Flow control both ways: a backend that cannot take the upload pauses reading from the
client; a client that cannot take the download pauses reading from the backend. So a
body of any size passes in bounded memory.

Pipelined requests queue behind the active one (reading pauses while one waits).
Malformed requests get a 400 and the connection closes; nothing else is affected.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from random import getrandbits
from typing import TYPE_CHECKING, Any, Optional

import httptools

from .batch import BATCH, Coalescing
from .client import ClientConnection, Endpoint, set_nodelay
from .errors import (
    BackendFailed, BadRequest, ConnectFailed, NoHosts, Overloaded, RequestTimeout, RouterError, error_response,
    reason,
)
from .message import RequestHead

if TYPE_CHECKING:  # pragma: no cover
    from .router import HttpServer
    from .routing import LeafTarget, ServiceStage

#: Request headers never forwarded as received: hop-by-hop (RFC 7230 §6.1 plus
#: Proxy-Connection) — ``Via`` and the l5d routing headers are rewritten instead.
HOP_REQ = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
     b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade")
)
#: l5d headers the router consumes or overwrites on each hop.
L5D_REWRITTEN = frozenset(
    (b"l5d-dtab", b"l5d-ctx-dtab", b"l5d-dst-service", b"l5d-dst-client", b"l5d-dst-residual", b"l5d-reqid")
)

BUFFER_LIMIT = 256 * 1024
#: A body still to come after an early answer is read and dropped if at most this big;
#: otherwise the connection closes.
DRAIN_LIMIT = 64 * 1024
#: How long a refused connection keeps reading (and dropping) input before it closes.
LINGER_S = 2.0

_now = time.monotonic
_PIPELINE = object()
log = logging.getLogger("namerouter.proxy")


class _LimitExceeded(Exception):
    pass


def _reqid(trace: Optional[bytes]) -> bytes:
    """Linkerd's l5d-reqid: the trace id of l5d-ctx-trace when given, else a new one."""
    if trace:
        try:
            raw = base64.b64decode(trace, validate=True)
            if len(raw) >= 24:
                return raw[16:24].hex().encode()
        except ValueError:
            pass
    return b"%016x" % getrandbits(64)


#: Response headers holding absolute URLs that name the Host the backend saw.
_URL_HEADERS = (b"location:", b"refresh:")


def _unrewrite_host(lines: list[bytes], authority: bytes, original: bytes) -> list[bytes]:
    """After a Host rewrite, ``Location``/``Refresh`` answers name the rewritten host; point
    them back at the one the client used (as Linkerd's RewriteHostHeader, nginx and Apache
    do)."""
    out = []
    for line in lines:
        if line[:9].lower() in _URL_HEADERS or line[:8].lower() in _URL_HEADERS:
            name, _, value = line.partition(b":")
            line = name + b":" + value.replace(authority, original)
        out.append(line)
    return out


class Exchange:
    """One request/response relay between a ServerConnection and a ClientConnection."""

    __slots__ = (
        "conn", "head", "t0", "buf", "buf_bytes", "req_done", "backend", "route", "leaf",
        "node", "status", "resp_started", "resp_done", "resp_chunked", "resp_close_delimited",
        "close_after", "finished", "task", "draining", "retried", "upgraded", "counted", "timer",
        "resp_len", "rs",
    )

    def __init__(self, conn: "ServerConnection", head: RequestHead) -> None:
        self.conn = conn
        self.head = head
        self.t0 = _now()
        self.buf: Optional[list[bytes]] = None
        self.buf_bytes = 0
        self.req_done = False
        self.backend: Optional[ClientConnection] = None
        self.route: Optional["ServiceStage"] = None
        self.leaf: Optional["LeafTarget"] = None
        self.node: Optional[Endpoint] = None
        self.status = 0
        self.resp_started = False
        self.resp_done = False
        self.resp_chunked = False
        self.resp_close_delimited = False
        self.close_after = False
        self.finished = False
        self.task: Optional[asyncio.Task] = None
        self.draining = False
        self.retried = False
        self.upgraded = False
        self.counted = False
        self.timer: Optional[asyncio.TimerHandle] = None
        #: retries/timeouts state (policy/runtime.py RequestState) when the name has a policy
        self.rs: Any = None
        #: the response's Content-Length header, for the access log
        self.resp_len: Optional[bytes] = None

    # --- start: identify, bind, pick, connect ------------------------------------------
    def start(self) -> None:
        # t0 is the construction time (a request that starts at once), or reset by
        # exchange_done for one that waited behind a pipelined predecessor.
        conn = self.conn
        server = conn.server
        head = self.head
        server.inflight += 1
        self.counted = True
        try:
            if server.max_concurrent is not None and server.inflight > server.max_concurrent:
                raise Overloaded(
                    f"server {server.ip}:{server.port} is at maxConcurrentRequests "
                    f"({server.max_concurrent}); request rejected")
            if head.via is not None and head.via.count(b",") + 1 > server.max_call_depth:
                raise BadRequest(
                    f"Maximum number of calls ({server.max_call_depth}) has been exceeded "
                    "(Via header); please check for proxy loops")
            route, new_uri = server.core.resolve(head)
        except RouterError as e:
            self.fail(e)
            return
        except Exception as e:  # a bug or a broken plugin: answer, log, keep serving
            log.exception("routing %r failed", head.uri)
            self.fail(RouterError(f"internal error while routing the request: {type(e).__name__}: {e}"))
            return
        self.route = route
        route.inflight += 1
        route.last_used = self.t0
        if new_uri is not None:
            head.uri = new_uri
        if route.policy is not None:
            # Retries, classifier, timeouts: the policy dispatches (and re-dispatches) attempts.
            route.policy.begin(self)
            return
        if route.timeout_s is not None:
            self._arm(route.timeout_s, "totalTimeoutMs")
        target = route.target
        if target is not None:
            try:
                leaf = target.pick()
            except RouterError as e:
                self.fail(e)
                return
            client = leaf.client
            if client.attempt_timeout_s is not None:
                self._arm(client.attempt_timeout_s, "requestAttemptTimeoutMs")
            if not client.pending:
                if client.status_code is not None:
                    self.respond_status(leaf, client.status_code)
                    return
                node = client.balancer.pick()
                if node is None:
                    self.fail(NoHosts(route.explain_no_hosts(client)))
                    return
                bconn = node.get_idle()  # type: ignore[attr-defined]
                if bconn is not None:
                    self.attach(leaf, node, bconn)  # type: ignore[arg-type]
                    return
                self.task = asyncio.get_running_loop().create_task(self._connect(leaf, node))  # type: ignore[arg-type]
                return
        elif route.error is not None:
            self.fail(route.error)  # known not to route: answer now, no task
            return
        self.task = asyncio.get_running_loop().create_task(self._slow())

    async def _slow(self) -> None:
        route = self.route
        assert route is not None
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + route.table.binding_timeout_s
            target = await route.wait_bound(deadline)
            leaf = target.pick()
            client = leaf.client
            if client.attempt_timeout_s is not None:
                self._arm(client.attempt_timeout_s, "requestAttemptTimeoutMs")
            await client.wait_ready(deadline)
            if self.finished:
                return
            if client.status_code is not None:
                self.respond_status(leaf, client.status_code)
                return
            node = client.balancer.pick()
            if node is None:
                raise NoHosts(route.explain_no_hosts(client))
            await self._connect(leaf, node)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            pass
        except Exception as e:
            self._routing_failed(e)

    def _routing_failed(self, e: Exception) -> None:
        """Answer a request whose routing raised (call it from the ``except`` block)."""
        if isinstance(e, RouterError):
            self.fail(e)
            return
        # a bug or a broken plugin: answer, log, keep serving
        log.exception("routing %r failed", self.head.uri)
        self.fail(RouterError(f"internal error while routing the request: {type(e).__name__}: {e}"))

    async def _connect(self, leaf: "LeafTarget", node: Endpoint) -> None:
        client = leaf.client
        route = self.route
        assert route is not None
        tries = 0
        limit = max(1, min(client.balancer.max_effort, len(client.endpoints)))
        try:
            while True:
                bconn = node.get_idle()
                if bconn is None:
                    try:
                        bconn = await node.connect()
                    except (OSError, asyncio.TimeoutError) as e:
                        client.connect_failures.value += 1
                        if node.accrual is not None:
                            # failure accrual decides when the endpoint is marked dead
                            node.accrual.failure()
                        else:
                            node.down_until = _now() + 1.0
                        tries += 1
                        # another endpoint only within the client's requeueBudget
                        if tries >= limit or not client.policy.requeues.try_requeue():
                            why = e.strerror if isinstance(e, OSError) and e.strerror else (
                                str(e) or type(e).__name__)
                            raise ConnectFailed(route.explain(
                                f"unable to connect to {node.label} (bound name {client.id_text}, "
                                f"{tries} endpoint attempt(s)): {why}", headline="Connection failed for"))
                        nxt = client.balancer.pick()
                        if nxt is node:  # a requeue goes to another endpoint when there is one
                            others = [n for n in client.balancer.nodes if n is not node and n.available]
                            if others:
                                nxt = others[getrandbits(32) % len(others)]
                        if nxt is None:
                            raise NoHosts(route.explain_no_hosts(client))
                        node = nxt  # type: ignore[assignment]
                        continue
                if self.finished:
                    node.release(bconn)
                    return
                self.attach(leaf, node, bconn)
                return
        except asyncio.CancelledError:
            pass
        except Exception as e:
            self._routing_failed(e)

    def _arm(self, seconds: float, what: str) -> None:
        """Fail with 503 unless the response head arrives within ``seconds`` (from now)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + seconds
        t = self.timer
        if t is not None:
            if t.when() <= when:
                return
            t.cancel()
        self.timer = loop.call_at(when, self._timed_out, seconds, what)

    def _timed_out(self, seconds: float, what: str) -> None:
        self.timer = None
        if self.finished or self.resp_started:
            return
        route = self.route
        name = route.name_text if route is not None else "?"
        where = f" (bound name {self.leaf.client.id_text})" if self.leaf is not None else ""
        self.fail(RequestTimeout(
            f"request to {name}{where} timed out after {seconds * 1000:.0f} ms ({what}): no response yet"))

    # --- request towards the backend -----------------------------------------------------
    def attach(self, leaf: "LeafTarget", node: Endpoint, bconn: ClientConnection) -> None:
        self.task = None
        self.leaf = leaf
        self.node = node
        self.backend = bconn
        bconn.exchange = self
        bconn.skip_body = self.head.method == b"HEAD"
        node.outstanding += 1
        conn = self.conn
        if conn.write_paused:
            bconn.stop_reading()
        head = self.head
        parts = [head.method, b" ", head.uri, b" HTTP/1.1\r\n"]
        host_line = leaf.client.host_line
        if host_line is None:
            parts += [h[2] for h in head.headers]
            if head.host is None:  # HTTP/1.0 without Host: HTTP/1.1 requires one
                parts += (b"Host: ", node.label.encode(), b"\r\n")
        else:
            # RewriteHostHeader: the bound address set names the Host its backends expect.
            parts += [h[2] for h in head.headers if h[0] != b"host"]
            parts.append(host_line)
        if head.via is None:
            parts.append(b"Via: 1.1 linkerd\r\n" if head.version != "1.0" else b"Via: 1.0 linkerd\r\n")
        else:
            parts += (b"Via: ", head.via, b", ", head.version.encode(), b" linkerd\r\n")
        parts += (
            self.route.headers,  # type: ignore[union-attr]
            leaf.headers,
            b"l5d-reqid: ",
            b"%016x" % getrandbits(64) if head.trace is None else _reqid(head.trace),
            b"\r\n",
        )
        if head.upgrade is not None:
            parts += (b"Upgrade: ", head.upgrade, b"\r\nConnection: Upgrade\r\n")
        if head.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
            if self.buf:
                for chunk in self.buf:
                    parts += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
            if self.req_done:
                parts.append(b"0\r\n\r\n")
        else:
            parts.append(b"\r\n")
            if self.buf:
                parts += self.buf
        self.buf = None
        if self.buf_bytes:
            self.buf_bytes = 0
            conn.resume_reading_for(self)
        bconn.write(b"".join(parts))

    def on_req_body(self, chunk: bytes) -> None:
        if self.finished or self.draining:
            return
        if self.rs is not None:
            self.rs.keep(chunk)  # kept for a replay while the request is retryable
        b = self.backend
        if b is not None:
            if self.head.chunked:
                b.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                b.write(chunk)
            return
        if self.resp_started:
            return
        if self.buf is None:
            self.buf = []
        self.buf.append(chunk)
        self.buf_bytes += len(chunk)
        if self.buf_bytes > BUFFER_LIMIT:
            self.conn.pause_reading_for(self)

    def on_req_done(self) -> None:
        self.req_done = True
        if self.finished:
            return
        b = self.backend
        if b is not None and self.head.chunked:
            b.write(b"0\r\n\r\n")
        if self.resp_done:
            self._complete()

    # --- response towards the client -----------------------------------------------------
    def on_resp_interim(self, status: int, reason_phrase: bytes) -> None:
        if not self.finished:
            self.conn.write(b"HTTP/1.1 %d %b\r\n\r\n" % (status, reason_phrase or b"Continue"))

    def on_resp_head(self, bconn: ClientConnection) -> None:
        if self.finished:
            return
        node = self.node
        if node is not None and node.accrual is not None:
            node.accrual.record(bconn.status)
        rs = self.rs
        extra = b""
        if rs is not None:
            extra = rs.on_resp_head(bconn)
            if extra is None:
                return  # a retryable failure: discarded, the request is retried
        status = bconn.status
        self.status = status
        self.resp_started = True
        self.resp_len = bconn.content_length
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        head = self.head
        conn = self.conn
        no_body = status == 101 or status == 204 or status == 304 or head.method == b"HEAD"
        parts = [b"HTTP/1.1 %d %b\r\n" % (status, bconn.reason or reason(status).encode())]
        leaf = self.leaf
        if leaf is not None and leaf.client.authority is not None and head.host:
            parts += _unrewrite_host(bconn.header_lines(), leaf.client.authority, head.host)
        else:
            parts += bconn.header_lines()
        if extra:
            parts.append(extra)  # l5d-success-class / l5d-retryable
        if bconn.via is None:
            parts.append(b"Via: 1.1 linkerd\r\n")
        else:
            parts += (b"Via: ", bconn.via, b", 1.1 linkerd\r\n")
        close = not head.keep_alive or conn.closing
        if status == 101:
            if bconn.upgrade is not None:
                parts += (b"Upgrade: ", bconn.upgrade, b"\r\n")
            parts.append(b"Connection: Upgrade\r\n\r\n")
            conn.write(b"".join(parts))
            return
        if head.upgrade is not None:
            close = True  # the client's parser is past the upgrade request: start afresh
        if not no_body and bconn.content_length is None:
            # Chunked or close-delimited from the backend: re-chunk for HTTP/1.1 clients,
            # close-delimit for HTTP/1.0 ones.
            self.resp_close_delimited = not bconn.chunked
            if head.version != "1.0" and not close:
                parts.append(b"Transfer-Encoding: chunked\r\n")
                self.resp_chunked = True
            else:
                close = True
        if close:
            self.close_after = True
            parts.append(b"Connection: close\r\n\r\n")
        elif head.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        conn.write(b"".join(parts))

    def on_resp_body(self, chunk: bytes) -> None:
        if self.finished or (self.rs is not None and self.rs.discarding):
            return
        if self.resp_chunked:
            self.conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.conn.write(chunk)

    def on_resp_done(self, bconn: ClientConnection) -> None:
        if self.finished:
            return
        if self.rs is not None and self.rs.discarding:
            self.rs.discarded(bconn)
            return
        self.resp_done = True
        if self.resp_chunked:
            self.conn.write(b"0\r\n\r\n")
        self._detach(reusable=bconn.keep_alive and self.req_done and not bconn.closed)
        if self.req_done:
            self._complete()
        else:
            self._early_answer()

    def _early_answer(self) -> None:
        """The backend answered before the request body ended (e.g. a 413 or 417)."""
        head = self.head
        if (not head.chunked and not head.expect_continue and head.content_length is not None
                and head.content_length <= DRAIN_LIMIT):
            self.draining = True  # read and drop the rest, then carry on with the next request
        else:
            self.close_after = True
            self._complete()

    def _detach(self, reusable: bool) -> None:
        b = self.backend
        if b is None:
            return
        self.backend = None
        node = self.node
        b.exchange = None
        self.conn.resume_reading_for(b)
        if b.paused:
            b.start_reading()
        if node is not None:
            node.outstanding -= 1
            leaf = self.leaf
            if leaf is not None:
                balancer = leaf.client.balancer
                if balancer.observes_latency:
                    balancer.observe(node, _now() - self.t0)
            if reusable:
                node.release(b)
                return
        b.close()

    # --- backend trouble ---------------------------------------------------------------
    def on_backend_lost(self, bconn: ClientConnection, exc: Optional[BaseException]) -> None:
        if self.finished or self.backend is not bconn:
            return
        if self.resp_started and self.resp_close_delimited and not self.resp_done:
            # A close-delimited response ends with the connection.
            self.on_resp_done(bconn)
            return
        if not self.resp_started and bconn.reused and not bconn.got_bytes and not self.retried \
                and not self.head.has_body and self.leaf is not None and self.node is not None:
            # A pooled connection the backend had already closed: one fresh try.
            self.retried = True
            leaf, node = self.leaf, self.node
            self._detach(reusable=False)
            self.task = asyncio.get_running_loop().create_task(self._connect(leaf, node))
            return
        why = f": {exc}" if exc else ""
        self._backend_failed(f"connection to {bconn.endpoint.label} closed before the response was complete{why}")

    def on_backend_broken(self, bconn: ClientConnection, message: str) -> None:
        if self.finished or self.backend is not bconn:
            return
        self._backend_failed(message)

    def _backend_failed(self, message: str) -> None:
        route = self.route
        client = self.leaf.client.id_text if self.leaf is not None else "?"
        why = f"{message} (bound name {client})"
        self.fail(BackendFailed(route.explain(why, headline="Backend failure for") if route else why))

    def on_backend_upgrade(self, bconn: ClientConnection, rest: bytes) -> None:
        """101 Switching Protocols: from now on both connections are a raw byte tunnel."""
        if self.finished or self.status != 101:
            bconn.close()
            return
        conn = self.conn
        self.upgraded = True
        self.backend = None
        bconn.exchange = None
        if self.node is not None:
            self.node.outstanding -= 1
        conn.tunnel = bconn
        bconn.tunnel = conn
        if rest:
            conn.write(rest)
        pending = conn.upgrade_buf
        conn.upgrade_buf = None
        if pending:
            bconn.write(b"".join(pending))
        self.resp_done = True
        self._record()
        self.finished = True

    # --- router-generated answers ----------------------------------------------------------
    def respond_status(self, leaf: "LeafTarget", status: int) -> None:
        """``/$/io.buoyant.http.status/<code>``: answer the status ourselves."""
        self.leaf = None
        self.status = status
        self.resp_started = True
        self.resp_done = True
        head = self.head
        close = not head.keep_alive or self.conn.closing or (not self.req_done and head.has_body)
        parts = [
            b"HTTP/1.1 %d %b\r\n" % (status, reason(status).encode()),
            b"Content-Length: 0\r\nVia: 1.1 linkerd\r\n",
            b"Connection: close\r\n\r\n" if close else b"\r\n",
        ]
        self.conn.write(b"".join(parts))
        if close:
            self.close_after = True
        if self.req_done or close:
            self._complete()
        else:
            self.draining = True

    def fail(self, err: RouterError) -> None:
        if self.finished:
            return
        rs = self.rs
        if not self.resp_started:
            node = self.node
            if self.backend is not None and node is not None and node.accrual is not None and (
                    rs is None or not rs.discarding):
                node.accrual.failure()  # the attempt in flight failed without a response
            if rs is not None and rs.on_fail(err):
                return  # retried
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.task = None
        if self.resp_started:
            # Part of the response is out: the only honest signal left is to cut the connection.
            self._detach(reusable=False)
            self.status = self.status or err.status
            self.close_after = True
            self.conn.abort_after = True
            self._complete()
            return
        self._detach(reusable=False)
        head = self.head
        self.status = err.status
        self.resp_started = True
        self.resp_done = True
        drainable = self.req_done or (
            not head.chunked and not head.expect_continue
            and (head.content_length or 0) <= DRAIN_LIMIT and head.upgrade is None)
        keep = head.keep_alive and drainable and not self.conn.closing and head.upgrade is None
        server = self.conn.server
        self.conn.write(error_response(
            err.status, err.message, keep_alive=keep, retryable=err.retryable,
            max_body=server.core.max_err_bytes, max_header=server.core.max_header_bytes,
            head_only=head.method == b"HEAD"))
        if not keep:
            self.close_after = True
        if self.req_done or not keep:
            self._complete()
        else:
            self.draining = True

    # --- completion ---------------------------------------------------------------------
    def _record(self) -> None:
        ms = (_now() - self.t0) * 1000.0
        status = self.status
        self.conn.server.stats.record(status, ms)
        route = self.route
        if route is not None:
            route.stats.record(status, ms)
            route.inflight -= 1
        leaf = self.leaf
        if leaf is not None:
            leaf.client.stats.record(status, ms)
        if self.counted:
            self.counted = False
            self.conn.server.inflight -= 1
        log = self.conn.server.core.access_log
        if log is not None:
            h = self.head
            cl = self.resp_len
            length = int(cl) if cl is not None and cl.isdigit() else None
            log.log(h.host, self.conn.peer, h.method, h.uri, h.version, status, length,
                    h.header(b"referer"), h.header(b"user-agent"))

    def _complete(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._record()
        self.conn.exchange_done(self)

    def abort(self) -> None:
        """The client went away."""
        if self.finished:
            return
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        b = self.backend
        if b is not None:
            self.backend = None
            b.exchange = None
            if self.node is not None:
                self.node.outstanding -= 1
            b.abort()
        self.finished = True
        if self.counted:
            if not self.resp_done:
                self.status = self.status or 0
            self._record()


class ServerConnection(Coalescing, asyncio.Protocol):
    """One accepted client connection."""

    def __init__(self, server: "HttpServer") -> None:
        self.server = server
        self.clear_context = server.clear_context
        self.max_line = server.core.max_initial_line_bytes
        self.max_headers = server.core.max_header_bytes
        self.max_head_total = self.max_line + self.max_headers + 4096
        self.linger = False
        self.in_head = False
        self.head_seen = 0
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpRequestParser(self)
        self.head: Optional[RequestHead] = None
        self.parsing: Optional[Exchange] = None
        self.queue: deque[Exchange] = deque()
        self.closing = False
        self.closed = False
        self.abort_after = False
        self.write_paused = False
        self.pause_keys: set[Any] = set()
        self.tunnel: Optional[ClientConnection] = None
        self.upgrade_buf: Optional[list[bytes]] = None
        self.hdr_bytes = 0
        self.url_bytes = 0
        self.limit_error: Optional[str] = None
        self.out: Optional[list[bytes]] = None
        self.peer = "-"

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        self.server.conns.add(self)
        self.server.connects.value += 1
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "-"

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgrade_buf is not None:
            self.upgrade_buf.append(data)
            return
        if self.closed:
            return
        if self.in_head:
            # httptools buffers a header line until it ends: bound what one head may take.
            self.head_seen += len(data)
            if self.head_seen > self.max_head_total:
                self.bad_request(f"request head larger than maxInitialLineKB + maxHeadersKB "
                                 f"({self.max_head_total // 1024} KB)")
                return
        BATCH.depth += 1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            rest = data[e.args[0]:]
            ex = self.parsing
            if ex is not None and ex.head.upgrade is not None and not ex.finished:
                self.upgrade_buf = [rest] if rest else []
            else:
                self.bad_request("unexpected protocol upgrade (CONNECT is not supported)")
        except httptools.HttpParserError as e:
            msg = self.limit_error or (str(e.args[0]) if e.args else str(e))
            self.bad_request(msg)
        finally:
            BATCH.depth -= 1
            if not BATCH.depth and BATCH.dirty:
                BATCH.flush()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self.server.conns.discard(self)
        t = self.tunnel
        if t is not None:
            self.tunnel = None
            t.tunnel = None
            t.close()
        for ex in self.queue:
            ex.abort()
        self.queue.clear()
        self.transport = None
        self.server.conn_closed()

    def pause_writing(self) -> None:
        # The client reads slower than the backend sends: stop reading the backend.
        self.write_paused = True
        b = self._upstream()
        if b is not None:
            b.stop_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        b = self._upstream()
        if b is not None:
            b.start_reading()

    def _upstream(self) -> Optional[ClientConnection]:
        """The backend connection feeding this client: the tunnel's, or the head exchange's."""
        if self.tunnel is not None:
            return self.tunnel
        return self.queue[0].backend if self.queue else None

    # flow control helpers -------------------------------------------------------------
    def pause_reading_for(self, key: Any) -> None:
        if not self.pause_keys and self.transport is not None:
            self.transport.pause_reading()
        self.pause_keys.add(key)

    def resume_reading_for(self, key: Any) -> None:
        keys = self.pause_keys
        if key in keys:
            keys.discard(key)
            if not keys and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    # httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.head = RequestHead()
        self.hdr_bytes = 0
        self.url_bytes = 0
        self.in_head = True
        self.head_seen = 0

    def on_url(self, url: bytes) -> None:
        self.url_bytes += len(url)
        if self.url_bytes > self.max_line:
            self.limit_error = (
                f"request line longer than maxInitialLineKB ({self.max_line // 1024} KB)")
            raise _LimitExceeded()
        self.head.uri += url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.hdr_bytes += len(name) + len(value) + 4
        if self.hdr_bytes > self.max_headers:
            self.limit_error = f"request headers larger than maxHeadersKB ({self.max_headers // 1024} KB)"
            raise _LimitExceeded()
        h = self.head
        lname = name.lower()
        if lname[:4] == b"l5d-":
            if self.clear_context:
                return
            if lname in L5D_REWRITTEN:
                if lname == b"l5d-dtab":
                    h.dtab = value if h.dtab is None else h.dtab + b";" + value  # type: ignore[union-attr]
                elif lname == b"l5d-ctx-dtab":
                    h.dtab_ctx = value if h.dtab_ctx is None else h.dtab_ctx + b";" + value  # type: ignore[union-attr]
                return
            if lname == b"l5d-ctx-trace":
                h.trace = value  # type: ignore[union-attr]
        elif lname in HOP_REQ:
            if lname == b"transfer-encoding":
                codings = [t.strip() for t in value.lower().split(b",")]
                if any(c != b"chunked" for c in codings):
                    # Only chunked is relayed; anything else would reach the backend mislabelled.
                    self.limit_error = f"unsupported Transfer-Encoding {value.decode('latin-1')!r} (only chunked)"
                    raise _LimitExceeded()
                h.chunked = True  # type: ignore[union-attr]
            elif lname == b"connection":
                toks = [t.strip().lower() for t in value.split(b",")]
                h.connection_tokens = (h.connection_tokens or []) + toks  # type: ignore[union-attr]
            elif lname == b"upgrade":
                h.upgrade = value  # type: ignore[union-attr]
            return
        elif lname == b"host":
            if h.host is not None:  # RFC 7230 §5.4: more than one Host is a 400
                self.limit_error = "more than one Host header"
                raise _LimitExceeded()
            h.host = value  # type: ignore[union-attr]
        elif lname == b"via":
            h.via = value if h.via is None else h.via + b", " + value  # type: ignore[union-attr]
            return
        elif lname == b"content-length":
            h.content_length = int(value)  # type: ignore[union-attr]
        elif lname == b"expect":
            if value.lower() == b"100-continue":
                h.expect_continue = True  # type: ignore[union-attr]
        h.headers.append((lname, value, name + b": " + value + b"\r\n"))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        self.in_head = False
        h = self.head
        assert h is not None
        p = self.parser
        h.method = p.get_method()
        h.version = p.get_http_version()
        h.keep_alive = p.should_keep_alive()
        if h.upgrade is not None and not (h.connection_tokens and b"upgrade" in h.connection_tokens):
            h.upgrade = None  # Upgrade without "Connection: upgrade" is not an upgrade request
        if h.connection_tokens:
            toks = h.connection_tokens
            h.headers = [x for x in h.headers if x[0] not in toks]
        u = h.uri
        if u[:1] != b"/" and (u[:7].lower() == b"http://" or u[:8].lower() == b"https://"):
            self._absolute_form(h)
        ex = Exchange(self, h)
        self.parsing = ex
        self.queue.append(ex)
        if len(self.queue) == 1:
            ex.start()
        else:
            self.pause_reading_for(_PIPELINE)

    @staticmethod
    def _absolute_form(h: RequestHead) -> None:
        """``GET http://pong/pong`` (http_proxy clients): origin-form URI, authority -> Host."""
        rest = h.uri.split(b"://", 1)[1]
        cut = len(rest)
        for sep in (b"/", b"?", b"#"):
            i = rest.find(sep)
            if 0 <= i < cut:
                cut = i
        authority = rest[:cut]
        if b"@" in authority:
            authority = authority.rsplit(b"@", 1)[1]
        path = rest[cut:]
        if not path.startswith(b"/"):
            path = b"/" + path
        h.uri = path
        if authority:
            h.host = authority
            line = b"Host: " + authority + b"\r\n"
            h.headers = [x for x in h.headers if x[0] != b"host"]
            h.headers.insert(0, (b"host", authority, line))

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            ex.on_req_body(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is not None:
            ex.on_req_done()

    # lifecycle --------------------------------------------------------------------------
    def exchange_done(self, ex: Exchange) -> None:
        q = self.queue
        if q and q[0] is ex:
            q.popleft()
        else:
            try:
                q.remove(ex)
            except ValueError:
                pass
        if ex.close_after or (self.closing and not q):
            self.close(abort=self.abort_after)
            return
        if ex.upgraded:
            return
        if q:
            if len(q) == 1:
                self.resume_reading_for(_PIPELINE)
            nxt = q[0]
            nxt.t0 = _now()  # latency counts from when it starts, not from its arrival
            nxt.start()
        else:
            self.resume_reading_for(_PIPELINE)

    def bad_request(self, message: str) -> None:
        """Malformed input: 400 naming the problem, then close; the active exchange (if any)
        is abandoned, since the byte stream can no longer be trusted."""
        self.limit_error = None
        active = self.queue[0] if self.queue else None
        if active is not None and not active.finished:
            if active.resp_started or active is not self.parsing:
                self.close(abort=True)
                return
            self.linger = True
            active.fail(BadRequest(f"malformed request: {message}"))
            self.close()
            return
        # Linkerd answers 400 for every framing error, oversized heads included.
        self.server.stats.record(400, 0.0)
        self.write(error_response(
            400, f"malformed request: {message}", keep_alive=False,
            max_body=self.server.core.max_err_bytes, max_header=self.max_headers))
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
                asyncio.get_running_loop().call_later(LINGER_S, t.close)
                return
        self.closed = True
        t = self.transport
        if t is not None:
            if abort:
                t.abort()
            else:
                t.close()

    def close_tunnel(self) -> None:
        """The backend side of a tunnel closed."""
        self.tunnel = None
        self.close()

    def shutdown(self) -> None:
        """Graceful close: finish what is in flight, then close."""
        self.closing = True
        if not self.queue and self.tunnel is None:
            self.close()

    @property
    def idle(self) -> bool:
        return not self.queue and self.tunnel is None
