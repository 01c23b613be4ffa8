"""io.l5d.k8s.ns and io.l5d.k8s.external end to end: a real router (Linker from YAML)
against the Kubernetes API simulator."""
from __future__ import annotations

import json

import pytest

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker, StartupError
from namerouter.namers.k8s_external import ingress_hosts, service_port
from tests.sim.k8s_sim import K8sApiSim, subset
from tests.support.backends import Backend, curl
from tests.support.ports import free_port
from tests.support.routing import reaches, route_status, until


def ns_config(sim: K8sApiSim, router_port: int, env_var: str = "MY_POD_NAMESPACE") -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {free_port()}}}
namers:
- kind: io.l5d.k8s.ns
  host: 127.0.0.1
  port: {sim.port}
  envVar: {env_var}
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.k8s.ns/http;
  servers: [{{port: {router_port}, ip: 127.0.0.1}}]
"""


async def test_namespaced_namer_serves_its_own_namespace(monkeypatch):
    monkeypatch.setenv("MY_POD_NAMESPACE", "prod")
    async with K8sApiSim() as sim, Backend("prod") as prod, Backend("dev") as dev:
        sim.set_endpoints("prod", "web", [subset(["127.0.0.1"], {"http": prod.port})])
        sim.set_endpoints("dev", "web", [subset(["127.0.0.1"], {"http": dev.port})])
        router_port = free_port()
        linker = Linker(loads_linker(ns_config(sim, router_port)))
        await linker.start()
        try:
            code, out, _ = await curl("-s", "-H", "Host: web", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(prod.requests) == 1 and not dev.requests
            # Linkerd's SingleNsNamer id: the namespace is not part of it.
            assert prod.requests[0].header("l5d-dst-client") == "/#/io.l5d.k8s.ns/http/web"
            # Endpoints changes are followed as by io.l5d.k8s.
            sim.set_endpoints("prod", "web", [subset(["127.0.0.1"], {"http": dev.port})])
            await until(lambda: reaches(router_port, dev), 5, "endpoint change not followed")
        finally:
            await linker.close()


async def test_namespaced_namer_needs_its_env_var(monkeypatch):
    monkeypatch.delenv("NO_SUCH_NS_VAR", raising=False)
    linker = Linker(loads_linker(ns_config(K8sApiSim(), free_port(), "NO_SUCH_NS_VAR")))
    with pytest.raises(StartupError) as e:
        await linker.start()
    await linker.close()
    assert "NO_SUCH_NS_VAR" in str(e.value) and "io.l5d.k8s.ns" in str(e.value)


async def test_external_namer_routes_to_the_load_balancer_ingress():
    async with K8sApiSim() as sim, Backend("lb") as lb:
        router_port, admin_port = free_port(), free_port()
        # A LoadBalancer Service still being provisioned: no ingress yet.
        sim.set_service("prod", "web", [{"name": "http", "port": lb.port, "targetPort": 8080}], lb_ingress=[])
        linker = Linker(loads_linker(f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.k8s.external
  experimental: true
  host: 127.0.0.1
  port: {sim.port}
routers:
- protocol: http
  dtab: |
    /svc => /#/io.l5d.k8s.external/prod/http;
    /svc/numbered => /#/io.l5d.k8s.external/prod/{lb.port}/web;
  servers: [{{port: {router_port}, ip: 127.0.0.1}}]
"""))
        await linker.start()
        try:
            status, body = await route_status(router_port)
            assert status == 502 and "/svc/web" in body  # neg until the balancer has an address

            sim.set_service("prod", "web", [{"name": "http", "port": lb.port, "targetPort": 8080}],
                            lb_ingress=[{"ip": "127.0.0.1"}])
            await until(lambda: reaches(router_port, lb), 5, "the ingress address was not followed")
            assert lb.requests[-1].header("l5d-dst-client") == "/#/io.l5d.k8s.external/prod/http/web"
            assert await reaches(router_port, lb, "numbered")  # a port number names the Service port

            state = json.loads((await curl("-s", f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.k8s.external.json"))[1])
            assert state["names"]["/#/io.l5d.k8s.external/prod/http/web"]["addrs"] == [
                {"ip": "127.0.0.1", "port": lb.port, "meta": {}}]

            sim.delete("services", "prod", "web")

            async def neg():
                s, _ = await route_status(router_port)
                return s == 502

            await until(neg, 5, "a deleted Service still routed")
        finally:
            await linker.close()


def test_external_port_and_ingress_rules():
    svc = {"spec": {"ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}, {}]}}}
    assert service_port(svc, "http") == 80 and service_port(svc, "80") == 80
    assert service_port(svc, "dns") is None and service_port(svc, "8080") is None
    assert ingress_hosts(svc) == ["203.0.113.7", "lb.example.com"]
    assert ingress_hosts({"status": {}}) == []
