"""The main job: build and run everything a validated config describes.

``Linker`` is Linkerd's linker: namers (``plugins.NAMERS``), one interpreter per router
(``plugins.INTERPRETERS``; when a router names none, the ``default`` interpreter over
the configured namers), one ``HttpRouter`` per router, and the admin server. ``run``
starts it all and returns when SIGTERM/SIGINT arrives or ``POST /admin/shutdown`` is
called; then routers stop accepting and drain in-flight requests for at most
``admin.shutdownGraceMs``, and everything is closed.

Plugins are built with ``cls.from_config(config, runtime)`` (sync or async) where
``runtime`` is a :class:`Runtime`: the metrics registry, the namers already built, the
router label (for interpreters) and a list to which a plugin may append admin routes
``(method, path, handler)``.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import plugins
from .admin.app import AdminServer, Route, build_admin_app
from .admin.dashboard import DashboardSampler, dashboard_routes
from .admin.linker_routes import RouterView, linker_routes
from .admin.ui import ui_routes
from .config.schema import LinkerConfig
from .config.validate import Validated, config_class_of, kind_of
from .dtab import Dtab
from .metrics import MetricsRegistry
from .proxy.config import BindingCacheConfig
from .tls import TlsConfigError, TlsRegistry
from .tracing import Tracer
from .tracing.config import build_tracer

log = logging.getLogger("namerouter")

#: where a worker's admin server gives its metrics to the master
DUMP_PATH = "/admin/metrics/dump.json"


class StartupError(Exception):
    """The config was valid but something could not start (a port in use, …)."""

    exit_status = 1


class RefusedConfig(StartupError):
    """The config cannot be run as it is (a TLS file changed since it was checked, a
    feature the data plane does not have yet): exit status 2, like a bad config."""

    exit_status = 2




@dataclass
class Runtime:
    """What plugins get besides their config (read by attribute, all optional for them)."""

    metrics: MetricsRegistry
    #: the configured namers, built and started, in config order
    namers: list[Any] = field(default_factory=list)
    #: for interpreters: the router they serve, its ``bindingCache`` block and the
    #: metrics scope ``rt/<label>`` (bind cache gauges go under ``<scope>/bindcache/…``)
    router_label: Optional[str] = None
    binding_cache: Optional[BindingCacheConfig] = None
    metrics_scope: Optional[str] = None
    #: a plugin may append ``(method, path, handler)`` admin routes here
    admin_routes: list[Route] = field(default_factory=list)
    #: the process's TLS sources (namerd interpreters' client TLS, rotation, admin page)
    tls: Optional[TlsRegistry] = None
    #: live client ids (exact labels in exported metrics), for telemeters
    known_ids: Optional[Callable[[], list[str]]] = None
    #: the process's trace telemeters (``telemetry`` kinds of namerouter/tracing/): routers
    #: take ``tracer.router(label, dtab)`` and call its per-request hooks
    tracer: Optional[Tracer] = None


async def _build(cls: Any, config: Any, runtime: Runtime) -> Any:
    obj = cls.from_config(config, runtime)
    if inspect.isawaitable(obj):
        obj = await obj
    return obj


async def _maybe_await(x: Any) -> None:
    if inspect.isawaitable(x):
        await x


@dataclass
class WorkerRole:
    """This process is worker ``index`` of ``namerouter --workers N`` (namerouter/workers.py):
    its routers share their ports with the other workers (SO_REUSEPORT), its admin server
    listens on the Unix socket ``admin_socket`` for the master, and the master announces."""

    index: int
    admin_socket: str


class Linker:
    def __init__(self, validated: Validated[LinkerConfig], metrics: Optional[MetricsRegistry] = None,
                 worker: Optional[WorkerRole] = None) -> None:
        self.worker = worker
        self.config: LinkerConfig = validated.config
        self.config_json = validated.raw
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self.tls = TlsRegistry(self.metrics)
        self.tracer = build_tracer(self.config.telemetry, self.metrics)
        self.runtime = Runtime(self.metrics, tls=self.tls, tracer=self.tracer)
        self.namers: list[Any] = []
        self.interpreters: list[Any] = []
        self.routers: list[Any] = []
        self.announcers: list[Any] = []
        self.announcements: list[Any] = []
        self.telemeters: list[Any] = []
        self.views: dict[str, RouterView] = {}
        self.admin: Optional[AdminServer] = None
        self.dashboard = DashboardSampler(self.metrics)
        self._stop = asyncio.Event()
        self._closed = False

    # -- building ------------------------------------------------------------------

    async def _build_namers(self) -> None:
        for i, cfg in enumerate(self.config.namers):
            kind = kind_of(cfg) or "?"
            try:
                namer = await _build(plugins.load(plugins.NAMERS, kind), cfg, self.runtime)
                await _maybe_await(namer.start())
            except Exception as e:
                raise StartupError(f"namers[{i}] ({kind}): could not start: {e}") from e
            self.namers.append(namer)
            self.runtime.namers.append(namer)

    async def _build_interpreter(self, i: int, label: str) -> Any:
        cfg = self.config.interpreters[i] if i < len(self.config.interpreters) else None
        rcfg = self.config.routers[i]
        rt = Runtime(self.metrics, self.runtime.namers, label, rcfg.bindingCache, f"rt/{label}",
                     self.runtime.admin_routes, self.tls)
        if cfg is None:
            interp = await self._default_interpreter(rt)
        else:
            kind = kind_of(cfg) or "default"
            interp = await _build(plugins.load(plugins.INTERPRETERS, kind), cfg, rt)
        await _maybe_await(getattr(interp, "start", lambda: None)())
        return interp

    async def _default_interpreter(self, rt: Runtime) -> Any:
        """A router without an ``interpreter`` block: the ``default`` kind with its
        default config (the validator's defaults: no keys given)."""
        plugin = plugins.load(plugins.INTERPRETERS, "default")
        return await _build(plugin, config_class_of(plugin)(), rt)

    async def start(self) -> None:
        """Build and start everything; StartupError says what failed."""
        from .proxy.router import HttpRouter

        self.tls.start()
        await self._build_namers()
        for i, rcfg in enumerate(self.config.routers):
            label = rcfg.effective_label
            try:
                interp = await self._build_interpreter(i, label)
            except StartupError:
                raise
            except TlsConfigError as e:
                raise RefusedConfig(f"routers[{i}] ({label}): interpreter: {e}") from e
            except Exception as e:
                raise StartupError(f"routers[{i}] ({label}): interpreter could not start: {e}") from e
            self.interpreters.append(interp)
            router = HttpRouter(rcfg, interp, self.metrics, reuse_port=self.worker is not None, tls=self.tls,
                                tracer=self.tracer)
            try:
                await router.start()
            except TlsConfigError as e:
                await router.close(0)
                raise RefusedConfig(f"routers[{i}] ({label}): {e}") from e
            except OSError as e:
                await router.close(0)  # release the servers that did bind
                addrs = ", ".join(f"{s.ip}:{s.port}" for s in rcfg.servers)
                raise StartupError(f"routers[{i}] ({label}): cannot listen on {addrs}: {e.strerror or e}") from e
            self.routers.append(router)
            self.views[label] = RouterView(label, Dtab.read(rcfg.dtab or ""), interp, router)
            if self.worker is None:  # with workers, the master announces the servers once
                await self._announce(i, rcfg, router)
            for ip, port in getattr(router, "bound_ports", [(s.ip, s.port) for s in rcfg.servers]):
                log.info("router %s serving on %s:%s", label, ip, port)
        await self._start_telemeters()
        await self.tracer.start()
        await self._start_admin()

    async def _start_telemeters(self) -> None:
        """``telemetry:`` kinds other than io.l5d.prometheus (which the admin serves)."""
        rt = Runtime(self.metrics, self.runtime.namers, admin_routes=self.runtime.admin_routes,
                     known_ids=self._known_ids)
        for i, cfg in enumerate(self.config.telemetry):
            kind = kind_of(cfg)
            if kind is None or kind not in plugins.TELEMETERS:
                continue
            try:
                tel = await _build(plugins.load(plugins.TELEMETERS, kind), cfg, rt)
                await _maybe_await(tel.start())
            except Exception as e:
                raise StartupError(f"telemetry[{i}] ({kind}): could not start: {e}") from e
            self.telemeters.append(tel)
            self.runtime.admin_routes.extend(getattr(tel, "admin_routes", []))

    async def _announce(self, i: int, rcfg: Any, router: Any) -> None:
        """Register the router's servers with its ``announcers`` (Linkerd's router
        ``announcers`` + server ``announce`` keys), once they listen."""
        configs = getattr(rcfg, "announcers", None) or []
        if not configs:
            return
        from .announcers import announce_server

        label = rcfg.effective_label
        rt = Runtime(self.metrics, self.runtime.namers, label, None, f"rt/{label}", self.runtime.admin_routes)
        announcers = []
        for j, cfg in enumerate(configs):
            kind = kind_of(cfg) or "?"
            try:
                announcers.append(await _build(plugins.load(plugins.ANNOUNCERS, kind), cfg, rt))
            except Exception as e:
                raise StartupError(f"routers[{i}].announcers[{j}] ({kind}): could not start: {e}") from e
        self.announcers.extend(announcers)
        bound = list(getattr(router, "bound_ports", [(s.ip, s.port) for s in rcfg.servers]))
        for j, (scfg, addr) in enumerate(zip(rcfg.servers, bound)):
            paths = getattr(scfg, "announce", None) or []
            if not paths:
                continue
            try:
                self.announcements.append(await announce_server(announcers, paths, addr))
            except Exception as e:
                raise StartupError(f"routers[{i}].servers[{j}].announce: {e}") from e

    async def _start_admin(self) -> None:
        admin = self.config.admin
        prom = self.config.prometheus()
        routes = (linker_routes(lambda: self.views, lambda: self.namers)
                  + ui_routes(lambda: self.views)
                  + dashboard_routes(self.metrics, self._client_states, self.dashboard)
                  + list(self.runtime.admin_routes)
                  + self.tracer.admin_routes())
        if self.worker is not None:
            routes.append(("GET", DUMP_PATH, self._metrics_dump))
        app = build_admin_app(
            self.metrics, self.config_json, routes,
            security=admin.security,
            prometheus_path=prom.path if prom else "/admin/metrics/prometheus",
            prometheus_prefix=prom.prefix if prom else "",
            known_ids=self._known_ids,
            on_shutdown=self._admin_shutdown,
            tls_registry=self.tls,
        )
        tls = None
        if admin.tls is not None and self.worker is None:  # a worker's admin is a local Unix socket
            try:
                tls = self.tls.server(admin.tls, "admin", "admin.tls")
            except TlsConfigError as e:
                raise RefusedConfig(str(e)) from e
        path = self.worker.admin_socket if self.worker is not None else None
        self.admin = AdminServer(app, admin.ip, admin.port, tls,
                                 self.tls.handshake_failures("admin") if tls else None, path=path)
        try:
            await self.admin.start()
        except OSError as e:
            self.admin = None
            raise StartupError(f"admin: cannot listen on {path or f'{admin.ip}:{admin.port}'}: "
                               f"{e.strerror or e}") from e
        if path is None:
            log.info("admin serving on %s://%s:%s", self.admin.scheme, admin.ip, self.admin.port)

    def _client_states(self) -> dict[str, Any]:
        """Per router label, its clients' addresses and pools (for the dashboard)."""
        out: dict[str, Any] = {}
        for label, view in self.views.items():
            fn = getattr(view.router, "client_state", None)
            out[label] = fn() if fn is not None else {}
        return out

    async def _metrics_dump(self, _: Any) -> Any:
        """A worker's metrics as raw values, for its master to sum (``MetricsRegistry.dump``)."""
        from aiohttp import web

        return web.json_response(self.metrics.dump())

    def _known_ids(self) -> list[str]:
        """Live client ids, for exact Prometheus labels."""
        ids: list[str] = []
        for r in self.routers:
            fn = getattr(r, "client_state", None)
            if fn is not None:
                try:
                    ids.extend(str(k) for k in fn())
                except Exception:
                    pass
        return ids

    # -- running and stopping --------------------------------------------------------

    def request_shutdown(self) -> None:
        self._stop.set()

    async def _admin_shutdown(self) -> None:
        log.info("shutdown requested through the admin server")
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def close(self, grace_s: Optional[float] = None) -> None:
        """Drain routers (at most ``grace_s``, default admin.shutdownGraceMs), close the rest."""
        if self._closed:
            return
        self._closed = True
        grace = self.config.admin.shutdownGraceMs / 1000.0 if grace_s is None else grace_s
        # withdraw announcements first, so new traffic goes elsewhere while we drain
        for a in self.announcements:
            try:
                await a.close()
            except Exception:
                log.exception("error while withdrawing an announcement")
        if self.routers:
            await asyncio.gather(*(r.close(grace) for r in self.routers), return_exceptions=True)
        await self.tracer.close()  # after the drain: the last requests' spans go out too
        for obj in self.telemeters + self.announcers + self.interpreters + self.namers:
            close = getattr(obj, "close", None)
            if close is not None:
                try:
                    await _maybe_await(close())
                except Exception:
                    log.exception("error while closing %r", obj)
        self.dashboard.close()
        if self.admin is not None:
            await self.admin.close()
        await self.tls.close()


async def run(validated: Validated[LinkerConfig], worker: Optional[WorkerRole] = None) -> int:
    """Start, serve until asked to stop, drain, close. Returns the exit status. A worker
    says "ready" on stdout once it serves (its master waits for that line)."""
    linker = Linker(validated, worker=worker)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(signame: str) -> None:
        if linker._stop.is_set():  # a second signal: stop waiting for the drain
            log.warning("%s again: exiting now without waiting for the drain", signame)
            os._exit(1)
        log.info("%s: draining (at most %d ms)", signame, linker.config.admin.shutdownGraceMs)
        linker.request_shutdown()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        try:
            await linker.start()
        except StartupError as e:
            log.error("%s", e)
            return e.exit_status
        if worker is not None:
            sys.stdout.write("ready\n")
            sys.stdout.flush()
        await linker.wait()
        return 0
    finally:
        await linker.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
