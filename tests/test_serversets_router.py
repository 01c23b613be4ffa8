"""End to end: issue 4's seed config in a real router, instances registered by
`namerouter announce` (separate processes, own ZooKeeper sessions), traffic under churn,
the router's session expiring, and ZooKeeper restarting while requests flow."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import aiohttp
import pytest
from kazoo.client import KazooClient

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from namerouter.zk import EXPIRED, SUSPENDED
from tests.support.ports import free_port
from tests.support.zookeeper import ZooKeeperServer, wait_children

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BACKEND = textwrap.dedent("""
    import http.server, sys
    name, port = sys.argv[1], int(sys.argv[2])
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
""")

SEED = """
admin:
  port: {admin}
namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: 127.0.0.1
    port: {zk}
routers:
- protocol: http
  label: outging
  dtab: |
    /svc => /#/io.l5d.serversets/discovery;
  servers:
  - port: {port}
    ip: 0.0.0.0
"""


@pytest.fixture(scope="module")
def zk():
    server = ZooKeeperServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def backend_py(tmp_path_factory):
    f = tmp_path_factory.mktemp("backend") / "backend.py"
    f.write_text(BACKEND)
    return str(f)


class Instances:
    """Backends started as `namerouter announce --path /discovery/<svc> -- python backend.py`."""

    def __init__(self, zk_hosts, backend_py, service):
        self.zk_hosts = zk_hosts
        self.service = service
        self.backend_py = backend_py
        self.procs: dict[str, subprocess.Popen] = {}
        self.kz = KazooClient(zk_hosts, timeout=15)
        self.kz.start(30)

    def start(self, name):
        port = free_port()
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "namerouter", "announce", "-q", "--zk", self.zk_hosts,
             "--path", f"/discovery/{self.service}", "--host", "127.0.0.1", "--port", str(port),
             "--drain-ms", "300", "--", sys.executable, self.backend_py, name, str(port)],
            cwd=ROOT)
        return port

    async def wait_members(self, n):
        await asyncio.to_thread(wait_children, self.kz, f"/discovery/{self.service}", lambda c: len(c) == n, 30)

    async def stop(self, name):
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(p.wait, 15)

    def close(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)  # deregisters, then stops the backend
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.kz.stop()
        self.kz.close()


@pytest.fixture
def service(request):
    """A serverset name of its own per test (Host header = serverset name)."""
    return request.node.name.replace("test_", "").replace("_", "-")[:40]


@pytest.fixture
def instances(zk, backend_py, service):
    inst = Instances(zk.hosts, backend_py, service)
    yield inst
    inst.close()


@pytest.fixture
async def router(zk):
    port = free_port()
    validated = loads_linker(SEED.format(admin=free_port(), zk=zk.port, port=port))
    linker = Linker(validated)
    await linker.start()
    linker.port = port
    yield linker
    await linker.close(1.0)


class Load:
    """Closed-loop HTTP load with `Host: <svc>` through the router; remembers every answer."""

    def __init__(self, port, host="pong", concurrency=4):
        self.url = f"http://127.0.0.1:{port}/"
        self.host = host
        self.concurrency = concurrency
        self.counts: Counter[str] = Counter()
        self.last_seen: dict[str, float] = {}
        self.first_seen: dict[str, float] = {}
        self.failures: list[str] = []
        self.total = 0
        self._stop = False
        self._tasks: list[asyncio.Task] = []
        self._tick = asyncio.Event()

    async def __aenter__(self):
        self.session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
        return self

    async def __aexit__(self, *exc):
        self._stop = True
        await asyncio.gather(*self._tasks)
        await self.session.close()

    async def _worker(self):
        while not self._stop:
            try:
                async with self.session.get(self.url, headers={"Host": self.host}) as r:
                    body = await r.text()
                    if r.status == 200:
                        now = time.monotonic()
                        self.counts[body] += 1
                        self.first_seen.setdefault(body, now)
                        self.last_seen[body] = now
                    else:
                        self.failures.append(f"{r.status} {r.headers.get('l5d-err', '')} {body[:200]}")
            except Exception as e:  # noqa: BLE001 - every failure is recorded and asserted on
                self.failures.append(repr(e))
            self.total += 1
            self._tick.set()

    async def until(self, pred, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"load condition not met; counts={dict(self.counts)} failures={self.failures[:5]}")
            self._tick.clear()
            try:
                await asyncio.wait_for(self._tick.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def more(self, n):
        """Let n more requests complete."""
        target = self.total + n
        await self.until(lambda: self.total >= target)


def the_namer(linker):
    [namer] = [n for n in linker.namers if getattr(n, "kind", "") == "io.l5d.serversets"]
    return namer


async def curl(*args):
    proc = await asyncio.create_subprocess_exec("curl", "-s", "-S", "--max-time", "10", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return out.decode(), err.decode()


async def test_seed_config_routes_host_pong_to_announced_members(router, zk, backend_py):
    instances = Instances(zk.hosts, backend_py, "pong")  # the seed's own names: Host: pong
    try:
        instances.start("pong-a")
        instances.start("pong-b")
        await instances.wait_members(2)
        seen = Counter()
        for _ in range(40):
            out, err = await curl("-H", "Host: pong", f"http://127.0.0.1:{router.port}/")
            seen[out] += 1
        assert set(seen) == {"pong-a", "pong-b"}, seen  # both ALIVE members get traffic
        # an unknown service is a clear 502 naming it, not a hang
        out, _ = await curl("-i", "-H", "Host: nosuch", f"http://127.0.0.1:{router.port}/")
        assert out.startswith("HTTP/1.1 502") and "/svc/nosuch" in out
        admin = router.config.admin.port
        state, _ = await curl(f"http://127.0.0.1:{admin}/namer_state/io.l5d.serversets.json")
        assert '"/discovery/pong"' in state and '"alive": 2' in state
    finally:
        instances.close()


async def test_members_coming_and_going_under_load(router, instances, service):
    instances.start("a")
    instances.start("b")
    await instances.wait_members(2)
    async with Load(router.port, service) as load:
        await load.until(lambda: load.counts["a"] > 20 and load.counts["b"] > 20)
        # a new instance gets traffic as soon as it is registered
        instances.start("c")
        await instances.wait_members(3)
        t_added = time.monotonic()
        await load.until(lambda: "c" in load.counts)
        assert load.first_seen["c"] - t_added < 0.5
        # graceful stop: deregistered first, drained, then stopped -> no failed request
        await instances.stop("a")
        t_gone = time.monotonic()
        await load.more(200)
        assert load.last_seen["a"] < t_gone
        instances.start("d")
        await instances.wait_members(3)
        await load.until(lambda: "d" in load.counts)
        await instances.stop("b")
        await load.more(200)
    assert load.failures == []
    assert load.counts["c"] > 0 and load.counts["d"] > 0
    assert load.total > 500


async def test_router_session_expiry_keeps_routing_and_recovers(router, instances, service, zk):
    instances.start("e1")
    await instances.wait_members(1)
    namer = the_namer(router)
    async with Load(router.port, service) as load:
        await load.until(lambda: load.counts["e1"] > 20)
        old = namer.session.session_id
        thief = KazooClient(zk.hosts, client_id=namer.session.client_id)
        await asyncio.to_thread(thief.start, 30)
        await asyncio.to_thread(thief.stop)
        thief.close()
        await namer.session.state.wait_for(lambda s: s == EXPIRED, 30)
        await namer.session.wait_connected(30)
        assert namer.session.session_id != old
        # watches were re-established on the new session: a new member gets traffic
        instances.start("e2")
        await instances.wait_members(2)
        await load.until(lambda: load.counts["e2"] > 10)
    assert load.failures == []


async def test_zookeeper_restart_while_traffic_flows(router, instances, service, zk):
    instances.start("r1")
    instances.start("r2")
    await instances.wait_members(2)
    namer = the_namer(router)
    async with Load(router.port, service) as load:
        await load.until(lambda: load.counts["r1"] > 20 and load.counts["r2"] > 20)
        before = load.total
        await asyncio.to_thread(zk.stop)
        await namer.session.state.wait_for(lambda s: s == SUSPENDED, 20)
        await load.more(300)  # ZooKeeper is down: known members keep serving
        state = namer.admin_state()["serversets"][f"/discovery/{service}"]
        assert state["state"] == "stale" and state["alive"] == 2
        await asyncio.to_thread(zk.start)
        await namer.session.wait_connected(30)
        instances.start("r3")
        await instances.wait_members(3)
        await load.until(lambda: load.counts["r3"] > 10)
    assert load.failures == []
    assert load.total - before > 300
