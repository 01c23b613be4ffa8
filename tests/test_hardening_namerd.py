"""Issue 17 items 1, 2 and 4 on namerd: hostile ``dtab`` parameters on the bind API
(directly and through a router's ``io.l5d.namerd.http``), big dtab bodies, and watch
clients that never read — each sent to a real namerd over real HTTP.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
import tracemalloc
from typing import Any, Optional

import aiohttp
import pytest

from namerd.storage.memory import InMemoryDtabStore
from namerouter.dtab import Dtab
from namerouter.interpreters.namerd_http import NamerdHttpConfig, NamerdHttpInterpreter, NamerdRetryConfig
from namerouter.namers.fs import FsNamer
from tests.namerd_support import start_namerd
from tests.support.backends import Backend, RouterHarness
from tests.test_hardening_router_dtabs import alternation, exponential


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _bind(http: aiohttp.ClientSession, n: Any, dtab: str) -> tuple[int, str]:
    async with http.get(f"{n.url}/api/1/bind/default", params={"path": "/svc/web", "dtab": dtab}) as r:
        return r.status, await r.text()


async def test_bind_api_survives_hostile_dtabs_and_keeps_no_memory(tmp_path: Any, http: Any, caplog: Any) -> None:
    (tmp_path / "web").write_text("127.0.0.1 8080\n")
    fs = FsNamer(tmp_path)
    n = await start_namerd(InMemoryDtabStore({"default": Dtab.read("/svc=>/#/io.l5d.fs")}), [fs])
    try:
        assert (await _bind(http, n, "/a=>/b"))[0] == 200  # warm
        tracemalloc.start()
        try:
            before = _traced()
            for i in range(200):
                status, body = await _bind(http, n, alternation(130, i))
                assert status == 200 and "/#/io.l5d.fs/web" in body, body[:300]
            with caplog.at_level(logging.INFO):
                for i in range(30):
                    status, body = await _bind(http, n, exponential(i))
                    assert status == 400, body[:300]
                    assert body.startswith("Invalid dtab: Binding too large: more than 1000 lookup steps")
            for cache in (n.interpreter.cache, n.interpreter.request_cache):
                cache.sweep(now=time.monotonic() + 10**6)  # the idle TTL passes
            after = _traced()
        finally:
            tracemalloc.stop()
    finally:
        await n.close()
        await fs.close()
    assert after - before < 10 * 1024 * 1024, after - before
    assert len([r for r in caplog.records if "binding /svc/web failed" in r.getMessage()]) == 1


async def test_router_over_namerd_http_gives_up_on_a_hostile_request_dtab(tmp_path: Any) -> None:
    """The router's bind stream gets a final 400 from namerd: a clear 502 for the client at
    once, and no stream left retrying against namerd afterwards."""
    async with Backend("web") as web:
        (tmp_path / "web").write_text(f"127.0.0.1 {web.port}\n")
        fs = FsNamer(tmp_path)
        n = await start_namerd(InMemoryDtabStore({"default": Dtab.read("/svc=>/#/io.l5d.fs")}), [fs])
        interp = NamerdHttpInterpreter(NamerdHttpConfig(
            dst=f"/$/inet/127.0.0.1/{n.http_ports[0]}",
            retry=NamerdRetryConfig(baseSeconds=0.05, maxSeconds=0.5, probeSeconds=0.2)))
        await interp.start()
        try:
            async with RouterHarness("", interpreter=interp, bindingTimeoutMs=5000) as h, \
                    aiohttp.ClientSession() as s:
                for i in range(5):
                    async with s.get(f"http://127.0.0.1:{h.port}/",
                                     headers={"Host": "web", "l5d-dtab": exponential(i)}) as r:
                        body = await r.text()
                        assert r.status == 502 and "Binding too large" in body, body[:300]
                async with s.get(f"http://127.0.0.1:{h.port}/", headers={"Host": "web"}) as r:
                    assert r.status == 200
                watches = [w for w in interp._binds.entries.values() if w.dtab.dentries]
                assert len(watches) == 5 and all(w.failed_permanently for w in watches)
                assert n.metrics.counter("namerd/http/status/400").value == 5
        finally:
            await interp.close()
            await n.close()
            await fs.close()


def _realistic(n: int) -> str:
    return ";\n".join(f"/svc/s{i} => /#/io.l5d.fs/s{i} | /$/inet/127.0.0.1/{i % 60000}" for i in range(n))


def test_parsing_is_linear_and_a_megabyte_parses_well_under_a_second() -> None:
    small, big = _realistic(1800), _realistic(18000)  # ~100 KB and ~1 MB
    assert 1_000_000 < len(big) < 1_100_000
    Dtab.read(small)  # warm
    t0 = time.process_time()
    Dtab.read(small)
    t_small = time.process_time() - t0
    t0 = time.process_time()
    Dtab.read(big)
    t_big = time.process_time() - t0
    assert t_big < 1.0, t_big
    assert t_big < 20 * t_small, (t_small, t_big)  # 10x the text, about 10x the time


async def test_a_big_dtab_put_does_not_block_other_requests(http: Any) -> None:
    n = await start_namerd(InMemoryDtabStore({"default": Dtab.read("/svc=>/#/io.l5d.fs")}),
                           max_dtab_bytes=4 * 1024 * 1024)
    body = _realistic(40000).encode()  # ~2.3 MB: over a second of parsing on the loop
    lags: list[float] = []
    done = asyncio.Event()

    async def ping() -> None:
        while not done.is_set():
            t0 = time.monotonic()
            async with http.get(f"{n.url}/api/1/dtabs") as r:
                assert r.status == 200
                await r.read()
            lags.append(time.monotonic() - t0)
            await asyncio.sleep(0.005)

    try:
        pinger = asyncio.ensure_future(ping())
        await asyncio.sleep(0.05)
        async with http.put(f"{n.url}/api/1/dtabs/big", data=body,
                            headers={"Content-Type": "application/dtab"}) as r:
            assert r.status == 204, await r.text()
        done.set()
        await pinger
        async with http.get(f"{n.url}/api/1/dtabs/big", headers={"Accept": "application/dtab"}) as r:
            assert len(Dtab.read(await r.text())) == 40000
    finally:
        await n.close()
    # Parsed on the loop, every other request waited for the whole parse (> 1 s here).
    assert max(lags) < 0.5, sorted(lags)[-5:]


async def test_dtabs_over_the_size_limit_are_413(http: Any) -> None:
    n = await start_namerd(InMemoryDtabStore({}))
    try:
        over = ("/a=>/b;" * (1024 * 1024 // 7 + 1)).encode()
        assert len(over) > 1024 * 1024
        async with http.put(f"{n.url}/api/1/dtabs/x", data=over, headers={"Content-Type": "application/dtab"}) as r:
            assert r.status == 413
            assert "over the limit of 1048576 bytes (maxDtabKB: 1024)" in await r.text()
        async with http.post(f"{n.url}/api/1/delegate", json={"path": "/a", "dtab": over.decode()}) as r:
            assert r.status == 413
        async with http.get(f"{n.url}/api/1/dtabs") as r:
            assert await r.json() == []  # nothing stored
    finally:
        await n.close()


class _Sleeper:
    """A watch client that sends its request and then never reads (small receive buffer)."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: namerd\r\nAccept: application/dtab\r\n\r\n".encode())

    def closed_by_server(self, within: float = 10.0) -> bool:
        """Read what the server queued until its FIN (True) or ``within`` seconds pass.
        The server's kernel still holds the bytes it sent before closing; they and the FIN
        arrive only as this reader opens its window, so one non-blocking read can race."""
        self.sock.settimeout(within)
        try:
            while True:
                if not self.sock.recv(1 << 20):
                    return True
        except socket.timeout:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.sock.close()


def _dtab_text(version: int) -> bytes:
    """~500 KB of dtab that parses in a millisecond (long labels: few tokens)."""
    label = f"v{version}" + "a" * 50_000
    return ";".join(f"/svc/s{i} => /#/io.l5d.fs/{label}" for i in range(10)).encode()


async def _put(http: Any, url: str, body: bytes) -> None:
    async with http.put(url, data=body, headers={"Content-Type": "application/dtab"}) as r:
        assert r.status == 204, await r.text()


async def test_watchers_that_never_read_hold_only_the_newest_state(http: Any) -> None:
    n = await start_namerd(InMemoryDtabStore({"big": Dtab.read(_dtab_text(0).decode())}))
    sleepers: list[_Sleeper] = []
    try:
        url = f"{n.url}/api/1/dtabs/big"
        sleepers = [_Sleeper(n.http_ports[0], "/api/1/dtabs/big?watch=1") for _ in range(5)]
        while n.controller.open_streams["dtab"] < 5:
            await asyncio.sleep(0.01)
        for v in range(1, 6):  # fill the sockets' kernel buffers: the writers now block
            await _put(http, url, _dtab_text(v))
        tracemalloc.start()
        try:
            before = _traced()
            for v in range(6, 46):
                await _put(http, url, _dtab_text(v))
            grown = _traced() - before
        finally:
            tracemalloc.stop()
    finally:
        for s in sleepers:
            s.close()
        await n.close()
    # Queued, 40 changes x 5 watchers x ~500 KB would be ~100 MB; coalesced, each watcher
    # holds one state (shared with the store) and whatever its socket has not taken.
    assert grown < 10 * 1024 * 1024, grown


async def test_a_watcher_that_stays_behind_is_disconnected(http: Any) -> None:
    n = await start_namerd(InMemoryDtabStore({"big": Dtab.read(_dtab_text(0).decode())}),
                           watch_stall_timeout=0.3)
    sleeper: Optional[_Sleeper] = None
    try:
        sleeper = _Sleeper(n.http_ports[0], "/api/1/dtabs/big?watch=1")
        while n.controller.open_streams["dtab"] < 1:
            await asyncio.sleep(0.01)
        stalled = n.metrics.counter("namerd/http/streams/stalled_closed")
        v = 1
        deadline = time.monotonic() + 20
        while stalled.value == 0:
            assert time.monotonic() < deadline, "the stalled watcher was never closed"
            await _put(http, f"{n.url}/api/1/dtabs/big", _dtab_text(v))
            v += 1
            await asyncio.sleep(0.1)
        while n.controller.open_streams["dtab"] > 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert sleeper.closed_by_server()
    finally:
        if sleeper is not None:
            sleeper.close()
        await n.close()


async def test_a_large_dtab_is_rendered_once_for_all_its_watchers(http: Any, monkeypatch: Any) -> None:
    """20 watchers wake on the same change of a large dtab: one render (off the loop)
    serves them all, instead of 20 renders holding the interpreter (item 4's stalls)."""
    import namerd.api as api

    renders: list[int] = []
    real = api.render_dtab

    def counting(dtab: Dtab, codec: str) -> bytes:
        renders.append(len(dtab))
        return real(dtab, codec)

    monkeypatch.setattr(api, "render_dtab", counting)

    def big(v: int) -> bytes:
        return ";".join(f"/s{v}/{i} => /#/io.l5d.fs/b{i}" for i in range(3000)).encode()

    n = await start_namerd(InMemoryDtabStore({"big": Dtab.read(big(0).decode())}))
    watchers: list[Any] = []
    try:
        url = f"{n.url}/api/1/dtabs/big"
        for _ in range(20):
            r = await http.get(url + "?watch=1", headers={"Accept": "application/dtab"})
            watchers.append(r)
        for r in watchers:  # everyone has the first version (rendered once, then cached)
            assert b"/s0/0=>" in await r.content.readuntil(b"\n")
        renders.clear()
        await _put(http, url, big(1))
        for r in watchers:
            assert b"/s1/0=>" in await asyncio.wait_for(r.content.readuntil(b"\n"), 30)
        assert renders == [3000], renders
    finally:
        for r in watchers:
            r.close()
        await n.close()
