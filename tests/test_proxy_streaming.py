"""Streaming through the router: 1 GB each way in bounded memory, 100-continue, Upgrade.

The big transfers use curl as the client (a separate process) so the RSS measured is
the test process's: router + backend. Both must stream with backpressure: RSS may not
grow by more than a few socket buffers' worth while 1 GB passes.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from tests.support.backends import Backend, RawClient, RouterHarness, get

GB = 1 << 30
#: Allowed RSS growth while 1 GB passes (socket buffers, allocator slack); the body is 1024 MB.
#: Measured here with backpressure: < 1 MB; with the download pause disabled: ~33 MB.
MAX_GROWTH_MB = 16


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


class PeakRss:
    """Samples this process's RSS every 20 ms while a transfer runs."""

    def __init__(self) -> None:
        self.start = rss_mb()
        self.peak = self.start
        self._task = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb())
            await asyncio.sleep(0.02)

    def __enter__(self) -> "PeakRss":
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc) -> None:
        self._task.cancel()
        self.peak = max(self.peak, rss_mb())

    @property
    def growth(self) -> float:
        return self.peak - self.start


async def run(*cmd: str) -> str:
    p = await asyncio.create_subprocess_shell(" ".join(cmd), stdout=asyncio.subprocess.PIPE,
                                              stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 120)
    assert p.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.timeout(120)
async def test_1gb_download_passes_in_bounded_memory():
    async with Backend("big") as b, RouterHarness(f"/svc/big => /$/inet/127.1/{b.port}") as h:
        for q in ("", "&chunked=1"):
            with PeakRss() as mem:
                out = await run("curl -sS -o /dev/null -w '%{size_download} %{http_code}'",
                                f"-H 'Host: big' 'http://127.0.0.1:{h.port}/stream?bytes={GB}{q}'")
            assert out == f"{GB} 200", out
            print("download growth MB", round(mem.growth, 1))
            assert mem.growth < MAX_GROWTH_MB, f"RSS grew {mem.growth:.1f} MB during a 1 GB download"


@pytest.mark.timeout(120)
async def test_1gb_upload_passes_in_bounded_memory():
    async with Backend("big", hash_bodies=False) as b, RouterHarness(f"/svc/big => /$/inet/127.1/{b.port}") as h:
        # chunked upload (curl -T - streams stdin with Transfer-Encoding: chunked)
        with PeakRss() as mem:
            out = await run(f"head -c {GB} /dev/zero | curl -sS -T - -H 'Host: big' -H 'Expect:'",
                            f"'http://127.0.0.1:{h.port}/upload'")
        assert json.loads(out)["bytes"] == GB
        print("upload growth MB", round(mem.growth, 1))
        assert mem.growth < MAX_GROWTH_MB, f"RSS grew {mem.growth:.1f} MB during a 1 GB upload"
        # Content-Length upload (generated here, written with drain(): curl would buffer it)
        with PeakRss() as mem:
            async with RawClient(h.port) as c:
                await c.send(b"POST /upload HTTP/1.1\r\nHost: big\r\nContent-Length: %d\r\n\r\n" % GB)
                block = b"z" * (1 << 20)
                for _ in range(GB // len(block)):
                    c.writer.write(block)
                    await c.writer.drain()
                r = await c.read_response(timeout=60)
        assert r.json()["bytes"] == GB
        print("upload growth MB", round(mem.growth, 1))
        assert mem.growth < MAX_GROWTH_MB, f"RSS grew {mem.growth:.1f} MB during a 1 GB upload"


async def test_slow_reader_gets_everything():
    """Backpressure towards a client that reads slowly: nothing lost, nothing reordered."""
    async with Backend("big") as b, RouterHarness(f"/svc/big => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            n = 8 * 1024 * 1024
            await c.send(get(f"/stream?bytes={n}", host="big"))
            head = await c.reader.readuntil(b"\r\n\r\n")
            assert b"200" in head.split(b"\r\n")[0]
            got = bytearray()
            while len(got) < n:
                got += await c.reader.read(65536)
                if len(got) < 1 << 20:
                    await asyncio.sleep(0.002)
            assert bytes(got) == (b"0123456789abcdef" * (n // 16))


async def test_expect_100_continue_is_relayed():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            body = b"x" * 5000
            await c.send(b"POST /upload HTTP/1.1\r\nHost: pong\r\nExpect: 100-continue\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body))
            interim = await c.read_response()
            assert interim.status == 100
            await c.send(body)
            r = await c.read_response()
            assert r.status == 200 and r.json()["bytes"] == 5000
            # the connection is still usable
            await c.send(get("/pong"))
            assert (await c.read_response()).body == b"pong"
        # a backend that refuses before the body: 417 reaches the client, which never sends it
        async with RawClient(h.port) as c:
            await c.send(b"POST /expect-reject HTTP/1.1\r\nHost: pong\r\nExpect: 100-continue\r\n"
                         b"Content-Length: 100000\r\n\r\n")
            r = await c.read_response()
            assert r.status == 417
        # curl does the 100-continue dance by itself
        from tests.support.backends import curl

        rc, out, err = await curl("-H", "Host: pong", "-H", "Expect: 100-continue", "--data-binary",
                                  "x" * 2000, f"http://127.0.0.1:{h.port}/upload")
        assert json.loads(out)["bytes"] == 2000, err


async def test_upgrade_is_tunnelled_both_ways():
    async with Backend("ws") as b, RouterHarness(f"/svc/ws => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            await c.send(b"GET /chat HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            r = await c.read_response()
            assert r.status == 101
            assert r.header("upgrade") == "websocket"
            for msg in (b"hello", b"\x00\x01binary\xff", b"more"):
                await c.send(msg)
                got = await asyncio.wait_for(c.reader.readexactly(5 + len(msg)), 5)
                assert got == b"echo:" + msg
        assert b.last.header("upgrade") == "websocket"
        assert "upgrade" in (b.last.header("connection") or "").lower()
        assert h.metric(f"rt/outgoing/server/127.0.0.1/{h.port}/status/101") == 1
