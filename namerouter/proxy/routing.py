"""Routing state: logical name -> bound tree -> client, all computed per name, not per request.

``ServiceStage`` (one per logical name + request dtab, Linkerd's "path stack") observes
``interpreter.bind(dtab, name)`` and compiles each new bound tree into a ``Target`` once
(``targets.py``): a ``LeafTarget`` (one client + its pre-encoded headers), a weighted
``UnionTarget`` or a fail-over ``AltTarget``. A request then only calls ``target.pick()``.

``ClientStage`` (one per bound id, Linkerd's client stack) observes the bound name's
address ``Var`` and keeps a load balancer over its ``Endpoint``s; when the address set
changes, endpoints that stay keep their pools and in-flight requests, removed ones
are retired (idle connections closed, busy ones closed when their request ends).

Policy (retries, classifiers, failure accrual, timeouts: ``policy/``) plugs in at the
stage boundaries: ``ServiceStage.policy`` (per name; None when nothing per request
applies) and ``ClientStage.policy`` (per bound id: balancer, accrual, requeues,
``hostConnectionPool``, which the endpoints' pools apply).

``RouteTable`` owns both caches: bounded (``bindingCache.paths`` / ``clients``) with
idle eviction (``idleTtlSecs``), so random Host headers cannot grow memory forever.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Callable, Optional, Sequence

from ..dtab.dtab import Dtab
from ..dtab.path import Path
from ..dtab.tree import Alt, Leaf, NameTree, Union
from ..metrics import MetricsRegistry
from ..naming.addr import ADDR_NEG, ADDR_PENDING, Addr, AddrBound, AddrFailed
from ..naming.bound import BoundName
from ..naming.binding_cache import TRIM_AFTER, release_free_memory
from ..naming.var import PENDING, Failed, Ok
from ..tls import ClientAuthConfig, ClientTlsConfig, ClientTlsParams, HandshakeFailures, TlsRegistry
from .balancers import Balancer, make_balancer
from .errors import BindingTimeout, NoHosts, NoRoute, RouterError
from .message import HeaderBlock
from .policy import ClientPolicy, PolicyTable, ServicePolicy
from .pool import Endpoint, PoolSettings
from .fail_fast import FailFast
from .sessions import ClientSessions
from .socket_options import ms as socket_ms
from .stats import Cells, Scope, scope_label
from .targets import AltTarget, ErrorTarget, LeafTarget, Target, UnionTarget
from .timers import Timer, TimerWheel
from .transport import PLAIN, Connector

#: ``RouteTable.connector_factory``: (table, client id, TLS params or None) -> Connector
ConnectorFactory = Callable[["RouteTable", Path, Optional[ClientTlsParams]], Connector]

#: Set-level Addr metadata that means "answer this status yourself"
#: (``/$/io.buoyant.http.status/<code>``; see namerouter/naming/system_namer.py).
STATUS_META_KEY = "io.buoyant.http.status"
#: Set-level Addr metadata naming the Host the backend expects (Linkerd's
#: ``Metadata.authority``, set e.g. by io.l5d.consul with ``setHost: true``): the router
#: rewrites the request's Host to it (Linkerd's RewriteHostHeader).
AUTHORITY_META_KEY = "authority"


def _host_line(authority: Any) -> Optional[bytes]:
    """The encoded ``Host: <authority>`` header line (CRLF-terminated) for a usable
    authority, else None (never a header injection: a value with CR/LF, spaces or other
    control bytes is ignored)."""
    if not isinstance(authority, str) or not authority:
        return None
    raw = authority.encode("latin-1", "replace")
    if any(b < 0x21 or b == 0x7F for b in raw):
        return None
    return b"Host: " + raw + b"\r\n"


_monotonic = time.monotonic


def client_tls_config(block: Any) -> Optional[ClientTlsConfig]:
    """A client ``tls`` block as the validated dataclass (routers built in code may give
    plain mappings; they are checked the same way)."""
    if block is None or isinstance(block, ClientTlsConfig):
        return block
    if isinstance(block, dict):
        fields = dict(block)
        auth = fields.get("clientAuth")
        if isinstance(auth, dict):
            fields["clientAuth"] = ClientAuthConfig(**auth)
        return ClientTlsConfig(**fields)
    raise TypeError(f"client tls: expected a mapping, got {type(block).__name__}")


def _smallest(*values: Optional[float]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class Changes:
    """Requests waiting (bounded by their binding deadline) for a stage's binding to change."""

    __slots__ = ("_futs", "_wheel")

    def __init__(self, wheel: Any) -> None:
        self._futs: list[asyncio.Future[None]] = []
        #: () -> the router's TimerWheel (the deadline of a wait)
        self._wheel = wheel

    def wake(self) -> None:
        """The binding changed: every waiter looks again."""
        if self._futs:
            futs, self._futs = self._futs, []
            for f in futs:
                if not f.done():
                    f.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until the next :meth:`wake` or ``timeout`` seconds, whichever comes first."""
        fut = asyncio.get_running_loop().create_future()
        self._futs.append(fut)
        timer = self._wheel().after(timeout, _wake_one, fut)
        try:
            await fut
        finally:
            timer.cancel()


def _wake_one(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# Client stage: one per bound id -----------------------------------------------------------

class ClientStage:
    """Per bound id: load balancer over the live address set, pools, client metrics."""

    def __init__(self, table: "RouteTable", bound: BoundName) -> None:
        self.table = table
        self.id = bound.id
        self.id_text = bound.id.show()
        self.refs = 0
        #: the client block matched for this id (namerouter/proxy/policy/runtime.py)
        self.policy: ClientPolicy = table.policies.client(
            bound.id, f"rt/{table.label}/client/{scope_label(self.id_text)}/")
        self.balancer: Balancer = make_balancer(self.policy.load_balancer)
        #: per-attempt timeout (client policy), None when not configured
        self.attempt_timeout_s: Optional[float] = self.policy.attempt_timeout_s
        self.endpoints: dict[tuple[str, int], Endpoint] = {}
        self.addr: Addr = ADDR_PENDING
        #: last failure of the address source while we still had endpoints to use
        self.failure: Optional[str] = None
        self.status_code: Optional[int] = None
        #: RewriteHostHeader: the encoded Host line (and its value) from the address set's
        #: ``authority`` metadata, computed when the address changes; None = keep the Host
        self.host_line: Optional[bytes] = None
        self.authority: Optional[bytes] = None
        self.usable = False
        self.pending = True
        self._changed = Changes(table.wheel)
        prefix = f"rt/{table.label}/client/{scope_label(self.id_text)}/"
        reg = table.registry
        #: request metrics of this client (a view over the router's cells)
        self.scope: Scope = table.cells.scope(prefix)
        self.policy.requeues.count_requests(self.scope.requests)
        self.connects = reg.counter(prefix + "connects")
        self.connect_failures = reg.counter(prefix + "failures/connect")
        reg.gauge(prefix + "connections", self.connection_count)
        #: hostConnectionPool (maxSize, maxWaiters, idleTimeMs, minSize) for every endpoint
        self.pool = PoolSettings(getattr(self.policy, "pool", None))
        #: the metrics scope of this client (``rt/<label>/client/<id>``)
        self.prefix = prefix[:-1]
        #: how new connections are opened: the router's codec, plaintext or TLS with the
        #: client's ``tls`` block (commonName filled from the prefix's captures); see transport.py
        self.connector: Connector = table.connector(self.policy, self.id)
        #: requests to this client carry x-forwarded-client-cert (Linkerd's client key)
        self.forward_client_cert = self.policy.forward_client_cert
        #: clientSession (idle and life time of connections, stalled response bodies)
        self.sessions = ClientSessions(getattr(self.policy, "session", None), reg, prefix)
        #: a response body that sends nothing this long is cut (sessions.py): the
        #: smallest of clientSession.idleTimeMs and requestAttemptTimeoutMs (the service's
        #: totalTimeoutMs joins in per request: Lifecycle.body_stall_s); None: unbounded
        #: socketOptions (socket_options.py): set on new connections; readTimeoutMs bounds
        #: the silence of a backend (waiting for a head, a body, idle in the pool)
        self.socket_options: Any = getattr(self.policy, "socket_options", None)
        opts = self.socket_options
        self.read_s: Optional[float] = socket_ms(opts.readTimeoutMs) if opts is not None else None
        self.write_s: Optional[float] = socket_ms(opts.writeTimeoutMs) if opts is not None else None
        self.sessions.idle_s = _smallest(self.sessions.idle_s, self.read_s)
        #: failFast: endpoints whose connect failed wait for a background reconnect
        self.fail_fast: Optional[FailFast] = (FailFast(reg, prefix) if getattr(self.policy, "fail_fast", False)
                                              else None)
        self.stall_s: Optional[float] = _smallest(self.sessions.idle_s, self.attempt_timeout_s)
        #: how often idle pooled connections are looked at (None: never)
        self._sweep_s = _smallest(self.pool.idle_time_s, self.sessions.idle_s, self.sessions.life_s)
        self.pool.life_s = self.sessions.life_s
        self.pool.sweep_s = self._sweep_s
        #: new backend connections of this client watch response bodies for stalls
        self.watch_bodies = table.policies.body_stalls
        self._pool_timer: Optional[Timer] = None
        self._closed = False
        self._obs = bound.addr.observe(self._on_addr)

    def connection_count(self) -> int:
        return sum(e.open_conns for e in self.endpoints.values())

    def tls_failed(self, exc: BaseException, endpoint: Endpoint) -> str:
        """A TLS handshake with ``endpoint`` failed: count it
        (``rt/<label>/client/<id>/tls/handshake_failures``); returns the short reason."""
        return self.table.handshake_failures(self.prefix).record(exc, endpoint.label)

    @property
    def server_name(self) -> Optional[str]:
        """The name the backends' certificates must carry (and SNI), None without TLS."""
        tls = self.connector.tls
        return tls.server_hostname if tls is not None else None

    def schedule_idle_sweep(self) -> None:
        """``hostConnectionPool.idleTimeMs``, ``clientSession``: a timer per client (only
        when configured) closes idle and expired connections."""
        t = self._sweep_s
        if t is None or self._pool_timer is not None or self._closed:
            return
        self._pool_timer = self.table.wheel().after(max(0.02, t / 2.0), ClientStage._sweep_idle, self)

    def _sweep_idle(self) -> None:
        self._pool_timer = None
        now = _monotonic()
        for ep in self.endpoints.values():
            ep.close_idle(now)
        if any(ep.idle for ep in self.endpoints.values()):
            self.schedule_idle_sweep()  # (a release schedules it again otherwise)

    def _on_addr(self, addr: Addr) -> None:
        self.addr = addr
        if isinstance(addr, AddrBound):
            code = addr.meta.get(STATUS_META_KEY)
            self.status_code = int(code) if code is not None else None
            self.host_line = _host_line(addr.meta.get(AUTHORITY_META_KEY))
            self.authority = self.host_line[6:-2] if self.host_line is not None else None
            fresh: dict[tuple[str, int], Endpoint] = {}
            for a in addr.addrs:
                key = (a.host, a.port)
                ep = self.endpoints.get(key)
                if ep is None or ep.retired:
                    ep = Endpoint(a, self, self.pool, self.connector)
                    ep.accrual = self.policy.new_accrual(ep)
                else:
                    ep.weight = a.weight
                    ep.address = a
                fresh[key] = ep
            for key, ep in self.endpoints.items():
                if key not in fresh:
                    ep.retire()
            self.endpoints = fresh
            self.balancer.update(list(fresh.values()))
            self.failure = None
            self.pending = False
            self.usable = bool(fresh) or self.status_code is not None
        elif addr is ADDR_PENDING:
            # Keep serving the last known set while the source re-resolves.
            return
        elif isinstance(addr, AddrFailed):
            self.failure = addr.cause
            self.pending = False
            # Last good state stays in use; only a client that never had hosts fails.
        else:  # ADDR_NEG
            for ep in self.endpoints.values():
                ep.retire()
            self.endpoints = {}
            self.balancer.update([])
            self.pending = False
            self.usable = False
            self.status_code = None
            self.host_line = self.authority = None
        self._changed.wake()

    async def wait_ready(self, deadline: float) -> None:
        """Wait while the address set is pending (bounded by the binding deadline)."""
        loop = asyncio.get_running_loop()
        while self.pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BindingTimeout(
                    f"binding timed out: the address set of {self.id_text} is still pending "
                    f"after {self.table.binding_timeout_s * 1000:.0f} ms (bindingTimeoutMs)"
                )
            await self._changed.wait(remaining)

    def no_hosts_reason(self) -> str:
        addr = self.addr
        if isinstance(addr, AddrFailed) or self.failure:
            cause = self.failure or getattr(addr, "cause", "")
            return f"bound name {self.id_text} has no addresses: its namer failed: {cause}"
        if addr is ADDR_NEG:
            return f"bound name {self.id_text} has no addresses: its namer does not know it (neg)"
        return f"bound name {self.id_text} has no addresses: the address set is empty"

    def snapshot(self) -> dict[str, Any]:
        """For /client_state.json."""
        a = self.addr
        state = "bound" if isinstance(a, AddrBound) else ("neg" if a is ADDR_NEG else (
            "pending" if a is ADDR_PENDING else "failed"))
        eps = sorted(self.endpoints.values(), key=lambda e: (e.host, e.port))
        out: dict[str, Any] = {
            "state": state,
            "addresses": [f"{e.host}:{e.port}" for e in eps],
            "endpoints": [self._endpoint_state(e) for e in eps],
            "loadBalancer": self.balancer.kind,
            "failureAccrual": self.policy.accrual.kind if self.policy.accrual is not None else "none",
            # hostConnectionPool: None = unbounded (Linkerd's default)
            "pool": {"maxSize": self.pool.max_size, "minSize": self.pool.min_size,
                     "maxWaiters": self.pool.max_waiters,
                     "idleTimeMs": int(self.pool.idle_time_s * 1000) if self.pool.idle_time_s else None},
        }
        if self.authority is not None:
            out["authority"] = self.authority.decode("latin-1")
        if self.failure:
            out["failure"] = self.failure
        return out

    @staticmethod
    def _endpoint_state(e: Endpoint) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ip": e.host, "port": e.port, "weight": e.weight, "outstanding": e.outstanding,
            "connections": e.open_conns, "idle": len(e.idle), "waiters": len(e.waiters or ())}
        fail_fast_down = e.down_until == math.inf  # fail_fast.py: until a reconnect succeeds
        if fail_fast_down:
            out["failFast"] = "down"
        if e.accrual is not None:
            out["failureAccrual"] = e.accrual.state()
        elif not e.available and not fail_fast_down:  # no accrual policy: a connect failure avoids it for a second
            out["failureAccrual"] = {"kind": "none", "state": "dead",
                                     "retryInMs": int(max(0.0, e.down_until - _monotonic()) * 1000)}
        else:
            out["failureAccrual"] = {"kind": "none", "state": "alive"}
        return out

    def close(self) -> None:
        self._closed = True
        if self._pool_timer is not None:
            self._pool_timer.cancel()
            self._pool_timer = None
        self._obs.close()
        for ep in self.endpoints.values():
            ep.retire()
        if self.fail_fast is not None:
            self.fail_fast.close()
        self.scope.drop()
        if self.connector.tls is not None:
            self.table.drop_handshake_failures(self.prefix)


# Service stage: one per (logical name, request dtab) -------------------------------------

class ServiceStage:
    """Per logical name: the bound tree (kept current by the interpreter) compiled to a Target."""

    def __init__(self, table: "RouteTable", name: Path, local: Optional[Dtab]) -> None:
        self.table = table
        self.name = name
        self.name_text = name.show()
        self.local = local
        #: the request dtab as shown (trace tag ``dtab.local``)
        self.local_text = local_text = local.show() if local else ""
        self.dtab = table.base_dtab + local if local else table.base_dtab
        #: the name's policy (retry budget, classifier, timeouts), and the same as
        #: ``policy`` when every request needs a per-request one, else None
        #: (namerouter/proxy/policy/runtime.py)
        svc = table.policies.service(name)
        self.service_policy: ServicePolicy = svc
        self.policy: Optional[ServicePolicy] = svc if svc.active else None
        #: totalTimeoutMs is enforced by the policy's RequestState (it spans retries)
        self.timeout_s: Optional[float] = None
        #: request metrics of this name (a view over the router's cells, shared by the
        #: stages of one name under several request dtabs)
        self.scope: Scope = table.service_scope_acquire(self.name_text)
        #: the request headers naming this stage, built once
        fields = [(b"l5d-dst-service", self.name_text.encode("latin-1", "replace"))]
        if local:
            fields.append((b"l5d-ctx-dtab", local_text.encode("latin-1", "replace")))
        self.block = HeaderBlock(fields)
        self.target: Optional[Target] = None
        self.error: Optional[RouterError] = None
        self.last_used = _monotonic()
        self.inflight = 0
        self._changed = Changes(table.wheel)
        self._clients: list[ClientStage] = []
        #: the client-per-service metric scopes the current target's leaves hold
        self._pairs: list[ClientStage] = []
        self._obs = None
        # A client's dtab binds under the interpreter's smaller request budget.
        self.activity = (table.interpreter.bind(self.dtab, name, from_request=True) if local
                         else table.interpreter.bind(self.dtab, name))
        self._obs = self.activity.observe(self._on_state)

    # --- binding ---------------------------------------------------------------------
    def _on_state(self, st: Any) -> None:
        if st is PENDING:
            return  # keep the last good tree while re-binding
        old = self._clients
        old_pairs, self._pairs = self._pairs, []
        if isinstance(st, Ok):
            try:
                self.target = self._compile(st.value)
                self.error = None
            except RouterError as e:
                self.target, self.error = None, e
                for c in self._pairs:  # what the partial compile acquired
                    self.table.pair_scope_release(self.name_text, c)
                    self.table.client_release(c)
                self._pairs = []
        elif isinstance(st, Failed):
            self.target = None
            self.error = NoRoute(self.explain(f"binding failed: {st.error}"))
        self._clients = self.target.clients() if self.target is not None else []
        for c in old_pairs:
            self.table.pair_scope_release(self.name_text, c)
        for c in old:
            self.table.client_release(c)
        self._changed.wake()

    def _compile(self, tree: NameTree[Any]) -> Target:
        if isinstance(tree, Leaf):
            bound = tree.value
            if not isinstance(bound, BoundName):
                raise NoRoute(self.explain(f"the name bound to an unbound path {bound}"))
            client = self.table.client_acquire(bound)
            self._pairs.append(client)
            return LeafTarget(client, bound, self.block, self.table.pair_scope_acquire(self.name_text, client))
        if isinstance(tree, Union):
            return UnionTarget([(w.weight, self._compile(w.tree)) for w in tree.weighted])
        if isinstance(tree, Alt):
            return AltTarget([self._compile(t) for t in tree.trees])
        shown = str(tree)
        if shown == "~":
            return ErrorTarget(NoRoute(self.explain("no dtab rule or namer matched it (the name bound to ~, neg)")))
        if shown == "!":
            return ErrorTarget(NoRoute(self.explain("the dtab sends it to ! (fail)")))
        return ErrorTarget(NoHosts(self.explain("the name bound to $ (empty, e.g. /$/nil)",
                                                headline="No hosts are available for")))

    def explain(self, why: str, headline: str = "No route to") -> str:
        """The "why" of an error response: name, the dtabs involved, how to debug."""
        lines = [
            f"{headline} {self.name_text}: {why}",
            f"  logical name: {self.name_text}",
            f"  router dtab:  {self.table.base_dtab.show() or '(empty)'}",
            f"  request dtab: {self.local.show() if self.local else '(none)'}",
            f"  debug with: GET /delegator.json?namespace={self.table.label}&path={self.name_text}",
        ]
        return "\n".join(lines)

    def explain_no_hosts(self, client: ClientStage) -> str:
        lines = [
            f"No hosts are available for {self.name_text}: {client.no_hosts_reason()}",
            f"  logical name: {self.name_text}",
            f"  bound name:   {client.id_text}",
            f"  router dtab:  {self.table.base_dtab.show() or '(empty)'}",
            f"  request dtab: {self.local.show() if self.local else '(none)'}",
            f"  debug with: GET /delegator.json?namespace={self.table.label}&path={self.name_text}",
        ]
        return "\n".join(lines)

    async def wait_bound(self, deadline: float) -> Target:
        loop = asyncio.get_running_loop()
        while self.target is None and self.error is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BindingTimeout(self.explain(
                    f"binding timed out after {self.table.binding_timeout_s * 1000:.0f} ms "
                    "(bindingTimeoutMs); the name is still pending"))
            await self._changed.wait(remaining)
        if self.target is None:
            raise self.error  # type: ignore[misc]
        return self.target

    def close(self) -> None:
        obs, self._obs = self._obs, None  # the observation's callback holds this stage: no cycle left
        if obs is not None:
            obs.close()
        for c in self._pairs:
            self.table.pair_scope_release(self.name_text, c)
        self._pairs = []
        for c in self._clients:
            self.table.client_release(c)
        self._clients = []
        self.table.service_scope_release(self.name_text)


class RouteTable:
    """A router's caches of service stages and client stages."""

    def __init__(
        self,
        *,
        label: str,
        base_dtab: Dtab,
        interpreter: Any,
        registry: MetricsRegistry,
        binding_timeout_s: float,
        max_paths: int = 1000,
        max_clients: int = 1000,
        idle_ttl_s: float = 600.0,
        max_request_paths: int = 100,
        service_policy: Any = None,
        client_policy: Any = None,
        tls: Optional[TlsRegistry] = None,
        alpn: Sequence[str] = (),
        service_policy_class: Optional[type[ServicePolicy]] = None,
        connector_factory: Optional[ConnectorFactory] = None,
    ) -> None:
        self.label = label
        self.base_dtab = base_dtab
        self.interpreter = interpreter
        self.registry = registry
        self.binding_timeout_s = binding_timeout_s
        self.max_paths = max_paths
        self.max_clients = max_clients
        self.idle_ttl_s = idle_ttl_s
        #: stages under a request dtab are bounded apart (bindingCache.requestDtabPaths)
        self.max_request_paths = max_request_paths
        self.request_routes = 0
        #: addresses never forwarded to (protected.Protected; set by the router)
        self.protected: Any = None
        self.service_policy = service_policy
        self.client_policy = client_policy
        self._wheel: Optional[TimerWheel] = None
        self.policies = PolicyTable(label, registry, service_policy, client_policy, self.wheel,
                                    service_policy_class or ServicePolicy)
        #: (table, client id, TLS params or None) -> the Connector of a client stage's new
        #: connections; None = HTTP/1.1 (HTTP/2 routers: h2/client.py's, which multiplexes
        #: streams over connections)
        self.connector_factory = connector_factory
        #: where requests are recorded (stats.py)
        self.cells = Cells(registry)
        self.routes: dict[Any, ServiceStage] = {}
        self.clients: dict[Path, ClientStage] = {}
        self._svc_scopes: dict[str, list[Any]] = {}  # [scope, references]
        self._pair_scopes: dict[tuple[str, Path], list[Any]] = {}  # [scope, references]
        self._sweeper: Optional[Timer] = None
        #: the process's TLS sources (client contexts, handshake-failure counters)
        self.tls = tls if tls is not None else TlsRegistry(registry)
        #: ALPN protocols TLS clients offer (transport.ALPN)
        self.alpn = list(alpn)

    # TLS clients ----------------------------------------------------------------------
    def prepare_tls(self) -> None:
        """Build the client TLS contexts of every ``tls`` block now (router start), so a
        bad file is a start-up error (TlsConfigError, with its key path) and a client
        stage made later only picks a ready context (no file read on the request path)."""
        for index, cfg in self.policies.clients.sources("tls"):
            cfg = client_tls_config(cfg)
            if cfg is not None and cfg.enabled:
                where = "client.tls" if index is None else f"client.configs[{index}].tls"
                scope = f"rt/{self.label}/client_tls/{'global' if index is None else index}"
                self.tls.client(cfg, scope, f"router {self.label}: {where}", self.alpn)

    def connector(self, policy: ClientPolicy, client_id: Path) -> Connector:
        """How a client connects: plaintext, or TLS with its ``tls`` block and captures;
        with the router's codec (``connector_factory``) or HTTP/1.1."""
        cfg = client_tls_config(policy.tls)
        params: Optional[ClientTlsParams] = None
        if cfg is not None and cfg.enabled:
            params = self.tls.client_params(cfg, policy.captures, f"rt/{self.label}/client_tls/built",
                                            f"router {self.label}: client tls", self.alpn)
        if self.connector_factory is not None:
            return self.connector_factory(self, client_id, params)
        return PLAIN if params is None else Connector(params)

    def handshake_failures(self, scope: str) -> HandshakeFailures:
        return self.tls.handshake_failures(scope)

    def drop_handshake_failures(self, scope: str) -> None:
        self.tls.drop_handshake_failures(scope)

    def wheel(self) -> TimerWheel:
        """The router's timer wheel (timers.py), on the running loop."""
        w = self._wheel
        if w is None:
            w = self._wheel = TimerWheel(asyncio.get_running_loop())
        return w

    # service stages -----------------------------------------------------------------
    def route(self, name: Path, local: Optional[Dtab]) -> ServiceStage:
        key: Any = name if local is None else (name, local)
        r = self.routes.get(key)
        if r is None:
            if local is not None and self.request_routes >= self.max_request_paths:
                self._evict_one(self.max_request_paths, requested=True)
            if len(self.routes) >= self.max_paths:
                self._evict_one(self.max_paths)
            r = ServiceStage(self, name, local)
            self.routes[key] = r
            if local is not None:
                self.request_routes += 1
            self._ensure_sweeper()
        return r

    def _evict_one(self, bound: int, requested: bool = False) -> None:
        """Make room: drop the least recently used idle stages (``requested``: only those
        under a request dtab) — a tenth of ``bound`` at once, so a flood of new names
        costs one scan per many inserts, not one each."""
        idle = [(r.last_used, k) for k, r in self.routes.items()
                if r.inflight == 0 and (not requested or r.local is not None)]
        if not idle:
            return
        idle.sort(key=lambda t: t[0])
        for _, key in idle[: max(1, bound // 10)]:
            self._drop(key)

    def _drop(self, key: Any) -> None:
        r = self.routes.pop(key)
        if r.local is not None:
            self.request_routes -= 1
        r.close()

    def sweep(self, now: Optional[float] = None) -> int:
        """Evict stages idle for longer than idleTtlSecs; returns how many."""
        now = _monotonic() if now is None else now
        old = [k for k, r in self.routes.items() if r.inflight == 0 and now - r.last_used > self.idle_ttl_s]
        for k in old:
            self._drop(k)
        if len(old) >= TRIM_AFTER:
            release_free_memory()  # a flood of names expired: give the pages back
        return len(old)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None:
            try:
                wheel = self.wheel()
            except RuntimeError:
                return
            self._sweeper = wheel.after(max(1.0, min(self.idle_ttl_s / 2.0, 60.0)), RouteTable._tick, self)

    def _tick(self) -> None:
        self._sweeper = None
        self.sweep()
        if self.routes:
            self._ensure_sweeper()

    # client stages ------------------------------------------------------------------
    def client_acquire(self, bound: BoundName) -> ClientStage:
        c = self.clients.get(bound.id)
        if c is None:
            c = ClientStage(self, bound)
            self.clients[bound.id] = c
        c.refs += 1
        return c

    def client_release(self, c: ClientStage) -> None:
        c.refs -= 1
        if c.refs <= 0 and self.clients.get(c.id) is c:
            del self.clients[c.id]
            c.close()

    # per-name service metrics (shared by the stages of one name under several dtabs) ---
    def service_scope_acquire(self, text: str) -> Scope:
        e = self._svc_scopes.get(text)
        if e is None:
            e = self._svc_scopes[text] = [self.cells.scope(f"rt/{self.label}/service/{scope_label(text)}/"), 0]
        e[1] += 1
        scope: Scope = e[0]
        return scope

    def service_scope_release(self, text: str) -> None:
        e = self._svc_scopes.get(text)
        if e is not None:
            e[1] -= 1
            if e[1] <= 0:
                del self._svc_scopes[text]
                e[0].drop()
                self.policies.forget(text)

    # per-client per-service request metrics (rt/<label>/client/<id>/service/<name>/) ------
    def pair_scope_acquire(self, service: str, client: ClientStage) -> Scope:
        key = (service, client.id)
        e = self._pair_scopes.get(key)
        if e is None:
            prefix = f"{client.scope.prefix}service/{scope_label(service)}/"
            e = self._pair_scopes[key] = [self.cells.scope(prefix, full=False), 0]
        e[1] += 1
        scope: Scope = e[0]
        return scope

    def pair_scope_release(self, service: str, client: ClientStage) -> None:
        key = (service, client.id)
        e = self._pair_scopes.get(key)
        if e is not None:
            e[1] -= 1
            if e[1] <= 0:
                del self._pair_scopes[key]
                e[0].drop()

    def client_state(self) -> dict[str, Any]:
        return {c.id_text: c.snapshot() for c in sorted(self.clients.values(), key=lambda c: c.id_text)}

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for r in list(self.routes.values()):
            r.close()
        self.routes.clear()
        self.request_routes = 0
