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

Hardening (issue 17; Linkerd has none of it, see docs/linkerd-compatibility.md):

- **Host check** (DNS rebinding): a request whose ``Host`` is not ``localhost`` (or
  ``*.localhost``), a loopback address, the address the admin listens on or the one the
  connection came in on, nor in ``admin.security.hostWhitelist``, gets 403. A page on
  another site that makes its own name resolve to 127.0.0.1 still sends its own name.
  (Not over TLS: there the browser already refuses a certificate for another name.)
- **Control requests must be non-simple** (cross-site request forgery): ``POST
  /admin/shutdown`` and the caller's ``control_paths`` (namerd's dtab writes) need a
  ``Content-Type`` other than the three a cross-site form may send, or an
  ``X-Requested-With`` header — a browser sends neither cross-site without a CORS
  preflight, which this server never approves.
- **/config.json redacts secrets**: values of keys that name a token, password, secret,
  credential or auth, and passwords in URLs, are replaced by ``<redacted>``.
"""
from __future__ import annotations

import asyncio
import ipaddress
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

#: the Content-Types a cross-site form or no-cors fetch may send without a preflight (CORS)
SIMPLE_CONTENT_TYPES = frozenset(("application/x-www-form-urlencoded", "multipart/form-data", "text/plain"))
REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"token|passw|secret|credential|auth|api_?key|private_?key", re.I)
_URL_PASSWORD = re.compile(r"(\w+://[^/@:\s]*:)[^/@\s]*@")

UI_PATHS = re.compile(r"/|/admin/ping|/admin/metrics\.json|/admin/metrics/prometheus|/admin/metrics/influxdb"
                      r"|/config\.json|/delegator(\.json)?|/favicon\.ico")
CONTROL_PATHS = re.compile(r"/admin/shutdown")


def json_response(doc: Any, pretty: bool = False, status: int = 200) -> web.Response:
    text = json.dumps(doc, indent=2 if pretty else None, sort_keys=pretty, default=str)
    return web.Response(text=text + ("\n" if pretty else ""), status=status, content_type="application/json")


def redact(doc: Any) -> Any:
    """``doc`` with secrets replaced (see the module docstring): string values of keys
    that look secret, passwords in URLs anywhere; structure and other values kept."""
    if isinstance(doc, dict):
        return {k: (REDACTED if isinstance(v, str) and isinstance(k, str) and _SECRET_KEY.search(k) else redact(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v) for v in doc]
    if isinstance(doc, str) and "@" in doc:
        return _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", doc)
    return doc


def _host_of(header: str) -> str:
    """The host part of a ``Host`` header (no port, no brackets, lower case)."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h[1:]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _is_local_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_guard(security: Any, listen_ip: Optional[str]) -> Any:
    """Refuse (403) requests whose Host names neither this server nor localhost."""
    extra = {h.lower() for h in getattr(security, "hostWhitelist", None) or ()}
    own = {listen_ip.lower()} if listen_ip and listen_ip not in ("0.0.0.0", "::", "") else set()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        # Over TLS a rebound name fails the certificate check in the browser: the name a
        # client uses is the certificate's, whatever it is.
        if header is not None and not request.secure:
            host = _host_of(header)
            if not (_is_local_name(host) or host in own or host in extra):
                # the address the connection came in on (a server on 0.0.0.0 reached by IP);
                # on a Unix socket (a worker's admin) there is no rebinding to fear
                sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
                if isinstance(sock, tuple) and sock and host != str(sock[0]).lower():
                    return web.Response(
                        status=403, text=f"Host {header!r} is not this admin server's address or localhost "
                                         "(DNS rebinding protection; allow a name with admin.security.hostWhitelist)\n")
        return await handler(request)

    return middleware


def is_non_simple(request: web.Request) -> bool:
    """Whether a browser would have asked (CORS preflight) before sending this request
    cross-site: a Content-Type beyond the simple three, or an X-Requested-With header."""
    if request.method not in ("GET", "HEAD", "POST"):
        return True
    if "X-Requested-With" in request.headers:
        return True
    ctype = request.headers.get("Content-Type")
    if ctype is None:
        return False
    return ctype.split(";", 1)[0].strip().lower() not in SIMPLE_CONTENT_TYPES


_NOT_CROSS_SITE = ("needs a non-simple request — a JSON Content-Type or an X-Requested-With header "
                   "(e.g. curl -X POST -H 'Content-Type: application/json' ...), so that a page on another "
                   "site cannot send it\n")


def _control_guard(control_paths: Iterable[str]) -> Any:
    """Control requests (shutdown, the caller's mutating control paths) must be non-simple."""
    extra = [re.compile(p) for p in control_paths]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if request.method in MUTATING and (CONTROL_PATHS.fullmatch(path) or any(r.fullmatch(path) for r in extra)):
            if not is_non_simple(request):
                return web.Response(status=403, text=f"{request.method} {path} {_NOT_CROSS_SITE}")
        return await handler(request)

    return middleware


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
    listen_ip: Optional[str] = None,
) -> web.Application:
    """The admin app. ``config_json`` is served at ``/config.json``; ``known_ids``
    (optional) lists live service names / client ids for exact Prometheus labels;
    ``on_shutdown`` runs after ``POST /admin/shutdown`` has been answered.
    ``ui_paths`` / ``control_paths`` (regexes, full match) add the caller's own routes to
    the ``uiEnabled`` / ``controlEnabled`` groups of ``admin.security``; a control path
    counts as control for mutating methods only (its GET is a page or a read).
    ``listen_ip``: the address the admin listens on (accepted as a ``Host``)."""
    control_paths = tuple(control_paths)
    middlewares = [_host_guard(security, listen_ip)]
    if security is not None:
        middlewares.append(_security_middleware(security, prometheus_path, ui_paths, control_paths))
    middlewares.append(_control_guard(control_paths))
    app = web.Application(middlewares=middlewares)
    shown_config = redact(config_json) if config_json is not None else {}
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
        return json_response(shown_config, pretty=_truthy(request.query.get("pretty")))

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
