"""A Kubernetes API server simulator (core/v1 Endpoints, Services and ConfigMaps, and
namespaced custom resources), written from the API documentation
(https://kubernetes.io/docs/reference/using-api/api-concepts/).

* ``GET /api/v1/namespaces/<ns>/{endpoints,services}`` lists (``EndpointsList`` /
  ``ServiceList`` with ``metadata.resourceVersion``); ``.../<name>`` gets one object or a
  404 ``Status``; ``/api/v1/{endpoints,services}`` lists every namespace.
* ``?watch=true`` (or ``1``) on those paths, and the legacy ``/api/v1/watch/...`` paths,
  stream chunked JSON lines ``{"type": ..., "object": ...}``:
  - no ``resourceVersion`` (or ``"0"``): synthetic ADDED events for the current state, then changes;
  - ``resourceVersion=N``: every change after N; if N is older than the retained history
    (see :meth:`compact`) the stream is a single ERROR event with a ``Status`` of code 410
    reason ``Expired`` (or, with ``gone_as_http``, an HTTP 410 answer);
  - ``allowWatchBookmarks=true``: BOOKMARK events carrying only ``metadata.resourceVersion``
    every ``bookmark_interval`` seconds (and on :meth:`send_bookmarks`);
  - ``timeoutSeconds``: the server ends the stream after that long;
  - ``labelSelector`` (``k=v``, ``k!=v``, ``k``, ``!k``, comma = and) and ``fieldSelector``
    (``metadata.name``, ``metadata.namespace``); an object that stops matching is sent
    as DELETED, one that starts matching as ADDED.
* Auth: with ``token`` set, requests need ``Authorization: Bearer <token>`` (else 401);
  ``ssl_context`` serves HTTPS (the in-cluster case).

Writes (custom resources, as their API documents them): ``POST`` a collection creates
(201; 409 ``AlreadyExists``; 422 ``Invalid`` for a name that is not a DNS subdomain);
``PUT`` a named object replaces it only when ``metadata.resourceVersion`` is the current
one (409 ``Conflict`` otherwise; 422 without one — custom resources allow no
unconditional update; 404 if absent); ``DELETE`` removes it (404 if absent; 409 when
``preconditions.resourceVersion`` is stale). Custom resources exist only once their
definition is registered (:meth:`register_crd`), else their paths are 404.

Fault injection: :meth:`stop`/:meth:`start` (same port), :meth:`compact` (old versions
become 410), :meth:`end_watches` (streams end: EOF), :meth:`expire_watches` (open streams
get an ERROR 410 event, then end).
"""
from __future__ import annotations

import asyncio
import copy
import json
import re
import ssl
import time
import uuid
from typing import Any, Optional

from aiohttp import web

from .base import SimServer

KINDS = {"endpoints": "Endpoints", "services": "Service", "configmaps": "ConfigMap"}

#: metadata.name of custom resources: a DNS subdomain (RFC 1123), at most 253 characters
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def status(code: int, reason: str, message: str, **details: Any) -> dict:
    doc = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    }
    if details:
        doc["details"] = details
    return doc


def _status_response(code: int, reason: str, message: str, **details: Any) -> web.Response:
    return web.json_response(status(code, reason, message, **details), status=code)


def parse_label_selector(text: str) -> list[tuple[str, str, Optional[str]]]:
    """``a=b,c!=d,e,!f`` → [(key, op, value)]; ValueError for what we cannot parse."""
    out: list[tuple[str, str, Optional[str]]] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            out.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            out.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            out.append((part[1:].strip(), "!", None))
        elif " in " in part or " notin " in part:
            raise ValueError(f"set-based selectors are not supported by this simulator: {part!r}")
        else:
            out.append((part, "exists", None))
    for k, _, _ in out:
        if not k:
            raise ValueError(f"invalid label selector {text!r}")
    return out


def labels_match(selector: list, labels: dict) -> bool:
    for k, op, v in selector:
        if op == "=" and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
        if op == "exists" and k not in labels:
            return False
        if op == "!" and k in labels:
            return False
    return True


def parse_field_selector(text: str) -> list[tuple[str, str, str]]:
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        neg = "!=" in part
        k, v = part.split("!=" if neg else ("==" if "==" in part else "="), 1)
        k = k.strip()
        if k not in ("metadata.name", "metadata.namespace"):
            raise ValueError(f'field label not supported: {k}')
        out.append((k, "!=" if neg else "=", v.strip()))
    return out


def fields_match(selector: list, obj: dict) -> bool:
    md = obj.get("metadata") or {}
    for k, op, v in selector:
        actual = md.get(k.split(".", 1)[1])
        if (actual == v) != (op == "="):
            return False
    return True


class _Watcher:
    def __init__(self, resource: str, ns: Optional[str], name: Optional[str], labels: list, fields: list,
                 bookmarks: bool) -> None:
        self.resource = resource
        self.ns = ns
        self.name = name
        self.labels = labels
        self.fields = fields
        self.bookmarks = bookmarks
        self.queue: asyncio.Queue = asyncio.Queue()

    def matches(self, obj: Optional[dict]) -> bool:
        if obj is None:
            return False
        md = obj["metadata"]
        if self.ns is not None and md.get("namespace") != self.ns:
            return False
        if self.name is not None and md.get("name") != self.name:
            return False
        return labels_match(self.labels, md.get("labels") or {}) and fields_match(self.fields, obj)


class K8sApiSim(SimServer):
    def __init__(
        self,
        port: Optional[int] = None,
        token: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        bookmark_interval: float = 60.0,
        gone_as_http: bool = False,
        default_watch_timeout: float = 1800.0,
    ) -> None:
        super().__init__(port)
        self.token = token
        self.ssl_context = ssl_context
        self.bookmark_interval = bookmark_interval
        self.gone_as_http = gone_as_http
        self.default_watch_timeout = default_watch_timeout
        self.rv = 1000  # like etcd's revision: one counter for every object
        self.objects: dict[tuple[str, str, str], dict] = {}
        # (rv, type, resource, old object or None, new object or None)
        self.history: list[tuple[int, str, str, Optional[dict], Optional[dict]]] = []
        self.oldest_rv = self.rv  # watches from an older version get 410
        self._watchers: set[_Watcher] = set()
        #: custom resources served: "group/version/plural" → kind
        self.crds: dict[str, str] = {}

    def register_crd(self, group: str, version: str, plural: str, kind: str) -> None:
        """Serve ``/apis/<group>/<version>/namespaces/<ns>/<plural>`` (a CRD was applied)."""
        self.crds[f"{group}/{version}/{plural}"] = kind

    def _kind(self, res: str) -> str:
        return self.crds.get(res) or KINDS[res]

    @staticmethod
    def _api_version(res: str) -> str:
        return res.rsplit("/", 1)[0] if "/" in res else "v1"

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> "K8sApiSim":
        if self._runner is not None:
            return self
        app = web.Application(middlewares=[self._track])
        self.setup_routes(app)
        # handler_cancellation: a client hanging up ends its blocked request, as on a real server.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True)
        await site.start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        self._watchers.clear()
        await super().stop()

    # routes ----------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v1/namespaces/{ns}/{resource}", self._collection)
        r.add_get("/api/v1/namespaces/{ns}/{resource}/{name}", self._named)
        r.add_get("/api/v1/{resource}", self._collection)
        r.add_get("/api/v1/watch/namespaces/{ns}/{resource}", self._legacy_watch)
        r.add_get("/api/v1/watch/namespaces/{ns}/{resource}/{name}", self._legacy_watch)
        r.add_get("/api/v1/watch/{resource}", self._legacy_watch)
        r.add_get("/version", self._version)
        crs = "/apis/{group}/{version}/namespaces/{ns}/{plural}"
        r.add_get(crs, self._cr_collection)
        r.add_post(crs, self._cr_create)
        r.add_get(crs + "/{name}", self._cr_named)
        r.add_put(crs + "/{name}", self._cr_replace)
        r.add_delete(crs + "/{name}", self._cr_delete)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "29", "gitVersion": "v1.29.0-sim"})

    def _auth(self, request: web.Request) -> Optional[web.Response]:
        if self.token is None:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status_response(401, "Unauthorized", "Unauthorized")
        return None

    def _resource(self, request: web.Request) -> str:
        res = request.match_info["resource"]
        if res not in KINDS:
            raise web.HTTPNotFound(
                text=json.dumps(status(404, "NotFound", "the server could not find the requested resource")),
                content_type="application/json",
            )
        return res

    def _selectors(self, request: web.Request) -> tuple[list, list]:
        try:
            return (parse_label_selector(request.query.get("labelSelector", "")),
                    parse_field_selector(request.query.get("fieldSelector", "")))
        except ValueError as e:
            raise web.HTTPBadRequest(text=json.dumps(status(400, "BadRequest", str(e))),
                                     content_type="application/json")

    @staticmethod
    def _is_watch(request: web.Request) -> bool:
        return request.query.get("watch", "").lower() in ("true", "1")

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._resource(request)
        ns = request.match_info.get("ns")
        if self._is_watch(request):
            return await self._watch(request, res, ns, None)
        labels, fields = self._selectors(request)
        items = [
            copy.deepcopy(o) for (r, ons, _), o in sorted(self.objects.items())
            if r == res and (ns is None or ons == ns)
            and labels_match(labels, o["metadata"].get("labels") or {}) and fields_match(fields, o)
        ]
        return web.json_response({
            "kind": self._kind(res) + "List", "apiVersion": self._api_version(res),
            "metadata": {"resourceVersion": str(self.rv)}, "items": items,
        })

    async def _named(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._resource(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        if self._is_watch(request):
            return await self._watch(request, res, ns, name)
        obj = self.objects.get((res, ns, name))
        if obj is None:
            return _status_response(404, "NotFound", f'{res} "{name}" not found', name=name, kind=res)
        return web.json_response(obj)

    async def _legacy_watch(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._resource(request)
        return await self._watch(request, res, request.match_info.get("ns"), request.match_info.get("name"))

    # watch -------------------------------------------------------------------------------
    async def _watch(self, request: web.Request, res: str, ns: Optional[str], name: Optional[str]):
        labels, fields = self._selectors(request)
        q = request.query
        raw_rv = q.get("resourceVersion", "")
        try:
            timeout = float(q["timeoutSeconds"]) if "timeoutSeconds" in q else self.default_watch_timeout
        except ValueError:
            return _status_response(400, "BadRequest", f"invalid timeoutSeconds {q['timeoutSeconds']!r}")
        w = _Watcher(res, ns, name, labels, fields, q.get("allowWatchBookmarks", "").lower() in ("true", "1"))
        initial: list[tuple[str, dict]] = []
        if raw_rv in ("", "0"):
            for (r, _, _), o in sorted(self.objects.items()):
                if r == res and w.matches(o):
                    initial.append(("ADDED", copy.deepcopy(o)))
        else:
            try:
                since = int(raw_rv)
            except ValueError:
                return _status_response(400, "BadRequest", f"invalid resource version {raw_rv!r}")
            if since < self.oldest_rv:
                msg = f"too old resource version: {since} ({self.oldest_rv})"
                if self.gone_as_http:
                    return _status_response(410, "Gone", msg)
                initial.append(("ERROR", status(410, "Expired", msg)))
            else:
                for rv, typ, r, old, new in self.history:
                    if rv > since and r == res:
                        ev = self._event_for(w, typ, old, new)
                        if ev:
                            initial.append(ev)
        expired = bool(initial) and initial[-1][0] == "ERROR"
        if not expired:
            self._watchers.add(w)  # before any await: no change may slip between state and stream
        rsp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        rsp.enable_chunked_encoding()
        try:
            await rsp.prepare(request)
            for typ, obj in initial:
                await rsp.write(json.dumps({"type": typ, "object": obj}).encode() + b"\n")
        except BaseException:
            self._watchers.discard(w)
            raise
        if expired:
            await rsp.write_eof()
            return rsp
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        try:
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                wake = min(deadline, next_bookmark) if w.bookmarks else deadline
                try:
                    item = await asyncio.wait_for(w.queue.get(), max(0.0, wake - now))
                except asyncio.TimeoutError:
                    if w.bookmarks and loop.time() >= next_bookmark:
                        item = ("BOOKMARK", None)
                    else:
                        continue
                if item is None:  # end_watches
                    break
                typ, obj = item
                if typ == "BOOKMARK":
                    next_bookmark = loop.time() + self.bookmark_interval
                    if not w.bookmarks:
                        continue
                    obj = {"kind": self._kind(res), "apiVersion": self._api_version(res),
                           "metadata": {"resourceVersion": str(self.rv)}}
                await rsp.write(json.dumps({"type": typ, "object": obj}).encode() + b"\n")
                if typ == "ERROR":
                    break
            await rsp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self._watchers.discard(w)
        return rsp

    @staticmethod
    def _event_for(w: _Watcher, typ: str, old: Optional[dict], new: Optional[dict]):
        was, now = w.matches(old), w.matches(new)
        if typ == "DELETED":
            return ("DELETED", copy.deepcopy(old)) if was else None
        if now and not was:
            return ("ADDED", copy.deepcopy(new))
        if now and was:
            return ("MODIFIED", copy.deepcopy(new))
        if was and not now:
            return ("DELETED", copy.deepcopy(new))
        return None

    def _publish(self, typ: str, res: str, old: Optional[dict], new: Optional[dict]) -> None:
        self.history.append((self.rv, typ, res, old, new))
        for w in list(self._watchers):
            if w.resource == res:
                ev = self._event_for(w, typ, old, new)
                if ev:
                    w.queue.put_nowait(ev)

    # state changes (what the controllers of a real cluster would do) ------------------------
    def _put(self, res: str, ns: str, name: str, body: dict, labels: Optional[dict]) -> dict:
        key = (res, ns, name)
        old = self.objects.get(key)
        self.rv += 1
        md = {
            "name": name, "namespace": ns, "resourceVersion": str(self.rv),
            "uid": (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()),
            "creationTimestamp": (old or {}).get("metadata", {}).get("creationTimestamp")
            or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if labels:
            md["labels"] = dict(labels)
        obj = {"kind": self._kind(res), "apiVersion": self._api_version(res), "metadata": md,
               **copy.deepcopy(body)}
        self.objects[key] = obj
        self._publish("MODIFIED" if old else "ADDED", res, old, obj)
        return obj

    def set_endpoints(self, ns: str, name: str, subsets: list[dict], labels: Optional[dict] = None) -> dict:
        """Create or replace an Endpoints object (``subsets`` as in the API)."""
        return self._put("endpoints", ns, name, {"subsets": subsets} if subsets else {}, labels)

    def set_service(self, ns: str, name: str, ports: list[dict], labels: Optional[dict] = None,
                    cluster_ip: str = "10.96.0.10", lb_ingress: Optional[list[dict]] = None) -> dict:
        """A ClusterIP Service, or with ``lb_ingress`` (``[{"ip": ...}|{"hostname": ...}]``,
        possibly empty while provisioning) a LoadBalancer Service and its status."""
        body: dict[str, Any] = {"spec": {"ports": ports, "clusterIP": cluster_ip,
                                         "type": "ClusterIP" if lb_ingress is None else "LoadBalancer"}}
        body["status"] = {"loadBalancer": {"ingress": lb_ingress} if lb_ingress else {}}
        return self._put("services", ns, name, body, labels)

    def set_configmap(self, ns: str, name: str, data: dict[str, str]) -> dict:
        return self._put("configmaps", ns, name, {"data": dict(data)}, None)

    # custom resources --------------------------------------------------------------------
    def _cr(self, request: web.Request) -> str:
        mi = request.match_info
        res = f"{mi['group']}/{mi['version']}/{mi['plural']}"
        if res not in self.crds:
            raise web.HTTPNotFound(text="404 page not found\n")
        return res

    async def _cr_collection(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._cr(request)
        ns = request.match_info["ns"]
        if self._is_watch(request):
            return await self._watch(request, res, ns, None)
        labels, fields = self._selectors(request)
        items = [copy.deepcopy(o) for (r, ons, _), o in sorted(self.objects.items())
                 if r == res and ons == ns and labels_match(labels, o["metadata"].get("labels") or {})
                 and fields_match(fields, o)]
        return web.json_response({"kind": self._kind(res) + "List", "apiVersion": self._api_version(res),
                                  "metadata": {"resourceVersion": str(self.rv)}, "items": items})

    async def _cr_named(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._cr(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        obj = self.objects.get((res, ns, name))
        if obj is None:
            return _status_response(404, "NotFound", f'{res.rsplit("/", 1)[1]} "{name}" not found', name=name)
        return web.json_response(obj)

    async def _cr_body(self, request: web.Request, res: str) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps(status(400, "BadRequest", "the body is not JSON")),
                                     content_type="application/json")
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text=json.dumps(status(400, "BadRequest", "expected an object")),
                                     content_type="application/json")
        name = ((body.get("metadata") or {}).get("name")) or ""
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise web.HTTPUnprocessableEntity(
                text=json.dumps(status(422, "Invalid", f'{self._kind(res)}.{res.split("/")[0]} "{name}" is invalid: '
                                                       "metadata.name: Invalid value: a lowercase RFC 1123 subdomain "
                                                       "must consist of lower case alphanumeric characters, '-' or "
                                                       "'.'")),
                content_type="application/json")
        return body

    @staticmethod
    def _user_fields(body: dict) -> dict:
        return {k: v for k, v in body.items() if k not in ("kind", "apiVersion", "metadata", "status")}

    async def _cr_create(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._cr(request)
        ns = request.match_info["ns"]
        body = await self._cr_body(request, res)
        name = body["metadata"]["name"]
        if (res, ns, name) in self.objects:
            return _status_response(409, "AlreadyExists", f'{res.rsplit("/", 1)[1]} "{name}" already exists',
                                    name=name)
        obj = self._put(res, ns, name, self._user_fields(body), body["metadata"].get("labels"))
        return web.json_response(obj, status=201)

    async def _cr_replace(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._cr(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        body = await self._cr_body(request, res)
        cur = self.objects.get((res, ns, name))
        if cur is None:
            return _status_response(404, "NotFound", f'{res.rsplit("/", 1)[1]} "{name}" not found', name=name)
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if not rv:
            return _status_response(422, "Invalid", f'{self._kind(res)} "{name}" is invalid: '
                                                    "metadata.resourceVersion: Invalid value: 0x0: must be "
                                                    "specified for an update")
        if rv != cur["metadata"]["resourceVersion"]:
            return _status_response(409, "Conflict", f'Operation cannot be fulfilled on {res.rsplit("/", 1)[1]} '
                                                     f'"{name}": the object has been modified; please apply your '
                                                     "changes to the latest version and try again", name=name)
        obj = self._put(res, ns, name, self._user_fields(body), body["metadata"].get("labels"))
        return web.json_response(obj)

    async def _cr_delete(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied:
            return denied
        res = self._cr(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        cur = self.objects.get((res, ns, name))
        if cur is None:
            return _status_response(404, "NotFound", f'{res.rsplit("/", 1)[1]} "{name}" not found', name=name)
        try:
            opts = await request.json() if request.can_read_body else {}
        except ValueError:
            opts = {}
        want = ((opts or {}).get("preconditions") or {}).get("resourceVersion")
        if want and want != cur["metadata"]["resourceVersion"]:
            return _status_response(409, "Conflict", f'Operation cannot be fulfilled on {res.rsplit("/", 1)[1]} '
                                                     f'"{name}": Precondition failed: ResourceVersion in '
                                                     f"precondition: {want}, ResourceVersion in object meta: "
                                                     f'{cur["metadata"]["resourceVersion"]}', name=name)
        self.delete(res, ns, name)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": name, "kind": res.rsplit("/", 1)[1]}})

    def delete(self, res: str, ns: str, name: str) -> None:
        old = self.objects.pop((res, ns, name), None)
        if old is None:
            return
        self.rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._publish("DELETED", res, gone, None)

    def compact(self) -> None:
        """Forget the event history (etcd compaction): older versions now get 410."""
        self.history.clear()
        self.oldest_rv = self.rv

    def end_watches(self) -> None:
        """Every open watch stream ends cleanly (as at ``timeoutSeconds``)."""
        for w in list(self._watchers):
            w.queue.put_nowait(None)

    def expire_watches(self) -> None:
        """Every open watch gets ERROR 410 Expired (the watch cache lost its window), then ends."""
        self.compact()
        for w in list(self._watchers):
            w.queue.put_nowait(("ERROR", status(410, "Expired", "The resourceVersion for the provided watch is too old.")))

    def send_bookmarks(self) -> None:
        for w in list(self._watchers):
            w.queue.put_nowait(("BOOKMARK", None))

    @property
    def open_watches(self) -> int:
        return len(self._watchers)


def subset(ips: list, ports: dict[str, int] | list[dict], not_ready: list = (), node: Optional[str] = None) -> dict:
    """Helper: an Endpoints subset. ``ips`` items are "ip" or ("ip", "node")."""
    def addr(x):
        ip, n = (x, node) if isinstance(x, str) else x
        d = {"ip": ip, "targetRef": {"kind": "Pod", "name": f"pod-{ip}"}}
        if n:
            d["nodeName"] = n
        return d

    plist = ports if isinstance(ports, list) else [
        {"name": k, "port": v, "protocol": "TCP"} for k, v in ports.items()
    ]
    s: dict[str, Any] = {"ports": plist}
    if ips:
        s["addresses"] = [addr(x) for x in ips]
    if not_ready:
        s["notReadyAddresses"] = [addr(x) for x in not_ready]
    return s
