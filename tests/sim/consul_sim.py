"""A Consul HTTP API simulator, written from Consul's API documentation.

Covers what namerouter talks to: ``/v1/catalog/service/<svc>``, ``/v1/health/service/<svc>``,
``/v1/catalog/register`` and ``/v1/catalog/deregister``, ``/v1/agent/self``, ``/v1/kv/<key>``
(GET with index/wait/recurse/raw/keys, PUT with cas/flags, DELETE with cas/recurse) and the
blocking-query rules of https://developer.hashicorp.com/consul/api-docs/features/blocking:

* every answer carries ``X-Consul-Index``, ``X-Consul-KnownLeader`` and ``X-Consul-LastContact``;
* ``?index=N`` blocks until the result's index is greater than N or ``wait`` elapses
  (default 5m, at most 10m, plus up to wait/16 of jitter), then answers with the current data;
* an unknown ``dc`` answers 500 ``No path to datacenter``;
* a missing KV key answers 404 (with an index);
* ACLs: with ``acl_tokens`` configured, requests are resolved by ``X-Consul-Token`` /
  ``?token=``; an unknown token → 403 ``ACL not found``; the anonymous token may do
  nothing: KV and agent reads → 403 ``Permission denied``, catalog and health answers are
  filtered to nothing with ``X-Consul-Results-Filtered-By-ACLs: true``.

Fault injection for tests: :meth:`stop`/:meth:`start`/:meth:`restart` (same port),
:meth:`reset_index` (a snapshot restore: every index goes backwards), ``drop_index_header``
(answers without ``X-Consul-Index``) and ``fail_next`` (5xx answers).
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from aiohttp import web

from .base import SimServer

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` (Consul also accepts a bare number of seconds)."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"time: invalid duration {text!r}")
    return total


@dataclass
class Check:
    check_id: str
    name: str
    status: str = "passing"
    service_id: str = ""
    service_name: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass
class ServiceInstance:
    id: str
    service: str
    tags: list[str] = field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass
class Node:
    name: str
    address: str
    meta: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceInstance] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass
class KvEntry:
    key: str
    value: bytes
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0


class Datacenter:
    """One datacenter's state store with Raft-like indexes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.index = 1
        self.nodes: dict[str, Node] = {}
        self.kv: dict[str, KvEntry] = {}
        # Index at which each service name last changed (registration, deregistration,
        # check update) and of the catalog as a whole: what a blocking query waits on.
        self.service_index: dict[str, int] = {}
        self.catalog_index = 1
        self.kv_index = 1  # includes deletions (Consul keeps tombstones for this)
        self.kv_tombstones: dict[str, int] = {}
        self.changed = asyncio.Condition()
        # Bumped by a snapshot restore: Consul abandons every blocking query (its state
        # store's AbandonCh), which then answers at once with the new, lower index.
        self.epoch = 0

    def bump(self) -> int:
        self.index += 1
        return self.index

    # Catalog -------------------------------------------------------------------------
    def touch_service(self, name: str, idx: int) -> None:
        self.service_index[name] = idx
        self.catalog_index = idx

    def instances(self, service: str) -> list[tuple[Node, ServiceInstance]]:
        out = []
        for node in sorted(self.nodes.values(), key=lambda n: n.name):
            for inst in node.services.values():
                if inst.service == service:
                    out.append((node, inst))
        return out

    def service_query_index(self, service: str) -> int:
        # Consul answers a missing service with the index of the catalog table.
        return self.service_index.get(service) or self.catalog_index

    # KV ------------------------------------------------------------------------------
    def kv_query_index(self, key: str, recurse: bool) -> int:
        if recurse:
            idx = [e.modify_index for k, e in self.kv.items() if k.startswith(key)]
            idx += [i for k, i in self.kv_tombstones.items() if k.startswith(key)]
            return max(idx) if idx else self.kv_index
        e = self.kv.get(key)
        if e is not None:
            return e.modify_index
        return self.kv_tombstones.get(key) or self.kv_index


class ConsulSim(SimServer):
    """See the module docstring. ``datacenter`` is the agent's own; ``other_dcs`` exist too."""

    def __init__(
        self,
        port: Optional[int] = None,
        datacenter: str = "dc1",
        other_dcs: tuple[str, ...] = (),
        domain: str = "consul.",
        acl_tokens: Optional[set[str]] = None,
        node_name: str = "sim-agent",
    ) -> None:
        super().__init__(port)
        self.datacenter = datacenter
        self.dcs: dict[str, Datacenter] = {datacenter: Datacenter(datacenter)}
        for d in other_dcs:
            self.dcs[d] = Datacenter(d)
        self.domain = domain
        self.acl_tokens = acl_tokens
        self.node_name = node_name
        self.drop_index_header = 0  # answer this many requests without X-Consul-Index
        self.fail_next = 0  # answer this many requests with fail_status
        self.fail_status = 500
        self.rng = random.Random(7)

    # Routes --------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/agent/self", self._agent_self)
        app.router.add_get("/v1/catalog/service/{service}", self._catalog_service)
        app.router.add_get("/v1/catalog/services", self._catalog_services)
        app.router.add_get("/v1/health/service/{service}", self._health_service)
        app.router.add_put("/v1/catalog/register", self._register)
        app.router.add_put("/v1/catalog/deregister", self._deregister)
        app.router.add_route("*", "/v1/kv/{key:.*}", self._kv)
        app.router.add_get("/v1/status/leader", self._leader)

    # Helpers ---------------------------------------------------------------------------
    def _dc(self, request: web.Request) -> Datacenter:
        name = request.query.get("dc") or self.datacenter
        dc = self.dcs.get(name)
        if dc is None:
            raise web.HTTPInternalServerError(text="No path to datacenter")
        return dc

    def _headers(self, index: Optional[int]) -> dict[str, str]:
        h = {"X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0"}
        if index is not None:
            if self.drop_index_header > 0:
                self.drop_index_header -= 1
            else:
                h["X-Consul-Index"] = str(index)
        return h

    def _json(self, body: Any, index: Optional[int], status: int = 200, extra: Optional[dict] = None) -> web.Response:
        headers = self._headers(index)
        if extra:
            headers.update(extra)
        return web.Response(
            status=status, text=json.dumps(body, indent=None), content_type="application/json", headers=headers
        )

    def _token_ok(self, request: web.Request) -> Optional[bool]:
        """True = a known token; False = anonymous; raises 403 for an unknown token."""
        if self.acl_tokens is None:
            return True
        token = request.headers.get("X-Consul-Token") or request.query.get("token")
        if not token:
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                token = auth[7:]
        if not token or token == "anonymous":
            return False
        if token not in self.acl_tokens:
            raise web.HTTPForbidden(text="ACL not found")
        return True

    def _maybe_fail(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            if self.fail_status == 500:
                raise web.HTTPInternalServerError(text="rpc error making call: simulated failure")
            raise web.HTTPServiceUnavailable(text="simulated failure")

    @staticmethod
    def _bool_param(request: web.Request, name: str) -> bool:
        """Consul's getBoolQueryParam: present and empty = true, else Go's ParseBool."""
        if name not in request.query:
            return False
        raw = request.query.get(name, "")
        if raw in ("", "1", "t", "T", "TRUE", "true", "True"):
            return True
        if raw in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise web.HTTPBadRequest(text=f"Invalid value for ?{name}")

    @staticmethod
    def _wait_time(request: web.Request) -> float:
        raw = request.query.get("wait")
        if raw is None:
            return DEFAULT_WAIT
        try:
            wait = parse_duration(raw)
        except ValueError:
            raise web.HTTPBadRequest(text=f"Invalid wait time: {raw!r}")
        return min(wait, MAX_WAIT) if wait > 0 else DEFAULT_WAIT

    @staticmethod
    def _min_index(request: web.Request) -> int:
        raw = request.query.get("index")
        if raw is None or raw == "":
            return 0
        try:
            return int(raw)
        except ValueError:
            raise web.HTTPBadRequest(text=f"Invalid index: {raw!r}")

    async def _block(self, request: web.Request, dc: Datacenter, current_index) -> int:
        """Blocking-query core: wait while the result index <= ``index``; return the index."""
        min_index = self._min_index(request)
        wait = self._wait_time(request)  # Consul rejects a bad wait even when it would not block
        idx = current_index()
        if min_index <= 0 or idx > min_index:
            return idx
        wait += self.rng.uniform(0, wait / 16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        epoch = dc.epoch
        async with dc.changed:
            while True:
                idx = current_index()
                if idx > min_index or dc.epoch != epoch:
                    return idx
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return idx
                # asyncio.timeout, not wait_for: wait_for runs Condition.wait in an inner
                # task, and a handler cancelled twice (SimServer.stop, then aiohttp's
                # cleanup) left that task holding the lock, hanging every other waiter.
                try:
                    async with asyncio.timeout(remaining):
                        await dc.changed.wait()
                except TimeoutError:
                    return current_index()

    async def _notify(self, dc: Datacenter) -> None:
        async with dc.changed:
            dc.changed.notify_all()

    def _tag_filter(self, request: web.Request):
        tags = request.query.getall("tag", [])
        return lambda inst: all(t in inst.tags for t in tags)

    # Agent -----------------------------------------------------------------------------
    async def _agent_self(self, request: web.Request) -> web.Response:
        self._maybe_fail()
        if self._token_ok(request) is False:
            raise web.HTTPForbidden(text="Permission denied")
        body = {
            "Config": {
                "Datacenter": self.datacenter,
                "PrimaryDatacenter": self.datacenter,
                "NodeName": self.node_name,
                "NodeID": "00000000-0000-0000-0000-000000000001",
                "Revision": "sim",
                "Server": True,
                "Version": "1.17.0",
            },
            "DebugConfig": {"DNSDomain": self.domain, "Datacenter": self.datacenter},
            "Member": {"Name": self.node_name, "Addr": "127.0.0.1", "Port": 8301, "Status": 1},
            "Meta": {},
        }
        return web.json_response(body)

    async def _leader(self, request: web.Request) -> web.Response:
        return web.json_response("127.0.0.1:8300")

    # Catalog ---------------------------------------------------------------------------
    def _catalog_entry(self, dc: Datacenter, node: Node, inst: ServiceInstance) -> dict:
        return {
            "ID": f"node-{node.name}",
            "Node": node.name,
            "Address": node.address,
            "Datacenter": dc.name,
            "TaggedAddresses": {"lan": node.address, "wan": node.address},
            "NodeMeta": dict(node.meta),
            "ServiceKind": "",
            "ServiceID": inst.id,
            "ServiceName": inst.service,
            "ServiceTags": list(inst.tags),
            "ServiceAddress": inst.address,
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceMeta": dict(inst.meta),
            "ServicePort": inst.port,
            "ServiceEnableTagOverride": False,
            "CreateIndex": inst.create_index,
            "ModifyIndex": inst.modify_index,
        }

    async def _catalog_service(self, request: web.Request) -> web.Response:
        self._maybe_fail()
        dc = self._dc(request)
        allowed = self._token_ok(request)
        service = request.match_info["service"]
        idx = await self._block(request, dc, lambda: dc.service_query_index(service))
        keep = self._tag_filter(request)
        if not allowed:
            return self._json([], idx, extra={"X-Consul-Results-Filtered-By-ACLs": "true"})
        body = [self._catalog_entry(dc, n, i) for n, i in dc.instances(service) if keep(i)]
        return self._json(body, idx)

    async def _catalog_services(self, request: web.Request) -> web.Response:
        self._maybe_fail()
        dc = self._dc(request)
        self._token_ok(request)
        idx = await self._block(request, dc, lambda: dc.catalog_index)
        out: dict[str, list[str]] = {}
        for node in dc.nodes.values():
            for inst in node.services.values():
                tags = out.setdefault(inst.service, [])
                tags.extend(t for t in inst.tags if t not in tags)
        return self._json(out, idx)

    # Health ----------------------------------------------------------------------------
    async def _health_service(self, request: web.Request) -> web.Response:
        self._maybe_fail()
        dc = self._dc(request)
        allowed = self._token_ok(request)
        service = request.match_info["service"]
        only_passing = self._bool_param(request, "passing")
        idx = await self._block(request, dc, lambda: dc.service_query_index(service))
        keep = self._tag_filter(request)
        if not allowed:
            return self._json([], idx, extra={"X-Consul-Results-Filtered-By-ACLs": "true"})
        body = []
        for node, inst in dc.instances(service):
            if not keep(inst):
                continue
            checks = [c for c in node.checks.values() if c.service_id in ("", inst.id)]
            if only_passing and any(c.status != "passing" for c in checks):
                continue
            body.append({
                "Node": {
                    "ID": f"node-{node.name}",
                    "Node": node.name,
                    "Address": node.address,
                    "Datacenter": dc.name,
                    "TaggedAddresses": {"lan": node.address, "wan": node.address},
                    "Meta": dict(node.meta),
                    "CreateIndex": node.create_index,
                    "ModifyIndex": node.modify_index,
                },
                "Service": {
                    "ID": inst.id,
                    "Service": inst.service,
                    "Tags": list(inst.tags),
                    "Address": inst.address,
                    "Meta": dict(inst.meta),
                    "Port": inst.port,
                    "Weights": {"Passing": 1, "Warning": 1},
                    "EnableTagOverride": False,
                    "CreateIndex": inst.create_index,
                    "ModifyIndex": inst.modify_index,
                },
                "Checks": [
                    {
                        "Node": node.name,
                        "CheckID": c.check_id,
                        "Name": c.name,
                        "Status": c.status,
                        "Notes": "",
                        "Output": "",
                        "ServiceID": c.service_id,
                        "ServiceName": c.service_name,
                        "ServiceTags": list(inst.tags) if c.service_id else [],
                        "CreateIndex": c.create_index,
                        "ModifyIndex": c.modify_index,
                    }
                    for c in sorted(checks, key=lambda c: c.check_id)
                ],
            })
        return self._json(body, idx)

    # Registration (HTTP API and Python helpers) ----------------------------------------------
    async def _register(self, request: web.Request) -> web.Response:
        if self._token_ok(request) is False:
            raise web.HTTPForbidden(text="Permission denied")
        try:
            doc = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="Request decode failed: invalid JSON")
        if not isinstance(doc, dict) or not doc.get("Node") or not doc.get("Address"):
            raise web.HTTPBadRequest(text="Must provide node and address")
        dc = self.dcs.get(doc.get("Datacenter") or self.datacenter)
        if dc is None:
            raise web.HTTPInternalServerError(text="No path to datacenter")
        svc = doc.get("Service")
        checks = doc.get("Checks") or ([doc["Check"]] if doc.get("Check") else [])
        await self.register(
            doc["Node"], doc["Address"],
            service=(svc or {}).get("Service"),
            service_id=(svc or {}).get("ID"),
            port=(svc or {}).get("Port", 0),
            tags=(svc or {}).get("Tags") or [],
            service_address=(svc or {}).get("Address", ""),
            meta=(svc or {}).get("Meta") or {},
            node_meta=doc.get("NodeMeta") or {},
            checks=[(c.get("CheckID") or c.get("Name"), c.get("Status", "critical"), c.get("ServiceID", ""))
                    for c in checks],
            dc=dc.name,
        )
        return web.json_response(True)

    async def _deregister(self, request: web.Request) -> web.Response:
        if self._token_ok(request) is False:
            raise web.HTTPForbidden(text="Permission denied")
        doc = await request.json()
        dc = self.dcs.get(doc.get("Datacenter") or self.datacenter)
        if dc is None:
            raise web.HTTPInternalServerError(text="No path to datacenter")
        await self.deregister(doc.get("Node"), service_id=doc.get("ServiceID"), dc=dc.name)
        return web.json_response(True)

    async def register(
        self,
        node: str,
        address: str,
        *,
        service: Optional[str] = None,
        service_id: Optional[str] = None,
        port: int = 0,
        tags: Optional[list[str]] = None,
        service_address: str = "",
        meta: Optional[dict[str, str]] = None,
        node_meta: Optional[dict[str, str]] = None,
        checks: Optional[list[tuple[str, str, str]]] = None,
        status: Optional[str] = None,
        dc: Optional[str] = None,
    ) -> int:
        """Register (or update) a node and optionally one service instance on it.

        ``status`` adds one service check ``service:<id>`` with that status. Returns the index.
        """
        d = self.dcs[dc or self.datacenter]
        idx = d.bump()
        n = d.nodes.get(node)
        if n is None:
            n = d.nodes[node] = Node(node, address, dict(node_meta or {}), create_index=idx)
        touched = set()
        if n.address != address or (node_meta is not None and n.meta != node_meta):
            n.address = address
            n.meta = dict(node_meta or {})
            touched.update(i.service for i in n.services.values())
        n.modify_index = idx
        if service:
            sid = service_id or service
            old = n.services.get(sid)
            inst = ServiceInstance(
                sid, service, list(tags or []), service_address, int(port), dict(meta or {}),
                create_index=old.create_index if old else idx, modify_index=idx,
            )
            n.services[sid] = inst
            touched.add(service)
            if status is not None:
                cid = f"service:{sid}"
                n.checks[cid] = Check(cid, f"Service '{service}' check", status, sid, service, idx, idx)
        for cid, st, csid in checks or []:
            svc_name = n.services[csid].service if csid in n.services else ""
            n.checks[cid] = Check(cid, cid, st, csid or "", svc_name, idx, idx)
            touched.update([svc_name] if csid else [i.service for i in n.services.values()])
        for s in touched:
            d.touch_service(s, idx)
        d.catalog_index = idx
        await self._notify(d)
        return idx

    async def deregister(self, node: str, *, service_id: Optional[str] = None, dc: Optional[str] = None) -> int:
        d = self.dcs[dc or self.datacenter]
        n = d.nodes.get(node)
        idx = d.bump()
        if n is None:
            return idx
        if service_id is None:
            for inst in n.services.values():
                d.touch_service(inst.service, idx)
            del d.nodes[node]
        else:
            inst = n.services.pop(service_id, None)
            for cid in [c for c, ch in n.checks.items() if ch.service_id == service_id]:
                del n.checks[cid]
            if inst is not None:
                d.touch_service(inst.service, idx)
        d.catalog_index = idx
        await self._notify(d)
        return idx

    async def set_check(self, node: str, check_id: str, status: str, dc: Optional[str] = None) -> int:
        """Change a check's status (``service:<id>`` for checks made with ``status=``)."""
        d = self.dcs[dc or self.datacenter]
        n = d.nodes[node]
        idx = d.bump()
        c = n.checks[check_id]
        c.status = status
        c.modify_index = idx
        for s in ([c.service_name] if c.service_id else [i.service for i in n.services.values()]):
            d.touch_service(s, idx)
        await self._notify(d)
        return idx

    async def reset_index(self, to: int = 1, dc: Optional[str] = None) -> None:
        """Simulate a snapshot restore / state loss: every index goes back to ``to`` or lower."""
        d = self.dcs[dc or self.datacenter]
        d.epoch += 1
        d.index = to
        d.catalog_index = min(d.catalog_index, to)
        d.kv_index = min(d.kv_index, to)
        for k in list(d.service_index):
            d.service_index[k] = min(d.service_index[k], to)
        for e in d.kv.values():
            e.modify_index = min(e.modify_index, to)
            e.create_index = min(e.create_index, to)
        await self._notify(d)

    # KV --------------------------------------------------------------------------------
    async def _kv(self, request: web.Request) -> web.Response:
        self._maybe_fail()
        dc = self._dc(request)
        key = request.match_info["key"]
        allowed = self._token_ok(request)
        if not allowed:
            raise web.HTTPForbidden(text="Permission denied")
        if request.method == "GET":
            return await self._kv_get(request, dc, key)
        if request.method == "PUT":
            return await self._kv_put(request, dc, key)
        if request.method == "DELETE":
            return await self._kv_delete(request, dc, key)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "DELETE"])

    @staticmethod
    def _kv_json(e: KvEntry) -> dict:
        return {
            "LockIndex": e.lock_index,
            "Key": e.key,
            "Flags": e.flags,
            "Value": base64.b64encode(e.value).decode("ascii") if e.value is not None else None,
            "CreateIndex": e.create_index,
            "ModifyIndex": e.modify_index,
        }

    async def _kv_get(self, request: web.Request, dc: Datacenter, key: str) -> web.Response:
        q = request.query
        recurse = self._bool_param(request, "recurse")
        keys_only = "keys" in q
        prefix_mode = recurse or keys_only
        idx = await self._block(request, dc, lambda: dc.kv_query_index(key, prefix_mode))
        if keys_only:
            sep = q.get("separator")
            found = []
            for k in sorted(dc.kv):
                if not k.startswith(key):
                    continue
                if sep:
                    cut = k.find(sep, len(key))
                    if cut >= 0:
                        k = k[: cut + len(sep)]
                if k not in found:
                    found.append(k)
            if not found:
                return web.Response(status=404, headers=self._headers(idx))
            return self._json(found, idx)
        if recurse:
            entries = [dc.kv[k] for k in sorted(dc.kv) if k.startswith(key)]
        else:
            entries = [dc.kv[key]] if key in dc.kv else []
        if not entries:
            return web.Response(status=404, headers=self._headers(idx))
        if "raw" in q and not recurse:
            return web.Response(body=entries[0].value, headers=self._headers(idx))
        return self._json([self._kv_json(e) for e in entries], idx)

    async def _kv_put(self, request: web.Request, dc: Datacenter, key: str) -> web.Response:
        if not key:
            raise web.HTTPMethodNotAllowed("PUT", ["GET"], text="Missing key name")
        q = request.query
        value = await request.read()
        try:
            flags = int(q.get("flags", "0"))
            cas = int(q["cas"]) if "cas" in q else None
        except ValueError:
            raise web.HTTPBadRequest(text="Invalid cas or flags value")
        cur = dc.kv.get(key)
        if cas is not None:
            if cas == 0 and cur is not None:
                return self._json(False, dc.index)
            if cas != 0 and (cur is None or cur.modify_index != cas):
                return self._json(False, dc.index)
        idx = dc.bump()
        dc.kv[key] = KvEntry(key, value, flags, create_index=cur.create_index if cur else idx, modify_index=idx)
        dc.kv_index = idx
        dc.kv_tombstones.pop(key, None)
        await self._notify(dc)
        return self._json(True, idx)

    async def _kv_delete(self, request: web.Request, dc: Datacenter, key: str) -> web.Response:
        q = request.query
        recurse = self._bool_param(request, "recurse")
        try:
            cas = int(q["cas"]) if "cas" in q else None
        except ValueError:
            raise web.HTTPBadRequest(text="Invalid cas value")
        if cas is not None and recurse:
            raise web.HTTPBadRequest(text="Conflicting flags: cas=" + q["cas"] + "&recurse")
        if cas is not None:
            cur = dc.kv.get(key)
            if cur is None or cur.modify_index != cas:
                # Consul's kvsDeleteCAS: a missing key counts as deleted (true), whatever cas is.
                return self._json(cur is None, dc.index)
        idx = dc.bump()
        doomed = [k for k in dc.kv if k.startswith(key)] if recurse else ([key] if key in dc.kv else [])
        for k in doomed:
            del dc.kv[k]
            dc.kv_tombstones[k] = idx
        dc.kv_index = idx
        await self._notify(dc)
        return self._json(True, idx)

    # Python-side KV helpers for tests -----------------------------------------------------
    async def kv_set(self, key: str, value: bytes, dc: Optional[str] = None) -> int:
        d = self.dcs[dc or self.datacenter]
        cur = d.kv.get(key)
        idx = d.bump()
        d.kv[key] = KvEntry(key, value, 0, cur.create_index if cur else idx, idx)
        d.kv_index = idx
        await self._notify(d)
        return idx
