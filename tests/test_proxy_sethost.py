"""RewriteHostHeader end to end: io.l5d.consul with ``setHost: true`` puts
``authority = <svc>.service.<dc>.<domain>`` in the address set's metadata, and the real
router (a Linker built from YAML) sends that Host to the backend; absolute URLs in
``Location``/``Refresh`` answers are pointed back at the Host the client used."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from namerouter.proxy.routing import _host_line
from tests.sim.consul_sim import ConsulSim
from tests.support.backends import Backend, curl
from tests.support.ports import free_port


def config(sim: ConsulSim, router_port: int, admin_port: int) -> str:
    # Two consul namers on the same agent: one rewrites Host, the other does not.
    return f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {sim.port}
  setHost: true
- kind: io.l5d.consul
  prefix: /plain
  host: 127.0.0.1
  port: {sim.port}
  setHost: false
routers:
- protocol: http
  label: outgoing
  dtab: |
    /svc => /#/io.l5d.consul/.local;
    /svc/plain => /#/plain/.local/web;
  servers:
  - {{port: {router_port}, ip: 127.0.0.1}}
"""


class RedirectBackend:
    """Answers every request with a 302 whose Location/Refresh name the Host it received
    (what a backend that builds absolute URLs from Host does)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hosts: list[str] = []
        self._server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                host = ""
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "host":
                        host = v.strip()
                self.hosts.append(host)
                writer.write((f"HTTP/1.1 302 Found\r\nLocation: http://{host}/login?next=/a\r\n"
                              f"Refresh: 0; url=http://{host}/login\r\nContent-Length: 0\r\n\r\n").encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> "RedirectBackend":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_sethost_rewrites_host_to_consul_authority():
    sim = ConsulSim()
    await sim.start()
    router_port, admin_port = free_port(), free_port()
    async with Backend("web") as web, RedirectBackend() as redir:
        await sim.register("node-a", "127.0.0.1", service="web", service_id="web-a", port=web.port, status="passing")
        await sim.register("node-b", "127.0.0.1", service="login", service_id="login-b", port=redir.port,
                           status="passing")
        linker = Linker(loads_linker(config(sim, router_port, admin_port)))
        await linker.start()
        try:
            # setHost: true -> the backend sees the consul authority, not the client's Host
            code, out, err = await curl("-H", "Host: web", f"http://127.0.0.1:{router_port}/echo")
            assert code == 0, err
            got = json.loads(out)
            hosts = [v for k, v in got["headers"] if k.lower() == "host"]
            assert hosts == ["web.service.dc1.consul"], got["headers"]
            assert web.requests[-1].header("Host") == "web.service.dc1.consul"
            # the rest of the request is untouched (routing headers name the logical name)
            assert web.requests[-1].header("l5d-dst-service") == "/svc/web"

            # setHost: false (the /plain namer) -> the client's Host passes unchanged
            code, out, err = await curl("-H", "Host: plain", f"http://127.0.0.1:{router_port}/pong")
            assert (code, out) == (0, "pong"), err
            assert web.requests[-1].header("Host") == "plain"

            # keep-alive: several requests on one connection, each rewritten
            async with aiohttp.ClientSession() as s:
                for _ in range(3):
                    async with s.get(f"http://127.0.0.1:{router_port}/pong", headers={"Host": "web"}) as r:
                        assert (r.status, await r.text()) == (200, "pong")
                        assert web.requests[-1].header("Host") == "web.service.dc1.consul"

                # Location / Refresh name the rewritten host: pointed back at the client's Host
                async with s.get(f"http://127.0.0.1:{router_port}/x", headers={"Host": "login"},
                                 allow_redirects=False) as r:
                    assert r.status == 302
                    assert redir.hosts[-1] == "login.service.dc1.consul"
                    assert r.headers["Location"] == "http://login/login?next=/a"
                    assert r.headers["Refresh"] == "0; url=http://login/login"

                # the client state shows the authority in use
                async with s.get(f"http://127.0.0.1:{admin_port}/client_state.json") as r:
                    state = json.loads(await r.text())
            clients = state["outgoing"]
            assert clients["/#/io.l5d.consul/.local/web"]["authority"] == "web.service.dc1.consul", state
            assert "authority" not in clients["/#/plain/.local/web"], state
        finally:
            await linker.close()
            await sim.stop()


def test_authority_that_would_inject_headers_is_ignored():
    assert _host_line("web.service.dc1.consul") == b"Host: web.service.dc1.consul\r\n"
    assert _host_line("web\r\nX-Evil: 1") is None
    assert _host_line("with space") is None
    assert _host_line("") is None and _host_line(None) is None and _host_line(3) is None
