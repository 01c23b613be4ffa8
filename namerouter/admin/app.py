"""The admin HTTP server (aiohttp), shared by the router and namerd.

``build_admin_app(metrics, config_json, extra_routes, ...)`` gives the endpoints every
process has — ``/admin/ping``, ``/admin/metrics.json``, the Prometheus page,
``/config.json``, ``POST /admin/shutdown`` — and mounts the caller's own routes (the
router adds the delegator and namer/client state, namerd its dtab pages).
``AdminServer`` runs an app on ``admin.ip``/``admin.port`` in the current event loop,
over TLS when given a ``TlsSource`` (``admin.tls``; the certificate is reloaded when its
files change, see ``namerouter/tls/``). With a ``TlsRegistry``, ``/admin/tls.json`` shows
every TLS source of the process (certificate, reloads, the last reload error) and the
handshake failures per server and client.

``admin.security`` (Linkerd's keys) decides what is served: ``pathBlacklist`` regexes
are refused, ``pathWhitelist`` regexes always served, and the categories
``uiEnabled`` (ping, metrics, config, delegator, ``/``), ``controlEnabled``
(``/admin/shutdown``, and the dtab writes of namerd's UI) and ``diagnosticsEnabled``
(namer/client state, bound names, everything else) switch groups off. A refused path
answers 404, as in Linkerd. The dashboard, the dtab playground and their assets and JSON
(``ui.UI_PATH_PATTERNS``) are ``uiEnabled``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Awaitable, Callable, Iterable, Optional

from aiohttp import web
from aiohttp.typedefs import Handler

from ..metrics import MetricsRegistry
from ..tls.aiohttp_site import serve
from ..tls.errors import HandshakeFailures
from ..tls.reloading import TlsRegistry, TlsSource
from .metrics_export import metrics_flat, metrics_tree, prometheus_text
from .ui import UI_PATH_PATTERNS

log = logging.getLogger(__name__)

Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]

UI_PATHS = re.compile(r"/|/admin/ping|/admin/metrics\.json|/admin/metrics/prometheus|/admin/metrics/influxdb"
                      r"|/config\.json|/delegator(\.json)?|/favicon\.ico")
CONTROL_PATHS = re.compile(r"/admin/shutdown")


def json_response(doc: Any, pretty: bool = False, status: int = 200) -> web.Response:
    text = json.dumps(doc, indent=2 if pretty else None, sort_keys=pretty, default=str)
    return web.Response(text=text + ("\n" if pretty else ""), status=status, content_type="application/json")


def _truthy(v: Optional[str]) -> bool:
    return v is not None and v.lower() in ("1", "true", "yes", "")


MUTATING = frozenset(("POST", "PUT", "PATCH", "DELETE"))


def _security_middleware(security: Any, prometheus_path: str, ui_paths: Iterable[str] = (),
                         control_paths: Iterable[str] = ()) -> Any:
    white = [re.compile(p) for p in getattr(security, "pathWhitelist", [])]
    black = [re.compile(p) for p in getattr(security, "pathBlacklist", [])]
    extra_ui = [re.compile(p) for p in (*UI_PATH_PATTERNS, *ui_paths)]
    extra_control = [re.compile(p) for p in control_paths]

    def allowed(method: str, path: str) -> bool:
        if any(r.search(path) for r in white):  # Linkerd's lists are regexes, e.g. ^/admin/shutdown$
            return True
        if any(r.search(path) for r in black):
            return False
        if CONTROL_PATHS.fullmatch(path) or (
                method in MUTATING and any(r.fullmatch(path) for r in extra_control)):
            return bool(getattr(security, "controlEnabled", True))
        if UI_PATHS.fullmatch(path) or path == prometheus_path or any(r.fullmatch(path) for r in extra_ui):
            return bool(getattr(security, "uiEnabled", True))
        return bool(getattr(security, "diagnosticsEnabled", True))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allowed(request.method, request.path):
            raise web.HTTPNotFound(text="not found\n")
        return await handler(request)

    return middleware


def build_admin_app(
    metrics: MetricsRegistry,
    config_json: Any = None,
    extra_routes: Iterable[Route] = (),
    *,
    security: Any = None,
    prometheus_path: str = "/admin/metrics/prometheus",
    prometheus_prefix: str = "",
    known_ids: Optional[Callable[[], Iterable[str]]] = None,
    on_shutdown: Optional[Callable[[], Awaitable[None]]] = None,
    tls_registry: Optional[TlsRegistry] = None,
    ui_paths: Iterable[str] = (),
    control_paths: Iterable[str] = (),
) -> web.Application:
    """The admin app. ``config_json`` is served at ``/config.json``; ``known_ids``
    (optional) lists live service names / client ids for exact Prometheus labels;
    ``on_shutdown`` runs after ``POST /admin/shutdown`` has been answered.
    ``ui_paths`` / ``control_paths`` (regexes, full match) add the caller's own routes to
    the ``uiEnabled`` / ``controlEnabled`` groups of ``admin.security``; a control path
    counts as control for mutating methods only (its GET is a page or a read)."""
    middlewares = ([_security_middleware(security, prometheus_path, ui_paths, control_paths)]
                   if security is not None else [])
    app = web.Application(middlewares=middlewares)
    shutdown_started = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="pong", content_type="text/plain")

    async def metrics_json(request: web.Request) -> web.Response:
        q = request.query.get("q")
        pattern = request.query.get("filter")
        try:
            flat = metrics_flat(metrics, q=q, pattern=pattern)
        except re.error as e:
            return web.Response(status=400, text=f"Invalid filter: {e}\n")
        doc = metrics_tree(flat) if _truthy(request.query.get("tree")) else flat
        return json_response(doc, pretty=_truthy(request.query.get("pretty")))

    async def prometheus(_: web.Request) -> web.Response:
        ids = list(known_ids()) if known_ids is not None else ()
        text = prometheus_text(metrics, prometheus_prefix, ids)
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def config(request: web.Request) -> web.Response:
        return json_response(config_json if config_json is not None else {},
                             pretty=_truthy(request.query.get("pretty")))

    async def shutdown(_: web.Request) -> web.Response:
        if on_shutdown is None:
            return web.Response(status=501, text="shutdown is not available here\n")
        if not shutdown_started.is_set():
            shutdown_started.set()

            async def run() -> None:
                await asyncio.sleep(0)  # let this response go out first
                try:
                    await on_shutdown()
                except Exception:
                    log.exception("shutdown failed")

            tasks.add(asyncio.get_running_loop().create_task(run()))  # keep a reference
        return web.Response(text="shutting down\n", content_type="text/plain")

    app.router.add_get("/admin/ping", ping)
    app.router.add_get("/admin/metrics.json", metrics_json)
    app.router.add_get(prometheus_path, prometheus)
    app.router.add_get("/config.json", config)
    app.router.add_post("/admin/shutdown", shutdown)
    if tls_registry is not None:
        async def tls_state(request: web.Request) -> web.Response:
            return json_response(tls_registry.state(), pretty=_truthy(request.query.get("pretty")))

        app.router.add_get("/admin/tls.json", tls_state)
    for method, path, handler in extra_routes:
        app.router.add_route(method, path, handler)
    return app


class AdminServer:
    """Serve an admin app on ip:port in the running loop (TLS with ``tls``); ``port`` is
    the bound port. With ``path``, on that Unix socket instead (a worker's admin, read by
    its master)."""

    def __init__(self, app: web.Application, ip: str = "127.0.0.1", port: int = 9990,
                 tls: Optional[TlsSource] = None, failures: Optional[HandshakeFailures] = None,
                 path: Optional[str] = None) -> None:
        self.app = app
        self.ip = ip
        self.port = port
        self.tls = tls
        self.failures = failures
        self.path = path
        self._runner: Optional[web.AppRunner] = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            if self.path is not None:
                unix = web.UnixSite(self._runner, self.path)
                await unix.start()
                return
            site = await serve(self._runner, self.ip, self.port, tls=self.tls, failures=self.failures,
                               reuse_address=True)
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = site.port

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
