"""Load balancers: p2c least-loaded, peak-EWMA, weighted round robin; live address updates."""
from __future__ import annotations

import asyncio
import collections
import math
import os
import random
import tempfile

import pytest

from namerouter.naming.addr import ADDR_PENDING, AddrBound, Address
from namerouter.naming.var import Var
from namerouter.namers.fs import FsNamer
from namerouter.proxy.balancer_config import LoadBalancerConfig
from namerouter.proxy.balancers import Node, P2CLeastLoaded, PeakEwma, RoundRobin, make_balancer
from tests.support.backends import Backend, RouterHarness, get, request
from tests.test_proxy_errors import ControlledNamer


def counts(lb, n: int) -> collections.Counter:
    return collections.Counter(id(lb.pick()) for _ in range(n))


def test_p2c_follows_weights_when_idle():
    random.seed(1)
    a, b = Node(1.0), Node(3.0)
    lb = P2CLeastLoaded()
    lb.update([a, b])
    c = counts(lb, 20000)
    share = c[id(b)] / 20000
    assert 0.70 < share < 0.85  # weight 3 of 4, tie-break keeps it near 3/4


def test_p2c_prefers_the_less_loaded_node():
    random.seed(2)
    a, b, c = Node(), Node(), Node()
    a.outstanding = 10
    lb = P2CLeastLoaded()
    lb.update([a, b, c])
    got = counts(lb, 3000)
    assert got[id(a)] < 0.05 * 3000


def test_zero_weight_never_picked_and_down_nodes_avoided():
    a, b, z = Node(1.0), Node(1.0), Node(0.0)
    lb = P2CLeastLoaded()
    lb.update([a, b, z])
    assert id(z) not in counts(lb, 1000)
    import time as _t

    a.down_until = _t.monotonic() + 60
    assert counts(lb, 500)[id(b)] == 500
    b.down_until = _t.monotonic() + 60
    # Everything is down: still answer, and keep spreading by weight (Finagle's p2c
    # ignores node status when no node is up) rather than pinning one node.
    got = counts(lb, 2000)
    assert set(got) == {id(a), id(b)} and min(got.values()) > 0.35 * 2000


def test_p2c_prefers_any_available_node_when_the_draws_land_on_down_ones():
    """maxEffort re-draws rarely find the one live node of ten; the fallback scan does."""
    import time as _t

    random.seed(4)
    nodes = [Node() for _ in range(10)]
    for n in nodes[1:]:
        n.down_until = _t.monotonic() + 60
    lb = P2CLeastLoaded(max_effort=1)
    lb.update(nodes)
    assert counts(lb, 1000)[id(nodes[0])] == 1000


def test_ewma_cost_jumps_up_to_a_slow_sample_and_decays_after_fast_ones(monkeypatch):
    """Peak EWMA: a slower sample replaces the estimate at once; faster samples only pull
    it down gradually (time constant decayTimeMs), so one fast reply does not hide a slow
    node. With constant latencies both branches agree, hence varied ones here."""
    from namerouter.proxy import balancers

    now = [1000.0]
    monkeypatch.setattr(balancers, "_monotonic", lambda: now[0])
    lb = PeakEwma(decay_time_ms=1000)
    n = Node()
    lb.update([n])
    lb.observe(n, 0.010)
    assert n.ewma_cost == pytest.approx(10.0)
    now[0] += 0.1
    lb.observe(n, 0.100)  # slower: the peak is taken as is
    assert n.ewma_cost == pytest.approx(100.0)
    now[0] += 0.1
    lb.observe(n, 0.001)  # faster: decays by exp(-0.1 s / 1 s) toward 1 ms
    w = math.exp(-0.1)
    assert n.ewma_cost == pytest.approx(100.0 * w + 1.0 * (1 - w))
    assert n.ewma_cost > 80
    now[0] += 10.0
    lb.observe(n, 0.001)  # long after: almost fully decayed
    assert n.ewma_cost < 2.0
    # ... and the load a pick compares decays with time since the last sample too
    now[0] += 1.0
    assert lb._cost(n) == pytest.approx(n.ewma_cost * math.exp(-1.0))


def test_ewma_avoids_a_fast_node_right_after_a_latency_spike(monkeypatch):
    from namerouter.proxy import balancers

    now = [0.0]
    monkeypatch.setattr(balancers, "_monotonic", lambda: now[0])
    random.seed(5)
    steady, spiky = Node(), Node()
    lb = PeakEwma(decay_time_ms=5000)
    lb.update([steady, spiky])
    for i in range(50):
        now[0] += 0.01
        lb.observe(steady, 0.020)
        lb.observe(spiky, 0.500 if i == 49 else 0.002)  # fast, then one slow spike
    got = counts(lb, 2000)
    # the spike dominates until it decays (p2c draws the spiky node twice 1 time in 8)
    assert got[id(steady)] > 0.8 * 2000


def test_round_robin_is_smooth_and_weighted():
    a, b, c = Node(5.0), Node(1.0), Node(1.0)
    lb = RoundRobin()
    lb.update([a, b, c])
    seq = [lb.pick() for _ in range(7)]
    assert seq == [a, a, b, a, c, a, a]  # nginx's smooth weighted order


def test_ewma_steers_away_from_the_slow_node():
    random.seed(3)
    fast, slow = Node(), Node()
    lb = PeakEwma(decay_time_ms=10000)
    lb.update([fast, slow])
    for _ in range(20):
        lb.observe(fast, 0.001)
        lb.observe(slow, 0.050)
    got = counts(lb, 2000)
    assert got[id(fast)] > 0.7 * 2000
    # a node with no samples yet but requests in flight is costly (Finagle's penalty)
    fresh = Node()
    fresh.outstanding = 3
    assert lb._load(fresh) > lb._load(slow)


def test_make_balancer_config():
    assert make_balancer(None).kind == "p2c"
    assert make_balancer(LoadBalancerConfig(kind="ewma", decayTimeMs=500)).tau == 0.5
    assert make_balancer(LoadBalancerConfig(kind="roundRobin")).kind == "roundRobin"
    assert make_balancer(LoadBalancerConfig(kind="p2c", maxEffort=9)).max_effort == 9
    with pytest.raises(ValueError, match="known: p2c, ewma, roundRobin, aperture, heap"):
        make_balancer(LoadBalancerConfig(kind="nope"))


async def test_fs_namer_weights_reach_the_balancer():
    async with Backend("heavy") as h3, Backend("light") as h1:
        root = tempfile.mkdtemp()
        with open(os.path.join(root, "web"), "w") as f:
            f.write(f"127.0.0.1 {h3.port} * 3\n127.0.0.1 {h1.port} * 1\n")
        fs = FsNamer(root)
        async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs]) as h:
            seen = collections.Counter()
            for _ in range(400):
                seen[(await request(h.port, get("/echo", host="web"))).json()["backend"]] += 1
            share = seen["heavy"] / 400
            assert 0.65 < share < 0.88, seen
            st = h.router.client_state()["/#/io.l5d.fs/web"]
            assert sorted(e["weight"] for e in st["endpoints"]) == [1.0, 3.0]
        await fs.close()


async def test_round_robin_from_client_config():
    async with Backend("a") as a, Backend("b") as b:
        root = tempfile.mkdtemp()
        with open(os.path.join(root, "web"), "w") as f:
            f.write(f"127.0.0.1 {a.port}\n127.0.0.1 {b.port}\n")
        fs = FsNamer(root)
        client = {"kind": "io.l5d.static", "configs": [
            {"prefix": "/#/io.l5d.fs/{service}", "loadBalancer": {"kind": "roundRobin"}}]}
        async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs], client=client) as h:
            got = [(await request(h.port, get("/echo", host="web"))).json()["backend"] for _ in range(6)]
            assert got.count("a") == 3 and got.count("b") == 3
            assert all(got[i] != got[i + 1] for i in range(5))
            assert h.router.client_state()["/#/io.l5d.fs/web"]["loadBalancer"] == "roundRobin"
        await fs.close()


async def test_address_change_keeps_in_flight_requests_and_moves_new_ones():
    namer = ControlledNamer()
    async with Backend("old") as old, Backend("new") as new, \
            RouterHarness("/svc => /#/ctl", namers=[namer]) as h:
        namer.addrs["web"] = Var(ADDR_PENDING)
        namer.addrs["web"].update(AddrBound([Address("127.0.0.1", old.port)]))
        assert (await request(h.port, get("/echo", host="web"))).json()["backend"] == "old"
        in_flight = asyncio.ensure_future(request(h.port, get("/slow?ms=400", host="web")))
        n0 = len(old.requests)
        while len(old.requests) == n0:
            await asyncio.sleep(0.01)
        namer.addrs["web"].update(AddrBound([Address("127.0.0.1", new.port)]))
        assert (await request(h.port, get("/echo", host="web"))).json()["backend"] == "new"
        r = await in_flight
        assert (r.status, r.body) == (200, b"slow")  # not dropped by the update
        assert h.router.client_state()["/#/ctl/web"]["addresses"] == [f"127.0.0.1:{new.port}"]


def test_policy_blocks_from_the_real_config_loader():
    """service/client blocks arrive as validated dataclasses: prefixes with * and {var}
    match, later entries override earlier ones, unset keys do not."""
    from namerouter.config.schema import loads_linker
    from namerouter.dtab.path import Path
    from namerouter.proxy.policy.static_config import StaticConfigs

    def policy_for(block, path):  # what the router's PolicyTable merges for a name / client id
        return StaticConfigs(block).for_path(path)[0]

    cfg = loads_linker("""
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.fs
  service:
    kind: io.l5d.static
    configs:
    - prefix: /svc
      totalTimeoutMs: 3000
    - prefix: /svc/billing
      totalTimeoutMs: 800
  client:
    kind: io.l5d.static
    configs:
    - prefix: /
      requestAttemptTimeoutMs: 1000
      loadBalancer: {kind: p2c, maxEffort: 7}
    - prefix: /#/io.l5d.k8s/*/*/{service}
      loadBalancer: {kind: ewma, decayTimeMs: 2000}
""").config.routers[0]
    assert policy_for(cfg.service, Path.read("/svc/web"))["totalTimeoutMs"] == 3000
    assert policy_for(cfg.service, Path.read("/svc/billing/x"))["totalTimeoutMs"] == 800
    fs = policy_for(cfg.client, Path.read("/#/io.l5d.fs/web"))
    assert fs["requestAttemptTimeoutMs"] == 1000 and make_balancer(fs["loadBalancer"]).max_effort == 7
    k8s = policy_for(cfg.client, Path.read("/#/io.l5d.k8s/prod/http/web"))
    assert k8s["requestAttemptTimeoutMs"] == 1000  # not erased by the later entry's unset key
    lb = make_balancer(k8s["loadBalancer"])
    assert lb.kind == "ewma" and lb.tau == 2.0


async def test_host_connection_pool_max_size_waiters_and_idle_time():
    async with Backend("pong") as b:
        client = {"kind": "io.l5d.global",
                  "hostConnectionPool": {"maxSize": 2, "maxWaiters": 3, "idleTimeMs": 150}}
        async with RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", client=client) as h:
            # 5 concurrent slow requests: 2 connections, 3 wait and reuse them
            rs = await asyncio.gather(*(request(h.port, get("/slow?ms=150")) for _ in range(5)))
            assert [r.status for r in rs] == [200] * 5
            assert b.connections == 2
            # more than maxSize + maxWaiters at once: the excess gets 503
            rs = await asyncio.gather(*(request(h.port, get("/slow?ms=200")) for _ in range(7)))
            statuses = sorted(r.status for r in rs)
            assert statuses == [200] * 5 + [503] * 2, statuses
            assert "hostConnectionPool" in [r for r in rs if r.status == 503][0].body.decode()
            # idle connections are closed after idleTimeMs
            key = f"/$/inet/127.1/{b.port}"
            assert 1 <= h.router.client_state()[key]["endpoints"][0]["connections"] <= 2  # never above maxSize
            for _ in range(100):
                if h.router.client_state()[key]["endpoints"][0]["connections"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert h.router.client_state()[key]["endpoints"][0]["connections"] == 0
            assert (await request(h.port, get("/pong"))).body == b"pong"
