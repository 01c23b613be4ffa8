"""io.l5d.marathon end to end: a real router (Linker from YAML, Linkerd's marathon.yaml
dtab) against the Marathon simulator with basic authentication, through task changes,
health checks, IP-per-task apps, a Marathon outage and an app's removal."""
from __future__ import annotations

import asyncio
import base64
import json

import pytest

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker, StartupError
from namerouter.namers.marathon import endpoint_of_dst, task_endpoints
from tests.sim.marathon_sim import MarathonSim, task
from tests.support.backends import Backend, curl
from tests.support.ports import free_port
from tests.support.routing import reaches, route_status, until


def config(sim: MarathonSim, router_port: int, admin_port: int) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.marathon
  host: 127.0.0.1
  port: {sim.port}
  ttlMs: 100
  useHealthCheck: true
routers:
- protocol: http
  dtab: |
    /marathonId => /#/io.l5d.marathon;
    /host       => /$/io.buoyant.http.domainToPathPfx/marathonId;
    /svc        => /host;
  servers: [{{port: {router_port}, ip: 127.0.0.1}}]
"""


async def test_router_follows_marathon_apps(monkeypatch):
    monkeypatch.setenv("MARATHON_HTTP_AUTH_CREDENTIAL", base64.b64encode(b"l5d:secret").decode())
    monkeypatch.delenv("DCOS_SERVICE_ACCOUNT_CREDENTIAL", raising=False)
    async with MarathonSim(credentials="l5d:secret") as sim, Backend("a") as a, Backend("b") as b, \
            Backend("c") as c:
        # One healthy task on a, one still staging on b (excluded by useHealthCheck).
        sim.set_app("/prod/api/users", [task("127.0.0.1", a.port, alive=[True]),
                                        task("127.0.0.1", b.port, state="TASK_STAGING")], health_checks=1)
        sim.set_app("/web", [task("agent-1.invalid", 31000, ip="127.0.0.1")], discovery_ports=[c.port])
        router_port, admin_port = free_port(), free_port()
        linker = Linker(loads_linker(config(sim, router_port, admin_port)))
        await linker.start()
        try:
            for _ in range(5):
                assert await reaches(router_port, a, "users.api.prod")
            assert not b.requests
            # The shortest app id that prefixes the name wins; the rest is the residual.
            assert await reaches(router_port, a, "v1.users.api.prod")
            assert a.requests[-1].header("l5d-dst-residual") == "/v1"
            assert a.requests[-1].header("l5d-dst-client") == "/#/io.l5d.marathon/prod/api/users"
            # IP-per-task: the task's IP and the app's discovery port (not the agent host).
            assert await reaches(router_port, c, "web")

            # The tasks change: b becomes healthy, a goes away.
            sim.set_app("/prod/api/users", [task("127.0.0.1", b.port, alive=[True])], health_checks=1)
            await until(lambda: reaches(router_port, b, "users.api.prod"), 5, "new tasks not followed")

            # Marathon goes away: the last known tasks keep routing.
            await sim.stop()
            await asyncio.sleep(0.5)
            for _ in range(5):
                assert await reaches(router_port, b, "users.api.prod")
            state = json.loads((await curl("-s", f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.marathon.json"))[1])
            assert state["names"]["/prod/api/users"]["lastError"], state
            await sim.start()

            # The app is destroyed: neg, and the router says which name failed.
            sim.remove_app("/prod/api/users")

            async def gone():
                status, body = await route_status(router_port, "users.api.prod")
                return status == 502 and body

            body = await until(gone, 5, "a removed app still routed")
            assert "/svc/users.api.prod" in body
        finally:
            await linker.close()


async def test_wrong_credentials_fail_the_lookup_with_the_reason(monkeypatch):
    monkeypatch.setenv("MARATHON_HTTP_AUTH_CREDENTIAL", base64.b64encode(b"l5d:wrong").decode())
    async with MarathonSim(credentials="l5d:secret") as sim:
        sim.set_app("/web", [task("127.0.0.1", 1)])
        router_port, admin_port = free_port(), free_port()
        linker = Linker(loads_linker(config(sim, router_port, admin_port)))
        await linker.start()
        try:
            status, body = await route_status(router_port, "web")
            assert status == 502 and "401" in body, body
        finally:
            await linker.close()


async def test_dcos_login_is_refused_clearly(monkeypatch):
    monkeypatch.setenv("DCOS_SERVICE_ACCOUNT_CREDENTIAL", '{"uid": "x"}')
    linker = Linker(loads_linker(config(MarathonSim(), free_port(), free_port())))
    with pytest.raises(StartupError) as e:
        await linker.start()
    await linker.close()
    assert "DCOS_SERVICE_ACCOUNT_CREDENTIAL" in str(e.value)


def test_task_selection_rules():
    app = {"healthChecks": [{}, {}], "tasks": [
        {"host": "h1", "ports": [1], "state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}, {"alive": True}]},
        {"host": "h2", "ports": [2], "state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}]},
        {"host": "h3", "ports": [3], "state": "TASK_KILLING", "healthCheckResults": [{"alive": True}] * 2},
        {"host": "h4", "ports": [], "state": "TASK_RUNNING"},
    ]}
    assert task_endpoints(app, True) == [("h1", 1)]
    assert task_endpoints(app, False) == [("h1", 1), ("h2", 2), ("h3", 3)]
    assert endpoint_of_dst("/$/inet/marathon.local/8080") == ("marathon.local", 8080)
    with pytest.raises(ValueError):
        endpoint_of_dst("/$/io.buoyant.namer.zk.leader/localhost:2181/marathon/leader")
