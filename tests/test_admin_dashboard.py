"""``/admin/dashboard.json`` and the UI's admin endpoints, over a real router with real
backends and real traffic: windowed rates and success rates, worst first, paging and
filtering with 1,000 names, parameter errors, ``admin.security`` and the pages' CSP."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional

import aiohttp
import pytest

from namerouter.admin.dashboard import DashboardSampler, merge, percentiles
from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from namerouter.metrics import MetricsRegistry
from tests.support.backends import Backend
from tests.support.ports import free_port
from tests.support.routing import Traffic, running_router


async def fetch(url: str, **kw: Any) -> tuple[int, Any, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, **kw) as r:
            body = await r.read()
            try:
                doc = json.loads(body)
            except ValueError:
                doc = body.decode("utf-8", "replace")
            return r.status, doc, dict(r.headers)


async def poll_until(url: str, pred: Any, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, doc, _ = await fetch(url)
        assert status == 200, doc
        if pred(doc):
            return doc
        assert time.monotonic() < deadline, f"condition not met; last answer: {json.dumps(doc)[:2000]}"
        await asyncio.sleep(0.2)


def item(table: dict, name: str) -> Optional[dict]:
    return next((i for i in table["items"] if i["name"] == name), None)


async def test_live_rates_success_rates_worst_first_and_client_state():
    async with Backend("web") as good, Backend("bad") as bad, running_router(f"""
        /svc/web => /$/inet/127.0.0.1/{good.port};
        /svc/bad => /$/inet/127.0.0.1/{bad.port};
    """) as (_, base, port):
        url = f"{base}/admin/dashboard.json"
        # the first poll starts the sampler; nothing has been routed yet
        status, doc, headers = await fetch(url)
        assert status == 200 and headers["Cache-Control"] == "no-store"
        assert doc["services"]["total"] == 0
        ok = Traffic(port, "web", concurrency=2, pause=0.01).start()
        failing = Traffic(port, "bad", concurrency=2, path="/status/500", pause=0.01).start()
        try:
            doc = await poll_until(url, lambda d: (
                (w := item(d["services"], "/svc/web")) and (b := item(d["services"], "/svc/bad"))
                and w["figures"]["rps"] > 0 and b["figures"]["rps"] > 0
                and b["figures"]["successRate"] == 0.0 and w["figures"]["successRate"] == 1.0))
        finally:
            await ok.stop()
            await failing.stop()
        services = doc["services"]
        assert [i["name"] for i in services["items"]] == ["/svc/bad", "/svc/web"]  # worst first
        web = item(services, "/svc/web")
        assert web["router"] == "outgoing"
        f = web["figures"]
        assert f["p50"] is not None and 0 < f["p50"] <= f["p95"] <= f["p99"]
        assert f["requests"] >= 1
        assert len(web["series"]["rps"]) >= 1 and len(web["series"]["rps"]) == len(web["series"]["p99"])
        # router and server figures aggregate both services
        [r] = doc["routers"]
        assert r["label"] == "outgoing"
        assert 0 < r["figures"]["successRate"] < 1
        assert 0 < r["figures"]["requests"] <= len(ok.statuses) + len(failing.statuses)
        [srv] = r["servers"]
        assert srv["id"] == f"127.0.0.1/{port}"
        assert set(r["series"]) >= {"rps", "success", "p50", "p95", "p99", "connections"}
        # clients carry the endpoint and pool figures of /client_state.json
        bad_client = item(doc["clients"], f"/$/inet/127.0.0.1/{bad.port}")
        assert bad_client is not None and bad_client["figures"]["successRate"] == 0.0
        st = bad_client["state"]
        assert st["state"] == "bound"
        [ep] = st["endpoints"]
        assert (ep["ip"], ep["port"]) == ("127.0.0.1", bad.port)
        assert {"outstanding", "connections", "idle", "waiters"} <= set(ep)
        assert "failure_accrual/removed" in bad_client["figures"]
        assert doc["times"] and doc["windowS"] == 10.0


async def test_endpoint_failure_accrual_state_and_pool_limits():
    """Each endpoint's failure-accrual state (from the data plane's ``client_state()``) and
    each client's ``hostConnectionPool`` limits reach /client_state.json and the dashboard."""
    async with Backend("web") as good, Backend("bad") as bad, running_router(f"""
        /svc/web => /$/inet/127.0.0.1/{good.port};
        /svc/bad => /$/inet/127.0.0.1/{bad.port};
    """, router_extra="""  client:
    kind: io.l5d.static
    configs:
    - prefix: /$/inet/127.0.0.1/{bad}
      failureAccrual: {{kind: io.l5d.consecutiveFailures, failures: 3}}
      hostConnectionPool: {{maxSize: 4, maxWaiters: 100}}
""".format(bad=bad.port)) as (_, base, port):
        url = f"{base}/admin/dashboard.json"
        await fetch(url)
        async with aiohttp.ClientSession() as s:
            for host, path in [("web", "/pong")] * 2 + [("bad", "/status/500")] * 3:
                async with s.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}) as r:
                    await r.read()
        bad_id, good_id = f"/$/inet/127.0.0.1/{bad.port}", f"/$/inet/127.0.0.1/{good.port}"
        status, states, _ = await fetch(base + "/client_state.json")
        assert status == 200
        # three consecutive 500s: the endpoint is removed from the balancer until its probe
        [ep] = states["outgoing"][bad_id]["endpoints"]
        fa = ep["failureAccrual"]
        assert (fa["kind"], fa["state"], fa["consecutiveFailures"]) == ("io.l5d.consecutiveFailures", "dead", 3)
        assert fa["retryInMs"] > 0 and fa["removedForMs"] >= 0
        assert states["outgoing"][bad_id]["pool"]["maxSize"] == 4
        assert states["outgoing"][bad_id]["pool"]["maxWaiters"] == 100
        [ep] = states["outgoing"][good_id]["endpoints"]
        assert ep["failureAccrual"]["state"] == "alive" and states["outgoing"][good_id]["pool"]["maxSize"] is None
        # the dashboard carries the same for the clients it lists
        doc = await poll_until(url, lambda d: item(d["clients"], bad_id) and item(d["clients"], good_id))
        st = item(doc["clients"], bad_id)["state"]
        assert st["pool"]["maxSize"] == 4 and st["failureAccrual"] == "io.l5d.consecutiveFailures"
        assert st["endpoints"][0]["failureAccrual"]["state"] == "dead"
        assert item(doc["clients"], bad_id)["figures"]["failure_accrual/removed"] == 1


async def test_one_thousand_names_page_filter_and_sort():
    async with Backend("web") as web, running_router(
            f"/svc/* => /$/inet/127.0.0.1/{web.port};",
            router_extra="  bindingCache: {paths: 2000, trees: 2000}") as (_, base, port):
        url = f"{base}/admin/dashboard.json"
        await fetch(url)
        names = [f"name-{i:04d}" for i in range(1000)]
        sem = asyncio.Semaphore(16)
        async with aiohttp.ClientSession() as s:
            async def one(host: str) -> int:
                async with sem, s.get(f"http://127.0.0.1:{port}/pong", headers={"Host": host}) as r:
                    await r.read()
                    return r.status
            statuses = await asyncio.gather(*(one(n) for n in names))
        assert set(statuses) == {200}
        doc = await poll_until(url, lambda d: d["services"]["total"] == 1000)
        assert len(doc["services"]["items"]) == 25 and doc["services"]["matched"] == 1000
        status, raw, _ = await fetch(url)
        assert len(json.dumps(raw)) < 150_000  # one page, not 1,000 names
        _, last, _ = await fetch(url + "?soffset=990&slimit=25&sort=name")
        assert [i["name"] for i in last["services"]["items"]] == [f"/svc/{n}" for n in names[990:]]
        _, one_name, _ = await fetch(url + "?q=NAME-0999")
        assert one_name["services"]["matched"] == 1
        assert one_name["services"]["items"][0]["name"] == "/svc/name-0999"
        _, none, _ = await fetch(url + "?router=elsewhere")
        assert none["services"]["matched"] == 0 and none["services"]["total"] == 1000


async def test_bad_parameters_are_400_and_limits_are_clamped():
    async with running_router("/svc/x => /$/inet/127.0.0.1/1;") as (_, base, _port):
        url = f"{base}/admin/dashboard.json"
        status, text, _ = await fetch(url + "?sort=bogus")
        assert status == 400 and "sort: expected one of successRate" in text
        status, text, _ = await fetch(url + "?slimit=abc")
        assert status == 400 and "slimit: expected an integer" in text
        status, doc, _ = await fetch(url + "?slimit=100000&coffset=-5")
        assert status == 200 and doc["services"]["limit"] == 200 and doc["clients"]["offset"] == 0


async def test_pages_assets_and_security():
    async with running_router("/svc/x => /$/inet/127.0.0.1/1;") as (_, base, _port):
        for path in ("/", "/dashboard", "/delegator"):
            status, body, headers = await fetch(base + path)
            assert status == 200 and headers["Content-Type"].startswith("text/html"), path
            assert "script-src 'self'" in headers["Content-Security-Policy"]
            assert "unsafe-inline" not in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert "<script type=\"module\"" in body
        status, _, headers = await fetch(base + "/ui/dashboard.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        for bad in ("/ui/../app.py", "/ui/app.py", "/ui/nothing.js", "/ui/%2e%2e%2fui.py"):
            status, _, _ = await fetch(base + bad)
            assert status == 404, bad
        status, routers, _ = await fetch(base + "/admin/routers.json")
        assert status == 200 and routers[0]["label"] == "outgoing"
        assert routers[0]["dtab"] == "/svc/x=>/$/inet/127.0.0.1/1"
        assert routers[0]["dentries"] == [{"prefix": "/svc/x", "dst": "/$/inet/127.0.0.1/1"}]

    # uiEnabled: false hides the pages, their assets and their JSON; diagnostics stay
    admin, port = free_port(), free_port()
    linker = Linker(loads_linker(f"""
admin:
  port: {admin}
  security: {{uiEnabled: false}}
routers:
- protocol: http
  dtab: /svc/x => /$/inet/127.0.0.1/1;
  servers: [{{port: {port}, ip: 127.0.0.1}}]
"""))
    await linker.start()
    try:
        base = f"http://127.0.0.1:{admin}"
        for path in ("/", "/dashboard", "/delegator", "/ui/dashboard.js", "/admin/dashboard.json",
                     "/admin/routers.json"):
            status, _, _ = await fetch(base + path)
            assert status == 404, path
        status, _, _ = await fetch(base + "/client_state.json")
        assert status == 200
    finally:
        await linker.close(0)


async def test_validate_dtab_endpoint():
    async with running_router("/svc/x => /$/inet/127.0.0.1/1;") as (_, base, _port):
        async with aiohttp.ClientSession() as s:
            async def check(text: str) -> dict:
                async with s.post(base + "/admin/validate-dtab", data=text.encode(),
                                  headers={"Content-Type": "application/dtab"}) as r:
                    assert r.status == 200
                    return await r.json()
            assert await check("/a => /b;\n/c => /d | /e") == {"valid": True, "dentries": 2,
                                                                  "dtab": "/a=>/b;/c=>/d | /e"}
            bad = await check("/a => /b;\n/c =>> /d")
            assert bad["valid"] is False and (bad["line"], bad["column"]) == (2, 6)
            assert "expected" in bad["message"]
            async with s.post(base + "/admin/validate-dtab", data=b"/a=>/b;" * 100_000) as r:
                assert r.status == 413
            async with s.post(base + "/admin/validate-dtab", data=b"\xff\xfe") as r:
                assert r.status == 400 and "UTF-8" in await r.text()
            async with s.get(base + "/admin/validate-dtab") as r:
                assert r.status == 405
            # the playground's delegator has the same bound on the dtab it is given
            async with s.post(base + "/delegator.json", json={"namespace": "outgoing", "path": "/svc/x",
                                                               "dtab": "/a=>/b;" * 50_000}) as r:
                assert r.status == 413 and "Invalid dtab: longer than" in await r.text()


def test_windowed_percentiles_match_the_stat_of_the_same_samples():
    reg = MetricsRegistry()
    stat = reg.stat("rt/r/service/svc/a/request_latency_ms")
    before = list(stat.counts)
    for v in [0.3, 1, 2, 2, 3, 5, 8, 13, 21, 400]:
        stat.add(v)
    delta = [(i, c - p) for i, (c, p) in enumerate(zip(stat.counts, before)) if c != p]
    got = percentiles(merge([delta[:3], delta[3:]]), (0.5, 0.9, 0.99), stat.max)
    assert got == [stat.percentile(0.5), stat.percentile(0.9), stat.percentile(0.99)]
    assert percentiles([], (0.5,), 0.0) == [None]


async def test_sampler_runs_only_while_polled():
    reg = MetricsRegistry()
    reg.counter("rt/r/server/127.0.0.1/1/requests")
    reg.counter("rt/r/server/127.0.0.1/1/success")
    reg.stat("rt/r/server/127.0.0.1/1/request_latency_ms")
    sampler = DashboardSampler(reg, tick_s=0.02, idle_stop_s=0.2)
    sampler.touch()
    assert sampler.running and ("r", "server", "127.0.0.1/1") in sampler.scopes
    deadline = time.monotonic() + 10
    while sampler.running:
        assert time.monotonic() < deadline, "sampler did not stop after the last poll"
        await asyncio.sleep(0.05)
    assert not sampler.scopes and not sampler.times  # forgets everything when idle
    reg.remove_prefix("rt/r/server/")
    sampler.close()


@pytest.mark.parametrize("sort", ["rps", "p99", "name", "successRate"])
async def test_every_sort_answers(sort):
    async with Backend("web") as web, running_router(f"/svc/* => /$/inet/127.0.0.1/{web.port};") as (_, base, port):
        url = f"{base}/admin/dashboard.json?sort={sort}"
        await fetch(url)
        t = Traffic(port, "a", concurrency=1, pause=0.02).start()
        try:
            doc = await poll_until(url, lambda d: d["services"]["items"] and d["services"]["items"][0]["figures"]["rps"] > 0)
        finally:
            await t.stop()
        assert doc["services"]["items"][0]["name"] == "/svc/a"


async def test_a_huge_dtab_is_validated_off_the_loop():
    """A dtab near the size limit takes about a second of CPU to parse; the admin server
    (whose loop is the routers' loop) keeps answering meanwhile."""
    text = "/a=>/b;" * 35_000  # 245,000 bytes
    async with running_router("/svc/x => /$/inet/127.0.0.1/1;") as (_, base, _port):
        async with aiohttp.ClientSession() as s:
            async def validate() -> dict:
                async with s.post(base + "/admin/validate-dtab", data=text.encode()) as r:
                    return await r.json()
            task = asyncio.ensure_future(validate())
            await asyncio.sleep(0.05)  # the parse has started
            async with s.get(base + "/admin/ping") as r:
                assert await r.text() == "pong"
            assert not task.done()  # answered while the parse was still running
            assert (await task)["valid"] is True
