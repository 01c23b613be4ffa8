"""io.l5d.consul against the Consul simulator: names, queries, blocking, and recovery."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from namerouter.dtab.path import Path
from namerouter.dtab.tree import NEG, Leaf
from namerouter.metrics import MetricsRegistry
from namerouter.naming.addr import ADDR_NEG, AddrBound
from namerouter.naming.var import Ok
from namerouter.namers.consul import ConsulNamer, ConsulNamerConfig, TagWeight, worst_status
from tests.sim.consul_sim import ConsulSim, parse_duration


@pytest.fixture
async def consul():
    sim = ConsulSim(other_dcs=("dc2",))
    await sim.start()
    yield sim
    await sim.stop()


def make_namer(sim: ConsulSim, **kw: Any) -> ConsulNamer:
    cfg = ConsulNamerConfig(host=sim.host, port=sim.port, **kw)
    return ConsulNamer(cfg, metrics=MetricsRegistry(), max_backoff_s=0.2)


class Watching:
    """Observe a lookup (which starts its watch) and expose the bound addr Var."""

    def __init__(self, namer: ConsulNamer, path: str) -> None:
        self.act = namer.lookup(Path.read(path))
        self.states: list = []
        self._c = self.act.observe(self.states.append)
        self._ac = None

    async def tree(self, timeout: float = 3.0):
        return await self.act.wait_ok(timeout)

    async def bound(self, timeout: float = 3.0):
        deadline = time.monotonic() + timeout
        while True:
            t = await self.tree(timeout)
            if isinstance(t, Leaf):
                if self._ac is None:
                    self._ac = t.value.addr.observe(lambda a: None)
                return t.value
            if time.monotonic() > deadline:
                raise AssertionError(f"not bound: {t}")
            await self.act.states.changed()

    def close(self) -> None:
        self._c.close()
        if self._ac is not None:
            self._ac.close()


def hostports(addr) -> set[tuple[str, int]]:
    assert isinstance(addr, AddrBound), addr
    return {(a.host, a.port) for a in addr.addrs}


async def wait_addr(var, pred, timeout=3.0):
    return await var.wait_for(pred, timeout)


async def test_catalog_lookup_binds_and_follows_changes(consul: ConsulSim, record_property):
    await consul.register("n1", "10.0.0.1", service="web", service_id="web-1", port=8080)
    await consul.register("n2", "10.0.0.2", service="web", service_id="web-2", port=8080,
                          service_address="10.1.0.2")
    namer = make_namer(consul)
    w = Watching(namer, "/dc1/web/extra/path")
    try:
        bound = await w.bound()
        assert bound.id == Path.read("/#/io.l5d.consul/dc1/web")
        assert bound.residual == Path.read("/extra/path")
        addr = await wait_addr(bound.addr, lambda a: isinstance(a, AddrBound))
        # ServiceAddress wins over the node address (preferServiceAddress default true).
        assert hostports(addr) == {("10.0.0.1", 8080), ("10.1.0.2", 8080)}
        assert all(a.meta["endpoint_addr_weight"] == 1.0 for a in addr.addrs)

        # Several changes in a row, each followed by the blocking query's next answer. Not a
        # timing assertion (the machine is shared): the wait is generous and the latency is
        # recorded (target: under 200 ms; see the README's Consul section).
        latencies = []
        for i in range(3):
            t0 = time.monotonic()
            await consul.register(f"n{i+3}", f"10.0.0.{i+3}", service="web", service_id=f"web-{i+3}", port=8080)
            await wait_addr(bound.addr, lambda a, i=i: ("10.0.0.%d" % (i + 3), 8080) in hostports(a), 5)
            latencies.append(round((time.monotonic() - t0) * 1000, 1))
        record_property("consul_change_latency_ms", latencies)
        t0 = time.monotonic()
        await consul.deregister("n1", service_id="web-1")
        await wait_addr(bound.addr, lambda a: ("10.0.0.1", 8080) not in hostports(a), 5)
        # The client saw blocking queries with the index of the previous answer.
        qs = [p for m, p, h in consul.requests if p.startswith("/v1/catalog/service/web")]
        assert "index=" not in qs[0] and any("index=" in q for q in qs[1:])
    finally:
        w.close()
        await namer.close()


async def test_local_dc_lowercase_and_unknown_names(consul: ConsulSim):
    await consul.register("n1", "10.0.0.1", service="web", port=80)
    await consul.register("m1", "10.2.0.1", service="web", port=81, dc="dc2")
    namer = make_namer(consul)
    w1 = Watching(namer, "/.local/WEB")
    w2 = Watching(namer, "/dc2/web")
    w3 = Watching(namer, "/dc1/nosuch")
    w4 = Watching(namer, "/dc9/web")
    try:
        b1 = await w1.bound()
        assert b1.id == Path.read("/#/io.l5d.consul/.local/WEB")
        assert hostports(await wait_addr(b1.addr, lambda a: isinstance(a, AddrBound))) == {("10.0.0.1", 80)}
        b2 = await w2.bound()
        assert hostports(await wait_addr(b2.addr, lambda a: isinstance(a, AddrBound))) == {("10.2.0.1", 81)}
        assert await w3.tree() is NEG  # no such service: an Alt can fall through
        assert await w4.tree() is NEG  # "No path to datacenter"
        assert namer.lookup(Path.read("/dc1")).sample() == Ok(NEG)  # too short
        assert any(p == "/v1/agent/self" for m, p, h in consul.requests)
        # The missing service appears: the same lookup becomes bound.
        await consul.register("n5", "10.0.0.5", service="nosuch", port=90)
        b3 = await w3.bound()
        assert hostports(b3.addr.sample()) == {("10.0.0.5", 90)}
    finally:
        for w in (w1, w2, w3, w4):
            w.close()
        await namer.close()


async def test_tags_weights_sethost_metadata_token_consistency():
    sim = ConsulSim(acl_tokens={"s3cret"}, domain="example.")
    await sim.start()
    try:
        await sim.register("n1", "10.0.0.1", service="web", service_id="w1", port=80, tags=["prod", "primary"],
                           meta={"version": "42"}, node_meta={"rack": "r1"}, service_address="10.9.9.1")
        await sim.register("n2", "10.0.0.2", service="web", service_id="w2", port=80, tags=["prod"])
        await sim.register("n3", "10.0.0.3", service="web", service_id="w3", port=80, tags=["canary"])
        namer = make_namer(
            sim, includeTag=True, token="s3cret", setHost=True, consistencyMode="stale",
            preferServiceAddress=False, weights=[TagWeight("primary", 100.0), TagWeight("prod", 2.0)],
            transferMetadata=True,
        )
        w = Watching(namer, "/dc1/PROD/web")
        try:
            b = await w.bound()
            assert b.id == Path.read("/#/io.l5d.consul/dc1/PROD/web")
            addr = await wait_addr(b.addr, lambda a: isinstance(a, AddrBound))
            by_host = {a.host: a for a in addr.addrs}
            assert set(by_host) == {"10.0.0.1", "10.0.0.2"}  # node addresses; canary filtered by tag
            assert by_host["10.0.0.1"].meta["endpoint_addr_weight"] == 100.0  # heaviest tag wins
            assert by_host["10.0.0.2"].meta["endpoint_addr_weight"] == 2.0
            assert by_host["10.0.0.1"].meta["version"] == "42" and by_host["10.0.0.1"].meta["rack"] == "r1"
            assert addr.meta == {"authority": "prod.web.service.dc1.example"}
            reqs = [(p, h) for m, p, h in sim.requests if p.startswith("/v1/catalog/service/web")]
            assert reqs and all(h.get("X-Consul-Token") == "s3cret" for p, h in reqs)
            assert all("tag=prod" in p and "stale=" in p and "dc=dc1" in p for p, h in reqs)
        finally:
            w.close()
            await namer.close()
        # Without the token the anonymous view is empty: negative, not an exception.
        anon = make_namer(sim)
        w = Watching(anon, "/dc1/web")
        try:
            assert await w.tree() is NEG
        finally:
            w.close()
            await anon.close()
    finally:
        await sim.stop()


async def test_health_statuses_server_and_client_side(consul: ConsulSim):
    await consul.register("n1", "10.0.0.1", service="api", service_id="a1", port=1, status="passing")
    await consul.register("n2", "10.0.0.2", service="api", service_id="a2", port=2, status="warning")
    await consul.register("n3", "10.0.0.3", service="api", service_id="a3", port=3, status="critical")
    await consul.register("n4", "10.0.0.4", service="api", service_id="a4", port=4, status="bogus")
    strict = make_namer(consul, useHealthCheck=True)
    lax = make_namer(consul, useHealthCheck=True, healthStatuses=["passing", "warning"])
    ws = Watching(strict, "/dc1/api")
    wl = Watching(lax, "/dc1/api")
    try:
        bs = await ws.bound()
        assert hostports(await wait_addr(bs.addr, lambda a: isinstance(a, AddrBound))) == {("10.0.0.1", 1)}
        bl = await wl.bound()
        # Client-side: worst check decides; an unknown status counts as passing.
        assert hostports(await wait_addr(bl.addr, lambda a: isinstance(a, AddrBound))) == {
            ("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.4", 4)}
        paths = [p for m, p, h in consul.requests if p.startswith("/v1/health/service/api")]
        assert any("passing=true" in p for p in paths) and any("passing=false" in p for p in paths)
        # A check turning critical removes the instance.
        await consul.set_check("n2", "service:a2", "critical")
        await wait_addr(bl.addr, lambda a: ("10.0.0.2", 2) not in hostports(a), 5)
        await consul.set_check("n1", "service:a1", "warning")
        await wait_addr(bs.addr, lambda a: a is ADDR_NEG, 5)  # nothing passing: negative
    finally:
        ws.close()
        wl.close()
        await strict.close()
        await lax.close()
    assert worst_status([{"Status": "passing"}, {"Status": "maintenance"}, {"Status": "critical"}]) == "maintenance"


async def test_watch_survives_missing_index_backwards_index_and_5xx(consul: ConsulSim):
    await consul.register("n1", "10.0.0.1", service="web", port=80)
    namer = make_namer(consul)
    w = Watching(namer, "/dc1/web")
    try:
        b = await w.bound()
        await wait_addr(b.addr, lambda a: isinstance(a, AddrBound))
        watch = next(iter(namer._running.values()))

        # 1. Answers without X-Consul-Index: errors, retried; the set is kept meanwhile.
        consul.drop_index_header = 3
        await consul.register("n2", "10.0.0.2", service="web", port=80)
        await wait_addr(b.addr, lambda a: ("10.0.0.2", 80) in hostports(a), 3)
        assert watch.errors >= 1 and "X-Consul-Index" in watch.last_error

        # 2. The index goes backwards (snapshot restore): reset, no data loss, keep watching.
        errors = watch.errors
        await asyncio.sleep(0.1)  # the query is blocked when the restore happens (abandoned)
        await consul.reset_index(1)
        await consul.register("n3", "10.0.0.3", service="web", port=80)
        await wait_addr(b.addr, lambda a: ("10.0.0.3", 80) in hostports(a), 3)
        await consul.register("n4", "10.0.0.4", service="web", port=80)
        await wait_addr(b.addr, lambda a: ("10.0.0.4", 80) in hostports(a), 3)
        assert watch.errors > errors and "backwards" in watch.last_error

        # 3. 5xx answers: retried; the known set is never dropped.
        consul.fail_next = 3
        seen: list = []
        c = b.addr.observe(seen.append)
        await consul.register("n5", "10.0.0.5", service="web", port=80)
        await wait_addr(b.addr, lambda a: ("10.0.0.5", 80) in hostports(a), 3)
        c.close()
        assert all(isinstance(a, AddrBound) and len(a.addrs) >= 4 for a in seen)
        assert "500" in watch.last_error or watch.errors > errors
    finally:
        w.close()
        await namer.close()


async def test_restart_keeps_last_known_set_and_resumes(consul: ConsulSim):
    await consul.register("n1", "10.0.0.1", service="web", port=80)
    namer = make_namer(consul)
    w = Watching(namer, "/dc1/web")
    try:
        b = await w.bound()
        await wait_addr(b.addr, lambda a: isinstance(a, AddrBound))
        seen: list = []
        c = b.addr.observe(seen.append, initial=False)
        await consul.stop()  # cuts the blocked query
        await asyncio.sleep(0.5)  # several failed reconnects
        assert seen == [] and hostports(b.addr.sample()) == {("10.0.0.1", 80)}
        await consul.start()
        t0 = time.monotonic()
        await consul.register("n2", "10.0.0.2", service="web", port=80)
        await wait_addr(b.addr, lambda a: ("10.0.0.2", 80) in hostports(a), 2)
        assert time.monotonic() - t0 < 1.0  # backoff is capped (0.2 s in this test)
        c.close()
    finally:
        w.close()
        await namer.close()


async def test_outage_at_startup_resolves_when_consul_appears():
    sim = ConsulSim()
    namer = make_namer(sim)
    w = Watching(namer, "/.local/web")
    try:
        assert await w.tree() is NEG  # unreachable and nothing known: negative
        await sim.start()
        await sim.register("n1", "10.0.0.1", service="web", port=80)
        b = await w.bound(timeout=3)
        await wait_addr(b.addr, lambda a: isinstance(a, AddrBound) and len(a.addrs) == 1, 3)
        state = namer.admin_state()["/#/io.l5d.consul/.local/web"]
        assert state["state"]["type"] == "bound" and state["poll"]["errors"] >= 1
        assert state["poll"]["datacenter"] == "dc1"
    finally:
        w.close()
        await namer.close()
        await sim.stop()


async def test_watches_are_lazy_and_released(consul: ConsulSim):
    await consul.register("n1", "10.0.0.1", service="web", port=80)
    namer = make_namer(consul)
    act = namer.lookup(Path.read("/dc1/web"))
    await asyncio.sleep(0.05)
    assert not namer._running and not consul.requests  # a lookup alone queries nothing
    junk = [Watching(namer, f"/dc1/junk-{i}") for i in range(20)]
    for j in junk:
        assert await j.tree() is NEG
    assert namer.watch_count() == 20
    for j in junk:
        j.close()
    assert namer.watch_count() == 0  # released as soon as nobody observes
    del junk, j
    import gc

    await asyncio.sleep(0.01)  # let the cancelled watch tasks finish
    gc.collect()
    assert len(namer._watches) <= 1  # only the still-referenced /dc1/web remains
    n = len(consul.requests)
    await asyncio.sleep(0.1)
    assert len(consul.requests) == n  # no query keeps running for released names
    w = Watching(namer, "/dc1/web")
    assert isinstance(await w.tree(), Leaf)
    w.close()
    del act
    await namer.close()


def test_parse_duration_matches_go():
    assert parse_duration("5m") == 300
    assert parse_duration("1m30s") == 90
    assert parse_duration("150ms") == pytest.approx(0.15)
    with pytest.raises(ValueError):
        parse_duration("5x")


def test_config_rejects_unknown_health_status():
    with pytest.raises(ValueError, match="unknown health status 'healthy'"):
        ConsulNamer.from_config(ConsulNamerConfig(healthStatuses=["healthy"]))
