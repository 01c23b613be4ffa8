"""Load balancers ``aperture`` and ``heap`` (Finagle's): their picking rules on nodes,
then through a real router over several real backends (an fs namer lists them)."""
from __future__ import annotations

import asyncio
import collections
import random
import time

import pytest

from namerouter.config.schema import loads_linker
from namerouter.namers.fs import FsNamer
from namerouter.proxy.balancer_config import LoadBalancerConfig
from namerouter.proxy.balancers import Aperture, HeapLeastLoaded, Node, make_balancer
from tests.support.backends import Backend, RouterHarness, get, request


# --- heap ------------------------------------------------------------------------------------

def test_heap_always_picks_the_least_loaded_node():
    nodes = [Node() for _ in range(5)]
    for i, n in enumerate(nodes):
        n.outstanding = [3, 1, 4, 0, 2][i]
    lb = HeapLeastLoaded()
    lb.update(nodes)
    # each pick goes to the least loaded, which then carries the request
    got = []
    for _ in range(6):
        n = lb.pick()
        got.append(nodes.index(n))
        n.outstanding += 1
    assert got == [3, 1, 3, 4, 1, 3]  # ties go to the node filed first
    assert sorted(n.outstanding for n in nodes) == [3, 3, 3, 3, 4]


def test_heap_learns_of_finished_requests_and_weights():
    a, b = Node(1.0), Node(2.0)
    lb = HeapLeastLoaded()
    lb.update([a, b])
    a.outstanding, b.outstanding = 1, 3  # loads 1.0 and 1.5
    lb._rebuild()
    assert lb.pick() is a
    a.outstanding += 1  # a: 2.0 — now b (1.5) is the least loaded
    assert lb.pick() is b
    b.outstanding += 1  # b: 2.0
    b.outstanding -= 2  # two of b's requests finish: 1.0
    lb.observe(b, 0.01)
    assert lb.pick() is b


def test_heap_passes_over_down_nodes_and_stays_bounded():
    a, b = Node(), Node()
    lb = HeapLeastLoaded()
    lb.update([a, b])
    a.down_until = time.monotonic() + 60
    for _ in range(100):
        assert lb.pick() is b
        b.outstanding += 1
        b.outstanding -= 1
        lb.observe(b, 0.0)
    assert len(lb.heap) <= 4 * 2 + 16 + 2
    b.down_until = time.monotonic() + 60
    assert lb.pick() in (a, b)  # every node down: still an answer


# --- aperture ---------------------------------------------------------------------------------

@pytest.fixture
def clock(monkeypatch):
    from namerouter.proxy import balancers

    now = [100.0]
    monkeypatch.setattr(balancers, "_monotonic", lambda: now[0])
    return now


def test_aperture_light_load_uses_min_aperture_nodes(clock):
    random.seed(7)
    nodes = [Node() for _ in range(10)]
    lb = Aperture(min_aperture=2)
    lb.update(nodes)
    used = collections.Counter(id(lb.pick()) for _ in range(500))
    assert len(used) == 2 and lb.aperture == 2


def test_aperture_grows_under_load_and_shrinks_back(clock):
    random.seed(8)
    nodes = [Node() for _ in range(6)]
    lb = Aperture(smooth_window_ms=100, low_load=0.5, high_load=2.0, min_aperture=1)
    lb.update(nodes)
    for _ in range(200):  # every node in the window carries 5 requests: above highLoad
        clock[0] += 0.05
        for n in nodes:
            n.outstanding = 5
        lb.pick()
    assert lb.aperture == 6
    for _ in range(200):  # idle: below lowLoad
        clock[0] += 0.05
        for n in nodes:
            n.outstanding = 0
        lb.pick()
    assert lb.aperture == 1
    # within the band it stays put
    lb._set_aperture(3)
    lb.load = 1.0
    for _ in range(200):
        clock[0] += 0.05
        for n in nodes:
            n.outstanding = 1
        lb.pick()
    assert lb.aperture == 3


def test_aperture_order_is_stable_across_updates(clock):
    nodes = [Node() for _ in range(8)]
    lb = Aperture(min_aperture=3)
    lb.update(nodes)
    window = set(map(id, lb.nodes))
    lb.update(nodes + [Node()])  # a new endpoint does not reshuffle the window
    assert window - set(map(id, lb.nodes)) == set() or len(window & set(map(id, lb.nodes))) >= 2


def test_aperture_falls_back_outside_the_window_when_the_window_is_down(clock):
    nodes = [Node() for _ in range(4)]
    lb = Aperture(min_aperture=1)
    lb.update(nodes)
    lb.nodes[0].down_until = 1e18
    got = lb.pick()
    assert got is not None and got.available


def test_config():
    assert isinstance(make_balancer(LoadBalancerConfig(kind="heap")), HeapLeastLoaded)
    ap = make_balancer(LoadBalancerConfig(kind="aperture", lowLoad=0.1, highLoad=3, minAperture=4,
                                          smoothWindowMs=1000))
    assert isinstance(ap, Aperture) and (ap.low, ap.high, ap.min_aperture, ap.tau) == (0.1, 3, 4, 1.0)
    with pytest.raises(Exception, match="lowLoad .* must be below highLoad"):
        loads_linker("routers:\n- protocol: http\n  client:\n    loadBalancer: {kind: aperture, lowLoad: 3, "
                     "highLoad: 1}\n  servers: [{port: 4140}]\n")


# --- through a router ---------------------------------------------------------------------------

async def _router(tmp_path, backends, lb: dict):
    (tmp_path / "web").write_text("".join(f"127.0.0.1 {b.port}\n" for b in backends))
    fs = FsNamer(str(tmp_path))
    client = {"kind": "io.l5d.global", "loadBalancer": lb}
    return fs, RouterHarness("/svc => /#/io.l5d.fs", namers=[fs], client=client)


async def test_heap_spreads_concurrent_slow_requests_evenly(tmp_path):
    async with Backend("a") as a, Backend("b") as b, Backend("c") as c:
        fs, h = await _router(tmp_path, [a, b, c], {"kind": "heap"})
        async with h:
            assert (await request(h.port, get("/pong", host="web"))).status == 200  # bind first
            a.requests.clear(), b.requests.clear(), c.requests.clear()
            rs = await asyncio.gather(*(request(h.port, get("/slow?ms=1000", host="web")) for _ in range(12)))
            assert all(r.status == 200 for r in rs)
            assert [len(x.requests) for x in (a, b, c)] == [4, 4, 4]
            assert h.router.client_state()["/#/io.l5d.fs/web"]["loadBalancer"] == "heap"
        await fs.close()


async def test_aperture_talks_to_one_backend_when_light_and_more_under_load(tmp_path):
    backends = [Backend(f"b{i}") for i in range(4)]
    for b in backends:
        await b.start()
    try:
        fs, h = await _router(tmp_path, backends,
                              {"kind": "aperture", "smoothWindowMs": 50, "lowLoad": 0.5, "highLoad": 2.0})
        async with h:
            for _ in range(30):  # one at a time: load below lowLoad, aperture 1
                assert (await request(h.port, get("/pong", host="web"))).status == 200
            assert sum(1 for b in backends if b.requests) == 1
            for b in backends:
                b.requests.clear()
            # 24 requests in flight for a while: the window widens
            deadline = time.monotonic() + 1.5

            async def worker():
                while time.monotonic() < deadline:
                    assert (await request(h.port, get("/slow?ms=50", host="web"))).status == 200

            await asyncio.gather(*(worker() for _ in range(24)))
            assert sum(1 for b in backends if b.requests) >= 3, [len(b.requests) for b in backends]
        await fs.close()
    finally:
        for b in backends:
            await b.stop()
