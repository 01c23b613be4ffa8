"""Binding cache: shared per (dtab, path), idle TTL, size bound, live counts, memory per name."""
from __future__ import annotations

import asyncio
import gc
import tracemalloc
import uuid

import pytest

from namerouter.dtab import Dtab, Path
from namerouter.metrics import MetricsRegistry
from namerouter.namers.fs import FsNamer
from namerouter.naming.binding_cache import BindingCache
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.naming.var import Var, start_stop


async def eventually(cond, timeout=2.0):
    """Wait until ``cond()`` holds (polled every 10 ms); fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_random_names_are_released_with_their_watches(tmp_path):
    """A scanner's random Host headers: every junk name goes after the idle TTL, and with
    it every fs watch it started (Linkerd #1766)."""
    (tmp_path / "web").write_text("127.0.0.1 1\n")
    fs = FsNamer(tmp_path)
    it = DefaultInterpreter([fs], idle_ttl=0.2)
    dtab = Dtab.read("/svc => /#/io.l5d.fs")
    try:
        for _ in range(200):
            it.bind(dtab, Path.of("svc", uuid.uuid4().hex))
        assert it.cache_stats()["size"] == 200
        assert len(fs._active) == 200  # each junk name is watched (a missing file may appear)
        await eventually(lambda: it.cache_stats()["size"] == 0)
        s = it.cache_stats()
        assert s["size"] == 0 and s["expires"] == 200
        assert not fs._active
        gc.collect()
        assert len(fs._lookups) == 0  # nothing left behind in the namer either
    finally:
        await fs.close()


async def test_observed_binding_stays_until_released():
    it = DefaultInterpreter(idle_ttl=0.1)
    dtab = Dtab.read("/svc => /$/inet/127.1/1")
    act = it.bind(dtab, Path.read("/svc/a"))
    it.bind(dtab, Path.read("/svc/b"))
    hold = act.observe(lambda st: None)
    await eventually(lambda: len(it.cache) == 1)
    await asyncio.sleep(0.25)  # well past the TTL: the observed entry is still there
    assert it.cache.keys() == [(dtab, Path.read("/svc/a"))]
    assert it.cache_stats()["observed"] == 1
    hold.close()
    await eventually(lambda: len(it.cache) == 0)


async def test_size_bound_evicts_least_recently_used_unobserved_first():
    it = DefaultInterpreter(cache_size=10)
    dtab = Dtab.read("/svc => /$/inet/127.1/1")
    keep = it.bind(dtab, Path.read("/svc/keep"))
    hold = keep.observe(lambda st: None)
    for i in range(100):
        it.bind(dtab, Path.of("svc", f"n{i}"))
    s = it.cache_stats()
    assert s["size"] == 10 and s["evicts"] == 91
    assert (dtab, Path.read("/svc/keep")) in it.cache  # observed: kept although oldest
    assert (dtab, Path.of("svc", "n99")) in it.cache
    hold.close()


async def test_evicted_activity_stays_live_for_its_observer(tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 1\n")
    fs = FsNamer(tmp_path)
    it = DefaultInterpreter([fs], cache_size=1)
    dtab = Dtab.read("/svc => /#/io.l5d.fs")
    try:
        act = it.bind(dtab, Path.read("/svc/web"))
        act.observe(lambda st: None)
        it.bind(dtab, Path.read("/svc/other"))  # evicts /svc/web from the cache
        assert (dtab, Path.read("/svc/web")) not in it.cache
        (tmp_path / "web").unlink()
        await act.states.wait_for(lambda st: str(st) == "Ok(NEG)", 2)
    finally:
        await fs.close()


def test_cache_validates_settings():
    with pytest.raises(ValueError):
        BindingCache(max_size=0)
    with pytest.raises(ValueError):
        BindingCache(idle_ttl=0)


def test_lazy_var_wait_for_observes_while_waiting():
    """Var.wait_for on a lazy Var starts (and then stops) its source."""
    started, stopped = [], []
    v = Var.lazy(0, start_stop(lambda: started.append(1), lambda: stopped.append(1)))

    async def go():
        asyncio.get_running_loop().call_later(0.01, v.update, 5)
        return await v.wait_for(lambda x: x == 5, 1)

    assert asyncio.run(go()) == 5
    assert started == [1] and stopped == [1]


async def test_metrics_gauges():
    m = MetricsRegistry()
    it = DefaultInterpreter()
    it.register_metrics(m, "rt/outgoing")
    it.bind(Dtab.read("/svc => /$/inet/127.1/1"), Path.read("/svc/a"))
    assert m.get("rt/outgoing/bindcache/tree/size").value == 1
    assert m.get("rt/outgoing/bindcache/tree/misses").value == 1


def _measure(make, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = make(n)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


async def test_memory_per_cached_name(tmp_path, capsys):
    """Measures what one cached name costs (printed for the docs) and bounds it."""
    n = 1000
    for i in range(n):
        (tmp_path / f"s{i}").write_text(f"127.0.0.1 {1000 + i}\n")
    fs = FsNamer(tmp_path)
    # Warm up what is allocated once per process (the dtab parser, the loop's DNS bits).
    DefaultInterpreter([fs]).bind(Dtab.read("/svc => /#/io.l5d.fs"), Path.read("/svc/s0"))

    def static(n):
        it = DefaultInterpreter(cache_size=n)
        d = Dtab.read("/svc/* => /$/inet/127.1/8080")
        for i in range(n):
            it.bind(d, Path.of("svc", f"s{i}"))
        return it

    def via_fs(n):
        it = DefaultInterpreter([fs], cache_size=n)
        d = Dtab.read("/svc => /#/io.l5d.fs")
        acts = [it.bind(d, Path.of("svc", f"s{i}")) for i in range(n)]
        for a in acts:  # as the proxy does: observe the tree and the addresses
            for b in a.sample().value.leaves():
                b.addr.observe(lambda _: None)
        return it

    try:
        per_static = _measure(static, n)
        per_fs = _measure(via_fs, n)
    finally:
        await fs.close()
    with capsys.disabled():
        print(f"\nmemory per cached name: static /$/inet {per_static / 1024:.2f} KB, "
              f"fs namer (tree + addrs observed) {per_fs / 1024:.2f} KB")
    assert per_static < 8 * 1024
    assert per_fs < 24 * 1024
