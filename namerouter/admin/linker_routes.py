"""Router-specific admin endpoints: delegator, namer state, client state, bound names.

They read the running linker through two callables so this module does not import the
linker (and tests can serve them over hand-made routers):

- ``routers()`` → ``{label: RouterView}`` (the router's base dtab, its interpreter and
  the HttpRouter, for ``client_state()``);
- ``namers()`` → the configured namers (``admin_state()``, ``enumerate()``, ``prefix``).

``/delegator.json?namespace=<label>&path=<name>&dtab=<dtab>`` (GET, or POST with a JSON
body ``{"namespace", "path", "dtab"}``) answers with the interpreter's delegate tree.
As in Linkerd's dtab playground, ``dtab`` is the whole dtab to delegate with; when it
is absent the router's own dtab is used, so ``?namespace=outgoing&path=/svc/web``
explains how that router routes ``/svc/web``. 400 ``Invalid path: …`` / ``Invalid dtab:
…``, 404 unknown namespace, 413 a dtab over 1 MB, 501 an interpreter that cannot
explain, 503 after 2 s. A given ``dtab`` comes from a client: large ones are parsed off
the event loop and the delegation runs under the interpreter's request budget.
"""
from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from aiohttp import web

from ..dtab import Dtab, Path
from ..naming.dtab_text import read_dtab
from .app import Route, json_response
from .ui import MAX_DTAB_BYTES

DELEGATE_TIMEOUT_S = 2.0


@dataclass
class RouterView:
    label: str
    dtab: Dtab
    interpreter: Any
    router: Any = None


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def linker_routes(routers: Callable[[], dict[str, RouterView]],
                  namers: Callable[[], Iterable[Any]]) -> list[Route]:


    async def delegate(namespace: Optional[str], dtab_text: Optional[str], path_text: Optional[str],
                       pretty: bool) -> web.Response:
        # Linkerd's order: the path and the dtab are checked before the namespace, so a
        # bad one is a 400 whatever the namespace (DelegateApiHandlerTest).
        if path_text is None:
            return _text(400, "Invalid path: the 'path' parameter is required")
        try:
            path = Path.read(path_text)
        except Exception as e:
            return _text(400, f"Invalid path: {e}")
        given: Optional[Dtab] = None
        if dtab_text is not None:
            if len(dtab_text) > MAX_DTAB_BYTES:
                return _text(413, f"Invalid dtab: longer than {MAX_DTAB_BYTES} characters")
            try:
                given = await read_dtab(dtab_text)  # large ones off the loop: the routers share it
            except Exception as e:
                return _text(400, f"Invalid dtab: {e}")
        views = routers()
        if not namespace and len(views) == 1:
            namespace = next(iter(views))
        view = views.get(namespace or "")
        if view is None:
            known = ", ".join(sorted(views)) or "none"
            return _text(404, f"Unknown namespace: {namespace} (routers: {known})\n")
        dtab = view.dtab if given is None else given
        fn = getattr(view.interpreter, "delegate", None)
        if fn is None:
            return _text(501, f"Name Interpreter for {namespace} cannot show delegations")
        try:
            result = fn(dtab, path) if dtab_text is None else fn(dtab, path, from_request=True)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, DELEGATE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return _text(503, "Request timed out.")
        except NotImplementedError:
            return _text(501, f"Name Interpreter for {namespace} cannot show delegations")
        except Exception as e:  # the interpreter failed: say so rather than a bare 500
            return _text(500, f"Delegation failed: {type(e).__name__}: {e}")
        if pretty:
            return json_response(result, pretty=True)
        # compact, as Linkerd's Jackson writes it: no spaces, no trailing newline
        return web.Response(text=json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str),
                            content_type="application/json")

    async def delegator_get(request: web.Request) -> web.Response:
        q = request.query
        return await delegate(q.get("namespace"), q.get("dtab"), q.get("path"), "pretty" in q)

    async def delegator_post(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _text(415, f"Unsupported Content-Type {request.content_type!r}; send application/json\n")
        body = await request.text()
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("path"), str):
                raise ValueError
            for k in ("namespace", "dtab"):
                if doc.get(k) is not None and not isinstance(doc[k], str):
                    raise ValueError
        except ValueError:
            return _text(400, f"Malformed delegation request: {body}")
        return await delegate(doc.get("namespace"), doc.get("dtab"), doc["path"], False)

    def _namer_key(namer: Any) -> str:
        return str(getattr(namer, "prefix", "")).strip("/")

    async def namer_state(request: web.Request) -> web.Response:
        prefix = request.match_info["prefix"].strip("/")
        all_namers = list(namers())
        for n in all_namers:
            if _namer_key(n) == prefix:
                return json_response(n.admin_state(), pretty="pretty" in request.query)
        known = ", ".join(_namer_key(n) for n in all_namers) or "none"
        return _text(404, f"No namer with prefix /{prefix} (namers: {known})\n")

    async def namer_state_index(request: web.Request) -> web.Response:
        return json_response({"/" + _namer_key(n): n.admin_state() for n in namers()},
                             pretty="pretty" in request.query)

    async def client_state(request: web.Request) -> web.Response:
        doc = {}
        for label, view in routers().items():
            fn = getattr(view.router, "client_state", None)
            doc[label] = fn() if fn is not None else {}
        return json_response(doc, pretty="pretty" in request.query)

    async def bound_names(request: web.Request) -> web.Response:
        names: set[str] = set()
        for n in namers():
            ids = n.enumerate()
            if ids:
                names.update(str(i) for i in ids)
        return json_response(sorted(names), pretty="pretty" in request.query)

    return [
        ("GET", "/delegator.json", delegator_get),
        ("POST", "/delegator.json", delegator_post),
        ("GET", "/namer_state.json", namer_state_index),
        ("GET", r"/namer_state/{prefix:.+}.json", namer_state),
        ("GET", "/client_state.json", client_state),
        ("GET", "/bound-names.json", bound_names),
    ]
