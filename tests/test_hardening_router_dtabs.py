"""Issue 17 items 1 and 2 on the router: hostile request dtabs (``l5d-dtab``) against a
real router (the fs namer, a real backend), each attack sent as a client would.

Bounds checked: no recursion limit is reachable (every answer is a clear 200/400/502,
never "internal error"); memory comes back once the caches' idle TTL passes; a failure
is logged once per name, not per request; the work one request's dtab causes is bounded
(CPU time of the attack, the request budget); oversized request dtabs are refused.
"""
from __future__ import annotations

import gc
import logging
import time
import tracemalloc
from typing import Any

import aiohttp

from namerouter.namers.fs import FsNamer
from tests.support.backends import Backend, RouterHarness

DTAB = "/svc => /#/io.l5d.fs"


def alternation(n: int, unique: int) -> str:
    """The reported attack: an alternation of ``n`` branches that all miss (≥ 120 made
    binding hit Python's recursion limit), ending in the real service; plus a dentry
    that makes every request's dtab distinct (nothing is cached between requests)."""
    branches = " | ".join(f"/#/io.l5d.fs/b{i}" for i in range(n))
    return f"/u/{unique} => /x; /svc/web => {branches} | /#/io.l5d.fs/web"


def exponential(unique: int) -> str:
    """Every step doubles the distinct names to bind: Finagle would take 2**100 lookups."""
    return f"/u/{unique} => /x; /svc/web => /svc/web/a & /svc/web/b"


def doubling_chain(levels: int, port: int, unique: int) -> str:
    """The reported 436-byte "doubling chain": few lookups (they are memoised) but a bound
    tree of 2**levels leaves, which cost the router's thread 0.27-0.48 s per request."""
    chain = ";".join(f"/x{i} => /x{i + 1} & /x{i + 1}" for i in range(levels))
    return f"/u/{unique} => /x; {chain}; /x{levels} => /$/inet/127.0.0.1/{port}; /svc/web => /x0"


async def _get(s: aiohttp.ClientSession, port: int, dtab: str) -> tuple[int, str]:
    async with s.get(f"http://127.0.0.1:{port}/", headers={"Host": "web", "l5d-dtab": dtab}) as r:
        return r.status, await r.text()


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_wide_alternations_route_and_leave_no_memory_behind(tmp_path: Any) -> None:
    async with Backend("web") as web:
        (tmp_path / "web").write_text(f"127.0.0.1 {web.port}\n")
        fs = FsNamer(tmp_path)
        async with RouterHarness(DTAB, namers=[fs]) as h, aiohttp.ClientSession() as s:
            assert (await _get(s, h.port, "/a => /b"))[0] == 200  # warm: modules, pools
            tracemalloc.start()
            try:
                before = _traced()
                for i in range(300):
                    status, body = await _get(s, h.port, alternation(130, i))
                    assert status == 200, body[:300]
                during = _traced()
                # Idle TTLs pass: the route table and the binding cache let go.
                h.router.core.table.sweep(now=time.monotonic() + 10**6)
                for cache in (h.interpreter.cache, h.interpreter.request_cache):
                    cache.sweep(now=time.monotonic() + 10**6)
                after = _traced()
            finally:
                tracemalloc.stop()
        await fs.close()
    # While cached, a hostile request costs its parsed dtab and binding (~70 KB here; the
    # caches are bounded); once the TTLs pass, memory is back to where it started.
    assert during - before < 300 * 150_000, during - before
    assert after - before < 10 * 1024 * 1024, after - before


async def test_exponential_request_dtabs_fail_fast_with_one_log_line(tmp_path: Any, caplog: Any) -> None:
    async with Backend("web") as web:
        (tmp_path / "web").write_text(f"127.0.0.1 {web.port}\n")
        fs = FsNamer(tmp_path)
        async with RouterHarness(DTAB, namers=[fs]) as h, aiohttp.ClientSession() as s:
            with caplog.at_level(logging.INFO):
                t0 = time.process_time()
                answers = [await _get(s, h.port, exponential(i)) for i in range(50)]
                cpu = time.process_time() - t0
            # the configured dtab still works, under its own (larger) budget
            assert (await _get(s, h.port, "/a => /b"))[0] == 200
        await fs.close()
    # The request budget: a few ms each (10,000 lookups took ~0.3 s each; unbounded, minutes).
    assert cpu < 5.0, cpu
    for status, body in answers:
        assert status == 502 and "Binding too large: more than 1000 lookup steps" in body, body[:300]
    failures = [r for r in caplog.records if "binding /svc/web failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert "internal error" not in caplog.text


async def test_doubling_chain_request_dtabs_cost_little_cpu_each(tmp_path: Any) -> None:
    async with Backend("web") as web, RouterHarness("/a => /b") as h, aiohttp.ClientSession() as s:
        t0 = time.process_time()
        answers = [await _get(s, h.port, doubling_chain(24, web.port, i)) for i in range(20)]
        cpu = time.process_time() - t0
        # a small chain is a legitimate union and still routes
        assert (await _get(s, h.port, doubling_chain(3, web.port, 99)))[0] == 200
    # Each of these took 0.27-0.48 s of the router's only thread before the request budget.
    assert cpu < 2.0, cpu
    for status, body in answers:
        assert status == 502 and "Binding too large: a bound tree of more than 1000 nodes" in body, body[:300]


async def test_deeply_nested_request_dtab_is_a_clear_400() -> None:
    nested = "/svc/web => " + "(/a | " * 150 + "/b" + ")" * 150
    async with RouterHarness("/a => /b") as h, aiohttp.ClientSession() as s:
        status, body = await _get(s, h.port, nested)
    assert status == 400, body[:300]
    assert "nested deeper than 100 levels" in body


async def test_oversized_request_dtab_is_refused_without_parsing() -> None:
    big = ";".join(f"/s{i} => /b{i}" for i in range(8000))  # ~100 KB
    async with RouterHarness("/a => /b", maxHeadersKB=256) as h, aiohttp.ClientSession() as s:
        t0 = time.process_time()
        for _ in range(20):
            status, body = await _get(s, h.port, big)
            assert status == 400, body[:300]
            assert "over the limit of 8192 bytes (maxLocalDtabKB: 8)" in body
        cpu = time.process_time() - t0
        assert len(h.router.core.dtabs) == 0  # nothing parsed, nothing kept
    assert cpu < 2.0, cpu  # parsing each would take ~60 ms


async def test_a_repeated_bad_request_dtab_is_parsed_and_bound_once(tmp_path: Any) -> None:
    async with RouterHarness("/a => /b") as h, aiohttp.ClientSession() as s:
        for _ in range(10):
            assert (await _get(s, h.port, "/svc/web => /oops &"))[0] == 400
            assert (await _get(s, h.port, exponential(0)))[0] == 502
        assert len(h.router.core.dtabs) == 2  # one parse each, failures included
        assert h.interpreter.request_cache.stats()["misses"] == 1  # the failed binding is cached (with the request dtabs' own bound)


async def test_unique_request_dtabs_are_bounded_apart_and_never_evict_configured_names(tmp_path: Any) -> None:
    """bindingCache.requestDtabPaths: the route stages and bindings made for request
    dtabs have their own bound, so a flood of unique ``l5d-dtab`` values holds at most
    that many, and the configured name's binding (and stage) stay warm through it."""
    from namerouter.naming.interpreter import DefaultInterpreter

    async with Backend("web") as web:
        (tmp_path / "web").write_text(f"127.0.0.1 {web.port}\n")
        fs = FsNamer(tmp_path)
        interp = DefaultInterpreter(namers=[fs], cache_size=50, request_cache_size=20)
        async with RouterHarness(DTAB, interpreter=interp, bindingCache={"paths": 50, "requestDtabPaths": 20}) as h, \
                aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{h.port}/", headers={"Host": "web"}) as r:
                assert r.status == 200
            table = h.router.core.table
            configured = interp.cache.keys()
            assert len(configured) == 1 and len(table.routes) == 1
            for i in range(200):  # 4 x the whole cache, 10 x the request bound
                status, body = await _get(s, h.port, alternation(5, i))
                assert status == 200, body[:300]
                assert table.request_routes <= 20 and len(interp.request_cache) <= 20
            assert interp.cache.keys() == configured, "a request dtab evicted a configured binding"
            assert sum(1 for r in table.routes.values() if r.local is None) == 1
            assert table.request_routes == sum(1 for r in table.routes.values() if r.local is not None)
            assert interp.request_cache.stats()["evicts"] >= 180
        await fs.close()
