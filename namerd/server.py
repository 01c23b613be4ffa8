"""A running namerd: storage + namers + interpreter + HTTP controller(s) + admin.

``Namerd.from_config(validated)`` builds it from a config file; tests and the
benchmark use ``Namerd(store, ...)`` directly with port 0 and read the bound ports
back from ``http_ports`` / ``admin_port``.
"""
from __future__ import annotations

import asyncio
import logging
import types
from typing import Any, Optional, Sequence

from aiohttp import web

from namerouter import plugins
from namerouter.config.validate import kind_of
from namerouter.metrics import MetricsRegistry

from .api import HttpController
from .binding import NamerdBinder
from .storage.base import DtabStore

log = logging.getLogger("namerd")


class Namerd:
    def __init__(
        self,
        store: DtabStore,
        namers: Sequence[Any] = (),
        interfaces: Sequence[tuple[str, int]] = (("127.0.0.1", 4180),),
        admin: Optional[tuple[str, int]] = ("127.0.0.1", 9991),
        metrics: Optional[MetricsRegistry] = None,
        config_json: Any = None,
        prometheus_path: str = "/admin/metrics/prometheus",
        prometheus_prefix: str = "",
        binding_idle_ttl: float = 600.0,
        binding_cache_size: int = 10_000,
        keepalive_timeout: float = 75.0,
        max_dtab_bytes: int = 1024 * 1024,
        watch_stall_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.namers = list(namers)
        self.interfaces = list(interfaces)
        self.admin_addr = admin
        self.metrics = metrics or MetricsRegistry()
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
    def from_config(cls, validated: Any, metrics: Optional[MetricsRegistry] = None) -> "Namerd":
        cfg = validated.config
        metrics = metrics or MetricsRegistry()
        runtime = types.SimpleNamespace(metrics=metrics, component="namerd")
        kind = kind_of(cfg.storage)
        store_cls = plugins.load(plugins.NAMERD_STORAGE, kind)
        store = store_cls.from_config(cfg.storage, runtime)
        namers = []
        for n in cfg.namers:
            ncls = plugins.load(plugins.NAMERS, kind_of(n))
            namers.append(ncls.from_config(n, runtime))
        prom = next((t for t in cfg.telemetry if getattr(t, "kind", "") == "io.l5d.prometheus"), None)
        http = cfg.http_controllers[0] if cfg.http_controllers else None
        limits = {} if http is None else {"max_dtab_bytes": http.maxDtabKB * 1024,
                                          "watch_stall_timeout": http.watchStallTimeoutMs / 1000.0}
        return cls(
            store,
            namers,
            interfaces=[(c.ip, c.port) for c in cfg.http_controllers],
            admin=(cfg.admin.ip, cfg.admin.port),
            metrics=metrics,
            config_json=validated.raw,
            prometheus_path=prom.path if prom else "/admin/metrics/prometheus",
            prometheus_prefix=prom.prefix if prom else "",
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
        self.interpreter = self._make_interpreter()
        if self.interpreter is not None:
            self.binder = NamerdBinder(self.store, self.interpreter, self.namers,
                                       getattr(self.interpreter, "system", None))
        self.controller = HttpController(self.store, self.binder, self.metrics,
                                         max_dtab_bytes=self.max_dtab_bytes,
                                         watch_stall_timeout=self.watch_stall_timeout)
        for ip, port in self.interfaces:
            # handler_cancellation: a watch handler is cancelled when its client hangs
            # up, which closes its observations (no idle timeout on the stream itself).
            runner = web.AppRunner(self.controller.app(), access_log=None, handle_signals=False,
                                   handler_cancellation=True, shutdown_timeout=1.0,
                                   keepalive_timeout=self.keepalive_timeout)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, ip, port, reuse_address=True, backlog=1024)
            await site.start()
            server = getattr(site, "_server", None)
            self.http_ports.append(server.sockets[0].getsockname()[1] if server and server.sockets else port)
            log.info("namerd io.l5d.httpController listening on %s:%d", ip, self.http_ports[-1])
        if self.admin_addr is not None:
            await self._start_admin(*self.admin_addr)

    def _make_interpreter(self) -> Any:
        try:
            from namerouter.naming.interpreter import DefaultInterpreter
        except ImportError as e:  # binding endpoints answer 501 without it
            log.warning("no interpreter available (%s): bind/addr/resolve/delegate answer 501", e)
            return None
        interp = DefaultInterpreter(self.namers, idle_ttl=self.binding_idle_ttl,
                                    cache_size=self.binding_cache_size)
        reg = getattr(interp, "register_metrics", None)
        if reg is not None:
            reg(self.metrics, "namerd/interpreter")
        return interp

    async def _start_admin(self, ip: str, port: int) -> None:
        from namerouter.admin.app import AdminServer, build_admin_app, json_response

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
                   "observedNamespaces": self.store.watch_count()}
            return json_response(doc, pretty=True)

        app = build_admin_app(
            self.metrics, self.config_json,
            [("GET", "/storage.json", storage_state), ("GET", "/namespaces.json", namespaces),
             ("GET", "/dtab/delegator.json", delegator), ("GET", "/bindings.json", bindings)],
            prometheus_path=self.prometheus_path, prometheus_prefix=self.prometheus_prefix,
            on_shutdown=self._shutdown,
        )
        self._admin = AdminServer(app, ip, port)
        await self._admin.start()
        self.admin_port = self._admin.port
        log.info("namerd admin listening on %s:%d", ip, self.admin_port)

    async def _shutdown(self) -> None:
        self._stopped.set()

    async def wait_closed(self) -> None:
        await self._stopped.wait()

    async def close(self) -> None:
        self._stopped.set()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
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

    @property
    def url(self) -> str:
        ip = self.interfaces[0][0] if self.interfaces else "127.0.0.1"
        host = "127.0.0.1" if ip in ("0.0.0.0", "") else ip
        return f"http://{host}:{self.http_ports[0]}"
