"""io.l5d.curator and io.l5d.zkLeader end to end: a real router (Linker from YAML)
following a real ZooKeeper, with instances registered by the real Apache Curator
library (a JVM per registration) and leader-group candidates as Twitter commons'
Group writes them."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from kazoo.client import KazooClient

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from namerouter.zk.discovery_formats import parse_curator_instance, parse_leader_data
from namerouter.zk.serverset_format import MalformedMember
from tests.support.backends import Backend, curl
from tests.support.curator import CuratorRegistration, curator_available
from tests.support.ports import free_port
from tests.support.routing import reaches, route_status, until


@pytest.fixture
def kz(zk_server):
    client = KazooClient(zk_server.hosts, timeout=10)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


@pytest.mark.skipif(not curator_available(), reason="Apache Curator (libcurator-discovery-java) or javac missing: "
                                                    "run `make test`")
async def test_router_follows_curator_service_discovery(zk_server):
    base = f"/services-{uuid.uuid4().hex[:8]}"
    router_port, admin_port = free_port(), free_port()
    cfg = f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.curator
  experimental: true
  zkAddrs: [{{host: 127.0.0.1, port: {zk_server.port}}}]
  basePath: {base}
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.curator;
  servers: [{{port: {router_port}, ip: 127.0.0.1}}]
"""
    async with Backend("a") as a, Backend("b") as b, Backend("tls") as t:
        reg_a = await asyncio.to_thread(CuratorRegistration, zk_server.hosts, base, ("web", "a", "127.0.0.1", a.port))
        linker = Linker(loads_linker(cfg))
        await linker.start()
        reg_b = reg_t = None
        try:
            code, out, _ = await curl("-s", "-H", "Host: web", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(a.requests) == 1

            # A second instance (another JVM) joins; then the first unregisters cleanly.
            reg_b = await asyncio.to_thread(CuratorRegistration, zk_server.hosts, base,
                                            ("web", "b", "127.0.0.1", b.port))
            await until(lambda: reaches(router_port, b), 10, "instance b never got traffic")
            await asyncio.to_thread(reg_a.close)
            await asyncio.sleep(0.3)
            n_a = len(a.requests)
            for _ in range(10):
                assert (await route_status(router_port))[0] == 200
            assert len(a.requests) == n_a, "an unregistered instance still got traffic"

            # An instance with an sslPort is reached on it, and the set says ssl (Linkerd's metadata).
            reg_t = await asyncio.to_thread(CuratorRegistration, zk_server.hosts, base,
                                            ("secure", "t", "127.0.0.1", 1, t.port))
            code, out, _ = await curl("-s", "-H", "Host: secure", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(t.requests) == 1
            state = json.loads((await curl("-s", f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.curator.json"))[1])
            assert state["basePath"] == base and f"{base}/secure" in state["services"], state

            # A crashed instance (its JVM killed) disappears when its session expires:
            # the service still exists, with no instance → 502 naming it.
            await asyncio.to_thread(reg_b.kill)

            async def no_hosts():
                status, body = await route_status(router_port)
                return status == 502 and body

            body = await until(no_hosts, 20, "a crashed Curator instance kept traffic")
            assert "/#/io.l5d.curator/web" in body

            # A service Curator never registered is neg.
            status, body = await route_status(router_port, "nope")
            assert status == 502 and "/svc/nope" in body
        finally:
            await linker.close()
            for r in (reg_a, reg_b, reg_t):
                if r is not None:
                    await asyncio.to_thread(r.kill)


async def test_router_follows_the_zookeeper_leader(zk_server, kz):
    group = f"/leaders-{uuid.uuid4().hex[:8]}/api"
    router_port, admin_port = free_port(), free_port()
    cfg = f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.zkLeader
  zkAddrs: [{{host: 127.0.0.1, port: {zk_server.port}}}]
routers:
- protocol: http
  dtab: |
    /svc/web => /#/io.l5d.zkLeader{group};
    /svc/deep => /#/io.l5d.zkLeader{group}/v1/users;
  servers: [{{port: {router_port}, ip: 127.0.0.1}}]
"""
    async with Backend("a") as a, Backend("b") as b:
        # Candidates as Twitter commons' Group.join writes them: ephemeral sequential member_ nodes.
        first = kz.create(f"{group}/member_", f"127.0.0.1:{a.port}".encode(), ephemeral=True, sequence=True,
                          makepath=True)
        kz.create(f"{group}/member_", f"127.0.0.1:{b.port}".encode(), ephemeral=True, sequence=True)
        linker = Linker(loads_linker(cfg))
        await linker.start()
        try:
            for _ in range(5):
                assert await reaches(router_port, a), "the lowest candidate is the leader"
            # A name below the group walks up to it; the rest is the residual.
            assert await reaches(router_port, a, "deep")
            assert a.requests[-1].header("l5d-dst-residual") == "/v1/users"

            # The leader steps down: the next candidate leads, at once.
            kz.delete(first)
            await until(lambda: reaches(router_port, b), 5, "the new leader got no traffic")
            state = json.loads((await curl("-s", f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.zkLeader.json"))[1])
            assert group in state["groups"], state

            # No candidate left: neg (and the walk-up finds nothing above it).
            for child in kz.get_children(group):
                kz.delete(f"{group}/{child}")

            async def neg():
                status, body = await route_status(router_port)
                return status == 502 and body

            await until(neg, 5, "an empty leader group still routed")
        finally:
            await linker.close()


def test_formats():
    inst = parse_curator_instance(json.dumps({
        "name": "web", "id": "x", "address": "10.0.0.7", "port": 80, "sslPort": 443, "payload": None,
        "registrationTimeUTC": 1, "serviceType": "DYNAMIC", "uriSpec": None}).encode())
    assert (inst.endpoint.host, inst.endpoint.port, inst.ssl) == ("10.0.0.7", 443, True)
    for bad in (b"nope", b"[]", b'{"address": "h"}', b'{"address": "h", "port": 70000}'):
        with pytest.raises(MalformedMember):
            parse_curator_instance(bad)
    assert [(e.host, e.port) for e in parse_leader_data(b"10.0.0.1:80, 10.0.0.2:81")] == [
        ("10.0.0.1", 80), ("10.0.0.2", 81)]
    member = b'{"serviceEndpoint": {"host": "h", "port": 9}, "additionalEndpoints": {}, "status": "ALIVE"}'
    assert [(e.host, e.port) for e in parse_leader_data(member)] == [("h", 9)]
    for bad in (b"", b"host", b"host:0", b"\xff"):
        with pytest.raises(MalformedMember):
            parse_leader_data(bad)
