"""A running namerd: storage + namers + interpreter + HTTP controller(s) + admin.

``Namerd.from_config(validated)`` builds it from a config file; tests and the
benchmark use ``Namerd(store, ...)`` directly with port 0 and read the bound ports
back from ``http_ports`` / ``admin_port``.

TLS: an interface given as ``(ip, port, ServerTlsConfig)`` and ``admin_tls`` serve over
TLS (mutual TLS with ``requireClientAuth``), with certificate rotation and
``/admin/tls.json`` (``namerouter/tls/``). Handshake failures count as
``namerd/interface/<ip>/<port>/tls/handshake_failures`` and ``admin/tls/handshake_failures``.
"""
from __future__ import annotations

import asyncio
import logging
import types
from typing import Any, Optional, Sequence

from aiohttp import web

from namerouter import plugins
from namerouter.config.validate import Validated, kind_of
from namerouter.metrics import MetricsRegistry
from namerouter.tls import ServerTlsConfig, TlsRegistry
from namerouter.tls.aiohttp_site import serve

from .api import HttpController
from .binding import NamerdBinder
from .config import NamerdConfig
from .storage.base import DtabStore

log = logging.getLogger("namerd")


class Namerd:
    def __init__(
        self,
        store: DtabStore,
        namers: Sequence[Any] = (),
        interfaces: Sequence[tuple[Any, ...]] = (("127.0.0.1", 4180),),
        admin: Optional[tuple[str, int]] = ("127.0.0.1", 9991),
        admin_tls: Optional[ServerTlsConfig] = None,
        metrics: Optional[MetricsRegistry] = None,
        config_json: Any = None,
        prometheus_path: str = "/admin/metrics/prometheus",
        prometheus_prefix: str = "",
        binding_idle_ttl: float = 600.0,
        binding_cache_size: int = 10_000,
        keepalive_timeout: float = 75.0,
        admin_security: Any = None,
        telemeters: Sequence[Any] = (),
        ifaces: Sequence[Any] = (),
        max_dtab_bytes: int = 1024 * 1024,
        watch_stall_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.namers = list(namers)
        #: (ip, port) or (ip, port, ServerTlsConfig or None)
        self.interfaces = [tuple(i) + (None,) * (3 - len(i)) for i in interfaces]
        self.admin_addr = admin
        self.admin_tls = admin_tls
        self.metrics = metrics if metrics is not None else MetricsRegistry()  # an empty one is falsy
        self.tls = TlsRegistry(self.metrics)
        self.config_json = config_json
        self.prometheus_path = prometheus_path
        self.prometheus_prefix = prometheus_prefix
        self.binding_idle_ttl = binding_idle_ttl
        # Generous on purpose: during a dtab change every watched name is bound under
        # the new dtab while its old binding is still observed, so the cache briefly
        # holds 2x the watched names; a full cache makes each insert scan it.
        self.binding_cache_size = binding_cache_size
        # Idle time allowed *between* requests on a connection; a watch stream is one
        # long request and has no server-side timeout at all.
        self.keepalive_timeout = keepalive_timeout
        #: Linkerd's ``admin.security`` (None: everything served)
        self.admin_security = admin_security
        #: io.l5d.statsd / io.l5d.influxdb (namerouter/telemetry/), started with namerd
        self.telemeters = list(telemeters)
        #: mesh / thrift / destination interface configs (``namerd.config``)
        self.iface_configs = list(ifaces)
        #: bound ports of those interfaces by kind, in config order
        self.iface_ports: dict[str, list[int]] = {}
        self.ifaces: list[Any] = []
        # Limits of the HTTP API (README "Limits and hardening").
        self.max_dtab_bytes = max_dtab_bytes
        self.watch_stall_timeout = watch_stall_timeout
        self.interpreter: Any = None
        self.binder: Optional[NamerdBinder] = None
        self.controller: Optional[HttpController] = None
        self.http_ports: list[int] = []
        self.admin_port: Optional[int] = None
        self._runners: list[web.AppRunner] = []
        self._admin: Any = None
        self._stopped = asyncio.Event()

    # Construction from config ---------------------------------------------------------
    @classmethod
    def from_config(cls, validated: Validated[NamerdConfig], metrics: Optional[MetricsRegistry] = None) -> "Namerd":
        cfg = validated.config
        metrics = metrics if metrics is not None else MetricsRegistry()  # an empty one is falsy
        runtime = types.SimpleNamespace(metrics=metrics, component="namerd")
        store = plugins.load_for(plugins.NAMERD_STORAGE, cfg.storage).from_config(cfg.storage, runtime)
        namers = [plugins.load_for(plugins.NAMERS, n).from_config(n, runtime) for n in cfg.namers]
        prom = next((t for t in cfg.telemetry if getattr(t, "kind", "") == "io.l5d.prometheus"), None)
        telemeters = [plugins.load_for(plugins.TELEMETERS, t).from_config(t, runtime)
                      for t in cfg.telemetry if kind_of(t) in plugins.TELEMETERS]
        http = cfg.http_controllers[0] if cfg.http_controllers else None
        limits: dict[str, Any] = {} if http is None else {"max_dtab_bytes": http.maxDtabKB * 1024,
                                                          "watch_stall_timeout": http.watchStallTimeoutMs / 1000.0}
        return cls(
            store,
            namers,
            interfaces=[(c.ip, c.port, c.tls) for c in cfg.http_controllers],
            ifaces=cfg.other_interfaces,
            admin=(cfg.admin.ip, cfg.admin.port),
            admin_tls=cfg.admin.tls,
            metrics=metrics,
            config_json=validated.raw,
            prometheus_path=prom.path if prom else "/admin/metrics/prometheus",
            prometheus_prefix=prom.prefix if prom else "",
            admin_security=cfg.admin.security,
            telemeters=telemeters,
            **limits,
        )

    # Lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        await self.store.start()
        self.metrics.gauge("namerd/storage/observed_namespaces", self.store.watch_count)
        for n in self.namers:
            await n.start()
        for t in self.telemeters:
            await t.start()
        self.interpreter = self._make_interpreter()
        if self.interpreter is not None:
            self.binder = NamerdBinder(self.store, self.interpreter, self.namers,
                                       getattr(self.interpreter, "system", None))
        self.controller = HttpController(self.store, self.binder, self.metrics,
                                         max_dtab_bytes=self.max_dtab_bytes,
                                         watch_stall_timeout=self.watch_stall_timeout)
        self.tls.start()
        for ip, port, tls_cfg in self.interfaces:
            scope = f"namerd/interface/{ip}/{port}"
            tls = self.tls.server(tls_cfg, scope, f"interfaces[io.l5d.httpController {ip}:{port}].tls") \
                if tls_cfg is not None else None
            # handler_cancellation: a watch handler is cancelled when its client hangs
            # up, which closes its observations (no idle timeout on the stream itself).
            runner = web.AppRunner(self.controller.app(), access_log=None, handle_signals=False,
                                   handler_cancellation=True, shutdown_timeout=1.0,
                                   keepalive_timeout=self.keepalive_timeout)
            await runner.setup()
            self._runners.append(runner)
            site = await serve(runner, ip, port, tls=tls, failures=self.tls.handshake_failures(scope) if tls else None,
                               reuse_address=True, backlog=1024)
            self.http_ports.append(site.port)
            log.info("namerd io.l5d.httpController listening on %s://%s:%d", "https" if tls else "http",
                     ip, self.http_ports[-1])
        for icfg in self.iface_configs:
            await self._start_iface(icfg)
        if self.admin_addr is not None:
            await self._start_admin(*self.admin_addr)

    async def _start_iface(self, cfg: Any) -> None:
        """Start one mesh / thrift / destination listener (``namerd/iface/``)."""
        from .iface import build_interface

        if self.binder is None:
            raise RuntimeError(f"{cfg.kind} needs namerd's interpreter, which is not available")
        iface = build_interface(cfg, self.store, self.binder, self.metrics)
        self.ifaces.append(iface)
        tls_cfg = getattr(cfg, "tls", None)
        tls = failures = None
        if tls_cfg is not None:
            # gRPC interfaces negotiate HTTP/2 with ALPN, as Linkerd's namerd does.
            alpn = ["h2"] if cfg.kind in ("io.l5d.mesh", "io.l5d.destination") else None
            scope = f"namerd/interface/{cfg.ip}/{cfg.port}"
            tls = self.tls.server(tls_cfg, scope, f"interfaces[{cfg.kind} {cfg.ip}:{cfg.port}].tls", alpn=alpn)
            failures = self.tls.handshake_failures(scope) if tls is not None else None
        port = await iface.start(cfg.ip, cfg.port, tls=tls, failures=failures)
        self.iface_ports.setdefault(cfg.kind, []).append(port)
        log.info("namerd %s listening on %s:%d%s", cfg.kind, cfg.ip, port, " (TLS)" if tls else "")

    def _make_interpreter(self) -> Any:
        try:
            from namerouter.naming.interpreter import DefaultInterpreter
        except ImportError as e:  # binding endpoints answer 501 without it
            log.warning("no interpreter available (%s): bind/addr/resolve/delegate answer 501", e)
            return None
        # request dtabs (``dtab=`` on bind/addr/delegate, routers' l5d-dtab) are bounded
        # apart and small (a hundredth of the cache, 100 by default): a flood of unique
        # ones can neither evict the bindings routers watch for the stored dtabs nor hold
        # much memory. A request binding still observed when evicted stays live for its
        # watchers; it is only no longer shared.
        interp = DefaultInterpreter(self.namers, idle_ttl=self.binding_idle_ttl,
                                    request_cache_size=max(1, self.binding_cache_size // 100),
                                    cache_size=self.binding_cache_size)
        reg = getattr(interp, "register_metrics", None)
        if reg is not None:
            reg(self.metrics, "namerd/interpreter")
        return interp

    async def _start_admin(self, ip: str, port: int) -> None:
        from namerouter.admin.app import AdminServer, build_admin_app, json_response

        from . import ui

        async def storage_state(_: web.Request) -> web.Response:
            return json_response(self.store.admin_state(), pretty=True)

        async def namespaces(_: web.Request) -> web.Response:
            return json_response(await self.store.list())

        async def delegator(request: web.Request) -> web.StreamResponse:
            assert self.controller is not None
            return await self.controller.delegate_any(request)

        async def bindings(_: web.Request) -> web.Response:
            stats = getattr(self.interpreter, "cache_stats", None)
            doc = {"interpreter": stats() if stats else None,
                   "streams": dict(self.controller.open_streams) if self.controller else {},
                   "interfaces": [i.admin_state() for i in self.ifaces],
                   "observedNamespaces": self.store.watch_count()}
            return json_response(doc, pretty=True)

        app = build_admin_app(
            self.metrics, self.config_json,
            [("GET", "/storage.json", storage_state), ("GET", "/namespaces.json", namespaces),
             ("GET", "/dtab/delegator.json", delegator), ("GET", "/bindings.json", bindings)]
            + ui.namerd_ui_routes(self) + [r for t in self.telemeters for r in t.admin_routes],
            prometheus_path=self.prometheus_path, prometheus_prefix=self.prometheus_prefix,
            on_shutdown=self._shutdown, security=self.admin_security,
            tls_registry=self.tls,
            ui_paths=ui.UI_PATHS,
            control_paths=ui.CONTROL_PATHS,
            listen_ip=ip,
        )
        tls = self.tls.server(self.admin_tls, "admin", "admin.tls") if self.admin_tls is not None else None
        self._admin = AdminServer(app, ip, port, tls, self.tls.handshake_failures("admin") if tls else None)
        await self._admin.start()
        self.admin_port = self._admin.port
        log.info("namerd admin listening on %s://%s:%d", self._admin.scheme, ip, self.admin_port)

    async def _shutdown(self) -> None:
        self._stopped.set()

    async def wait_closed(self) -> None:
        await self._stopped.wait()

    async def close(self) -> None:
        self._stopped.set()
        for t in self.telemeters:
            await t.close()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        for iface in self.ifaces:
            try:
                await iface.close()
            except Exception:  # one interface failing to close must not keep the rest open
                log.exception("closing %s", getattr(iface, "kind", iface))
        self.ifaces = []
        for runner in self._runners:
            await runner.cleanup()
        self._runners = []
        if self.interpreter is not None and hasattr(self.interpreter, "close"):
            await self.interpreter.close()
        for n in self.namers:
            try:
                await n.close()
            except Exception:  # a namer failing to close must not keep storage open
                log.exception("closing namer %s", getattr(n, "prefix", n))
        await self.store.close()
        await self.tls.close()

    @property
    def url(self) -> str:
        ip = self.interfaces[0][0] if self.interfaces else "127.0.0.1"
        host = "127.0.0.1" if ip in ("0.0.0.0", "") else ip
        scheme = "https" if self.interfaces and self.interfaces[0][2] is not None else "http"
        return f"{scheme}://{host}:{self.http_ports[0]}"
