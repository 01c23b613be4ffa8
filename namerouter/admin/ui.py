"""The browser side of the admin servers: static pages and the small JSON they need.

Plain HTML, CSS and JavaScript modules from ``static/`` (no build step, nothing fetched
from elsewhere at run time). Every page is served with a Content-Security-Policy that
allows scripts, styles and fetches from this origin only and no inline script, so a
service name or dtab that reaches a page (they come from clients: Host headers,
``l5d-dtab``) can at worst be shown, never run; the scripts also only ever insert such
text with ``textContent``.

Shared by the router's admin server (``ui_routes``: ``/``, ``/dashboard``, ``/delegator``,
``/admin/routers.json``) and namerd's (``namerd/ui.py``): ``asset_routes`` (``/ui/…``),
``page_handler`` and ``validate_dtab_route`` (``POST /admin/validate-dtab``: where a dtab
has a syntax error, from the real parser — the pages never parse dtabs themselves).
"""
from __future__ import annotations

import json
import mimetypes
import re
from pathlib import Path as FsPath
from typing import Any, Awaitable, Callable, Iterable

from aiohttp import web

from ..dtab import Dtab, DtabSyntaxError
from ..naming.dtab_text import off_loop

STATIC_DIR = FsPath(__file__).parent / "static"
ASSET_PREFIX = "/ui/"
#: largest dtab the validator reads (namerd stores far smaller ones in practice)
MAX_DTAB_BYTES = 256 * 1024

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_ASSET_NAME = re.compile(r"[a-z0-9_-]+\.(js|css|html|svg|png)")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: admin paths of the pages and their assets: ``admin.security.uiEnabled`` governs them
UI_PATH_PATTERNS = (r"/dashboard", r"/ui/[a-z0-9_.-]+", r"/admin/dashboard\.json", r"/admin/routers\.json",
                    r"/admin/validate-dtab")


def secure_headers(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _read_assets(directory: FsPath) -> dict[str, tuple[bytes, str]]:
    """The servable files of a directory, read once (a handful of small files)."""
    out: dict[str, tuple[bytes, str]] = {}
    if not directory.is_dir():
        return out
    for p in sorted(directory.iterdir()):
        if p.is_file() and _ASSET_NAME.fullmatch(p.name):
            ctype = "text/javascript" if p.suffix == ".js" else (
                mimetypes.guess_type(p.name)[0] or "application/octet-stream")
            out[p.name] = (p.read_bytes(), ctype)
    return out


def asset_routes(directories: Iterable[FsPath] = (STATIC_DIR,)) -> list[tuple[str, str, Handler]]:
    """``GET /ui/<name>``: the files of ``directories`` (later ones win on equal names).
    Only names matching ``[a-z0-9_-]+.(js|css|html|svg|png)`` exist; nothing else on disk
    is reachable."""
    assets: dict[str, tuple[bytes, str]] = {}
    for d in directories:
        assets.update(_read_assets(d))

    async def asset(request: web.Request) -> web.StreamResponse:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="not found\n")
        body, ctype = found
        charset = "utf-8" if ctype.startswith("text") else None
        return secure_headers(web.Response(body=body, content_type=ctype, charset=charset))

    return [("GET", ASSET_PREFIX + "{name}", asset)]


def page_handler(directory: FsPath, filename: str) -> Handler:
    """A static HTML page (read once); its scripts read their state from the URL."""
    body = (directory / filename).read_bytes()

    async def page(_: web.Request) -> web.StreamResponse:
        return secure_headers(web.Response(body=body, content_type="text/html", charset="utf-8"))

    return page


def _json(doc: Any, status: int = 200) -> web.Response:
    resp = web.Response(text=json.dumps(doc), status=status, content_type="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def read_limited_text(request: web.Request, limit: int = MAX_DTAB_BYTES) -> str:
    """The request body as UTF-8 text, refused (413) past ``limit`` bytes without reading on."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text=f"dtab too large: at most {limit} bytes\n")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body),
                                                text=f"dtab too large: at most {limit} bytes\n")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body is not valid UTF-8\n") from None


def check_dtab(text: str) -> dict[str, Any]:
    """``{"valid": true, "dentries": n, "dtab": canonical}`` or ``{"valid": false, "line",
    "column", "message"}`` (Finagle's message, 1-based line and column)."""
    try:
        dtab = Dtab.read(text)
    except DtabSyntaxError as e:
        return syntax_error(e)
    return {"valid": True, "dentries": len(dtab), "dtab": dtab.show()}


def syntax_error(e: DtabSyntaxError) -> dict[str, Any]:
    return {"valid": False, "line": e.line, "column": e.column, "message": str(e)}


async def check_dtab_off_loop(text: str) -> dict[str, Any]:
    """:func:`check_dtab` where :mod:`naming.dtab_text` parses client dtabs: large ones on
    its one worker thread, so the admin server's loop (shared with the routers) keeps
    serving and a burst of big dtabs queues instead of multiplying."""
    return await off_loop(check_dtab, text)


def validate_dtab_route() -> tuple[str, str, Handler]:
    """``POST /admin/validate-dtab`` with the dtab text as body: always 200 with
    :func:`check_dtab`'s answer (a syntax error is the answer, not a failure)."""

    async def validate(request: web.Request) -> web.StreamResponse:
        return _json(await check_dtab_off_loop(await read_limited_text(request)))

    return ("POST", "/admin/validate-dtab", validate)


def ui_routes(routers: Callable[[], dict[str, Any]]) -> list[tuple[str, str, Handler]]:
    """The router admin's pages: dashboard at ``/`` and ``/dashboard``, the dtab
    playground at ``/delegator``; ``/admin/routers.json`` lists the routers for it."""
    dashboard = page_handler(STATIC_DIR, "dashboard.html")

    async def routers_json(_: web.Request) -> web.StreamResponse:
        out = []
        for label, view in sorted(routers().items()):
            interp = getattr(view, "interpreter", None)
            out.append({
                "label": label,
                "dtab": view.dtab.show(),
                "dentries": view.dtab.to_json(),
                "interpreter": getattr(interp, "kind", None) or type(interp).__name__,
                "servers": [f"{ip}:{port}" for ip, port in getattr(view.router, "bound_ports", [])],
            })
        return _json(out)

    return [
        ("GET", "/", dashboard),
        ("GET", "/dashboard", dashboard),
        ("GET", "/delegator", page_handler(STATIC_DIR, "delegator.html")),
        ("GET", "/admin/routers.json", routers_json),
        validate_dtab_route(),
        *asset_routes(),
    ]
