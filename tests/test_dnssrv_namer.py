"""io.l5d.dnssrv end to end: a real router (Linker from YAML) resolving SRV records served
by a real DNS server (Debian's dnsmasq on a loopback port), through changes, an
outage of the DNS server, NXDOMAIN fall-through and named targets."""
from __future__ import annotations

import asyncio
import json

import pytest

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from namerouter.namers.dnssrv import parse_dns_host
from tests.support.backends import Backend, curl
from tests.support.dnsmasq import DnsmasqServer, dnsmasq_available
from tests.support.ports import free_port
from tests.support.routing import route_status, until

pytestmark = pytest.mark.skipif(not dnsmasq_available(), reason="dnsmasq is not installed: run `make test`")

WEB = "_http._tcp.web.test"


def config(dns: DnsmasqServer, router_port: int, admin_port: int) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.dnssrv
  experimental: true
  refreshIntervalSeconds: 1
  dnsHosts: [{dns.address}]
routers:
- protocol: http
  dtab: |
    /srv => /#/io.l5d.dnssrv;
    /svc/web => /srv/{WEB};
    /svc/alt => /srv/_http._tcp.nope.test | /srv/_http._tcp.fallback.test;
  servers:
  - {{port: {router_port}, ip: 127.0.0.1}}
"""


@pytest.fixture
def dns_server():
    server = DnsmasqServer()
    yield server
    server.cleanup()


async def test_router_follows_srv_records_and_keeps_them_through_a_dns_outage(dns_server):
    async with Backend("a") as a, Backend("b") as b, Backend("fb") as fb:
        dns_server.set_records([(WEB, "127.0.0.1", a.port), ("_http._tcp.fallback.test", "fb.test", fb.port)],
                               hosts={"fb.test": "127.0.0.1"})
        dns_server.start()
        router_port, admin_port = free_port(), free_port()
        linker = Linker(loads_linker(config(dns_server, router_port, admin_port)))
        await linker.start()
        try:
            code, out, _ = await curl("-s", "-H", "Host: web", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(a.requests) == 1

            # NXDOMAIN is neg: the dtab alternative applies; the named target resolved
            # from the answer's additional section (dnsmasq sends its A record).
            code, out, _ = await curl("-s", "-H", "Host: alt", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong") and len(fb.requests) == 1

            # The DNS server goes away: the last good answer keeps routing.
            dns_server.stop()
            await asyncio.sleep(2.5)  # more than two refresh intervals
            for _ in range(5):
                assert (await route_status(router_port))[0] == 200
            state = json.loads((await curl("-s", f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.dnssrv.json"))[1])
            assert state["names"][WEB]["errors"] >= 1 and state["names"][WEB]["lastError"], state

            # It comes back with a changed record: routing follows within a few refreshes.
            dns_server.set_records([(WEB, "127.0.0.1", b.port)])
            dns_server.start()
            n_b = len(b.requests)

            async def on_b():
                await route_status(router_port)
                return len(b.requests) > n_b

            await until(on_b, 10, "routing did not follow the new SRV record")
            state = json.loads((await curl("-s", f"http://127.0.0.1:{admin_port}/namer_state/io.l5d.dnssrv.json"))[1])
            assert state["names"][WEB]["addr"]["addrs"] == [{"ip": "127.0.0.1", "port": b.port, "meta": {}}]

            # The record disappears (NXDOMAIN): the name is neg and the router says so.
            dns_server.set_records([])
            dns_server.restart()

            async def gone():
                status, body = await route_status(router_port)
                return status == 502 and body

            body = await until(gone, 10, "a vanished SRV record still routed")
            assert "/svc/web" in body
        finally:
            await linker.close()


def test_dns_host_syntax():
    assert parse_dns_host("ns0.example.org") == ("ns0.example.org", 53)
    assert parse_dns_host("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_dns_host("[::1]:5353") == ("::1", 5353)
    assert parse_dns_host("::1") == ("::1", 53)
    for bad in ("", "h:0", "h:x", "[]:53"):
        with pytest.raises(ValueError):
            parse_dns_host(bad)


def test_config_rejects_a_bad_dns_host():
    from namerouter.config.loader import ConfigError

    with pytest.raises(ConfigError) as e:
        loads_linker("""
namers:
- {kind: io.l5d.dnssrv, experimental: true, dnsHosts: ["10.0.0.1:99999"]}
routers:
- {protocol: http, servers: [{port: 4140}]}
""")
    assert "namers[0].dnsHosts" in str(e.value) and "1-65535" in str(e.value)
