"""End to end: the real router over the default interpreter and the fs namer; editing a
service file moves live traffic (curl as the client, real backends)."""
from __future__ import annotations

import asyncio
import time

import aiohttp

from namerouter.metrics import MetricsRegistry
from namerouter.namers.fs import FsNamer
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.proxy.config import RouterConfig, ServerConfig
from namerouter.proxy.router import HttpRouter
from tests.support.backends import Backend
from tests.support.ports import free_port


async def curl(port: int, host: str) -> str:
    p = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}",
        f"http://127.0.0.1:{port}/pong", stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    return out.decode()


async def test_file_edit_moves_traffic_without_failed_requests(tmp_path):
    async with Backend("a") as a, Backend("b") as b:
        f = tmp_path / "web"
        f.write_text(f"127.0.0.1 {a.port}\n")
        fs = FsNamer(tmp_path)
        port = free_port()
        router = HttpRouter(
            RouterConfig(label="fs", dtab="/svc => /#/io.l5d.fs;", servers=[ServerConfig(port=port)]),
            DefaultInterpreter([fs]), MetricsRegistry())
        await router.start()
        try:
            assert await curl(port, "web") == "200" and len(a.requests) == 1
            assert await curl(port, "nope") == "502"  # no such file: no route

            # Keep traffic flowing while the file changes: nothing may fail.
            statuses: list[int] = []
            stop = asyncio.Event()

            async def load() -> None:
                async with aiohttp.ClientSession() as s:
                    while not stop.is_set():
                        async with s.get(f"http://127.0.0.1:{port}/pong", headers={"Host": "web"}) as r:
                            await r.read()
                            statuses.append(r.status)

            task = asyncio.ensure_future(load())
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            f.write_text(f"127.0.0.1 {b.port}\n")
            while not b.requests:
                assert time.monotonic() - t0 < 2, "the change never reached routing"
                await asyncio.sleep(0.005)
            latency = time.monotonic() - t0
            await asyncio.sleep(0.1)
            stop.set()
            await task
            print(f"\nfs edit -> first request routed to the new backend: {latency * 1000:.0f} ms; "
                  f"{len(statuses)} requests during the switch")
            assert statuses and set(statuses) == {200}
            settled = len(a.requests)
            assert await curl(port, "web") == "200" and len(a.requests) == settled
        finally:
            await router.close(1.0)
            await fs.close()
