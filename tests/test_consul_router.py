"""End to end: the real router (Linker from YAML) routing through io.l5d.consul while the
Consul simulator changes, restarts, and is absent at start-up."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.sim.consul_sim import ConsulSim
from tests.support.backends import Backend, curl
from tests.support.ports import free_port
from tests.support.routing import Traffic, route_status, until_routed


def config(sim: ConsulSim, router_port: int, admin_port: int) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {sim.port}
  useHealthCheck: true
  healthStatuses: [passing, warning]
  consistencyMode: stale
  setHost: false
routers:
- protocol: http
  label: outgoing
  dtab: /svc => /#/io.l5d.consul/.local;
  servers:
  - {{port: {router_port}, ip: 127.0.0.1}}
"""


async def test_router_follows_consul_and_survives_restart():
    sim = ConsulSim()
    await sim.start()
    router_port, admin_port = free_port(), free_port()
    async with Backend("a") as a, Backend("b") as b:
        await sim.register("node-a", "127.0.0.1", service="web", service_id="web-a", port=a.port, status="passing")
        linker = Linker(loads_linker(config(sim, router_port, admin_port)))
        await linker.start()
        try:
            code, out, err = await curl("-H", "Host: web", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(a.requests) == 1

            # Consul restarts in the middle of traffic: no request for the known service fails.
            traffic = Traffic(router_port).start()
            await asyncio.sleep(0.2)
            await sim.stop()
            await asyncio.sleep(0.5)
            await sim.start()
            await asyncio.sleep(0.2)
            await traffic.stop()
            assert len(traffic.statuses) > 50 and set(traffic.statuses) == {200}, set(traffic.statuses)

            # The watch has reconnected (bounded backoff) ...
            namer = linker.namers[0]
            deadline = time.monotonic() + 8
            while not any(w.index is not None and w._task is not None for w in namer._running.values()):
                assert time.monotonic() < deadline, namer.admin_state()
                await asyncio.sleep(0.02)
            # ... so a change reaches the routing soon after the event (figure recorded;
            # target under 200 ms; the bound is generous because the machine is shared).
            await sim.register("node-b", "127.0.0.1", service="web", service_id="web-b", port=b.port,
                               status="passing")
            t0 = time.monotonic()
            await sim.deregister("node-a", service_id="web-a")
            n_b = len(b.requests)
            while True:
                status, body = await route_status(router_port)
                if len(b.requests) > n_b:
                    break
                assert time.monotonic() - t0 < 5, "routing did not follow consul within 5 s"
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - t0
            # a warning check still routes (healthStatuses includes warning), critical does not
            await sim.set_check("node-b", "service:web-b", "warning")
            assert (await route_status(router_port))[0] == 200
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.consul.json") as r:
                    state = json.loads(await r.text())
            assert state["/#/io.l5d.consul/.local/web"]["poll"]["datacenter"] == "dc1"
            print(f"consul change -> routing: {elapsed * 1000:.1f} ms")
        finally:
            await linker.close()
            await sim.stop()


async def test_router_consul_absent_at_startup_then_appears():
    sim = ConsulSim()
    router_port, admin_port = free_port(), free_port()
    async with Backend("a") as a:
        linker = Linker(loads_linker(config(sim, router_port, admin_port)))
        await linker.start()  # Consul is down: the router still starts
        try:
            status, _ = await route_status(router_port)
            assert status >= 400  # no such name yet, a clear error rather than a hang
            await sim.start()
            await sim.register("node-a", "127.0.0.1", service="web", port=a.port, status="passing")
            assert await until_routed(router_port, 8) == "pong"
        finally:
            await linker.close()
            await sim.stop()
