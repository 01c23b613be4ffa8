"""Never stuck (Linkerd #847, #1829): ZooKeeper down, partitioned, session expired.

Each test runs its own ZooKeeper (the session-wide one is left alone) and, for
partitions, a TCP proxy between the namer and ZooKeeper that can cut the namer off
while the test keeps writing to ZooKeeper directly.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from kazoo.client import KazooClient

from namerouter.dtab.path import Path
from namerouter.dtab.tree import Leaf
from namerouter.namers.serversets import ServersetsNamer
from namerouter.naming.addr import ADDR_PENDING, AddrBound
from namerouter.naming.var import PENDING, Ok
from namerouter.zk import CONNECTED, EXPIRED, SUSPENDED
from tests.support.ports import free_port
from tests.support.zookeeper import ZooKeeperServer
from tests.test_serversets import Writer, member, ports


class TcpProxy:
    """Loopback TCP forwarder that can be partitioned (connections cut, new ones refused)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()

    async def start(self) -> "TcpProxy":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.close()
            return
        self.conns |= {cw, uw}
        await asyncio.gather(self._pipe(cr, uw), self._pipe(ur, cw))
        self.conns -= {cw, uw}

    async def partition(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed() if not self.conns else None
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()
        self.server = None

    async def heal(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self.server is not None:
            await self.partition()


@pytest.fixture
def own_zk():
    zk = ZooKeeperServer().start()
    yield zk
    zk.cleanup()


@pytest.fixture
def writer(own_zk):
    w = Writer(own_zk.hosts)
    yield w
    w.close()


def record(var):
    seen = []
    return seen, var.observe(seen.append)


async def leaf(namer, path, timeout=20):
    act = namer.lookup(path)
    hold = act.observe(lambda s: None)
    tree = await act.wait_ok(timeout)
    assert isinstance(tree, Leaf), tree
    return tree.value, hold


async def test_zookeeper_down_keeps_last_members_then_resyncs(own_zk, writer):
    await writer.add("/discovery/pong", member(8002), ephemeral=False)
    namer = ServersetsNamer(own_zk.hosts, session_timeout_ms=4000)
    await namer.start()
    try:
        b, hold = await leaf(namer, Path.of("discovery", "pong"))
        seen, obs = record(b.addr)
        await asyncio.to_thread(own_zk.stop)
        await namer.session.state.wait_for(lambda s: s == SUSPENDED, 20)
        await asyncio.sleep(0.5)
        st = namer.admin_state()["serversets"]["/discovery/pong"]
        assert st["state"] == "stale" and st["session"] == SUSPENDED
        assert ports(b.addr.sample()) == [8002]  # still routable while ZK is down
        await asyncio.to_thread(own_zk.start)
        await namer.session.wait_connected(30)
        # watches are re-established: a change made now is seen
        await writer.add("/discovery/pong", member(8003), ephemeral=False)
        await b.addr.wait_for(lambda a: isinstance(a, AddrBound) and ports(a) == [8002, 8003], 20)
        assert all(isinstance(a, AddrBound) for a in seen), seen  # never pending/neg/failed
        assert namer.admin_state()["serversets"]["/discovery/pong"]["state"] == "synced"
        obs.close()
        hold.close()
    finally:
        await namer.close()


async def test_partition_hides_changes_until_healed(own_zk, writer):
    proxy = await TcpProxy(own_zk.port).start()
    m1 = await writer.add("/discovery/web", member(8001))
    namer = ServersetsNamer(f"127.0.0.1:{proxy.port}", session_timeout_ms=4000)
    await namer.start()
    try:
        b, hold = await leaf(namer, Path.of("discovery", "web"))
        seen, obs = record(b.addr)
        await proxy.partition()
        await namer.session.state.wait_for(lambda s: s != CONNECTED, 20)
        # membership changes while the namer cannot see ZooKeeper
        await writer.add("/discovery/web", member(8002))
        await writer.delete(m1)
        await asyncio.sleep(0.3)
        assert ports(b.addr.sample()) == [8001]  # last known members, not pending
        await proxy.heal()
        await b.addr.wait_for(lambda a: isinstance(a, AddrBound) and ports(a) == [8002], 20)
        assert all(isinstance(a, AddrBound) for a in seen), seen
        obs.close()
        hold.close()
    finally:
        await namer.close()
        await proxy.close()


async def test_partition_longer_than_session_timeout_expires_and_recovers(own_zk, writer):
    proxy = await TcpProxy(own_zk.port).start()
    await writer.add("/discovery/api", member(8001))
    namer = ServersetsNamer(f"127.0.0.1:{proxy.port}", session_timeout_ms=800)
    await namer.start()
    try:
        b, hold = await leaf(namer, Path.of("discovery", "api"))
        seen, obs = record(b.addr)
        await proxy.partition()
        await writer.add("/discovery/api", member(8002))
        await asyncio.sleep(2.0)  # > the negotiated session timeout: the server expires it
        assert ports(b.addr.sample()) == [8001]
        await proxy.heal()
        await namer.session.state.wait_for(lambda s: s == EXPIRED, 30)
        await namer.session.wait_connected(30)
        await b.addr.wait_for(lambda a: isinstance(a, AddrBound) and ports(a) == [8001, 8002], 20)
        assert namer.session.expirations >= 1
        assert all(isinstance(a, AddrBound) for a in seen), seen
        obs.close()
        hold.close()
    finally:
        await namer.close()
        await proxy.close()


async def test_session_expiry_reestablishes_watches(own_zk, writer):
    await writer.add("/discovery/pong", member(8002))
    namer = ServersetsNamer(own_zk.hosts)
    await namer.start()
    try:
        b, hold = await leaf(namer, Path.of("discovery", "pong"))
        seen, obs = record(b.addr)
        old_session = namer.session.session_id
        # The standard trick: a second client takes the session over and closes it.
        sid, pw = namer.session.client_id
        thief = KazooClient(own_zk.hosts, client_id=(sid, pw))
        await asyncio.to_thread(thief.start, 30)
        await asyncio.to_thread(thief.stop)
        await namer.session.state.wait_for(lambda s: s == EXPIRED, 30)
        await namer.session.wait_connected(30)
        assert namer.session.session_id != old_session
        t0 = time.monotonic()
        await writer.add("/discovery/pong", member(8003))
        await b.addr.wait_for(lambda a: isinstance(a, AddrBound) and ports(a) == [8002, 8003], 20)
        assert time.monotonic() - t0 < 2.0  # watches are live again (not re-polled later)
        assert all(isinstance(a, AddrBound) for a in seen), seen
        assert namer.admin_state()["session"]["expirations"] == 1
        obs.close()
        hold.close()
        thief.close()
    finally:
        await namer.close()


async def test_pending_names_resolve_once_zookeeper_is_up():
    port = free_port()
    namer = ServersetsNamer(f"127.0.0.1:{port}")
    await namer.start()
    zk = None
    try:
        act = namer.lookup(Path.of("discovery", "late"))
        hold = act.observe(lambda s: None)
        await asyncio.sleep(0.5)
        assert act.sample() is PENDING
        st = namer.admin_state()["serversets"]["/discovery/late"]
        assert st["state"] == "pending" and st["session"] != CONNECTED
        zk = await asyncio.to_thread(lambda: ZooKeeperServer(port=port).start())
        w = await asyncio.to_thread(Writer, zk.hosts)
        await w.add("/discovery/late", member(8002))
        tree = await act.states.wait_for(lambda s: isinstance(s, Ok) and isinstance(s.value, Leaf), 30)
        assert ports(tree.value.value.addr.sample()) == [8002]
        w.close()
        hold.close()
    finally:
        await namer.close()
        if zk is not None:
            zk.cleanup()


async def test_never_connected_addr_is_pending_not_failed():
    namer = ServersetsNamer(f"127.0.0.1:{free_port()}")
    await namer.start()
    try:
        act = namer.lookup(Path.of("x"))
        hold = act.observe(lambda s: None)
        await asyncio.sleep(0.3)
        assert act.sample() is PENDING
        hold.close()
    finally:
        t0 = time.monotonic()
        await namer.close()
        assert time.monotonic() - t0 < 5  # closing never hangs on an absent ZooKeeper
    assert ADDR_PENDING
