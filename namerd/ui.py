"""namerd's browser UI on its admin port: namespaces, a dtab editor, a delegator.

Pages (static HTML + JS modules from ``namerd/static`` and the shared
``namerouter/admin/static``):

=====================================  ==================================================
``GET /``                               namespaces (from ``/namespaces.json``)
``GET /namespaces/<ns>``                the dtab editor of one namespace
``GET /delegator?namespace=<ns>&…``     the delegator: path + extra dtab → delegation tree
                                        (``/dtab/delegator.json``)
=====================================  ==================================================

JSON behind the editor (the store is called in-process, with the same compare-and-set
as the HTTP API):

* ``GET /admin/dtab/<ns>`` → ``{"namespace", "exists", "dtab", "version"}`` (``dtab`` one
  dentry per line; ``version`` the base64 ETag of the HTTP API).
* ``PUT /admin/dtab/<ns>`` (``Content-Type: application/dtab``, ``If-Match: <version>``
  required) → 200 ``{"version"}``; 412 ``{"error", "current": {"version", "dtab"}}`` when
  someone changed it since (nothing is written); 400 ``{"error", "line", "column"}``.
* ``POST /admin/dtab/<ns>`` (``application/dtab``) creates; 409 with ``current`` if it exists.
* ``POST /admin/dtab/<ns>/dry-run`` (``application/json`` ``{"dtab", "names": [...]}``) →
  the rows of :mod:`namerd.dryrun` for the names namerd has bound with this namespace's
  dtab plus the ones given.
* ``POST /admin/validate-dtab`` (shared): line and column of a syntax error.

Writes require a non-form content type (``application/dtab``/``application/json``), so a
page on another origin cannot make a browser send them without a CORS preflight, which
this server never grants. ``admin.security``: the writes are ``controlEnabled``, the rest
``uiEnabled``.
"""
from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path as FsPath
from typing import Any, Optional

from aiohttp import web

from namerouter.naming.dtab_text import read_dtab
from namerouter.admin.ui import (
    STATIC_DIR,
    asset_routes,
    read_limited_text,
    secure_headers,
    syntax_error,
    validate_dtab_route,
)
from namerouter.dtab import Dtab, DtabSyntaxError

from .dryrun import bound_names, compare, parse_names
from .storage.base import (
    InvalidNamespace,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    VersionedDtab,
    VersionMismatch,
    check_namespace,
)

NAMERD_STATIC = FsPath(__file__).parent / "static"
_NS = r"[A-Za-z0-9_.:@+=-]+"

#: admin.security groups of these routes (regexes, full match)
UI_PATHS = (r"/namespaces/" + _NS, r"/admin/dtab/" + _NS, r"/admin/dtab/" + _NS + r"/dry-run",
            r"/namespaces\.json", r"/dtab/delegator\.json")
CONTROL_PATHS = (r"/admin/dtab/" + _NS,)


def version_string(version: bytes) -> str:
    return base64.b64encode(version).decode("ascii")


def pretty(dtab: Dtab) -> str:
    """One dentry per line, as operators write them (``namerd dtab get`` does the same)."""
    return "".join(f"{e.prefix.show()} => {e.dst.show()};\n" for e in dtab)


def _json(doc: Any, status: int = 200) -> web.Response:
    resp = web.Response(text=json.dumps(doc), status=status, content_type="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _current(vd: Optional[VersionedDtab]) -> Optional[dict[str, str]]:
    return None if vd is None else {"version": version_string(vd.version), "dtab": pretty(vd.dtab)}


def namerd_ui_routes(namerd: Any) -> list[tuple[str, str, Any]]:
    """Routes for namerd's admin app; ``namerd`` is the running :class:`Namerd` (its
    ``store``, ``binder`` and ``interpreter`` are read when a request comes)."""
    index = (NAMERD_STATIC / "namespaces.html").read_bytes()
    editor = (NAMERD_STATIC / "dtab.html").read_bytes()
    delegator = (STATIC_DIR / "delegator.html").read_bytes().replace(b'data-mode="router"', b'data-mode="namerd"')

    def html(body: bytes) -> Any:
        async def page(_: web.Request) -> web.StreamResponse:
            return secure_headers(web.Response(body=body, content_type="text/html", charset="utf-8"))
        return page

    def ns_of(request: web.Request) -> str:
        try:
            return check_namespace(request.match_info["ns"])
        except InvalidNamespace as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from None

    async def dtab_body(request: web.Request) -> Dtab:
        ctype = request.content_type
        if ctype not in ("application/dtab",):
            raise web.HTTPUnsupportedMediaType(text=f"send the dtab as application/dtab, not {ctype[:60]!r}\n")
        text = await read_limited_text(request)
        try:
            return await read_dtab(text)
        except DtabSyntaxError as e:
            raise web.HTTPBadRequest(text=json.dumps({"error": "invalid dtab", **syntax_error(e)}),
                                     content_type="application/json") from None

    async def get_dtab(request: web.Request) -> web.StreamResponse:
        ns = ns_of(request)
        vd = await namerd.store.get(ns)
        if vd is None:
            return _json({"namespace": ns, "exists": False, "dtab": "", "version": None}, 404)
        return _json({"namespace": ns, "exists": True, "dtab": pretty(vd.dtab), "version": version_string(vd.version)})

    async def saved(ns: str, dtab: Dtab, status: int) -> web.Response:
        # Our own version is the one holding what we wrote; if another write came in the
        # meantime the editor must reload rather than carry a version that is not ours.
        vd = await namerd.store.get(ns)
        if vd is not None and vd.dtab == dtab:
            return _json({"version": version_string(vd.version)}, status)
        return _json({"version": None, "changedSince": _current(vd)}, status)

    async def put_dtab(request: web.Request) -> web.StreamResponse:
        ns = ns_of(request)
        stamp = request.headers.get("If-Match")
        if not stamp:
            return _json({"error": "If-Match is required: send the version you started from"}, 428)
        try:
            version = base64.b64decode(stamp.strip().strip('"'), validate=True)
        except (binascii.Error, ValueError):
            return _json({"error": f"If-Match {stamp[:80]!r} is not a version namerd issued",
                          "current": _current(await namerd.store.get(ns))}, 412)
        dtab = await dtab_body(request)
        try:
            await namerd.store.update(ns, dtab, version)
        except VersionMismatch:
            return _json({"error": f"namespace {ns} was changed by someone else since version {stamp}; "
                                   f"nothing was written", "current": _current(await namerd.store.get(ns))}, 412)
        except NamespaceNotFound:
            return _json({"error": f"namespace {ns} does not exist (deleted meanwhile?)", "current": None}, 404)
        return await saved(ns, dtab, 200)

    async def create_dtab(request: web.Request) -> web.StreamResponse:
        ns = ns_of(request)
        dtab = await dtab_body(request)
        try:
            await namerd.store.create(ns, dtab)
        except NamespaceAlreadyExists:
            return _json({"error": f"namespace {ns} already exists", "current": _current(await namerd.store.get(ns))},
                         409)
        return await saved(ns, dtab, 201)

    async def dry_run(request: web.Request) -> web.StreamResponse:
        ns = ns_of(request)
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="send application/json {\"dtab\", \"names\"}\n")
        try:
            doc = json.loads(await read_limited_text(request))
            if not isinstance(doc, dict) or not isinstance(doc.get("dtab", ""), str):
                raise ValueError("expected an object {\"dtab\": text, \"names\": [paths]}")
            extra_names = parse_names(doc.get("names") if isinstance(doc.get("names"), list) else ())
        except ValueError as e:
            return _json({"error": str(e)}, 400)
        text = doc.get("dtab", "")
        try:
            proposed = await read_dtab(text)
        except DtabSyntaxError as e:
            return _json({"error": "invalid dtab", **syntax_error(e)}, 400)
        binder, interp = namerd.binder, namerd.interpreter
        if binder is None or not hasattr(interp, "delegate"):
            return _json({"error": "namerd has no interpreter: nothing is bound"}, 501)
        vd = await namerd.store.get(ns)
        current = vd.dtab if vd is not None else Dtab()
        names = bound_names(interp, current)
        known = {p for p, _ in names}
        names += [(p, Dtab()) for p in extra_names if p not in known]
        result = await compare(names, current, proposed, interp.delegate)
        result["namespace"] = ns
        return _json(result)

    ns = "{ns:" + _NS + "}"
    return [
        ("GET", "/", html(index)),
        ("GET", "/namespaces/" + ns, html(editor)),
        ("GET", "/delegator", html(delegator)),
        ("GET", "/admin/dtab/" + ns, get_dtab),
        ("PUT", "/admin/dtab/" + ns, put_dtab),
        ("POST", "/admin/dtab/" + ns, create_dtab),
        ("POST", "/admin/dtab/" + ns + "/dry-run", dry_run),
        validate_dtab_route(),
        *asset_routes((STATIC_DIR, NAMERD_STATIC)),
    ]
