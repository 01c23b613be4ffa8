"""Issue 17, item 5: connections cannot be held forever, nor exhaust the process.

Each test runs the attack against a real router (limits lowered so the tests are quick;
the defaults are checked separately): idle connections, slowloris heads, stalled request
bodies, connections past their lifetime, a connection flood under a low RLIMIT_NOFILE
(in a subprocess, with the admin port still answering), and on the backend side idle
pooled connections and response bodies that stall after their head.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import unquote_plus

import pytest

from namerouter.proxy import RouterConfig, ServerConfig
from namerouter.proxy.config import ServerSessionConfig
from namerouter.proxy.sessions import Admission, ServerSessions
from namerouter.metrics import MetricsRegistry
from tests.support.backends import Backend, RawClient, RouterHarness, get, request
from tests.support.ports import free_port


def err_text(r) -> str:
    return unquote_plus(r.header("l5d-err") or "")


def server(**session) -> list[ServerConfig]:
    return [ServerConfig(port=free_port(), serverSession=ServerSessionConfig(**session))]


async def wait_metric(h: RouterHarness, name: str, value: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while h.metric(name) != value and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert h.metric(name) == value, (name, h.metric(name))


def scope(h: RouterHarness) -> str:
    return f"rt/outgoing/server/127.0.0.1/{h.port}/"


def test_defaults_bound_every_connection():
    cfg = ServerConfig()
    s = ServerSessions(cfg, MetricsRegistry(), "x/", None)
    assert s.header_s == 5.0 and s.idle_s == 60.0 and s.life_s is None and s.max_connections is None
    adm = Admission(1024)
    assert adm.reserve == 256 and adm.limit == 384
    assert Admission(1 << 20).limit == ((1 << 20) - 256) // 2


async def test_idle_connections_are_closed():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}",
                                                   servers=server(idleTimeMs=300)) as h:
        async with RawClient(h.port) as c:
            await c.send(get("/pong"))
            assert (await c.read_response()).status == 200
            t0 = time.monotonic()
            assert await c.closed_by_peer(timeout=5.0)
            assert time.monotonic() - t0 >= 0.25
        await wait_metric(h, scope(h) + "expired/idle", 1)
        # a connection that stays busy is not idle: a slow answer longer than idleTimeMs
        async with RawClient(h.port) as c:
            await c.send(get("/slow?ms=600"))
            assert (await c.read_response()).status == 200


async def test_slowloris_head_gets_408_and_close():
    async with RouterHarness("/svc => /$/inet/127.1/9", servers=server(headerReadTimeoutMs=400)) as h:
        async with RawClient(h.port) as c:
            head = get("/pong", headers={"X-Long": "a" * 200})
            t0 = time.monotonic()
            sent = 0
            for byte in head[:-4]:  # one byte every 20 ms: never complete in time
                try:
                    await c.send(bytes([byte]))
                except ConnectionError:
                    break
                sent += 1
                if c.reader.at_eof() or c.reader._buffer:  # the router answered
                    break
                await asyncio.sleep(0.02)
            r = await c.read_response(timeout=5.0)
            assert r.status == 408 and "headerReadTimeoutMs" in err_text(r)
            assert 0.3 <= time.monotonic() - t0 < 5.0 and sent < len(head) - 4
            assert await c.closed_by_peer()
        # a client that connects and sends nothing is closed too, without an answer
        async with RawClient(h.port) as c:
            assert await c.closed_by_peer(timeout=5.0)
        await wait_metric(h, scope(h) + "read_timeout/header", 2)


async def test_stalled_request_body_gets_408_and_close():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}",
                                                   servers=server(idleTimeMs=400)) as h:
        async with RawClient(h.port) as c:
            await c.send(b"POST /upload HTTP/1.1\r\nHost: pong\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            r = await c.read_response(timeout=5.0)
            assert r.status == 408 and "request body stalled" in err_text(r)
            assert r.header("connection") == "close"
            assert await c.closed_by_peer()
        await wait_metric(h, scope(h) + "read_timeout/body", 1)
        # a chunked body that stops
        async with RawClient(h.port) as c:
            await c.send(b"POST /upload HTTP/1.1\r\nHost: pong\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            r = await c.read_response(timeout=5.0)
            assert r.status == 408
        await wait_metric(h, scope(h) + "read_timeout/body", 2)


async def test_lifetime_lets_the_request_finish_then_closes():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}",
                                                   servers=server(lifeTimeMs=300, idleTimeMs=None)) as h:
        async with RawClient(h.port) as c:
            await c.send(get("/slow?ms=600"))  # still running when the lifetime ends
            r = await c.read_response()
            assert r.status == 200 and r.body == b"slow"
            assert await c.closed_by_peer(timeout=5.0)
        await wait_metric(h, scope(h) + "expired/lifetime", 1)


async def test_max_connections_refuses_cleanly():
    servers = [ServerConfig(port=free_port(), maxConnections=2)]
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", servers=servers) as h:
        async with RawClient(h.port) as c1, RawClient(h.port) as c2:
            await c1.send(get("/pong"))
            assert (await c1.read_response()).status == 200
            await c2.send(get("/pong"))
            assert (await c2.read_response()).status == 200
            r = await request(h.port, get("/pong"))
            assert r.status == 503 and "maxConnections (2)" in err_text(r)
            assert r.header("l5d-retryable") == "true"
        await wait_metric(h, scope(h) + "connections", 0)
        assert (await request(h.port, get("/pong"))).status == 200  # room again
        assert h.metric(scope(h) + "connects_refused") == 1




async def test_connection_flood_under_a_low_fd_limit_keeps_the_admin_port(tmp_path):
    """400 idle connections against a router limited to 256 descriptors: the extra
    connections get 503 (or a reset), and both the admin port and connections already
    open keep working."""
    async with Backend("pong") as b:
        port, admin = free_port(), free_port()
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"admin: {{port: {admin}}}\nrouters:\n- protocol: http\n  dtab: /svc/pong => /$/inet/127.1/{b.port}\n"
                       f"  servers:\n  - port: {port}\n")
        env = dict(os.environ)
        proc = await asyncio.create_subprocess_exec(
            "prlimit", "--nofile=256:256", sys.executable, "-m", "namerouter", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env)
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(500):
                try:
                    await asyncio.open_connection("127.0.0.1", admin)
                    break
                except OSError:
                    await asyncio.sleep(0.02)
            async with RawClient(port) as first:
                await first.send(get("/pong"))
                assert (await first.read_response()).status == 200
                refused = reset = 0
                for _ in range(400):
                    r, w = await asyncio.open_connection("127.0.0.1", port)
                    conns.append((r, w))
                # the router admitted up to its share; every other connection was answered
                # 503 (and closed) or reset
                for r, w in conns:
                    try:
                        data = await asyncio.wait_for(r.read(4096), 0.5)
                    except asyncio.TimeoutError:
                        continue  # admitted: idle, still open
                    except ConnectionError:
                        reset += 1
                        continue
                    if data.startswith(b"HTTP/1.1 503"):
                        refused += 1
                        assert b"connection limit" in data
                    elif not data:
                        reset += 1
                assert refused > 0 and refused + reset >= 400 - 96
                # the admin server still answers, and so does the connection already open
                status, body = await _http_get(admin, "/admin/metrics.json")
                assert status == 200
                metrics = json.loads(body)
                assert metrics[f"rt/http/server/127.0.0.1/{port}/connects_refused"] >= refused
                await first.send(get("/pong"))
                assert (await first.read_response()).status == 200
            for _, w in conns:
                w.close()
            conns.clear()
            # once the flood is gone, new connections are served again
            for _ in range(200):
                try:
                    r = await request(port, get("/pong"))
                    if r.status == 200:
                        break
                except ConnectionError:
                    pass
                await asyncio.sleep(0.02)
            assert r.status == 200
        finally:
            for _, w in conns:
                w.close()
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)


async def _http_get(port: int, path: str) -> tuple[int, bytes]:
    r = await request(port, f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
    return r.status, r.body


# --- the backend side ---------------------------------------------------------------------

async def test_client_session_closes_idle_pooled_connections():
    client = {"kind": "io.l5d.global", "clientSession": {"idleTimeMs": 200}}
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", client=client) as h:
        assert (await request(h.port, get("/pong"))).status == 200
        cid = f"rt/outgoing/client/$/inet/127.1/{b.port}/"
        await wait_metric(h, cid + "connections", 0)
        assert h.metric(cid + "expired/idle") == 1


async def test_client_session_lifetime_retires_pooled_connections():
    client = {"kind": "io.l5d.global", "clientSession": {"lifeTimeMs": 200}}
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", client=client) as h:
        async with RawClient(h.port) as c:
            await c.send(get("/slow?ms=400"))  # the connection outlives its lifetime meanwhile
            assert (await c.read_response()).status == 200
        cid = f"rt/outgoing/client/$/inet/127.1/{b.port}/"
        await wait_metric(h, cid + "connections", 0)
        assert h.metric(cid + "expired/lifetime") == 1


class StallingBackend:
    """Sends a response head and part of the body, then nothing (the connection stays open)."""

    def __init__(self) -> None:
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100)
        await writer.drain()
        await asyncio.sleep(3600)

    async def __aenter__(self) -> "StallingBackend":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        for w in self.writers:
            w.close()
        self._server.close()


@pytest.mark.parametrize("policy", [
    {"client": {"kind": "io.l5d.global", "clientSession": {"idleTimeMs": 300}}},
    {"client": {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 300}},
    {"service": {"kind": "io.l5d.global", "totalTimeoutMs": 300}},
])
async def test_a_response_body_that_stalls_is_cut_and_counted(policy):
    async with StallingBackend() as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", **policy) as h:
        async with RawClient(h.port) as c:
            t0 = time.monotonic()
            await c.send(get("/pong"))
            head = await c.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await c.closed_by_peer(timeout=5.0)  # cut, not held until the backend gives up
            assert time.monotonic() - t0 >= 0.25
        exc = "com.twitter.finagle.ReadTimedOutException"
        await wait_metric(h, f"rt/outgoing/service/svc/pong/failures/{exc}", 1)
        assert h.metric("rt/outgoing/service/svc/pong/failures") == 1
        assert h.metric(f"rt/outgoing/client/$/inet/127.1/{b.port}/failures/{exc}") == 1


async def test_a_slow_reader_is_not_a_stalled_backend():
    """Backpressure: the client reads slowly, so the router stops reading the backend —
    that silence is not the backend's fault and must not cut the response."""
    client = {"kind": "io.l5d.global", "clientSession": {"idleTimeMs": 300}}
    async with Backend("big") as b, RouterHarness(f"/svc/big => /$/inet/127.1/{b.port}", client=client) as h:
        async with RawClient(h.port) as c:
            await c.send(get("/stream?bytes=8000000", host="big"))
            await c.reader.readuntil(b"\r\n\r\n")
            got = 0
            await c.reader.readexactly(1000)
            got += 1000
            await asyncio.sleep(0.8)  # the router's buffers fill; reading the backend pauses
            while got < 8000000:
                got += len(await asyncio.wait_for(c.reader.read(1 << 20), 5.0) or b"\0" * 8000000)
        assert h.metric("rt/outgoing/service/svc/big/failures") == 0


def test_readme_hardening_block_is_a_valid_config():
    """The README's copy-paste example of the limits loads, with the values it shows."""
    from namerouter.config.schema import loads_linker

    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    after = readme[readme.index("## Limits and hardening"):]
    start = after.index("```yaml\n") + len("```yaml\n")
    cfg = loads_linker(after[start:after.index("```", start)]).config
    server = cfg.routers[0].servers[0]
    assert server.maxConnections == 10000 and server.localDtabSystemNamers is False
    assert (server.serverSession.idleTimeMs, server.serverSession.lifeTimeMs,
            server.serverSession.headerReadTimeoutMs) == (60000, 3600000, 5000)
    session = cfg.routers[0].client.clientSession
    assert (session.idleTimeMs, session.lifeTimeMs) == (30000, 600000)
