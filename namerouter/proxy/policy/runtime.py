"""Policy at run time: per-name ``ServicePolicy``, per-client ``ClientPolicy`` and the
per-request ``RequestPolicy`` that the request lifecycle (``lifecycle.py``) consults.

Cost model (the data plane's hot-path rule):

- Everything that depends only on the name or the client is computed once, when its
  ``ServiceStage``/``ClientStage`` is built (``PolicyTable.service`` / ``.client``).
- ``ServiceStage.policy`` is ``None`` when nothing per request is needed (no ``service``
  block and no per-attempt timeout anywhere): the exchange then runs exactly as
  without this package. Failure accrual costs one call per response.
- Otherwise each request gets one ``RequestPolicy`` (a slotted object): a budget
  deposit, a total-timeout entry on the router's timer wheel when configured, the
  attempt one when configured, and references to the request body's pieces while it
  may be replayed.

A request with a policy (the lifecycle calls ``begin``, ``attempt``, ``keep``,
``on_response``, ``discarded``, ``on_fail``, ``finish``; the policy acts on the lifecycle
only through ``reset_for_retry``, ``dispatch``, ``fail`` and ``record_attempt``)::

    begin -> lifecycle.dispatch (pick leaf, endpoint) -> attempt (attempt timer) ...
      response head: classify -> retryable & replayable & budget -> discard it, then
                     reset_for_retry, backoff, dispatch
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
from ..errors import BackendFailed, ConnectFailed, RouterError
from ..phases import DISCARDING, RETRYING
from ..message import EMPTY_BLOCK as EMPTY
from ..message import HeaderBlock, ResponseHead
from ..stats import scope_label
from ..timers import Timer, TimerWheel
from .classifiers import FAILURE, RETRYABLE, SUCCESS, Classifier, make_classifier
from .failure_accrual import AccrualPolicy, AccrualStats
from .requeue import Requeues
from .retries import BackoffPolicy, RetryBudget
from .static_config import StaticConfigs, get
from .timeouts import ATTEMPT_TIMEOUT_EXC, TOTAL_TIMEOUT_EXC, AttemptTimeout, TotalTimeout, deadline_header

if TYPE_CHECKING:  # pragma: no cover
    from ..lifecycle import Lifecycle

_now = time.monotonic

#: Largest request body kept for replay. Bigger (or chunked) bodies are streamed and the
#: request is never retried (Linkerd: "requests with chunked bodies are never retryable").
REPLAY_LIMIT = 64 * 1024

_SUCCESS_HDR = HeaderBlock([(b"l5d-success-class", b"1.0")])
_FAILURE_HDR = HeaderBlock([(b"l5d-success-class", b"0.0")])
_RETRYABLE_HDR = HeaderBlock([(b"l5d-success-class", b"0.0"), (b"l5d-retryable", b"true")])


class ServicePolicy:
    """The merged ``service`` settings of one logical name, with its retry budget and
    metrics (``rt/<label>/service/<name>/retries/...``)."""

    def __init__(self, keys: dict[str, Any], registry: MetricsRegistry, prefix: str,
                 attempt_timeouts_possible: bool, wheel: Any = None, headers: bool = True) -> None:
        #: () -> the router's TimerWheel (created on first use, on the running loop)
        self.wheel = wheel
        #: every request of the name needs a RequestPolicy (a service block, or attempt
        #: timeouts); otherwise requests only deposit into the budget, and one gets a
        #: policy late (``late``) when a router further down answers a retryable 5xx.
        #: Set by the PolicyTable.
        self.active = True
        self.prefix = prefix
        self.registry = registry
        total = keys.get("totalTimeoutMs")
        self.total_timeout_s: Optional[float] = total / 1000.0 if total else None
        self.classifier: Classifier = self.make_classifier(keys.get("responseClassifier"))
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

    def make_classifier(self, block: Any) -> Classifier:
        """The ``responseClassifier`` of this name (HTTP/2 routers have their own kinds)."""
        return make_classifier(get(block, "kind"))

    def live(self) -> bool:
        """False once the registry dropped this name's metrics (stage evicted)."""
        return self.registry.get(self.retries_total.name) is self.retries_total

    def begin(self, lc: "Lifecycle") -> "RequestPolicy":
        """A request for this name starts (called by ``Lifecycle.start``)."""
        return RequestPolicy(lc, self)

    def late(self, lc: "Lifecycle") -> "RequestPolicy":
        """A policy for a request of an inactive name that needs one after all (a retryable
        5xx from further down); it deposited into the budget when it started."""
        self.budget.window.add(-self.budget.deposit_amount)  # begin deposits again
        return self.begin(lc)


class ClientPolicy:
    """The merged ``client`` settings of one bound id, compiled once."""

    __slots__ = ("load_balancer", "attempt_timeout_s", "accrual", "requeues", "pool", "attempt_timeouts",
                 "captures", "tls", "forward_client_cert", "session", "socket_options", "fail_fast")

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
        #: clientSession {idleTimeMs, lifeTimeMs} (sessions.ClientSessions)
        self.session = keys.get("clientSession")
        #: socketOptions (socket_options.py): set on each backend connection
        self.socket_options = keys.get("socketOptions")
        #: failFast (fail_fast.py)
        self.fail_fast = bool(keys.get("failFast"))
        self.attempt_timeouts: Counter = registry.counter(prefix + "failures/" + ATTEMPT_TIMEOUT_EXC)
        #: the client ``tls`` block (None: plaintext); the route table turns it into a Connector
        self.tls = keys.get("tls")
        #: Linkerd's ``forwardClientCert``: requests to this client carry x-forwarded-client-cert
        self.forward_client_cert = bool(keys.get("forwardClientCert"))

    def new_accrual(self, node: Any) -> Any:
        return self.accrual.new(node) if self.accrual is not None else None


class PolicyTable:
    """A router's ``service``/``client`` blocks, compiled once; hands out per-name and
    per-client policies (the per-name ones cached so a name shares one retry budget
    across request dtabs)."""

    MAX_CACHED = 10_000

    def __init__(self, label: str, registry: MetricsRegistry, service_block: Any, client_block: Any,
                 wheel: Any = None, service_class: type[ServicePolicy] = ServicePolicy) -> None:
        self.label = label
        self.registry = registry
        self.services = StaticConfigs(service_block)
        self.clients = StaticConfigs(client_block)
        self.service_configured = service_block is not None
        self.attempt_timeouts = self.clients.any_sets("requestAttemptTimeoutMs")
        #: whether any response body of this router may be cut for stalling (sessions.py):
        #: backend connections watch bodies only then
        self.body_stalls = (self.attempt_timeouts or self.clients.any_sets("clientSession")
                            or self.clients.any_sets("socketOptions")
                            or self.services.any_sets("totalTimeoutMs"))
        self._svc: dict[str, ServicePolicy] = {}
        #: () -> the router's TimerWheel
        self.wheel = wheel if wheel is not None else _own_wheel()
        #: the per-name policy class (HTTP/2 routers: h2/policy.py's)
        self.service_class = service_class

    def service(self, name: Any) -> ServicePolicy:
        """The policy for a logical name. Every name has one, as in Linkerd (its retry
        budget and ``retries/budget`` gauge; a 5xx with ``l5d-retryable`` from a router
        further down is retried under the default classifier too); ``active`` says
        whether each request needs a per-request policy."""
        text = name.show() if hasattr(name, "show") else str(name)
        p = self._svc.get(text)
        if p is not None and p.live():
            return p
        keys, _ = self.services.for_path(name)
        if len(self._svc) >= self.MAX_CACHED:
            self._svc.clear()
        p = self.service_class(keys, self.registry, f"rt/{self.label}/service/{scope_label(text)}/",
                               self.attempt_timeouts, self.wheel, self.service_configured)
        p.active = self.service_configured or self.attempt_timeouts
        self._svc[text] = p
        return p

    def forget(self, name_text: str) -> None:
        """The name's last stage was evicted (its metrics are gone): let its policy go too."""
        self._svc.pop(name_text, None)

    def client(self, bound_id: Any, prefix: str) -> ClientPolicy:
        keys, caps = self.clients.for_path(bound_id)
        return ClientPolicy(keys, caps, self.registry, prefix)


def _own_wheel() -> Any:
    """A wheel getter for a PolicyTable used on its own (tests): one wheel per loop."""
    wheels: dict[int, TimerWheel] = {}

    def get() -> TimerWheel:
        loop = asyncio.get_running_loop()
        w = wheels.get(id(loop))
        if w is None or w.loop is not loop:
            w = wheels[id(loop)] = TimerWheel(loop)
        return w

    return get


class RequestPolicy:
    """One request's retry/timeout state (only when its name has a policy)."""

    __slots__ = ("lc", "svc", "wheel", "replay", "replay_bytes", "replayable", "retries", "backoff", "total_t",
                 "attempt_t", "attempt_client", "retry_t", "attempt_t0", "deadline", "klass")

    def __init__(self, lc: "Lifecycle", svc: ServicePolicy) -> None:
        self.lc: Optional["Lifecycle"] = lc
        self.svc = svc
        self.wheel: TimerWheel = svc.wheel()
        head = lc.head
        self.retries = 0
        self.backoff: Any = None
        self.total_t: Optional[Timer] = None
        self.attempt_t: Optional[Timer] = None
        self.attempt_client: Any = None
        self.retry_t: Any = None
        self.attempt_t0 = lc.t0  # attempt() sets it per attempt
        self.deadline = 0.0
        self.replay: Optional[list[bytes]] = None
        self.replay_bytes = 0
        #: the classifier's verdict on the last response (SUCCESS, FAILURE, RETRYABLE): the
        #: lifecycle records the request as a success or failure by it
        self.klass = SUCCESS
        #: the request can be sent again: its body (if any) is small and of fixed length
        #: (kept in ``replay``; the chunks are referenced, not copied)
        self.replayable = (
            not head.chunked
            and head.upgrade is None
            and head.method != b"CONNECT"  # a tunnel is never retried
            and (head.content_length or 0) <= REPLAY_LIMIT
        )
        if self.replayable and head.content_length:
            self.replay = []
        if lc.server.core.max_request_bytes is not None and lc.upload_complete and head.upgrade is None and (
                head.method != b"CONNECT"):
            # streamingEnabled: false: the whole body is buffered (at most maxRequestKB)
            # before the first attempt, so it can always be sent again
            self.replayable = True
            self.replay = list(lc.body) if lc.body else None
        svc.budget.deposit()  # every request earns retry credit (Finagle's RetryFilter)
        t = svc.total_timeout_s
        if t is not None:
            self.deadline = self.wheel.time() + t
            self.total_t = self.wheel.at(self.deadline, RequestPolicy._on_total_timeout, self)
        self._deadline_header(lc, t)

    @staticmethod
    def _deadline_header(lc: "Lifecycle", timeout_s: Optional[float]) -> None:
        """``l5d-ctx-deadline``: the strictest of the incoming one (checked by the
        lifecycle: ``lc.deadline``) and ours."""
        incoming = lc.deadline
        if not incoming:
            if timeout_s is None:
                return
            now = time.time_ns()  # the common case: only ours
            lc.deadline = b"%d %d" % (now, now + int(timeout_s * 1e9))
            return
        line = deadline_header(timeout_s, [incoming])
        lc.deadline = line[18:-2] if line is not None else b""

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
    def attempt(self, lc: "Lifecycle", client: Any) -> None:
        """An attempt starts on ``client`` (the lifecycle picked leaf and endpoint)."""
        self.attempt_t0 = _now()
        t = client.policy.attempt_timeout_s
        if t is not None:
            self.attempt_client = client
            self.attempt_t = self.wheel.after(t, RequestPolicy._on_attempt_timeout, self)

    def on_response(self, lc: "Lifecycle", resp: ResponseHead) -> Optional[HeaderBlock]:
        """A response head arrived: None = discard it (the request will be retried), else
        the classification headers to relay with it."""
        status = resp.status
        cls = self.svc.classifier.classify(lc.head.method, status)
        if cls == FAILURE and status >= 500 and resp.retryable:
            cls = RETRYABLE  # a router further down says the request is safe to retry
        self.klass = cls
        if cls == RETRYABLE:
            if not self.can_replay(lc):
                self.svc.stream_too_long.value += 1
            elif self._withdraw():
                self._cancel_attempt()
                self._record_attempt(lc, status)
                return None
        self._done()
        if not self.svc.headers:
            return EMPTY
        if cls == SUCCESS:
            return _SUCCESS_HDR
        return _RETRYABLE_HDR if cls == RETRYABLE else _FAILURE_HDR

    def on_trailers(self, lc: "Lifecycle", fields: list[tuple[bytes, bytes]]) -> None:
        """The trailers of the relayed response (HTTP/2; the h2 policy classifies gRPC
        streams by them)."""

    def discarded(self, lc: "Lifecycle") -> None:
        """The discarded (retried) response is fully read: retry."""
        self._schedule_retry(lc)

    def on_fail(self, lc: "Lifecycle", err: RouterError) -> bool:
        """An attempt (or the request) failed before any response was relayed.
        True = a retry is under way, the lifecycle must not answer."""
        self._cancel_attempt()
        if isinstance(err, TotalTimeout):
            self.svc.timeouts.value += 1
            self._done()
            return False
        if lc.phase is DISCARDING:
            # The retried response broke off while being discarded: the retry stands.
            self._schedule_retry(lc)
            return True
        if isinstance(err, (ConnectFailed, BackendFailed, AttemptTimeout)):
            cls = self.svc.classifier.classify_failure(lc.head.method, err)
            if cls == RETRYABLE and not self.can_replay(lc):
                self.svc.stream_too_long.value += 1
            elif cls == RETRYABLE and self._withdraw():
                self._record_attempt(lc, 0)  # the final attempt is recorded by the lifecycle
                self._schedule_retry(lc)
                return True
        self._done()
        return False

    # --- helpers ----------------------------------------------------------------------
    def can_replay(self, lc: "Lifecycle") -> bool:
        """The request can be sent again now (HTTP/1.1: its whole body is kept)."""
        return self.replayable and lc.upload_complete

    def _withdraw(self) -> bool:
        svc = self.svc
        if self.deadline and self.wheel.time() >= self.deadline:
            return False
        if svc.budget.try_withdraw():
            self.retries += 1
            svc.retries_total.value += 1
            return True
        svc.budget_exhausted.value += 1
        return False

    def _record_attempt(self, lc: "Lifecycle", status: int) -> None:
        lc.record_attempt(status, (_now() - self.attempt_t0) * 1000.0)

    def _schedule_retry(self, lc: "Lifecycle") -> None:
        r = self.replay
        lc.reset_for_retry(r)
        if self.backoff is None:
            if self.svc.backoff.zero:
                self.retry_t = asyncio.get_running_loop().call_soon(RequestPolicy._retry, self)
                return
            self.backoff = self.svc.backoff.stream()
        self.retry_t = self.wheel.after(next(self.backoff), RequestPolicy._retry, self)

    def _retry(self) -> None:
        self.retry_t = None
        lc = self.lc
        if lc is not None and lc.phase is RETRYING:
            lc.dispatch()

    def _on_attempt_timeout(self) -> None:
        self.attempt_t = None
        client = self.attempt_client
        lc = self.lc
        if lc is None or lc.phase >= DISCARDING:
            return  # answered, answering, or between attempts
        client.policy.attempt_timeouts.value += 1
        ms = (client.policy.attempt_timeout_s or 0) * 1000
        name = lc.route.name_text if lc.route is not None else "?"
        lc.fail(AttemptTimeout(
            f"request to {name} (bound name {client.id_text}) exceeded requestAttemptTimeoutMs "
            f"({ms:.0f} ms) on one attempt ({self.retries} retries so far)"))

    def _on_total_timeout(self) -> None:
        self.total_t = None
        lc = self.lc
        if lc is None or lc.responding:
            return
        t = self.svc.total_timeout_s or 0
        name = lc.route.name_text if lc.route is not None else "?"
        lc.fail(TotalTimeout(
            f"request to {name} exceeded totalTimeoutMs ({t * 1000:.0f} ms) after "
            f"{self.retries + 1} attempt(s)"))

    def _cancel_attempt(self) -> None:
        t = self.attempt_t
        if t is not None:
            self.attempt_t = None
            t.cancel()

    def _done(self) -> None:
        """The request gets its answer from this attempt (or an error): count, stop timers."""
        if self.lc is not None:
            self.svc.per_request.add(self.retries)
        self.finish()

    def finish(self) -> None:
        """The request is answered: stop the timers and drop the lifecycle (no cycle left
        for the garbage collector to find)."""
        self._cancel_attempt()
        t = self.total_t
        if t is not None:
            self.total_t = None
            t.cancel()
        r = self.retry_t
        if r is not None:
            self.retry_t = None
            r.cancel()
        self.lc = None
