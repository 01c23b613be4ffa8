"""What the admin dashboard costs with many names: the sampler's CPU per tick and the
size and time of one ``/admin/dashboard.json`` answer.

    .venv/bin/python bench/dashboard_bench.py [--names 1000 --ticks 30]

The registry holds ``--names`` services and as many clients, recorded with the data
plane's own ``RequestStats`` (the same metric objects a router creates), plus one server.
Between two ticks every scope records one request, so each tick works on every scope
(the worst case: 2 × names active scopes). The JSON is fetched from a real admin server
(aiohttp, loopback), the default page of 25 services and 25 clients.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp  # noqa: E402

from namerouter.admin.app import AdminServer, build_admin_app  # noqa: E402
from namerouter.admin.dashboard import DashboardSampler, dashboard_routes  # noqa: E402
from namerouter.metrics import MetricsRegistry  # noqa: E402
from namerouter.proxy.stats import RequestStats  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=30)
    args = ap.parse_args()
    reg = MetricsRegistry()
    rng = random.Random(1)
    scopes = [RequestStats(reg, "rt/out/server/127.0.0.1/4140/")]
    scopes += [RequestStats(reg, f"rt/out/service/svc/name-{i:04d}/") for i in range(args.names)]
    scopes += [RequestStats(reg, f"rt/out/client/$/inet/127.0.0.1/{10000 + i}/") for i in range(args.names)]

    def traffic() -> None:
        for s in scopes:
            s.record(500 if rng.random() < 0.01 else 200, rng.lognormvariate(0, 0.6))

    sampler = DashboardSampler(reg, tick_s=3600)  # ticks driven by hand below
    traffic()
    sampler.tick()
    cpu = []
    for _ in range(args.ticks):
        traffic()
        t0 = time.process_time()
        sampler.tick()
        cpu.append((time.process_time() - t0) * 1000)
    print(f"registry: {len(reg)} metrics; {len(sampler.scopes)} scopes sampled")
    print(f"sampler tick with {2 * args.names + 1} active scopes: median {statistics.median(cpu):.1f} ms CPU "
          f"(min {min(cpu):.1f}, max {max(cpu):.1f}) -> {statistics.median(cpu) / 10:.1f} % of one core at 1 tick/s")

    app = build_admin_app(reg, {}, dashboard_routes(reg, lambda: {}, sampler))
    server = AdminServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{server.port}/admin/dashboard.json"
            times, size = [], 0
            for _ in range(20):
                t0 = time.perf_counter()
                async with s.get(url) as r:
                    body = await r.read()
                times.append((time.perf_counter() - t0) * 1000)
                size = len(body)
            print(f"/admin/dashboard.json (25 services + 25 clients of {args.names} each): {size / 1024:.1f} KiB, "
                  f"median {statistics.median(times):.1f} ms per answer")
    finally:
        await server.close()
        sampler.close()


if __name__ == "__main__":
    asyncio.run(main())
