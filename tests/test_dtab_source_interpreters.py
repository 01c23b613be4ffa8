"""io.l5d.consul.interpreter and io.l5d.k8s.configMap end to end: a real router (Linker
from YAML) whose dtab lives in Consul KV / a ConfigMap (the simulators), followed live,
through bad values, deletion and a backend outage."""
from __future__ import annotations

import json
import time

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.sim.consul_sim import ConsulSim
from tests.sim.k8s_sim import K8sApiSim
from tests.support.backends import Backend, curl
from tests.support.ports import free_port
from tests.support.routing import Traffic, reaches, route_status, until


def _dtab(port: int) -> str:
    return f"/svc/web => /$/inet/127.0.0.1/{port};"


async def _state(admin_port: int, path: str) -> dict:
    return json.loads((await curl("-s", f"http://127.0.0.1:{admin_port}{path}"))[1])


async def test_router_follows_a_dtab_in_consul_kv():
    async with ConsulSim() as sim, Backend("a") as a, Backend("b") as b, Backend("fallback") as fb:
        await sim.kv_set("namerd/dtabs/staging", _dtab(a.port).encode())
        router_port, admin_port = free_port(), free_port()
        linker = Linker(loads_linker(f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
routers:
- protocol: http
  interpreter:
    kind: io.l5d.consul.interpreter
    host: 127.0.0.1
    port: {sim.port}
    namespace: staging
  dtab: |
    /svc/web => /$/inet/127.0.0.1/{fb.port};
  servers: [{{port: {router_port}, ip: 127.0.0.1}}]
"""))
        await linker.start()
        try:
            # The Consul dtab comes first, the router's own dtab after it (it wins where both apply).
            code, out, _ = await curl("-s", "-H", "Host: web", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(fb.requests) == 1
            await sim.kv_set("namerd/dtabs/staging", f"/svc/api => /$/inet/127.0.0.1/{a.port};".encode())
            await until(lambda: reaches(router_port, a, "api"), 5, "the Consul dtab change was not followed")

            # A change during traffic: no request fails, routing follows within a second.
            traffic = Traffic(router_port, host="api").start()
            t0 = time.monotonic()
            await sim.kv_set("namerd/dtabs/staging", f"/svc/api => /$/inet/127.0.0.1/{b.port};".encode())
            await until(lambda: reaches(router_port, b, "api"), 5, "second change not followed")
            assert time.monotonic() - t0 < 1.0
            # Consul restarts: the last dtab stays in force.
            await sim.restart(downtime=0.3)
            await traffic.stop()
            assert set(traffic.statuses) == {200}, set(traffic.statuses)

            # Garbage in the key: the last good dtab stays, the admin page says why.
            await sim.kv_set("namerd/dtabs/staging", b"/svc/api => => nope")

            async def bad_seen():
                st = await _state(admin_port, "/interpreter_state/io.l5d.consul.interpreter.json")
                return st if st["error"] else None

            st = await until(bad_seen, 5, "the bad value was not noticed")
            assert "consul key namerd/dtabs/staging" in st["error"] and st["state"] == "ok"
            assert await reaches(router_port, b, "api")

            # The key is deleted: the empty dtab (Linkerd) — only the router's dtab applies.
            del sim.dcs[sim.datacenter].kv["namerd/dtabs/staging"]
            await sim.kv_set("namerd/dtabs/other", b"")  # bumps the index: blocked queries return

            async def api_gone():
                s, body = await route_status(router_port, "api")
                return s == 502 and "/svc/api" in body

            await until(api_gone, 5, "the deleted key still routed")
            assert await reaches(router_port, fb)
        finally:
            await linker.close()


async def test_router_follows_a_dtab_in_a_configmap():
    async with K8sApiSim() as sim, Backend("a") as a, Backend("b") as b:
        router_port, admin_port = free_port(), free_port()
        linker = Linker(loads_linker(f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
routers:
- protocol: http
  interpreter:
    kind: io.l5d.k8s.configMap
    experimental: true
    host: 127.0.0.1
    port: {sim.port}
    namespace: linkerd
    name: dtabs
    filename: outgoing
  servers: [{{port: {router_port}, ip: 127.0.0.1}}]
"""))
        await linker.start()
        try:
            # No ConfigMap yet: the empty dtab, so nothing routes (Linkerd waits for it the same way).
            status, body = await route_status(router_port)
            assert status == 502 and "/svc/web" in body
            sim.set_configmap("linkerd", "dtabs", {"outgoing": _dtab(a.port), "other": "/x => /y"})
            await until(lambda: reaches(router_port, a), 5, "the ConfigMap was not followed")
            sim.set_configmap("linkerd", "dtabs", {"outgoing": _dtab(b.port)})
            await until(lambda: reaches(router_port, b), 5, "the ConfigMap change was not followed")

            sim.set_configmap("linkerd", "dtabs", {"outgoing": "/svc/web => => nope"})

            async def bad_seen():
                st = await _state(admin_port, "/interpreter_state/io.l5d.k8s.configmap.json")
                return st if st["error"] else None

            st = await until(bad_seen, 5, "the bad value was not noticed")
            assert "ConfigMap linkerd/dtabs key outgoing" in st["error"]
            assert await reaches(router_port, b)  # last good dtab

            sim.delete("configmaps", "linkerd", "dtabs")

            async def gone():
                s, _ = await route_status(router_port)
                return s == 502

            await until(gone, 5, "a deleted ConfigMap still routed")
        finally:
            await linker.close()
