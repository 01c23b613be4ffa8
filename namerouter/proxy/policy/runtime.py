"""Policy at run time: per-name ``ServicePolicy``, per-client ``ClientPolicy`` and the
per-request ``RequestState`` that the exchange (``server.py``) consults.

Cost model (the data plane's hot-path rule):

- Everything that depends only on the name or the client is computed once, when its
  ``ServiceStage``/``ClientStage`` is built (``PolicyTable.service`` / ``.client``).
- ``ServiceStage.policy`` is ``None`` when nothing per request is needed (no ``service``
  block and no per-attempt timeout anywhere): the exchange then runs exactly as
  without this package. Failure accrual costs one call per response.
- Otherwise each request gets one ``RequestState`` (a slotted object): a budget deposit,
  a total-timeout entry on the timer wheel when configured, the attempt one when
  configured, and references to the request body's pieces while it may be replayed.

Request lifecycle with a policy::

    begin -> dispatch (pick leaf, endpoint; attempt timer) -> attempt ...
      response head: classify -> retryable & replayable & budget -> discard, backoff, dispatch
                              -> otherwise relay it (+ l5d-success-class / l5d-retryable)
      failure without response (connect, connection lost, attempt timeout):
                     classify(None) -> retry as above, or answer the error (502/503 + l5d-err)
      totalTimeoutMs -> 503 + l5d-err, the attempt in flight is closed

Retries re-pick through the bound tree (a union may send the retry elsewhere), as
Linkerd's per-name retry filter sits above the tree.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Optional

from ...metrics import Counter, MetricsRegistry
from ..errors import BackendFailed, ConnectFailed, NoHosts, RouterError
from ..stats import scope_label
from .classifiers import FAILURE, RETRYABLE, SUCCESS, Classifier, make_classifier
from .failure_accrual import AccrualPolicy, AccrualStats
from .requeue import Requeues
from .retries import BackoffPolicy, RetryBudget
from .static_config import StaticConfigs, get
from .timeouts import (
    ATTEMPT_TIMEOUT_EXC, TOTAL_TIMEOUT_EXC, AttemptTimeout, TimerWheel, TotalTimeout, deadline_header,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..server import Exchange

_now = time.monotonic

#: Largest request body kept for replay. Bigger (or chunked) bodies are streamed and the
#: request is never retried (Linkerd: "requests with chunked bodies are never retryable").
REPLAY_LIMIT = 64 * 1024

_CLASS_HEADERS = (b"l5d-success-class", b"l5d-retryable")
_SUCCESS_HDR = b"l5d-success-class: 1.0\r\n"
_FAILURE_HDR = b"l5d-success-class: 0.0\r\n"
_RETRYABLE_HDR = b"l5d-success-class: 0.0\r\nl5d-retryable: true\r\n"


def _downstream_retryable(lines: list) -> bool:
    """``l5d-retryable: true`` on a response (set by a router further down)."""
    for name, line in lines:
        if name == b"l5d-retryable":
            return line.split(b":", 1)[1].strip().lower() == b"true"
    return False


class ServicePolicy:
    """The merged ``service`` settings of one logical name, with its retry budget and
    metrics (``rt/<label>/service/<name>/retries/...``)."""

    def __init__(self, keys: dict[str, Any], registry: MetricsRegistry, prefix: str,
                 attempt_timeouts_possible: bool, wheel: Any = None, headers: bool = True) -> None:
        #: () -> the router's TimerWheel (created on first use, on the running loop)
        self.wheel = wheel
        self.timer_wheel: Optional[TimerWheel] = None
        self.prefix = prefix
        self.registry = registry
        total = keys.get("totalTimeoutMs")
        self.total_timeout_s: Optional[float] = total / 1000.0 if total else None
        self.classifier: Classifier = make_classifier(get(keys.get("responseClassifier"), "kind"))
        retries = keys.get("retries")
        self.budget = RetryBudget.from_config(get(retries, "budget"))
        self.backoff = BackoffPolicy.from_config(get(retries, "backoff"))
        #: whether any request of this name may ever be retried
        self.retries_possible = self.classifier.can_retry
        #: write l5d-success-class/l5d-retryable on responses (the router has a service block)
        self.headers = headers
        self.attempt_timeouts_possible = attempt_timeouts_possible
        p = prefix + "retries/"
        self.retries_total: Counter = registry.counter(p + "total")
        self.per_request = registry.stat(p + "per_request")
        self.budget_exhausted: Counter = registry.counter(p + "budget_exhausted")
        #: retryable failures that could not be retried: the body was chunked or too long
        self.stream_too_long: Counter = registry.counter(p + "request_stream_too_long")
        self.timeouts: Counter = registry.counter(prefix + "failures/" + TOTAL_TIMEOUT_EXC)
        registry.gauge(p + "budget", lambda: self.budget.balance)

    def make_wheel(self) -> TimerWheel:
        self.timer_wheel = self.wheel()
        return self.timer_wheel

    def live(self) -> bool:
        """False once the registry dropped this name's metrics (stage evicted)."""
        return self.registry.get(self.retries_total.name) is self.retries_total

    def begin(self, ex: "Exchange") -> None:
        """A request for this name starts (called by ``Exchange.start``)."""
        rs = RequestState(ex, self)
        ex.rs = rs
        rs.dispatch()


class ClientPolicy:
    """The merged ``client`` settings of one bound id, compiled once."""

    __slots__ = ("load_balancer", "attempt_timeout_s", "accrual", "requeues", "pool", "attempt_timeouts",
                 "captures")

    def __init__(self, keys: dict[str, Any], captures: dict[str, str], registry: MetricsRegistry,
                 prefix: str) -> None:
        self.captures = captures
        self.load_balancer = keys.get("loadBalancer")
        t = keys.get("requestAttemptTimeoutMs")
        self.attempt_timeout_s: Optional[float] = t / 1000.0 if t else None
        acc = keys.get("failureAccrual")
        if acc is None or get(acc, "kind") != "none":
            self.accrual: Optional[AccrualPolicy] = AccrualPolicy(acc, AccrualStats(registry, prefix))
        else:
            self.accrual = None
        self.requeues = Requeues(keys.get("requeueBudget"), registry, prefix)
        self.pool = keys.get("hostConnectionPool")
        self.attempt_timeouts: Counter = registry.counter(prefix + "failures/" + ATTEMPT_TIMEOUT_EXC)

    def new_accrual(self, node: Any) -> Any:
        return self.accrual.new(node) if self.accrual is not None else None


class PolicyTable:
    """A router's ``service``/``client`` blocks, compiled once; hands out per-name and
    per-client policies (the per-name ones cached so a name shares one retry budget
    across request dtabs)."""

    MAX_CACHED = 10_000

    def __init__(self, label: str, registry: MetricsRegistry, service_block: Any, client_block: Any) -> None:
        self.label = label
        self.registry = registry
        self.services = StaticConfigs(service_block)
        self.clients = StaticConfigs(client_block)
        self.service_configured = service_block is not None
        self.attempt_timeouts = self.clients.any_sets("requestAttemptTimeoutMs")
        self._svc: dict[str, ServicePolicy] = {}
        self._wheel: Optional[TimerWheel] = None

    def wheel(self) -> TimerWheel:
        w = self._wheel
        if w is None:
            w = self._wheel = TimerWheel(asyncio.get_running_loop())
        return w

    def service(self, name: Any) -> Optional[ServicePolicy]:
        """The policy for a logical name, or None when requests need no per-request policy."""
        if not self.service_configured and not self.attempt_timeouts:
            return None
        text = name.show() if hasattr(name, "show") else str(name)
        p = self._svc.get(text)
        if p is not None and p.live():
            return p
        keys, _ = self.services.for_path(name)
        if len(self._svc) >= self.MAX_CACHED:
            self._svc.clear()
        p = ServicePolicy(keys, self.registry, f"rt/{self.label}/service/{scope_label(text)}/",
                          self.attempt_timeouts, self.wheel, self.service_configured)
        self._svc[text] = p
        return p

    def client(self, bound_id: Any, prefix: str) -> ClientPolicy:
        keys, caps = self.clients.for_path(bound_id)
        return ClientPolicy(keys, caps, self.registry, prefix)


class RequestState:
    """One request's retry/timeout state (only when its name has a policy)."""

    __slots__ = ("ex", "svc", "replay", "replay_bytes", "replayable", "retries", "backoff", "total_h",
                 "attempt_h", "attempt_client", "retry_h", "discarding", "attempt_t0", "deadline")

    def __init__(self, ex: "Exchange", svc: ServicePolicy) -> None:
        self.ex = ex
        self.svc = svc
        head = ex.head
        self.retries = 0
        self.backoff: Any = None
        #: timer-wheel entries (timeouts.TimerWheel) of the total and attempt timeouts
        self.total_h: Optional[list] = None
        self.attempt_h: Optional[list] = None
        self.attempt_client: Any = None
        self.retry_h: Optional[asyncio.Handle] = None
        self.discarding = False
        self.attempt_t0 = 0.0
        self.deadline = 0.0
        self.replay: Optional[list[bytes]] = None
        self.replay_bytes = 0
        #: the request can be sent again: its body (if any) is small and of fixed length
        #: (kept in ``replay``; the chunks are referenced, not copied)
        self.replayable = (
            not head.chunked
            and head.upgrade is None
            and (head.content_length or 0) <= REPLAY_LIMIT
        )
        if self.replayable and head.content_length:
            self.replay = []
        svc.budget.deposit()  # every request earns retry credit (Finagle's RetryFilter)
        loop = asyncio.get_running_loop()
        t = svc.total_timeout_s
        if t is not None:
            self.deadline = loop.time() + t
            w = svc.timer_wheel or svc.make_wheel()
            self.total_h = w.schedule(self.deadline, RequestState._on_total_timeout, self)
        self._deadline_header(t)

    def _deadline_header(self, timeout_s: Optional[float]) -> None:
        """Rewrite ``l5d-ctx-deadline``: the strictest of the incoming one and ours."""
        head = self.ex.head
        incoming = [v for ln, v, _ in head.headers if ln == b"l5d-ctx-deadline"]
        if not incoming:
            if timeout_s is None:
                return
            now = time.time_ns()  # the common case: only ours
            line = b"l5d-ctx-deadline: %d %d\r\n" % (now, now + int(timeout_s * 1e9))
            head.headers.append((b"l5d-ctx-deadline", line[18:-2], line))
            return
        line = deadline_header(timeout_s, incoming)
        if incoming:
            head.headers = [h for h in head.headers if h[0] != b"l5d-ctx-deadline"]
        if line is not None:
            head.headers.append((b"l5d-ctx-deadline", line[18:-2], line))

    # --- request body ---------------------------------------------------------------------
    def keep(self, chunk: bytes) -> None:
        """A request body piece: kept while the request may still be replayed."""
        r = self.replay
        if r is not None:
            self.replay_bytes += len(chunk)
            if self.replay_bytes > REPLAY_LIMIT:
                self.replay = None
                self.replayable = False
            else:
                r.append(chunk)

    # --- attempts -------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Pick a leaf and an endpoint and start an attempt (first try and every retry)."""
        ex = self.ex
        route = ex.route
        target = route.target
        if target is None:
            ex.task = asyncio.get_running_loop().create_task(self._dispatch_when_bound())
            return
        try:
            leaf = target.pick()
        except RouterError as e:
            ex.fail(e)
            return
        client = leaf.client
        if client.pending:
            ex.task = asyncio.get_running_loop().create_task(self._dispatch_when_bound())
            return
        if client.status_code is not None:
            self._finish()
            ex.respond_status(leaf, client.status_code)
            return
        node = client.balancer.pick()
        if node is None:
            ex.fail(NoHosts(route.explain_no_hosts(client)))
            return
        self.attempt_t0 = _now()
        t = client.policy.attempt_timeout_s
        if t is not None:
            self.attempt_client = client
            w = self.svc.timer_wheel or self.svc.make_wheel()
            self.attempt_h = w.schedule(w.loop.time() + t, RequestState._on_attempt_timeout, self)
        bconn = node.get_idle()
        if bconn is not None:
            ex.attach(leaf, node, bconn)
        else:
            ex.task = asyncio.get_running_loop().create_task(ex._connect(leaf, node))

    async def _dispatch_when_bound(self) -> None:
        ex = self.ex
        route = ex.route
        try:
            deadline = asyncio.get_running_loop().time() + route.table.binding_timeout_s
            target = await route.wait_bound(deadline)
            await target.pick().client.wait_ready(deadline)
        except RouterError as e:
            ex.task = None
            ex.fail(e)
            return
        except asyncio.CancelledError:
            return
        ex.task = None
        if not ex.finished:
            self.dispatch()

    def on_resp_head(self, bconn: Any) -> Optional[bytes]:
        """A response head arrived: None = discard it (the request will be retried), else
        the extra response header bytes to relay with it."""
        ex = self.ex
        status = bconn.status
        cls = self.svc.classifier.classify(ex.head.method, status)
        if cls == FAILURE and status >= 500 and _downstream_retryable(bconn.lines):
            cls = RETRYABLE  # a router further down says the request is safe to retry
        if cls == RETRYABLE:
            if not self.replayable or not ex.req_done:
                self.svc.stream_too_long.value += 1
            elif self._withdraw():
                self.discarding = True
                self._cancel_attempt()
                self._record_attempt(status)
                return None
        self._finish()
        self.svc.per_request.add(self.retries)
        if not self.svc.headers:
            return b""
        lines = bconn.lines  # [(lower-cased name, header line)]
        for name, _ in lines:
            if name in _CLASS_HEADERS:
                # this hop's classification replaces the one of a router further down
                bconn.lines = [x for x in lines if x[0] not in _CLASS_HEADERS]
                break
        if cls == SUCCESS:
            return _SUCCESS_HDR
        return _RETRYABLE_HDR if cls == RETRYABLE else _FAILURE_HDR

    def discarded(self, bconn: Any) -> None:
        """The discarded (retried) response is fully read: reuse the connection, retry."""
        ex = self.ex
        self.discarding = False
        ex._detach(reusable=bconn.keep_alive and not bconn.closed)
        self._schedule_retry()

    def on_fail(self, err: RouterError) -> bool:
        """An attempt (or the request) failed before any response was relayed.
        True = a retry is under way, the exchange must not answer."""
        ex = self.ex
        self._cancel_attempt()
        if isinstance(err, TotalTimeout):
            self.svc.timeouts.value += 1
            self.discarding = False
            self._finish()
            self.svc.per_request.add(self.retries)
            return False
        if self.discarding:
            # The retried response broke off while being discarded: the retry stands.
            self.discarding = False
            self._abandon_attempt()
            self._schedule_retry()
            return True
        attempt_failure = isinstance(err, (ConnectFailed, BackendFailed, AttemptTimeout))
        if attempt_failure:
            cls = self.svc.classifier.classify(ex.head.method, None)
            if cls == RETRYABLE and not (self.replayable and ex.req_done):
                self.svc.stream_too_long.value += 1
            elif cls == RETRYABLE and self._withdraw():
                self._record_attempt(0)  # the final attempt is recorded by the exchange
                self._abandon_attempt()
                self._schedule_retry()
                return True
        self._finish()
        self.svc.per_request.add(self.retries)
        return False

    # --- helpers ----------------------------------------------------------------------
    def _withdraw(self) -> bool:
        svc = self.svc
        if self.deadline and asyncio.get_running_loop().time() >= self.deadline:
            return False
        if svc.budget.try_withdraw():
            self.retries += 1
            svc.retries_total.value += 1
            return True
        svc.budget_exhausted.value += 1
        return False

    def _record_attempt(self, status: int) -> None:
        leaf = self.ex.leaf
        if leaf is not None:
            leaf.client.stats.record(status, (_now() - self.attempt_t0) * 1000.0)

    def _abandon_attempt(self) -> None:
        """Close whatever the failed attempt holds (connection, connect task)."""
        ex = self.ex
        t = ex.task
        if t is not None and t is not asyncio.current_task():
            t.cancel()
        ex.task = None
        ex._detach(reusable=False)

    def _schedule_retry(self) -> None:
        ex = self.ex
        ex.node = None
        ex.status = 0
        ex.resp_chunked = False
        ex.resp_close_delimited = False
        ex.retried = False
        r = self.replay
        ex.buf = list(r) if r else None
        ex.buf_bytes = 0
        if self.backoff is None:
            if self.svc.backoff.zero:
                self.retry_h = asyncio.get_running_loop().call_soon(self._retry)
                return
            self.backoff = self.svc.backoff.stream()
        delay = next(self.backoff)
        self.retry_h = asyncio.get_running_loop().call_later(delay, self._retry)

    def _retry(self) -> None:
        self.retry_h = None
        if self.ex is not None and not self.ex.finished:
            self.dispatch()

    def _on_attempt_timeout(self) -> None:
        self.attempt_h = None
        client = self.attempt_client
        ex = self.ex
        if ex is None or ex.finished or ex.resp_started or self.discarding:
            return
        client.policy.attempt_timeouts.value += 1
        ms = (client.policy.attempt_timeout_s or 0) * 1000
        name = ex.route.name_text if ex.route is not None else "?"
        ex.fail(AttemptTimeout(
            f"request to {name} (bound name {client.id_text}) exceeded requestAttemptTimeoutMs "
            f"({ms:.0f} ms) on one attempt ({self.retries} retries so far)"))

    def _on_total_timeout(self) -> None:
        self.total_h = None
        ex = self.ex
        if ex is None or ex.finished or ex.resp_started:
            return
        t = self.svc.total_timeout_s or 0
        name = ex.route.name_text if ex.route is not None else "?"
        ex.fail(TotalTimeout(
            f"request to {name} exceeded totalTimeoutMs ({t * 1000:.0f} ms) after "
            f"{self.retries + 1} attempt(s)"))

    def _cancel_attempt(self) -> None:
        h = self.attempt_h
        if h is not None:
            self.attempt_h = None
            TimerWheel.cancel(h)

    def _finish(self) -> None:
        """The request is answered: stop the timers and drop the exchange (no cycle left
        for the garbage collector to find)."""
        self._stop_timers()
        self.ex = None  # type: ignore[assignment]

    def _stop_timers(self) -> None:
        self._cancel_attempt()
        h = self.total_h
        if h is not None:
            self.total_h = None
            TimerWheel.cancel(h)
        r = self.retry_h
        if r is not None:
            self.retry_h = None
            r.cancel()
