"""One request, from its head to the last byte of its answer, whatever the wire format.

A codec (``h1/server.py`` today; HTTP/2 next) creates a :class:`Lifecycle` per request
with a :class:`~.message.RequestHead` and the object that answers it (the
*downstream*: an HTTP/1 connection, an HTTP/2 stream), calls :meth:`Lifecycle.start`,
and feeds it the request body (:meth:`request_body`, :meth:`request_end`) and the
client's disappearance (:meth:`cancel`). The upstream codec (``h1/client.py``) feeds it
the response (:meth:`response_head`, :meth:`response_body`, :meth:`response_end`,
:meth:`response_interim`) and trouble (:meth:`upstream_lost`, :meth:`upstream_broken`).
The contract of both sides is written down in docs/architecture.md ("The request
lifecycle").

Everything between is here, once: admission, identification and routing
(``RouterCore.resolve``), the one dispatch path (pick a leaf of the bound tree, an
endpoint, a pooled or new connection; connect failures requeued to another endpoint),
the per-request policy (retries, timeouts, classification: ``policy/runtime.py``,
which drives retries through :meth:`reset_for_retry` and :meth:`dispatch`), failure
accrual, router-made answers, metrics (one record per request) and the access log.

The state is explicit: :class:`Phase` for the exchange and :class:`Upload` for the
request body, changed only by this class's methods. The common case — binding known,
idle pooled connection — runs from the codec's callback without a task or a future;
only waiting (a pending binding, a new connection) goes through a coroutine, while
body pieces that arrive meanwhile are buffered (bounded: the codec pauses reading above
``BUFFER_LIMIT``).

A router with ``streamingEnabled: false`` (``core.max_request_bytes`` /
``max_response_bytes`` set) buffers both messages whole: :meth:`start` waits for the
request's last byte (:meth:`_defer`; over ``maxRequestKB``: 413 before any backend sees
it), and a response is held like a diagnostic answer and sent with a Content-Length once
complete (over ``maxResponseKB``, or broken off: a router-made 502, never a cut answer).
With streaming (the default) neither costs more than one attribute test.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Coroutine, Optional

from ..tracing import diagnostic
from ..tracing.tracer import RequestTrace
from ..ratelog import RateLimitedLog
from .connect import connection_for
from .errors import (
    BackendFailed, BadRequest, DeadlineExceeded, NoHosts, Overloaded, PayloadTooLarge, RouterError, reason,
)
from .message import EMPTY_BLOCK, HeaderBlock, RequestHead, ResponseHead, SimpleResponseHead, derive_request
from .policy.classifiers import SUCCESS
from .policy.timeouts import incoming_deadline
from .phases import (  # noqa: F401  (the states, re-exported for the codecs and the policy)
    ANSWERED, COMPLETE, CONNECTING, DISCARDING, DONE, HOLDING, RECEIVING, RESPONDING, RETRYING, ROUTING, SENT,
    WAITING, Phase, Upload,
)

if TYPE_CHECKING:  # pragma: no cover
    from .pool import Endpoint
    from .router import HttpServer
    from .routing import ServiceStage
    from .stats import Cell
    from .targets import LeafTarget

#: Request body buffered while no upstream connection exists yet; above it reading pauses.
BUFFER_LIMIT = 256 * 1024
#: A request body still to come after an early answer is read and dropped if at most this
#: big; otherwise the connection is not reused.
DRAIN_LIMIT = 64 * 1024
#: A diagnostic TRACE answer held to append the router's context: a longer (or chunked)
#: body is replaced by Linkerd's placeholder.
DIAGNOSTIC_BODY_LIMIT = 64 * 1024


class _Hold:
    """What a policy's ``on_response`` returns to keep a response until it can classify it."""


#: ``policy.on_response`` → keep the response (phase HOLDING; HTTP/2's ClassifiedRetries)
HOLD: Any = _Hold()

_now = time.monotonic
log = logging.getLogger("namerouter.proxy")
#: responses cut after their head: one line per client (bound id) per 10 s at most
_CUT_LOG = RateLimitedLog(log, 10.0)


class Lifecycle:
    """One request/response exchange (see the module docstring)."""

    __slots__ = (
        "down", "server", "head", "uri", "t0", "phase", "upload", "route", "leaf", "node", "up",
        "body", "body_bytes", "task", "policy", "status", "resp_len", "stale_retried", "trace",
        "trace_block", "retrying", "failed", "why", "diag", "held", "held_bytes", "held_resp", "deadline", "counted",
        "bind_deadline",
        "dl_timer", "failure", "added", "deferred",
    )

    def __init__(self, down: Any, server: "HttpServer", head: RequestHead) -> None:
        #: the downstream: writes the answer (see docs/architecture.md for its methods)
        self.down = down
        self.server = server
        self.head = head
        #: the request target to forward (an identifier may consume a prefix of it)
        self.uri = head.uri
        self.t0 = _now()
        self.phase = WAITING
        self.upload = RECEIVING
        self.route: Optional["ServiceStage"] = None
        self.leaf: Optional["LeafTarget"] = None
        self.node: Optional["Endpoint"] = None
        #: the upstream connection of the current attempt
        self.up: Any = None
        #: request body pieces received while no upstream connection carries the request
        self.body: Optional[list[bytes]] = None
        self.body_bytes = 0
        self.task: Optional[asyncio.Task[Any]] = None
        #: retries/timeouts state (policy/runtime.py RequestPolicy) when the name has a policy
        self.policy: Any = None
        self.status = 0
        #: the response's Content-Length, for the access log
        self.resp_len: Optional[int] = None
        self.stale_retried = False
        #: the request's trace context (``tracing.RequestTrace``), from ``start``
        self.trace: Optional[RequestTrace] = None
        #: the trace-context header lines of the current attempt (``l5d-ctx-trace``,
        #: ``l5d-reqid``, B3/W3C as the request came with them; CRLF-terminated)
        self.trace_block = b""
        #: fields the server adds to the forwarded request (timestampHeader, Forwarded:
        #: forwarded.py), set by the codec; None: none
        self.added: Optional[list[tuple[bytes, bytes]]] = None
        #: the next attempt is a retry by the classifier (not a first try or a requeue)
        self.retrying = False
        #: the answer is a failure (the service's response classifier, or a router-made 5xx)
        self.failed = False
        #: why it failed (router-made answers), for the trace
        self.why: Optional[str] = None
        #: a diagnostic TRACE (``tracing.diagnostic.Plan``), else None
        self.diag: Optional[diagnostic.Plan] = None
        #: a diagnostic answer held to append the context: its body pieces (None: not
        #: holding), their size (-1: too long or chunked, dropped), its head and headers
        self.held: Optional[list[bytes]] = None
        self.held_bytes = 0
        self.held_resp: Optional[tuple[ResponseHead, HeaderBlock]] = None
        #: ``l5d-ctx-deadline`` to send instead of the incoming ones (b"": none), or None
        #: to forward them as received; set by the policy
        self.deadline: Optional[bytes] = None
        self.counted = False
        self.bind_deadline = 0.0
        #: the incoming l5d-ctx-deadline's timer (timers.Timer), when the request has one
        self.dl_timer: Any = None
        #: the exception name a request whose response was cut is counted under, else None
        self.failure: Optional[str] = None
        #: streamingEnabled: false: the request waits for its whole body before it starts
        self.deferred = False

    # --- what the codecs and the policy may read ----------------------------------------
    @property
    def done(self) -> bool:
        return self.phase is DONE

    @property
    def responding(self) -> bool:
        """Something was sent to the client (or the exchange is over)."""
        return self.phase >= RESPONDING

    @property
    def upload_complete(self) -> bool:
        return self.upload is COMPLETE

    # --- start: admission, routing ---------------------------------------------------------
    def start(self, t0: Optional[float] = None) -> None:
        """The request's turn has come (at once, or after a pipelined predecessor)."""
        if t0 is not None:
            self.t0 = t0  # latency counts from when it starts, not from its arrival
        if self.upload is not COMPLETE and self.server.core.max_request_bytes is not None and self._defer():
            return
        self._begin(None)

    def _begin(self, refused: Optional[RouterError]) -> None:
        """Admission, routing and the first dispatch (``refused``: answer that instead)."""
        self.phase = ROUTING
        server = self.server
        head = self.head
        core = server.core
        # Every request gets a trace context (ids + the header lines for the next hop);
        # spans only when a telemeter samples it (trace.recording).
        self.trace = trace = core.tracer.begin(head.trace_headers, remote=getattr(self.down, "remote", None),
                                               local=server.local, method=head.method, uri=head.uri, host=head.host)
        server.inflight += 1
        self.counted = True
        try:
            if refused is not None:
                raise refused
            if server.max_concurrent is not None and server.inflight > server.max_concurrent:
                raise Overloaded(f"server {server.ip}:{server.port} is at maxConcurrentRequests "
                                 f"({server.max_concurrent}); request rejected")
            if head.via is not None and head.via.count(b",") + 1 > server.max_call_depth:
                # Linkerd's MaxCallDepthExceeded text, word for word
                raise BadRequest(f"Maximum number of calls ({server.max_call_depth}) has been exceeded. "
                                 "Please check for proxy loops.")
            route, new_uri = core.resolve(head, server.system_namers)
        except Exception as e:
            self._routing_failed(e)
            return
        self.route = route
        route.inflight += 1
        route.last_used = self.t0
        if trace.recording:
            trace.routed(route.name_text, route.local_text)
        if new_uri is not None:
            self.uri = new_uri
        if head.method == b"TRACE" and self._diagnostic():
            return
        if head.deadline is not None and self._incoming_deadline():
            return
        if route.policy is not None:
            self.policy = route.policy.begin(self)
        else:
            route.service_policy.budget.deposit()  # Finagle's RetryFilter: every request earns credit
        self.dispatch()

    def _defer(self) -> bool:
        """``streamingEnabled: false``: wait for the whole request body (buffered, at most
        maxRequestKB) before routing, so the request goes out whole and can be replayed.
        True when the start is deferred or the request refused (413)."""
        head = self.head
        if head.upgrade is not None or head.method == b"CONNECT":
            return False  # a tunnel is never buffered
        limit = self.server.core.max_request_bytes
        assert limit is not None
        if (head.content_length or 0) > limit or self.body_bytes > limit:
            self._too_large(limit)
            return True
        self.deferred = True
        if head.expect_continue and not self.body_bytes:
            # the router reads the body now, so it says go ahead (as Netty's aggregator)
            self.down.send_interim(100, b"Continue")
        if self.body_bytes > BUFFER_LIMIT:  # paused while it waited for its turn
            self.down.resume_request_body(self)
        return True

    def _whole_request(self) -> None:
        """streamingEnabled: false: the whole body is here. A chunked one goes out with its
        Content-Length, and without the Expect the router answered already (as Netty's
        aggregator under Finagle sends a whole message); then the request starts."""
        head = self.head
        if head.expect_continue:
            head = derive_request(head, b"expect", None)
            head.expect_continue = False
        if head.chunked:
            n = self.body_bytes
            head = derive_request(head, b"content-length", b"%d" % n)
            head.chunked = False
            head.content_length = n
        self.head = head
        self._begin(None)

    def _too_large(self, limit: int) -> None:
        """The request body is over maxRequestKB: 413, before any backend sees it."""
        self.deferred = False
        self.body = None
        self.body_bytes = 0
        cl = self.head.content_length
        size = f"{cl} bytes" if cl is not None else f"more than {limit} bytes (chunked)"
        self._begin(PayloadTooLarge(f"request body of {size} is larger than maxRequestKB ({limit // 1024} KB); "
                                    "streamingEnabled: false buffers requests whole"))

    def _incoming_deadline(self) -> bool:
        """``l5d-ctx-deadline`` from the client: invalid values are dropped, the strictest
        valid one is forwarded and enforced like totalTimeoutMs (until the response head).
        True when it has already passed (the request is answered)."""
        now = time.time_ns()
        d = incoming_deadline(self.head.deadline or (), now)
        if d is None:
            self.deadline = b""
            return False
        self.deadline = b"%d %d" % d
        left = (d[1] - now) / 1e9
        if left <= 0:
            self.fail(DeadlineExceeded(self._deadline_message(d[1] - now)))
            return True
        self.dl_timer = self.server.wheel().after(left, Lifecycle._deadline_passed, self)
        return False

    def _deadline_message(self, left_ns: int) -> str:
        name = self.route.name_text if self.route is not None else "?"
        return (f"request to {name} exceeded its l5d-ctx-deadline (it passed {-left_ns / 1e6:.0f} ms ago)"
                if left_ns < 0 else f"request to {name} exceeded its l5d-ctx-deadline")

    def _deadline_passed(self) -> None:
        self.dl_timer = None
        if self.phase < RESPONDING:
            self.fail(DeadlineExceeded(self._deadline_message(0)))

    def _diagnostic(self) -> bool:
        """A ``TRACE`` request: Linkerd's diagnostic tracer (``tracing/diagnostic.py``).
        True when it is answered already (a bad ``Max-Forwards``)."""
        head = self.head
        plan = diagnostic.plan(head.method, head.header(b"max-forwards"), head.header(b"l5d-add-context"))
        if plan.action == diagnostic.PASS:
            return False
        if plan.action == diagnostic.BAD_REQUEST:
            self.fail(BadRequest(diagnostic.BAD_MAX_FORWARDS))
            return True
        self.diag = plan
        if plan.max_forwards is not None:  # FORWARD with Max-Forwards decremented
            self.head = derive_request(head, b"max-forwards", b"%d" % plan.max_forwards)
        return False

    def dispatch(self) -> None:
        """Pick a leaf of the bound tree and an endpoint, and send the request: the one
        path of every attempt (first tries and retries)."""
        route = self.route
        assert route is not None
        self.phase = ROUTING
        target = route.target
        if target is None:
            if route.error is not None:
                self.fail(route.error)  # known not to route: answer now, no task
            else:
                self._wait(self._when_bound())
            return
        try:
            leaf = target.pick()
        except RouterError as e:
            self.fail(e)
            return
        client = leaf.client
        if client.pending:
            self._wait(self._when_bound())
            return
        if client.status_code is not None:
            self._answer_status(client.status_code)
            return
        node = client.balancer.pick()
        if node is None:
            self.fail(NoHosts(route.explain_no_hosts(client)))
            return
        self.leaf = leaf
        self.node = node  # type: ignore[assignment]
        diag = self.diag
        if diag is not None and diag.action == diagnostic.ANSWER:
            self._wait(self._diagnostic_answer())  # Max-Forwards: 0: this router answers
            return
        if self.policy is not None:
            self.policy.attempt(self, client)
        conn = node.get_idle() if self.head.method != b"CONNECT" else None  # type: ignore[attr-defined]
        if conn is not None:
            self._send(conn)
            return
        self.phase = CONNECTING
        self._wait(self._connect(node))  # type: ignore[arg-type]

    def _wait(self, coro: Coroutine[Any, Any, None]) -> None:
        self.task = asyncio.get_running_loop().create_task(coro)

    async def _when_bound(self) -> None:
        """The binding (or the picked client's address set) is pending: wait for it, at most
        bindingTimeoutMs from the first wait, then dispatch again."""
        route = self.route
        assert route is not None
        try:
            if not self.bind_deadline:
                self.bind_deadline = asyncio.get_running_loop().time() + route.table.binding_timeout_s
            target = await route.wait_bound(self.bind_deadline)
            await target.pick().client.wait_ready(self.bind_deadline)
        except asyncio.CancelledError:
            return
        except Exception as e:
            self.task = None
            self._routing_failed(e)
            return
        self.task = None
        if self.phase is ROUTING:
            self.dispatch()

    async def _connect(self, node: "Endpoint") -> None:
        """A connection to ``node`` (or, after connect failures, to another endpoint)."""
        try:
            node, conn = await connection_for(self.route, self.leaf.client, node,  # type: ignore[union-attr,arg-type]
                                              self.head.method == b"CONNECT")
        except asyncio.CancelledError:
            return
        except Exception as e:
            self.task = None
            self._routing_failed(e)
            return
        self.task = None
        if self.phase is not CONNECTING:
            node.release(conn)
            return
        self.node = node
        self._send(conn)

    def _routing_failed(self, e: BaseException) -> None:
        """Answer a request whose routing raised."""
        if isinstance(e, RouterError):
            self.fail(e)
            return
        # a bug or a broken plugin: answer, log, keep serving
        log.exception("routing %r failed", self.head.uri, exc_info=e)
        self.fail(RouterError(f"internal error while routing the request: {type(e).__name__}: {e}"))

    # --- the request towards the upstream ----------------------------------------------
    def _send(self, conn: Any) -> None:
        if self.head.method == b"CONNECT":
            self._open_tunnel(conn)
            return
        self.task = None
        self.up = conn
        conn.lc = self
        node = self.node
        node.outstanding += 1  # type: ignore[union-attr]
        self.phase = SENT
        # A new client span (when recording) and the context the next hop receives.
        leaf = self.leaf
        self.trace_block = self.trace.attempt(  # type: ignore[union-attr]
            leaf.client.id_text, leaf.residual, node.host, node.port, retry=self.retrying)  # type: ignore[union-attr]
        self.retrying = False
        if self.down.write_paused:
            conn.pause_reading()
        body, self.body = self.body, None
        conn.send_request(self, body)
        if self.body_bytes:
            self.body_bytes = 0
            self.down.resume_request_body(self)

    def request_body(self, chunk: bytes) -> None:
        """A piece of the request body (the codec has removed its framing)."""
        phase = self.phase
        if phase >= RESPONDING:
            if phase is RESPONDING and self.up is not None:
                self.up.send_body(chunk)  # full duplex (gRPC streams): the backend still reads
            return  # answered: dropped
        if self.policy is not None:
            self.policy.keep(chunk)  # kept for a replay while the request is retryable
        up = self.up
        if up is not None and (phase is SENT or phase is HOLDING):
            up.send_body(chunk)
            return
        if self.body is None:
            self.body = [chunk]
        else:
            self.body.append(chunk)
        self.body_bytes += len(chunk)
        if self.deferred:
            limit = self.server.core.max_request_bytes
            if limit is not None and self.body_bytes > limit:
                self._too_large(limit)
        elif self.body_bytes > BUFFER_LIMIT:
            self.down.pause_request_body(self)

    def request_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """The request's trailers (HTTP/2); ``request_end`` follows. Kept on the head, so
        a retry sends them again."""
        self.head.trailers = fields
        phase = self.phase
        if self.up is not None and (phase is SENT or phase is HOLDING or phase is RESPONDING):
            self.up.send_trailers(fields)

    def request_end(self) -> None:
        """The request is complete."""
        self.upload = COMPLETE
        if self.deferred:
            self.deferred = False
            if self.phase is WAITING:
                self._whole_request()
            return
        phase = self.phase
        if self.up is not None and (phase is SENT or phase is HOLDING or phase is RESPONDING):
            self.up.end_body()
        elif phase is ANSWERED:
            self._complete()

    # --- the response towards the client -----------------------------------------------
    def response_interim(self, status: int, reason_phrase: bytes) -> None:
        if self.phase is SENT:
            self.down.send_interim(status, reason_phrase)

    def response_head(self, resp: ResponseHead) -> None:
        if self.phase is not SENT:
            return
        node = self.node
        status = resp.status
        if node is not None and node.accrual is not None:
            node.accrual.record(status)
        policy = self.policy
        if policy is None and status >= 500 and resp.retryable and self._replayable():
            # A router further down says the request never reached a service: retried
            # under the default classifier too, as Linkerd does, within the name's budget.
            policy = self.policy = self.route.service_policy.late(self)  # type: ignore[union-attr]
        if policy is not None:
            extra = policy.on_response(self, resp)
            if extra is None:
                self.phase = DISCARDING  # retryable: read and drop it, then retry
                trace = self.trace
                if trace.recording:  # type: ignore[union-attr]
                    trace.attempt_done(status, f"status {status}: retried", True)  # type: ignore[union-attr]
                return
            if extra is HOLD:
                self.phase = HOLDING  # the policy keeps it until it can classify it
                return
            self._respond(resp, extra, policy.klass != SUCCESS)  # the service's response classifier
            return
        self._respond(resp, EMPTY_BLOCK, status >= 500)  # Linkerd's default classifier, nonRetryable5XX

    def _respond(self, resp: ResponseHead, extra: HeaderBlock, failed: bool) -> None:
        """Relay a response head (classified: ``failed``)."""
        status = resp.status
        self.failed = failed
        trace = self.trace
        if trace.recording:  # type: ignore[union-attr]
            trace.attempt_done(status, (self.why or f"status {status}") if failed else None,  # type: ignore[union-attr]
                               False)
        self.status = status
        self.resp_len = resp.content_length
        self.phase = RESPONDING
        diag = self.diag
        if diag is not None and diag.add_context:
            # hold the answer: this router's context is appended once it is complete
            self.held = []
            self.held_resp = (resp, extra)
            cl = resp.content_length
            self.held_bytes = 0 if cl is not None and cl <= DIAGNOSTIC_BODY_LIMIT else -1
            return
        if self.server.core.max_response_bytes is not None and self._hold_whole(resp, extra):
            return
        self.down.send_response_head(self, resp, extra, self._unrewrite())

    def _hold_whole(self, resp: ResponseHead, extra: HeaderBlock) -> bool:
        """``streamingEnabled: false``: keep the response until its last byte (at most
        maxResponseKB), then send it whole (:meth:`_send_whole`). False: it has no body."""
        status = resp.status
        method = self.head.method
        if status < 200 or status == 204 or status == 304 or method == b"HEAD" or method == b"CONNECT":
            return False
        self.held = []
        self.held_resp = (resp, extra)
        self.held_bytes = 0
        cl = resp.content_length
        limit = self.server.core.max_response_bytes
        if cl is not None and limit is not None and cl > limit:
            self._response_too_large(cl)
        return True

    def _response_too_large(self, size: Optional[int]) -> None:
        """Over maxResponseKB: a router-made 502 instead (nothing went to the client yet)."""
        limit = self.server.core.max_response_bytes or 0
        said = f"of {size} bytes" if size is not None else f"of more than {limit} bytes"
        self.upstream_broken(self.up, f"response {said} is larger than maxResponseKB ({limit // 1024} KB); "
                                      "streamingEnabled: false buffers responses whole",
                             "com.twitter.finagle.http.TooLongMessageException")

    def _send_whole(self) -> None:
        """The held response is complete: send it with its Content-Length."""
        held, self.held = self.held, None
        kept = self.held_resp
        self.held_resp = None
        if held is None or kept is None:
            return
        resp, extra = kept
        body = b"".join(held)
        fields = [(n, v) for n, v in resp.fields() if n.lower() != b"content-length"]
        fields.append((b"Content-Length", b"%d" % len(body)))
        whole = SimpleResponseHead(resp.status, resp.reason, fields, len(body), resp.via)
        whole.has_class = resp.has_class
        self._answer_held(whole, extra, body)

    def _replayable(self) -> bool:
        """The request can be sent again without a policy having kept its body: it has none."""
        head = self.head
        return (not head.has_body and head.upgrade is None and head.method != b"CONNECT" and self.upload is COMPLETE
                and self.route is not None)

    def _unrewrite(self) -> Optional[tuple[bytes, bytes]]:
        authority = self.leaf.client.authority  # type: ignore[union-attr]
        return (authority, self.head.host) if authority is not None and self.head.host else None

    def response_body(self, chunk: bytes) -> None:
        phase = self.phase
        if phase is RESPONDING:
            held = self.held  # a diagnostic answer kept to append the router's context
            if held is None:
                self.down.send_body(chunk)
            elif self.diag is None or not self.diag.add_context:  # streamingEnabled: false
                self.held_bytes += len(chunk)
                if self.held_bytes > (self.server.core.max_response_bytes or 0):
                    self._response_too_large(None)
                else:
                    held.append(chunk)
            elif self.held_bytes >= 0:
                self.held_bytes += len(chunk)
                if self.held_bytes > DIAGNOSTIC_BODY_LIMIT:
                    self.held_bytes = -1
                    held.clear()
                else:
                    held.append(chunk)
        elif phase is HOLDING:
            self.policy.held_body(self, chunk)

    def response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """The response's trailers (HTTP/2); ``response_end`` follows."""
        phase = self.phase
        if phase is RESPONDING:
            policy = self.policy
            if policy is not None:
                policy.on_trailers(self, fields)  # gRPC: grpc-status classifies the response
            if self.held is None:  # (a held diagnostic answer is sent whole, without them)
                self.down.send_trailers(fields)
        elif phase is HOLDING:
            self.policy.held_trailers(self, fields)

    def release_held(self, resp: ResponseHead, extra: HeaderBlock, chunks: list[bytes],
                     trailers: Optional[list[tuple[bytes, bytes]]]) -> None:
        """The policy relays a held response (classified, or it cannot wait longer): what
        arrived so far goes out now, the rest streams as usual."""
        if self.phase is not HOLDING:
            return
        self._respond(resp, extra, self.policy.klass != SUCCESS)
        for c in chunks:
            self.response_body(c)
        if trailers is not None:
            self.response_trailers(trailers)

    def response_end(self, reusable: bool) -> None:
        """The response is complete; ``reusable``: the upstream connection may carry another."""
        phase = self.phase
        if phase is DISCARDING:
            self._detach(reusable)
            self.policy.discarded(self)
            return
        if phase is HOLDING:
            if self.policy.held_end(self):  # retryable: dropped, the request goes again
                self._detach(reusable)
                self.policy.discarded(self)
                return
            phase = self.phase  # released (RESPONDING)
        if phase is not RESPONDING:
            return
        if self.held is not None:
            self._detach(reusable and self.upload is COMPLETE)
            diag = self.diag
            if diag is None or not diag.add_context:
                self._send_whole()  # streamingEnabled: false
            else:
                self._wait(self._diagnostic_reply())
            return
        self.down.end_response()
        complete = self.upload is COMPLETE
        self._detach(reusable and complete)
        if complete:
            self._complete()
        else:
            self._early_answer()

    # --- diagnostic TRACE (Linkerd's DiagnosticTracer) ---------------------------------------
    async def _diagnostic_context(self) -> str:
        """This router's block: names, addresses, the chosen endpoint, the dtab steps."""
        route = self.route
        leaf = self.leaf
        node = self.node
        assert route is not None and leaf is not None and node is not None
        client = leaf.client
        addrs = [e.label for e in client.endpoints.values()] if client.endpoints else None
        return await diagnostic.router_context(
            route.table.interpreter, route.dtab, route.name, client.id_text, addrs, node.label, route.table.label,
            int((_now() - self.t0) * 1000))

    async def _diagnostic_answer(self) -> None:
        """``Max-Forwards: 0``: answer 200 here (with the context when asked for)."""
        try:
            body = b""
            if self.diag is not None and self.diag.add_context:
                body = diagnostic.append_context(b"", await self._diagnostic_context())
        except asyncio.CancelledError:
            return
        self.task = None
        if self.phase is not ROUTING:
            return
        if self.policy is not None:
            self.policy.finish()
        fields = [(b"Content-Type", b"text/plain; charset=utf-8")] if body else []
        fields.append((b"Content-Length", b"%d" % len(body)))
        self._answer_held(SimpleResponseHead(200, b"OK", fields, len(body)), EMPTY_BLOCK, body)

    async def _diagnostic_reply(self) -> None:
        """The held answer is complete: send it with this router's context appended."""
        try:
            ctx = await self._diagnostic_context()
        except asyncio.CancelledError:
            return
        self.task = None
        held, self.held = self.held, None
        if self.phase is not RESPONDING or held is None or self.held_resp is None:
            return
        resp, extra = self.held_resp
        self.held_resp = None
        fields = resp.fields()
        if self.held_bytes < 0:
            lines = [f"{n.decode('latin-1')}: {v.decode('latin-1')}" for n, v in fields]
            body = diagnostic.chunked_placeholder(lines, resp.status, resp.reason.decode("latin-1") or reason(resp.status))
        else:
            body = b"".join(held)
        body = diagnostic.append_context(body, ctx)
        out = [(n, v) for n, v in fields if n.lower() != b"content-length"]
        out.append((b"Content-Length", b"%d" % len(body)))
        self._answer_held(SimpleResponseHead(resp.status, resp.reason, out, len(body), resp.via), extra, body)

    def _answer_held(self, resp: ResponseHead, extra: HeaderBlock, body: bytes) -> None:
        """Write a whole answer made here (head, body, end) and finish the exchange."""
        self.status = resp.status
        self.resp_len = len(body)
        self.phase = RESPONDING
        down = self.down
        down.send_response_head(self, resp, extra, self._unrewrite() if self.leaf is not None else None)
        if body:
            down.send_body(body)
        down.end_response()
        if self.upload is COMPLETE:
            self._complete()
        else:
            self._early_answer()

    def _drainable(self) -> bool:
        """Whether the rest of the request body may be read and dropped after an answer (so
        the connection carries on) instead of closing the connection."""
        head = self.head
        return self.upload is COMPLETE or (
            not head.chunked and not head.expect_continue and head.upgrade is None
            and (head.content_length or 0) <= DRAIN_LIMIT)

    def _early_answer(self) -> None:
        """Answered before the request body ended (e.g. a 413 or 417)."""
        if self._drainable():
            self.phase = ANSWERED
        else:
            self.down.close_after()
            self._complete()

    def upstream_upgraded(self, conn: Any, rest: bytes) -> None:
        """101 Switching Protocols: the codecs turn both connections into a byte tunnel."""
        if self.phase is not RESPONDING or self.status != 101:
            conn.close()
            return
        self.up = None
        conn.lc = None
        self.node.outstanding -= 1  # type: ignore[union-attr]
        self.down.start_tunnel(self, conn, rest)
        self._finish()

    def _open_tunnel(self, conn: Any) -> None:
        """CONNECT: the request named its authority, the dtab bound it to an endpoint, and
        this new connection to it is the tunnel: 200, then bytes both ways, as after an
        Upgrade's 101. Nothing is sent upstream and nothing is retried."""
        self.task = None
        leaf = self.leaf
        node = self.node
        trace = self.trace
        trace.attempt(leaf.client.id_text, leaf.residual, node.host, node.port,  # type: ignore[union-attr]
                      retry=False)
        if trace.recording:  # type: ignore[union-attr]
            trace.attempt_done(200)  # type: ignore[union-attr]
        if self.policy is not None:
            self.policy.finish()
        self.status = 200
        self.phase = RESPONDING
        self.down.send_response_head(self, SimpleResponseHead(200, b"Connection established", [], None),
                                     EMPTY_BLOCK, None)
        self.down.start_tunnel(self, conn, b"")
        self._finish()

    # --- upstream trouble ----------------------------------------------------------------
    def upstream_lost(self, conn: Any, exc: Optional[BaseException]) -> None:
        """The upstream connection closed before the response was complete."""
        if conn is not self.up or self.phase is DONE:
            return
        if (self.phase is SENT and conn.reused and not conn.got_bytes and not self.stale_retried
                and not self.head.has_body):
            # A pooled connection the backend had already closed: one fresh try.
            self.stale_retried = True
            if self.trace.recording:  # type: ignore[union-attr]
                self.trace.attempt_done(None, "pooled connection closed by the backend", True)  # type: ignore[union-attr]
            node = self.node
            self._detach(False)
            self.phase = CONNECTING
            self._wait(self._connect(node))  # type: ignore[arg-type]
            return
        why = f": {exc}" if exc else ""
        self.upstream_broken(conn, f"connection to {conn.endpoint.label} closed before the response was "
                                   f"complete{why}")

    def upstream_broken(self, conn: Any, message: str, exc_name: Optional[str] = None) -> None:
        """The upstream connection broke (``exc_name``: what a cut response counts as)."""
        if conn is not self.up or self.phase is DONE:
            return
        route = self.route
        client = self.leaf.client.id_text if self.leaf is not None else "?"
        why = f"{message} (bound name {client})"
        self.fail(BackendFailed(route.explain(why, headline="Backend failure for") if route else why, exc_name))

    def body_stall_s(self) -> Optional[float]:
        """How long the response body may send nothing before it is cut (the upstream
        codec watches it, sessions.py): the smallest of the client's clientSession
        idleTimeMs and requestAttemptTimeoutMs and the service's totalTimeoutMs. Like
        Finagle, the timeouts otherwise end with the response head; past it they bound
        silence, not the length of a body that keeps coming. None: unbounded."""
        leaf = self.leaf
        s: Optional[float] = leaf.client.stall_s if leaf is not None else None
        if self.policy is None:
            return s
        t: Optional[float] = self.policy.svc.total_timeout_s
        if t is not None and (s is None or t < s):
            return t
        return s

    # --- router-made answers ---------------------------------------------------------------
    def _answer_status(self, status: int) -> None:
        """``/$/io.buoyant.http.status/<code>``: answer the status ourselves."""
        policy = self.policy
        if policy is not None:
            policy.finish()
            self.failed = policy.svc.classifier.classify(self.head.method, status) != SUCCESS
        else:
            self.failed = status >= 500
        self.leaf = None
        self._answered(status, self.down.send_status(self, status, self._drainable()))

    def fail(self, err: RouterError) -> None:
        """The request cannot be answered by an upstream: answer ``err`` (or, when a policy
        retries, start the next attempt)."""
        phase = self.phase
        if phase >= ANSWERED:
            return
        if self.deferred:  # failed while its body was buffered (a stalled upload): begin, so it is counted
            self.deferred = False
            self._begin(err)
            return
        msg = err.message
        nl = msg.find("\n")
        why = msg if nl < 0 else msg[:nl]
        trace = self.trace
        if phase < RESPONDING:
            node = self.node
            if self.up is not None and node is not None and node.accrual is not None and (
                    phase is not DISCARDING):
                node.accrual.failure()  # the attempt in flight failed without a response
            if trace is not None and trace.recording:
                trace.attempt_done(None, why, err.retryable)
            if self.policy is not None and self.policy.on_fail(self, err):
                return  # retried
        self._cancel_task()
        self._detach(False)
        self.failed = True
        self.why = why
        if phase is RESPONDING:
            if self.held is None:
                # Part of the response is out: the only honest signal left is to cut the
                # connection; the request counts as a failure (not as its status's success).
                self.status = self.status or err.status
                self.failure = getattr(err, "exc_name", None) or type(err).__name__
                _CUT_LOG.warn(self.leaf.client.id_text if self.leaf is not None else "?",
                              "response cut after its head: %s", why)
                self.down.abort()
                self._complete()
                return
            self.held = self.held_resp = None  # a held diagnostic answer: nothing went out yet
        self.failed = err.status >= 500 or err.status <= 0
        self._answered(err.status, self.down.send_error(self, err, self._drainable()))

    def _answered(self, status: int, carries_on: bool) -> None:
        self.status = status
        if self.upload is COMPLETE or not carries_on:
            if not carries_on:
                self.down.close_after()
            self._complete()
        else:
            self.phase = ANSWERED

    # --- retries (driven by policy/runtime.py) ----------------------------------------------
    def reset_for_retry(self, replay: Optional[list[bytes]]) -> None:
        """Forget the failed attempt (its connection is closed or back in its pool) before
        the next one; ``replay`` is the request body to send again."""
        self._cancel_task()
        self._detach(False)
        self.node = None
        self.status = 0
        self.stale_retried = False
        self.retrying = True
        self.body = list(replay) if replay else None
        self.body_bytes = 0
        self.phase = RETRYING

    def record_attempt(self, status: int, ms: float) -> None:
        """An attempt that is not the final answer (a retried one): client metrics only."""
        leaf = self.leaf
        if leaf is not None:  # retried because the classifier said so: a failure
            self.server.cells.cell(None, None, leaf.client.scope, leaf.pair).record(status, ms, True)

    # --- completion ------------------------------------------------------------------------
    def _cancel_task(self) -> None:
        t = self.task
        if t is not None:
            self.task = None
            if t is not asyncio.current_task():
                t.cancel()

    def _detach(self, reusable: bool) -> None:
        """Let go of the upstream connection: back to its pool, or closed."""
        up = self.up
        if up is None:
            return
        self.up = None
        up.lc = None
        self.down.resume_request_body(up)
        up.resume_reading()
        node = self.node
        if node is not None:
            node.outstanding -= 1
            balancer = self.leaf.client.balancer  # type: ignore[union-attr]
            if balancer.observes_latency:
                balancer.observe(node, _now() - self.t0)
            if reusable:
                node.release(up)
                return
        up.close()

    def _finish(self) -> None:
        """Leave the exchange: timers stopped, metrics recorded and the trace finished
        (exactly once)."""
        self.phase = DONE
        if self.policy is not None:
            self.policy.finish()
        t = self.dl_timer
        if t is not None:
            self.dl_timer = None
            t.cancel()
        if self.counted:
            self.counted = False
            self._record()
            trace = self.trace
            if trace is not None and trace.recording:
                status = self.status
                why = None
                if self.failed or status <= 0:
                    why = self.why or (f"status {status}" if status > 0 else "the client went away")
                trace.finish(status if status > 0 else None, why, False)

    def _complete(self) -> None:
        if self.phase is DONE:
            return
        self._finish()
        self.down.finished(self)

    def cancel(self) -> None:
        """The client went away."""
        if self.phase is DONE:
            return
        self._cancel_task()
        up = self.up
        if up is not None:
            self.up = None
            up.lc = None
            if self.node is not None:
                self.node.outstanding -= 1
            up.abort()
        self._finish()

    def cell(self) -> "Cell":
        """Where this request is recorded: its (server, service, client, client-per-service) cell."""
        server = self.server
        route = self.route
        leaf = self.leaf
        if leaf is not None:
            return server.cells.cell(server.scope, route.scope if route is not None else None, leaf.client.scope,
                                     leaf.pair)
        return server.cells.cell(server.scope, route.scope if route is not None else None, None, None)

    def _record(self) -> None:
        ms = (_now() - self.t0) * 1000.0
        server = self.server
        route = self.route
        status = self.status
        cell = self.cell()
        if self.failure is None:
            cell.record(status, ms, self.failed or status <= 0)
        else:
            cell.record_failure(status, ms, self.failure)
        if route is not None:
            route.inflight -= 1
        server.inflight -= 1
        access = server.core.access_log
        if access is not None:
            h = self.head
            access.log(h.host, self.down.peer, h.method, h.uri, h.version, self.status, self.resp_len,
                       h.header(b"referer"), h.header(b"user-agent"))
