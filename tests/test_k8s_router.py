"""End to end: the real router (Linker from YAML) routing through io.l5d.k8s while the
Kubernetes API simulator changes, restarts, expires watches, and is absent at start-up."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.sim.k8s_sim import K8sApiSim, subset
from tests.support.backends import Backend, curl
from tests.support.ports import free_port
from tests.support.routing import Traffic, route_status, until_routed


def config(sim: K8sApiSim, router_port: int, admin_port: int) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.k8s
  host: 127.0.0.1
  port: {sim.port}
routers:
- protocol: http
  label: outgoing
  dtab: |
    /k8s => /#/io.l5d.k8s/prod;
    /svc => /k8s/http;
    /svc/numbered => /k8s/80/web;
  servers:
  - {{port: {router_port}, ip: 127.0.0.1}}
"""


def endpoints(sim: K8sApiSim, port: int) -> None:
    sim.set_endpoints("prod", "web", [subset([("127.0.0.1", "node-a")], {"http": port},
                                             not_ready=[("127.0.0.2", "node-b")])])


async def test_router_follows_k8s_and_survives_restart_and_expiry():
    sim = K8sApiSim()
    await sim.start()
    router_port, admin_port = free_port(), free_port()
    async with Backend("a") as a, Backend("b") as b:
        endpoints(sim, a.port)
        sim.set_service("prod", "web", [{"name": "http", "port": 80, "targetPort": b.port}])
        linker = Linker(loads_linker(config(sim, router_port, admin_port)))
        await linker.start()
        try:
            code, out, _ = await curl("-H", "Host: web", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(a.requests) == 1
            # numeric port: through the Service's targetPort
            assert await route_status(router_port, "numbered") == (200, "pong") and len(b.requests) == 1

            # API server restart and an expired watch in the middle of traffic: no failures.
            traffic = Traffic(router_port).start()
            await asyncio.sleep(0.2)
            await sim.stop()
            await asyncio.sleep(0.4)
            await sim.start()
            await asyncio.sleep(0.2)
            sim.expire_watches()
            await asyncio.sleep(0.2)
            await traffic.stop()
            assert len(traffic.statuses) > 50 and set(traffic.statuses) == {200}, set(traffic.statuses)

            namer = linker.namers[0]
            deadline = time.monotonic() + 12
            while sim.open_watches < 2:  # endpoints + services watches are back
                assert time.monotonic() < deadline, namer.admin_state()
                await asyncio.sleep(0.02)
            # A rollout moves web to b's port: routing follows soon after the event (figure
            # recorded; target under 200 ms; the bound is generous because the machine is shared).
            n_b = len(b.requests)
            t0 = time.monotonic()
            endpoints(sim, b.port)
            while True:
                status, _ = await route_status(router_port)
                if len(b.requests) > n_b:
                    break
                assert time.monotonic() - t0 < 5, "routing did not follow k8s within 5 s"
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - t0
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.k8s.json") as r:
                    state = json.loads(await r.text())
                async with s.get(f"http://127.0.0.1:{admin_port}/bound-names.json") as r:
                    names = json.loads(await r.text())
            assert state["names"]["/#/io.l5d.k8s/prod/http/web"]["type"] == "bound"
            assert "/#/io.l5d.k8s/prod/http/web" in names
            print(f"k8s change -> routing: {elapsed * 1000:.1f} ms")
        finally:
            await linker.close()
            await sim.stop()


async def test_router_k8s_api_absent_at_startup_then_appears():
    sim = K8sApiSim()
    router_port, admin_port = free_port(), free_port()
    async with Backend("a") as a:
        endpoints(sim, a.port)
        linker = Linker(loads_linker(config(sim, router_port, admin_port)))
        await linker.start()
        try:
            status, _ = await route_status(router_port)
            assert status >= 400
            await sim.start()
            assert await until_routed(router_port, 12) == "pong"
        finally:
            await linker.close()
            await sim.stop()
