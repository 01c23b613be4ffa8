"""The admin server over a real socket: ping, metrics (JSON and Prometheus), config,
security, shutdown, and the router endpoints (delegator, namer/client state, bound names)."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from namerouter.admin.app import AdminServer, build_admin_app
from namerouter.admin.linker_routes import RouterView, linker_routes
from namerouter.config.schema import AdminSecurityConfig
from namerouter.dtab import NEG, Dtab, Leaf, Path
from namerouter.metrics import MetricsRegistry
from namerouter.naming.addr import Address, AddrBound
from namerouter.naming.bound import BoundName
from namerouter.naming.namer import Namer
from namerouter.naming.var import Activity, Var


def sample_metrics() -> MetricsRegistry:
    m = MetricsRegistry()
    m.counter("rt/outging/server/0.0.0.0/4001/requests").incr(7)
    m.counter("rt/outging/server/0.0.0.0/4001/status/200").incr(6)
    m.counter("rt/outging/service/svc/pong/requests").incr(7)
    m.counter("rt/outging/client/$/inet/127.1/8002/requests").incr(7)
    m.counter("rt/outging/client/$/inet/127.1/8002/service/svc/pong/success").incr(5)
    lat = m.stat("rt/outging/client/$/inet/127.1/8002/request_latency_ms")
    for v in (1, 2, 3, 4, 100):
        lat.add(v)
    m.gauge("rt/outging/bindcache/size", lambda: 3)
    m.gauge("jvm_like/uptime", lambda: 1.5)
    return m


class Served:
    def __init__(self, app: Any) -> None:
        self.server = AdminServer(app, "127.0.0.1", 0)
        self.session: Optional[aiohttp.ClientSession] = None

    async def __aenter__(self) -> "Served":
        await self.server.start()
        self.session = aiohttp.ClientSession(f"http://127.0.0.1:{self.server.port}")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.session is not None
        await self.session.close()
        await self.server.close()

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        assert self.session is not None
        async with self.session.get(path, **kw) as r:
            return r.status, await r.text(), r.headers

    async def post(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        assert self.session is not None
        async with self.session.post(path, **kw) as r:
            return r.status, await r.text(), r.headers


async def test_ping_and_config():
    app = build_admin_app(MetricsRegistry(), {"routers": [{"label": "outging"}]})
    async with Served(app) as s:
        assert (await s.get("/admin/ping"))[:2] == (200, "pong")
        status, body, headers = await s.get("/config.json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert json.loads(body) == {"routers": [{"label": "outging"}]}
        assert (await s.get("/no/such/page"))[0] == 404


async def test_metrics_json_flat_names_stats_filter_and_pretty():
    async with Served(build_admin_app(sample_metrics())) as s:
        status, body, _ = await s.get("/admin/metrics.json")
        doc = json.loads(body)
        assert doc["rt/outging/server/0.0.0.0/4001/requests"] == 7
        assert doc["rt/outging/bindcache/size"] == 3
        base = "rt/outging/client/$/inet/127.1/8002/request_latency_ms"
        for k in ("count", "avg", "min", "max", "p50", "p90", "p95", "p99", "p9990", "p9999", "sum"):
            assert f"{base}.{k}" in doc
        assert doc[f"{base}.count"] == 5 and doc[f"{base}.sum"] == 110
        assert doc[f"{base}.min"] == 1 and doc[f"{base}.max"] == 100
        assert 2 <= doc[f"{base}.p50"] <= 3.1 and doc[f"{base}.p99"] == 100

        _, body, _ = await s.get("/admin/metrics.json", params={"q": "rt/outging/server"})
        assert set(json.loads(body)) == {"rt/outging/server/0.0.0.0/4001/requests",
                                         "rt/outging/server/0.0.0.0/4001/status/200"}
        _, body, _ = await s.get("/admin/metrics.json", params={"q": "rt/outging/serv"})
        assert json.loads(body) == {}  # q is a subtree, not a string prefix
        _, body, _ = await s.get("/admin/metrics.json", params={"filter": "status/2\\d\\d$"})
        assert json.loads(body) == {"rt/outging/server/0.0.0.0/4001/status/200": 6}
        assert (await s.get("/admin/metrics.json", params={"filter": "("}))[0] == 400

        _, pretty, _ = await s.get("/admin/metrics.json", params={"pretty": "1", "q": "jvm_like"})
        assert pretty == '{\n  "jvm_like/uptime": 1.5\n}\n'
        _, tree, _ = await s.get("/admin/metrics.json", params={"tree": "1", "q": "rt/outging/server"})
        assert json.loads(tree)["rt"]["outging"]["server"]["0.0.0.0"]["4001"]["status"]["200"] == 6


async def test_prometheus_text_parses_with_linkerd_labels():
    async with Served(build_admin_app(sample_metrics(), prometheus_prefix="")) as s:
        status, text, headers = await s.get("/admin/metrics/prometheus")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # keyed by family name: prometheus_client's parser names counter samples <family>_total,
    # while the text we send (like Linkerd's) carries the family name itself
    samples = {(f.name, tuple(sorted(x.labels.items()))): x.value for f in fams.values()
               for x in f.samples if f.type != "summary"}
    assert "rt:server:requests{" in text and "rt:server:requests_total" not in text
    assert samples[("rt:server:requests", (("rt", "outging"), ("server", "0.0.0.0/4001")))] == 7
    assert samples[("rt:server:status:200", (("rt", "outging"), ("server", "0.0.0.0/4001")))] == 6
    assert samples[("rt:service:requests", (("rt", "outging"), ("service", "svc/pong")))] == 7
    assert samples[("rt:client:requests", (("client", "$/inet/127.1/8002"), ("rt", "outging")))] == 7
    assert samples[("rt:client:service:success", (("client", "$/inet/127.1/8002"), ("rt", "outging"),
                                                  ("service", "svc/pong")))] == 5
    lat = fams["rt:client:request_latency_ms"]
    assert lat.type == "summary"
    by_q = {x.labels.get("quantile"): x.value for x in lat.samples if x.name == lat.name}
    assert by_q["0"] == 1 and by_q["1"] == 100 and set(by_q) == {"0", "0.5", "0.9", "0.95", "0.99", "0.999", "0.9999", "1"}
    counts = {x.name: x.value for x in lat.samples if x.name != lat.name}
    assert counts == {"rt:client:request_latency_ms_count": 5, "rt:client:request_latency_ms_sum": 110}
    assert fams["rt:bindcache:size"].type == "gauge"
    assert fams["jvm_like:uptime"].samples[0].value == 1.5


async def test_prometheus_custom_path_and_prefix():
    app = build_admin_app(sample_metrics(), prometheus_path="/metrics", prometheus_prefix="linkerd_")
    async with Served(app) as s:
        status, text, _ = await s.get("/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "linkerd_rt:server:requests" in names


async def test_shutdown_is_post_only_and_runs_the_callback():
    done = asyncio.Event()

    async def on_shutdown() -> None:
        done.set()

    async with Served(build_admin_app(MetricsRegistry(), on_shutdown=on_shutdown)) as s:
        assert (await s.get("/admin/shutdown"))[0] == 405
        # a simple request (what a page on another site can send) is refused
        for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
            status, body, _ = await s.post("/admin/shutdown", headers=headers, skip_auto_headers=["Content-Type"])
            assert status == 403 and "non-simple" in body, headers
        assert not done.is_set()
        status, body, _ = await s.post("/admin/shutdown", headers={"Content-Type": "application/json"})
        assert status == 200
        await asyncio.wait_for(done.wait(), 2)


async def test_security_blacklist_and_categories():
    sec = AdminSecurityConfig(pathBlacklist=["^/admin/shutdown$"], diagnosticsEnabled=False)

    async def on_shutdown() -> None:
        raise AssertionError("must not run")

    routes = linker_routes(lambda: {}, lambda: [])
    app = build_admin_app(MetricsRegistry(), {}, routes, security=sec, on_shutdown=on_shutdown)
    async with Served(app) as s:
        assert (await s.post("/admin/shutdown"))[0] == 404
        assert (await s.get("/admin/ping"))[0] == 200
        assert (await s.get("/admin/metrics.json"))[0] == 200
        assert (await s.get("/client_state.json"))[0] == 404  # diagnostics off
    sec = AdminSecurityConfig(controlEnabled=False, pathWhitelist=["^/bound-names\\.json$"],
                              diagnosticsEnabled=False)
    app = build_admin_app(MetricsRegistry(), {}, linker_routes(lambda: {}, lambda: []), security=sec)
    async with Served(app) as s:
        assert (await s.post("/admin/shutdown"))[0] == 404
        assert (await s.get("/bound-names.json"))[0] == 200  # whitelisted


# -- router endpoints -------------------------------------------------------------------

class StaticNamer(Namer):
    """A namer over a fixed table (services known up front), for the admin endpoints."""

    kind = "io.test.static"

    def __init__(self, table: dict[str, list[tuple[str, int]]]) -> None:
        super().__init__(Path.read("/io.test.static"))
        self.table = table

    def lookup(self, path: Path) -> Activity:
        name = str(path.take(1)).strip("/")
        if name not in self.table:
            return Activity.value(NEG)
        addr = AddrBound([Address(h, p) for h, p in self.table[name]])
        return Activity.value(Leaf(BoundName(self.bound_id(path.take(1)), Var(addr), path.drop(1))))

    def admin_state(self) -> Any:
        return {"services": sorted(self.table)}

    def enumerate(self) -> Optional[list[Path]]:
        return [self.bound_id(Path.read("/" + n)) for n in sorted(self.table)]


class SlowInterpreter:
    async def delegate(self, dtab: Dtab, path: Path) -> dict:
        await asyncio.sleep(30)
        return {}


class FakeRouter:
    def client_state(self) -> dict:
        return {"/$/inet/127.1/8002": {"addrs": [{"ip": "127.0.0.1", "port": 8002}]}}


def router_app():
    from namerouter.naming.interpreter import DefaultInterpreter

    namer = StaticNamer({"web": [("127.0.0.1", 8080)], "api": [("127.0.0.1", 8081)]})
    views = {
        "outging": RouterView("outging", Dtab.read("/svc/pong => /$/inet/127.1/8002; /svc => /#/io.test.static;"),
                              DefaultInterpreter([namer]), FakeRouter()),
        "slow": RouterView("slow", Dtab.read("/svc=>/$/nil"), SlowInterpreter()),
        "opaque": RouterView("opaque", Dtab.read(""), object()),
    }
    return build_admin_app(MetricsRegistry(), {}, linker_routes(lambda: views, lambda: [namer]))


async def test_delegator_json_uses_the_router_interpreter():
    async with Served(router_app()) as s:
        status, body, _ = await s.get("/delegator.json", params={"namespace": "outging", "path": "/svc/pong"})
        assert status == 200, body
        doc = json.loads(body)
        assert doc["path"] == "/svc/pong"
        text = json.dumps(doc)
        assert "/$/inet/127.1/8002" in text
        # an explicit dtab replaces the router's (Linkerd's dtab playground semantics)
        status, body, _ = await s.get("/delegator.json", params={
            "namespace": "outging", "path": "/svc/web", "dtab": "/svc=>/#/io.test.static"})
        assert status == 200 and "/#/io.test.static/web" in body and "8080" in body
        # POST JSON
        status, body, _ = await s.post("/delegator.json", json={
            "namespace": "outging", "path": "/svc/api", "dtab": "/svc=>/#/io.test.static"})
        assert status == 200 and "/#/io.test.static/api" in body


async def test_delegator_errors():
    async with Served(router_app()) as s:
        status, body, _ = await s.get("/delegator.json", params={"namespace": "outging", "path": "svc/x"})
        assert status == 400 and body.startswith("Invalid path: ")
        status, body, _ = await s.get("/delegator.json", params={"namespace": "outging", "path": "/svc/x",
                                                                 "dtab": "/svc => "})
        assert status == 400 and body.startswith("Invalid dtab: ")
        status, body, _ = await s.get("/delegator.json", params={"namespace": "nope", "path": "/svc/x"})
        assert status == 404 and "nope" in body
        status, body, _ = await s.get("/delegator.json", params={"namespace": "opaque", "path": "/svc/x"})
        assert status == 501
        t0 = time.monotonic()
        status, body, _ = await s.get("/delegator.json", params={"namespace": "slow", "path": "/svc/x"})
        assert status == 503 and body == "Request timed out."
        assert 1.9 <= time.monotonic() - t0 < 3.5
        status, _, _ = await s.post("/delegator.json", data="path=/svc/x")
        assert status == 415
        status, body, _ = await s.post("/delegator.json", data="{", headers={"Content-Type": "application/json"})
        assert status == 400 and body.startswith("Malformed delegation request")


async def test_namer_state_client_state_and_bound_names():
    async with Served(router_app()) as s:
        status, body, _ = await s.get("/namer_state/io.test.static.json")
        assert status == 200 and json.loads(body) == {"services": ["api", "web"]}
        status, body, _ = await s.get("/namer_state/io.l5d.fs.json")
        assert status == 404 and "io.test.static" in body
        status, body, _ = await s.get("/bound-names.json")
        assert json.loads(body) == ["/#/io.test.static/api", "/#/io.test.static/web"]
        status, body, _ = await s.get("/client_state.json")
        doc = json.loads(body)
        assert doc["outging"]["/$/inet/127.1/8002"]["addrs"][0]["port"] == 8002
        assert doc["slow"] == {}
