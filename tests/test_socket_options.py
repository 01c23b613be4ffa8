"""``socketOptions`` (Linkerd's server and client block) on the real sockets of a router:
options read back with ``getsockopt`` from the listening socket, accepted connections
and backend connections; ``reusePort`` letting two router processes bind one port;
``readTimeoutMs`` closing a silent client connection and failing a request to a backend
that never answers; ``writeTimeoutMs`` cutting a client that does not read."""
from __future__ import annotations

import asyncio
import socket
import sys
import time

from namerouter.proxy import ServerConfig
from namerouter.proxy.socket_options import SocketOptionsConfig
from tests.support.backends import Backend, RawClient, RouterHarness, get, request
from tests.support.ports import free_port


def opt(sock: socket.socket, level: int, name: int) -> int:
    return sock.getsockopt(level, name)


async def wait_for(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert pred()


async def test_server_options_are_set_on_the_listening_and_accepted_sockets():
    opts = SocketOptionsConfig(noDelay=False, keepAlive=True, reusePort=True, backlog=7)
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}",
                                                   servers=[ServerConfig(port=free_port(), socketOptions=opts)]) as h:
        listening = h.router.servers[0]._server.sockets[0]
        assert opt(listening, socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert opt(listening, socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        async with RawClient(h.port) as c:
            await c.send(get("/pong"))
            assert (await c.read_response()).status == 200
            (conn,) = h.router.servers[0].conns
            sock = conn.transport.get_extra_info("socket")
            assert opt(sock, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            assert opt(sock, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


async def test_without_socket_options_connections_keep_our_defaults():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        listening = h.router.servers[0]._server.sockets[0]
        assert opt(listening, socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        async with RawClient(h.port) as c:
            await c.send(get("/pong"))
            assert (await c.read_response()).status == 200
            (conn,) = h.router.servers[0].conns
            sock = conn.transport.get_extra_info("socket")
            assert opt(sock, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert opt(sock, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


async def test_client_options_are_set_on_backend_connections():
    client = {"kind": "io.l5d.global", "socketOptions": {"keepAlive": True, "noDelay": False}}
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", client=client) as h:
        assert (await request(h.port, get("/pong"))).status == 200
        socks = _backend_sockets(h)
        assert socks
        for s in socks:
            assert opt(s, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert opt(s, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0


def _backend_sockets(h: RouterHarness) -> list[socket.socket]:
    """The sockets of the router's pooled backend connections."""
    out = []
    for stage in h.router.core.table.clients.values():
        for ep in stage.endpoints.values():
            for conn in ep.idle:
                out.append(conn.transport.get_extra_info("socket"))
    return out


async def test_read_timeout_closes_a_silent_client_connection():
    opts = SocketOptionsConfig(readTimeoutMs=200)
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}",
                                                   servers=[ServerConfig(port=free_port(), socketOptions=opts)]) as h:
        async with RawClient(h.port) as c:
            await c.send(get("/pong"))
            assert (await c.read_response()).status == 200
            assert await c.closed_by_peer(5.0)
        assert h.metric(f"rt/outgoing/server/127.0.0.1/{h.port}/socket/read_timeouts") == 1


async def test_read_timeout_fails_a_request_to_a_silent_backend():
    client = {"kind": "io.l5d.global", "socketOptions": {"readTimeoutMs": 200}}
    async with Backend("b") as b, RouterHarness(f"/svc/b => /$/inet/127.1/{b.port}", client=client) as h:
        t0 = time.monotonic()
        r = await request(h.port, get("/hang", host="b"))
        assert r.status == 502, r
        assert "socketOptions.readTimeoutMs" in r.body.decode()
        assert time.monotonic() - t0 < 5.0
        cid = f"rt/outgoing/client/$/inet/127.1/{b.port}/"
        assert h.metric(cid + "failures") == 1
        # a backend that answers in time is not affected
        assert (await request(h.port, get("/slow?ms=50", host="b"))).status == 200


async def test_write_timeout_cuts_a_client_that_does_not_read():
    opts = SocketOptionsConfig(writeTimeoutMs=300)
    async with Backend("b") as b, RouterHarness(f"/svc/b => /$/inet/127.1/{b.port}",
                                                servers=[ServerConfig(port=free_port(), socketOptions=opts)]) as h:
        r, w = await asyncio.open_connection("127.0.0.1", h.port)
        w.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        w.write(get("/stream?bytes=50000000", host="b"))
        scope = f"rt/outgoing/server/127.0.0.1/{h.port}/socket/write_timeouts"
        await wait_for(lambda: h.metric(scope) == 1, 10.0)
        await wait_for(lambda: not h.router.servers[0].conns, 5.0)
        w.close()


async def test_reuse_port_lets_two_router_processes_bind_one_port(tmp_path):
    async with Backend("pong") as b:
        port = free_port()
        procs = []
        for i in range(2):
            cfg = tmp_path / f"r{i}.yaml"
            cfg.write_text(f"admin: {{port: {free_port()}}}\nrouters:\n- protocol: http\n"
                           f"  dtab: /svc/pong => /$/inet/127.1/{b.port}\n"
                           f"  servers:\n  - port: {port}\n    socketOptions: {{reusePort: true}}\n")
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "namerouter", str(cfg),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE))
        try:
            # both keep running, and the shared port serves
            for _ in range(500):
                try:
                    r = await request(port, get("/pong"))
                    if r.status == 200:
                        break
                except OSError:
                    await asyncio.sleep(0.02)
            assert r.status == 200
            await asyncio.sleep(0.3)
            assert all(p.returncode is None for p in procs), [p.returncode for p in procs]
        finally:
            for p in procs:
                if p.returncode is None:
                    p.terminate()
                await asyncio.wait_for(p.wait(), 15)


def _readme_block(section: str) -> str:
    import os

    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    after = readme[readme.index(section):]
    start = after.index("```yaml\n") + len("```yaml\n")
    return after[start:after.index("```", start)]


def test_readme_blocks_are_valid_configs():
    """The README's examples of these keys load, with the values they show."""
    from namerouter.config.schema import loads_linker

    cfg = loads_linker(_readme_block("### Server and router extras")).config
    r = cfg.routers[0]
    assert r.originator and r.compressionLevel == -1 and r.httpAccessLogRollPolicy == "daily"
    s = r.servers[0]
    assert s.socketOptions.reusePort and s.socketOptions.readTimeoutMs == 61000 and s.socketOptions.backlog == 512
    assert s.timestampHeader == "X-Request-Start" and s.addForwardedHeader.for_.label == "edge"
    cfg = loads_linker(_readme_block("## Resilience").replace("rootDir: disco", "rootDir: /tmp")).config
    client = cfg.routers[0].client
    assert client.failFast and client.socketOptions.keepAlive
