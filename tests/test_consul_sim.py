"""The Consul simulator itself, checked over plain HTTP against Consul's documented behaviour
(so the namer tests rest on a server that acts like Consul, not like our client)."""
from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import pytest

from tests.sim.consul_sim import ConsulSim


@pytest.fixture
async def sim():
    s = ConsulSim(other_dcs=("dc2",))
    await s.start()
    yield s
    await s.stop()


async def call(s: ConsulSim, method: str, path: str, **kw):
    async with aiohttp.ClientSession() as c:
        async with c.request(method, s.url + path, **kw) as r:
            return r.status, dict(r.headers), await r.read()


async def test_blocking_query_semantics(sim: ConsulSim):
    await sim.register("n1", "10.0.0.1", service="web", port=80)
    st, h, body = await call(sim, "GET", "/v1/catalog/service/web")
    idx = int(h["X-Consul-Index"])
    assert st == 200 and h["X-Consul-KnownLeader"] == "true" and "X-Consul-LastContact" in h
    # no change: blocks for wait (+ up to wait/16 jitter), then answers with the same index
    t0 = time.monotonic()
    st, h, _ = await call(sim, "GET", f"/v1/catalog/service/web?index={idx}&wait=200ms")
    assert 0.2 <= time.monotonic() - t0 < 0.5 and int(h["X-Consul-Index"]) == idx
    # a change wakes the blocked query at once
    t0 = time.monotonic()
    q = asyncio.ensure_future(call(sim, "GET", f"/v1/catalog/service/web?index={idx}&wait=5s"))
    await asyncio.sleep(0.05)
    await sim.register("n2", "10.0.0.2", service="web", port=80)
    st, h, body = await q
    assert time.monotonic() - t0 < 0.5 and int(h["X-Consul-Index"]) > idx
    # an index older than the current one answers immediately; index=0 never blocks
    t0 = time.monotonic()
    await call(sim, "GET", "/v1/catalog/service/web?index=1&wait=5s")
    await call(sim, "GET", "/v1/catalog/service/web?index=0&wait=5s")
    assert time.monotonic() - t0 < 0.3
    # a missing service: 200, [] and an index
    st, h, body = await call(sim, "GET", "/v1/catalog/service/nope")
    assert (st, body) == (200, b"[]") and "X-Consul-Index" in h
    st, _, body = await call(sim, "GET", "/v1/catalog/service/web?dc=dc9")
    assert (st, body) == (500, b"No path to datacenter")
    st, _, _ = await call(sim, "GET", "/v1/catalog/service/web?wait=soon")
    assert st == 400


async def test_health_passing_and_tags(sim: ConsulSim):
    await sim.register("n1", "10.0.0.1", service="api", service_id="a1", port=1, tags=["x"], status="passing")
    await sim.register("n2", "10.0.0.2", service="api", service_id="a2", port=2, tags=["x", "y"], status="warning")
    _, _, body = await call(sim, "GET", "/v1/health/service/api")
    import json

    doc = json.loads(body)
    assert {e["Service"]["ID"] for e in doc} == {"a1", "a2"} and doc[1]["Checks"][0]["Status"] == "warning"
    _, _, body = await call(sim, "GET", "/v1/health/service/api?passing")
    assert {e["Service"]["ID"] for e in json.loads(body)} == {"a1"}
    _, _, body = await call(sim, "GET", "/v1/health/service/api?passing=false&tag=x&tag=y")
    assert {e["Service"]["ID"] for e in json.loads(body)} == {"a2"}
    st, _, _ = await call(sim, "GET", "/v1/health/service/api?passing=maybe")
    assert st == 400


async def test_kv_cas_raw_recurse_delete(sim: ConsulSim):
    st, h, _ = await call(sim, "GET", "/v1/kv/a/b")
    assert st == 404 and "X-Consul-Index" in h
    assert (await call(sim, "PUT", "/v1/kv/a/b?cas=0", data=b"one"))[2] == b"true"
    assert (await call(sim, "PUT", "/v1/kv/a/b?cas=0", data=b"two"))[2] == b"false"
    import json

    st, h, body = await call(sim, "GET", "/v1/kv/a/b")
    e = json.loads(body)[0]
    assert base64.b64decode(e["Value"]) == b"one" and int(h["X-Consul-Index"]) == e["ModifyIndex"]
    assert (await call(sim, "PUT", f"/v1/kv/a/b?cas={e['ModifyIndex'] - 1}", data=b"x"))[2] == b"false"
    assert (await call(sim, "PUT", f"/v1/kv/a/b?cas={e['ModifyIndex']}", data=b"two"))[2] == b"true"
    assert (await call(sim, "GET", "/v1/kv/a/b?raw"))[2] == b"two"
    await call(sim, "PUT", "/v1/kv/a/c", data=b"3")
    _, _, body = await call(sim, "GET", "/v1/kv/a/?recurse")
    assert [x["Key"] for x in json.loads(body)] == ["a/b", "a/c"]
    _, _, body = await call(sim, "GET", "/v1/kv/a/?keys")
    assert json.loads(body) == ["a/b", "a/c"]
    assert (await call(sim, "DELETE", "/v1/kv/a/c?cas=1"))[2] == b"false"
    assert (await call(sim, "DELETE", "/v1/kv/a/?recurse"))[2] == b"true"
    assert (await call(sim, "GET", "/v1/kv/a/b"))[0] == 404


async def test_acl_tokens():
    s = ConsulSim(acl_tokens={"good"})
    await s.start()
    try:
        assert (await call(s, "GET", "/v1/kv/x"))[0] == 403
        assert (await call(s, "GET", "/v1/kv/x", headers={"X-Consul-Token": "bad"}))[2] == b"ACL not found"
        assert (await call(s, "GET", "/v1/kv/x?token=good"))[0] == 404
        await s.register("n1", "10.0.0.1", service="web", port=80)
        st, h, body = await call(s, "GET", "/v1/catalog/service/web")
        assert (st, body) == (200, b"[]") and h["X-Consul-Results-Filtered-By-ACLs"] == "true"
    finally:
        await s.stop()
