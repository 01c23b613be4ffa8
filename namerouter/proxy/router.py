"""``HttpRouter``: one Linkerd-style HTTP router (a ``routers[]`` entry) — the data plane's
public entry point.

Usage (the main job, ``namerouter run``)::

    router = HttpRouter(config: RouterConfig, interpreter, metrics: MetricsRegistry)
    await router.start()          # binds every ``servers[]`` socket; returns when listening
    router.bound_ports            # [(ip, port)] actually bound (port 0 -> the real one)
    router.client_state()         # {client id: {"state", "addresses", "endpoints", ...}}
                                  #   for the admin server's /client_state.json
    router.label, router.config, router.interpreter, router.base_dtab
    await router.close(grace_s)   # stop accepting, let in-flight requests finish (at most
                                  #   grace_s), then close everything

``interpreter`` is anything with ``bind(dtab: Dtab, path: Path) -> Activity[NameTree[BoundName]]``
(namerouter.naming's contract). The router never talks to namers directly.

Per request: the codec (``h1/server.py``) reads a head and starts a ``Lifecycle``
(``lifecycle.py``), which identifies it (``identifiers.py``), takes the local dtab from
``l5d-ctx-dtab`` then ``l5d-dtab`` (``request_dtab.py``), gets the cached
``ServiceStage`` for (name, local dtab) (``routing.py``), picks a leaf of its compiled
bound tree (``targets.py``), whose ``ClientStage`` picks an endpoint with the load
balancer -> pooled upstream connection (``pool.py``, ``h1/client.py``) -> relay.

Module map: ``lifecycle.py`` (one request, protocol-neutral: states, dispatch, answers,
metrics), ``message.py`` (neutral request/response heads), ``h1/`` (HTTP/1.1: ``heads.py``
and ``encode.py`` pure framing, ``server.py`` and ``client.py`` the protocols),
``transport.py`` (listening and connecting: where TLS plugs in), ``pool.py``
(per-endpoint pools), ``routing.py`` + ``targets.py`` (service and client stages,
bound-tree compilation, caches), ``balancers.py`` (p2c, ewma, roundRobin),
``identifiers.py``, ``request_dtab.py``, ``errors.py`` (status mapping, ``l5d-err``
responses), ``stats.py`` (per-request metrics), ``timers.py`` (the timer wheel),
``batch.py`` (one send per connection per read), ``accesslog.py`` (``httpAccessLog``),
``config.py`` (the ``routers[]`` dataclasses), ``policy/`` (retries, classifiers,
failure accrual, timeouts: plugged in at ``ServiceStage.policy`` / ``ClientStage.policy``).

Errors the router answers itself (``l5d-err`` + a text/plain body naming the logical
name, the router dtab and the request dtab): unidentified, malformed request or
``l5d-dtab``, ``Via`` loop → 400; no route (neg/fail), no hosts, connect failure,
binding timeout, backend closed before answering → 502; timeouts, maxConcurrentRequests
→ 503. ``/$/io.buoyant.http.status/<code>`` names are answered with that status.

Metrics (Linkerd's flat names): ``rt/<label>/server/<ip>/<port>/{requests,success,
failures,status/<code>,request_latency_ms,connects,connections}``,
``rt/<label>/service/<name>/...`` and ``rt/<label>/client/<id>/...`` (the same plus
``connects``, ``failures/connect``, ``connections``), names without their leading slash
(``rt/outgoing/service/svc/pong/requests``, ``rt/outgoing/client/$/inet/127.1/8002/requests``).
"""
from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any, Optional

from ..dtab.dtab import Dtab
from ..metrics import MetricsRegistry
from ..tls import HandshakeFailures, TlsConfigError, TlsRegistry, TlsSource
from ..tracing import NO_TELEMETERS, RouterTracer, Tracer
from .accesslog import AccessLog
from .compression import Compression
from .forwarded import AddedHeaders
from .config import RouterConfig, ServerConfig
from .identifiers import build_identifier
from .message import RequestHead
from .protected import Protected, is_loopback
from .request_dtab import RequestDtabs
from .routing import RouteTable, ServiceStage
from .sessions import ServerSessions
from .stats import Cells, Scope
from .timers import TimerWheel
from .transport import ListenSettings, alpn_for, listen, listen_tls, server_protocol

log = logging.getLogger("namerouter.proxy")


class RouterCore:
    """What every server of a router shares: identification, dtabs, the route table."""

    def __init__(self, config: RouterConfig, interpreter: Any, metrics: MetricsRegistry,
                 tls: Optional[TlsRegistry] = None, tracer: Optional[Tracer] = None,
                 control_plane: Optional[Protected] = None) -> None:
        self.config = config
        self.interpreter = interpreter
        self.label = config.effective_label
        #: the process's TLS sources (server and client contexts, rotation, handshake counters)
        self.tls = tls if tls is not None else TlsRegistry(metrics)
        #: ALPN protocol ids of this router's protocol (transport.ALPN)
        self.alpn = alpn_for(config.protocol)
        try:
            self.base_dtab = Dtab.read(config.dtab or "")
        except ValueError as e:
            raise ValueError(f"routers[{self.label}].dtab: {e}") from None
        #: compressionLevel (compression.py; HTTP/1.1 routers): None = never
        self.compression = Compression.of(getattr(config, "compressionLevel", None))
        if config.originator:  # Linkerd marks an originating router in its stats only
            metrics.gauge(f"rt/{self.label}/originator", lambda: 1.0)
        #: an HTTP/2 router (``protocol: h2``): its codec, identifiers, classifiers, clients
        self.h2 = config.protocol == "h2"
        h2 = _h2_parts(config) if self.h2 else None
        self.identifier = (h2["identifier"] if h2 else build_identifier)(config.identifiers(), config.dstPrefix)
        self.max_header_bytes = config.maxHeadersKB * 1024
        self.max_initial_line_bytes = config.maxInitialLineKB * 1024
        self.max_err_bytes = config.maxErrResponseKB * 1024
        cache = config.bindingCache
        self.table = RouteTable(
            label=self.label,
            base_dtab=self.base_dtab,
            interpreter=interpreter,
            registry=metrics,
            binding_timeout_s=config.bindingTimeoutMs / 1000.0,
            max_paths=cache.paths,
            max_clients=cache.clients,
            max_request_paths=cache.requestDtabPaths,
            idle_ttl_s=float(cache.idleTtlSecs),
            service_policy=config.service,
            client_policy=config.client,
            tls=self.tls,
            alpn=self.alpn.client,
            service_policy_class=h2["service_policy"] if h2 else None,
            connector_factory=h2["connector_factory"] if h2 else None,
        )
        #: whether some client forwards client certificates (Linkerd's client forwardClientCert)
        self.clients_forward_cert = any(v for _, v in self.table.policies.clients.sources("forwardClientCert"))
        self.dtabs = RequestDtabs(config.maxLocalDtabKB * 1024)
        #: this router's tracer: every request gets a trace context, spans only when a
        #: telemeter samples it (namerouter/tracing/, docs/architecture.md "Tracing")
        propagator = config.tracePropagator.kind if config.tracePropagator is not None else "io.l5d.default"
        self.tracer: RouterTracer = (tracer or NO_TELEMETERS).router(self.label, config.dtab or "", propagator)
        #: where this router never forwards (its servers; the process's admin and namerd
        #: under ``control_plane``): checked on each new backend connection (protected.py)
        self.protected = Protected(control_plane)
        self.table.protected = self.protected
        #: ``streamingEnabled: false``: the largest request/response body buffered whole
        #: (lifecycle.py); None: bodies are streamed (the default, and every h2 router)
        buffered = not getattr(config, "streamingEnabled", True)
        self.max_request_bytes: Optional[int] = config.maxRequestKB * 1024 if buffered else None
        self.max_response_bytes: Optional[int] = config.maxResponseKB * 1024 if buffered else None
        log_path, append, roll, count = (
            (getattr(config, "h2AccessLog", None), getattr(config, "h2AccessLogAppend", True),
             getattr(config, "h2AccessLogRollPolicy", "never"), getattr(config, "h2AccessLogRotateCount", -1))
            if self.h2 else (config.httpAccessLog, config.httpAccessLogAppend, config.httpAccessLogRollPolicy,
                             config.httpAccessLogRotateCount))
        self.access_log: Optional[AccessLog] = AccessLog(log_path, append, roll, count) if log_path else None

    def resolve(self, head: RequestHead, system_namers: bool = True) -> tuple[ServiceStage, Optional[bytes]]:
        """The request's service stage (and its rewritten URI, if the identifier consumed
        a prefix); ``system_namers``: whether its request dtab may name any system namer
        (the server's ``localDtabSystemNamers``)."""
        name, new_uri = self.identifier.identify(head)
        local = None
        if head.dtab is not None or head.dtab_ctx is not None:
            local = self.dtabs.local(head.dtab_ctx, head.dtab)
            if local is not None and not system_namers:
                self.dtabs.check_system_namers(local)
        return self.table.route(name, local), new_uri


def _h2_parts(config: RouterConfig) -> dict[str, Any]:
    """What an h2 router plugs into the shared core (``h2/``)."""
    from .h2.client import h2_connector
    from .h2.identifiers import build_h2_identifier
    from .h2.policy import H2ServicePolicy

    return {"identifier": build_h2_identifier, "service_policy": H2ServicePolicy,
            "connector_factory": h2_connector}


class HttpServer:
    """One ``servers[]`` entry: a listening socket and its connections."""

    def __init__(self, core: RouterCore, config: ServerConfig, metrics: MetricsRegistry,
                 reuse_port: bool = False, index: int = 0) -> None:
        self.core = core
        self.config = config
        self.index = index
        self.ip = config.ip
        self.port = config.port
        self.reuse_port = reuse_port
        #: timestampHeader / addForwardedHeader (forwarded.py); None: neither
        self.added_headers = AddedHeaders.of(config, core.label, core.h2)
        #: the ``socketOptions`` block (None: our defaults; socket_options.py)
        self.socket_options = config.socketOptions
        self.clear_context = config.clearContext
        self.max_concurrent = config.maxConcurrentRequests
        self.max_call_depth = config.maxCallDepth
        #: request dtabs may name every system namer (/$/inet …): localDtabSystemNamers,
        #: by default only on a loopback address (SSRF: see request_dtab.py)
        self.system_namers: bool = (config.localDtabSystemNamers if config.localDtabSystemNamers is not None
                                    else is_loopback(config.ip))
        self.metrics = metrics
        self.inflight = 0
        self.conns: set[Any] = set()
        #: where this router's requests are recorded, and this server's scope of them
        self.cells: Cells = core.table.cells
        self.scope: Optional[Scope] = None
        #: an asyncio.Server (plaintext) or a TlsServer (same close/wait_closed/sockets)
        self._server: Any = None
        #: (ip, port) of the listening socket (the local endpoint of server spans)
        self.local: tuple[str, int] = (self.ip, self.port)
        self._drained: Optional[asyncio.Event] = None
        self.connects: Any = None
        tls = config.tls
        #: the TLS block when this server terminates TLS (None: plaintext)
        self.tls_config = tls if tls is not None and tls.enabled else None
        self.tls_source: Optional[TlsSource] = None
        self.tls_failures: Optional[HandshakeFailures] = None
        #: this server's requests carry the client certificate (x-forwarded-client-cert)
        self.forward_client_cert = bool(config.forwardClientCert)
        #: connections look at their client certificate (this server or a client forwards it)
        self.collect_client_cert = self.tls_config is not None and (
            self.forward_client_cert or core.clients_forward_cert)
        #: admission and connection time limits (sessions.py), set with the metrics
        self.sessions: Any = None

    def _scope(self) -> str:
        return f"rt/{self.core.label}/server/{self.ip}/{self.port}/"

    def wheel(self) -> TimerWheel:
        return self.core.table.wheel()

    async def start(self) -> None:
        opts = self.socket_options
        settings = ListenSettings(self.ip, self.port, reuse_port=self.reuse_port)
        if opts is not None:
            settings = ListenSettings(self.ip, self.port, reuse_port=self.reuse_port or opts.reusePort,
                                      backlog=opts.backlog or settings.backlog, reuse_addr=opts.reuseAddr)
        if self.tls_config is not None:
            self._server = await listen_tls(settings, server_protocol(self, tls=True), self._tls_material)
        else:
            self._server = await listen(settings, server_protocol(self))
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self.local = (self.ip, self.port)
        self.init_metrics()

    def _tls_material(self, port: int) -> tuple[TlsSource, HandshakeFailures]:
        """The TLS source and failure counter of this server once its port is known:
        ``rt/<label>/server/<ip>/<port>/tls/…``. TlsConfigError when a file went bad
        since the config was checked."""
        assert self.tls_config is not None
        reg = self.core.tls
        scope = f"rt/{self.core.label}/server/{self.ip}/{port}"
        source = reg.server(self.tls_config, scope, f"router {self.core.label}: servers[{self.index}].tls",
                            self.core.alpn.server)
        assert source is not None
        self.tls_source, self.tls_failures = source, reg.handshake_failures(scope)
        return source, self.tls_failures

    def init_metrics(self) -> None:
        """The server's metrics scope (once the port is known)."""
        prefix = self._scope()
        self.scope = self.cells.scope(prefix)
        self.connects = self.metrics.counter(prefix + "connects")
        self.metrics.gauge(prefix + "connections", lambda: len(self.conns))
        self.sessions = ServerSessions(self.config, self.metrics, prefix, self.wheel)

    # --- connections (the codecs call these) --------------------------------------------
    def connection_made(self, conn: Any) -> Optional[str]:
        """A client connected: admit it (None), or say why not — the codec then answers
        503 with that reason and closes (``maxConnections``, the process's share of file
        descriptors: sessions.py). Every codec calls this first, from ``connection_made``."""
        refusal: Optional[str] = self.sessions.admit()
        if refusal is not None:
            return refusal
        self.conns.add(conn)
        self.connects.value += 1
        return None

    def connection_lost(self, conn: Any) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.sessions.release()
        if self._drained is not None and not self.conns:
            self._drained.set()

    def record_refused(self, status: int) -> None:
        """A request refused before it became a lifecycle (malformed): server metrics only."""
        self.cells.cell(self.scope, None, None, None).record(status, 0.0, status >= 500)

    async def close(self, grace_s: float) -> None:
        if self._server is not None:
            self._server.close()
        self._drained = asyncio.Event()
        for c in list(self.conns):
            c.shutdown()
        if self.conns:
            try:
                await asyncio.wait_for(self._drained.wait(), grace_s)
            except asyncio.TimeoutError:
                pass
        for c in list(self.conns):
            c.close(abort=True)
            if c in self.conns:  # no connection_lost yet (the loop may be ending): release it now
                self.conns.discard(c)
                self.sessions.release()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass


class HttpRouter:
    """A router: its servers, identification, binding cache and clients."""

    #: requests are traced (``tracer``: the process's ``tracing.Tracer``; every request gets a
    #: trace context and, when a telemeter samples it, spans). The main job refuses trace
    #: telemeters for a router class without this (namerouter/linker.py).
    traces_requests = True

    def __init__(self, config: RouterConfig, interpreter: Any, metrics: MetricsRegistry,
                 reuse_port: bool = False, tls: Optional[TlsRegistry] = None,
                 tracer: Optional[Tracer] = None, control_plane: Optional[Protected] = None) -> None:
        self.config = config
        self.interpreter = interpreter
        self.metrics = metrics
        #: ``tls``: the process's TlsRegistry (the linker's: one file watch, /admin/tls.json);
        #: None = a registry of this router's own. ``control_plane``: the process's addresses
        #: no router forwards to (admin, namerd)
        self.core = RouterCore(config, interpreter, metrics, tls, tracer, control_plane)
        self.label = self.core.label
        self.base_dtab = self.core.base_dtab
        #: ``reuse_port``: share the ports with other processes (``namerouter --workers N``)
        self.servers = [HttpServer(self.core, s, metrics, reuse_port, j) for j, s in enumerate(config.servers)]
        self._own_tls = tls is None

    async def start(self) -> None:
        """Listen on every server. OSError when a port is taken; TlsConfigError (key path
        and reason) when a TLS file went bad since the config was checked."""
        started: list[HttpServer] = []
        self.core.table.prepare_tls()
        if self._own_tls:
            self.core.tls.start()
        try:
            for s in self.servers:
                await s.start()
                started.append(s)
                self.core.protected.add(s.ip, s.port, f"this router's own server {s.ip}:{s.port}")
            # Everything built so far (modules, config, dtabs) lives as long as the process:
            # move it out of the cyclic GC's generations so a full collection never has to
            # walk it again while requests wait (tail latency).
            gc.freeze()
        except TlsConfigError:
            for s in started:
                await s.close(0)
            raise
        except OSError as e:
            for s in started:
                await s.close(0)
            raise OSError(e.errno, f"router {self.label}: cannot listen on "
                                   f"{self.servers[len(started)].ip}:{self.servers[len(started)].port}: {e.strerror}") from None

    @property
    def bound_ports(self) -> list[tuple[str, int]]:
        return [(s.ip, s.port) for s in self.servers]

    def client_state(self) -> dict[str, Any]:
        return self.core.table.client_state()

    @property
    def inflight(self) -> int:
        return sum(s.inflight for s in self.servers)

    async def close(self, grace_s: float = 10.0) -> None:
        await asyncio.gather(*(s.close(grace_s) for s in self.servers))
        self.core.table.close()
        if self._own_tls:
            await self.core.tls.close()
        if self.core.access_log is not None:
            self.core.access_log.close()
