"""The Kubernetes API simulator itself, over plain HTTP, against the API's documented
list/watch behaviour (resourceVersion, 410, bookmarks, selectors, timeouts)."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from tests.sim.k8s_sim import K8sApiSim, subset


@pytest.fixture
async def sim():
    s = K8sApiSim()
    await s.start()
    yield s
    await s.stop()


async def get(s: K8sApiSim, path: str):
    async with aiohttp.ClientSession() as c:
        async with c.get(s.url + path) as r:
            return r.status, json.loads(await r.read())


async def watch(s: K8sApiSim, path: str, n: int, timeout: float = 2.0) -> list[dict]:
    """The first ``n`` events (fewer if the server ends the stream)."""
    out: list[dict] = []
    async with aiohttp.ClientSession() as c:
        async with c.get(s.url + path) as r:
            assert r.status == 200 and r.headers.get("Transfer-Encoding") == "chunked"
            async def read():
                async for line in r.content:
                    if line.strip():
                        out.append(json.loads(line))
                        if len(out) >= n:
                            return
            await asyncio.wait_for(read(), timeout)
    return out


async def test_list_get_and_404(sim: K8sApiSim):
    sim.set_endpoints("prod", "web", [subset(["10.0.0.1"], {"http": 80})], labels={"app": "web"})
    sim.set_endpoints("prod", "api", [subset(["10.0.0.2"], {"http": 80})])
    st, doc = await get(sim, "/api/v1/namespaces/prod/endpoints")
    assert st == 200 and doc["kind"] == "EndpointsList" and doc["metadata"]["resourceVersion"] == str(sim.rv)
    assert [i["metadata"]["name"] for i in doc["items"]] == ["api", "web"]
    _, doc = await get(sim, "/api/v1/namespaces/prod/endpoints?labelSelector=app%3Dweb")
    assert [i["metadata"]["name"] for i in doc["items"]] == ["web"]
    _, doc = await get(sim, "/api/v1/namespaces/prod/endpoints?fieldSelector=metadata.name%3Dapi")
    assert [i["metadata"]["name"] for i in doc["items"]] == ["api"]
    st, doc = await get(sim, "/api/v1/namespaces/prod/endpoints/nope")
    assert st == 404 and doc["kind"] == "Status" and doc["reason"] == "NotFound" and doc["code"] == 404
    st, doc = await get(sim, "/api/v1/endpoints")
    assert len(doc["items"]) == 2


async def test_watch_from_version_replays_and_streams(sim: K8sApiSim):
    sim.set_endpoints("prod", "web", [subset(["10.0.0.1"], {"http": 80})])
    rv0 = sim.rv
    sim.set_endpoints("prod", "web", [subset(["10.0.0.2"], {"http": 80})])
    sim.delete("endpoints", "prod", "web")
    evs = await watch(sim, f"/api/v1/namespaces/prod/endpoints?watch=true&resourceVersion={rv0}", 2)
    assert [e["type"] for e in evs] == ["MODIFIED", "DELETED"]
    assert int(evs[1]["object"]["metadata"]["resourceVersion"]) == sim.rv
    # no resourceVersion: synthetic ADDED for the current state, then live changes
    sim.set_endpoints("prod", "a", [subset(["10.0.0.3"], {"http": 80})])
    task = asyncio.ensure_future(watch(sim, "/api/v1/watch/namespaces/prod/endpoints", 2))
    await asyncio.sleep(0.1)
    sim.set_endpoints("prod", "b", [])
    evs = await task
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "a"), ("ADDED", "b")]


async def test_expired_versions_bookmarks_selectors_and_timeouts(sim: K8sApiSim):
    sim.set_endpoints("prod", "web", [], labels={"v": "1"})
    old = sim.rv - 1
    sim.compact()
    evs = await watch(sim, f"/api/v1/namespaces/prod/endpoints?watch=1&resourceVersion={old}", 1)
    assert evs[0]["type"] == "ERROR" and evs[0]["object"]["code"] == 410 and evs[0]["object"]["reason"] == "Expired"
    sim.gone_as_http = True
    async with aiohttp.ClientSession() as c:
        async with c.get(sim.url + f"/api/v1/namespaces/prod/endpoints?watch=1&resourceVersion={old}") as r:
            assert r.status == 410 and (await r.json())["reason"] == "Gone"
    sim.gone_as_http = False
    # an object leaving/entering a label selector is DELETED/ADDED for that watch
    task = asyncio.ensure_future(watch(
        sim, f"/api/v1/namespaces/prod/endpoints?watch=true&labelSelector=v%3D1&resourceVersion={sim.rv}"
             "&allowWatchBookmarks=true", 3))
    await asyncio.sleep(0.1)
    sim.set_endpoints("prod", "web", [], labels={"v": "2"})
    sim.set_endpoints("prod", "web", [], labels={"v": "1"})
    sim.send_bookmarks()
    evs = await task
    assert [e["type"] for e in evs] == ["DELETED", "ADDED", "BOOKMARK"]
    assert evs[2]["object"]["metadata"] == {"resourceVersion": str(sim.rv)}
    # timeoutSeconds ends the stream
    t0 = time.monotonic()
    evs = await watch(sim, f"/api/v1/namespaces/prod/endpoints?watch=true&resourceVersion={sim.rv}"
                           "&timeoutSeconds=1", 5, timeout=3)
    assert evs == [] and 0.9 < time.monotonic() - t0 < 2
