"""Registration API (namerouter.announce) against a real ZooKeeper."""
from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from kazoo.client import KazooClient

from namerouter.announce import Announcer, announce, member_json
from namerouter.dtab.path import Path
from namerouter.namers.serversets import ServersetsNamer
from namerouter.naming.addr import AddrBound
from tests.support.ports import free_port
from tests.support.zookeeper import ZooKeeperServer


@pytest.fixture
def base():
    return "/a-" + uuid.uuid4().hex[:8]


@pytest.fixture
def kz(zk_server):
    c = KazooClient(zk_server.hosts, timeout=15)
    c.start(30)
    yield c
    c.stop()
    c.close()


async def members(kz, path):
    try:
        children = await asyncio.to_thread(kz.get_children, path)
    except Exception:  # noqa: BLE001 - NoNode: no members
        return {}
    out = {}
    for c in children:
        data, stat = await asyncio.to_thread(kz.get, f"{path}/{c}")
        out[c] = (json.loads(data), stat)
    return out


def test_member_json_is_the_serverset_format():
    assert json.loads(member_json("127.0.0.1", 8002)) == {
        "serviceEndpoint": {"host": "127.0.0.1", "port": 8002},
        "additionalEndpoints": {},
        "status": "ALIVE",
    }
    assert json.loads(member_json("10.0.0.1", 80, {"http": "10.0.0.1:81", "admin": ("10.0.0.1", 82)}, shard=3)) == {
        "serviceEndpoint": {"host": "10.0.0.1", "port": 80},
        "additionalEndpoints": {"http": {"host": "10.0.0.1", "port": 81},
                                "admin": {"host": "10.0.0.1", "port": 82}},
        "status": "ALIVE",
        "shard": 3,
    }


@pytest.mark.parametrize("kwargs, message", [
    (dict(port=0), "port must be 1-65535"),
    (dict(port="http"), "port 'http' is not a number"),
    (dict(shard=-1), "shard must be a non-negative integer"),
    (dict(endpoints={"http": "nohostport"}), "additionalEndpoints.http: expected HOST:PORT"),
    (dict(path="discovery/x"), "serverset path must look like /discovery/name"),
    (dict(path="/discovery/../x"), "'..' is not a valid znode name"),
])
def test_bad_input_is_rejected_with_a_clear_error(kwargs, message):
    args = dict(zk_hosts="127.0.0.1:2181", path="/discovery/x", host="127.0.0.1", port=8002)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        announce(**args)


async def test_async_context_registers_ephemeral_sequential_member(zk_server, kz, base):
    async with announce(zk_server.hosts, f"{base}/pong", "127.0.0.1", 8002) as ann:
        node = ann.node.sample()
        assert node is not None and node.startswith(f"{base}/pong/member_")
        found = await members(kz, f"{base}/pong")
        assert list(found) == [node.rsplit("/", 1)[1]]
        doc, stat = found[node.rsplit("/", 1)[1]]
        assert doc == {"serviceEndpoint": {"host": "127.0.0.1", "port": 8002},
                       "additionalEndpoints": {}, "status": "ALIVE"}
        assert stat.ephemeralOwner == ann.session.session_id
    assert await members(kz, f"{base}/pong") == {}  # removed on exit, not left to expire


async def test_namer_sees_announced_instances(zk_server, base):
    namer = ServersetsNamer(zk_server.hosts)
    await namer.start()
    try:
        async with announce(zk_server.hosts, f"{base}/pong", "127.0.0.1", 8002):
            act = namer.lookup(Path.of(*base.strip("/").split("/"), "pong"))
            hold = act.observe(lambda s: None)
            tree = await act.wait_ok(5)
            addr = tree.value.addr
            assert [a.port for a in addr.sample().addrs] == [8002]
            async with announce(zk_server.hosts, f"{base}/pong", "127.0.0.1", 8003, endpoints={"http": "127.0.0.1:9003"}):
                await addr.wait_for(lambda a: isinstance(a, AddrBound) and len(a.addrs) == 2, 1)
            await addr.wait_for(lambda a: isinstance(a, AddrBound) and len(a.addrs) == 1, 1)
            hold.close()
    finally:
        await namer.close()


async def test_member_is_recreated_after_session_expiry(zk_server, kz, base):
    ann = Announcer(zk_server.hosts, f"{base}/pong", "127.0.0.1", 8002)
    await ann.start()
    try:
        first = await ann.wait_registered(5)
        old_sid = ann.session.session_id
        thief = KazooClient(zk_server.hosts, client_id=ann.session.client_id)
        await asyncio.to_thread(thief.start, 10)
        await asyncio.to_thread(thief.stop)
        thief.close()
        second = await ann.node.wait_for(lambda n: n is not None and n != first, 10)
        assert ann.session.session_id != old_sid
        found = await members(kz, f"{base}/pong")
        assert list(found) == [second.rsplit("/", 1)[1]]  # the old one went with the old session
        assert found[second.rsplit("/", 1)[1]][1].ephemeralOwner == ann.session.session_id
        assert ann.registrations == 2
    finally:
        await ann.close()
    assert await members(kz, f"{base}/pong") == {}


async def test_member_deleted_by_someone_else_is_recreated(zk_server, kz, base):
    async with announce(zk_server.hosts, f"{base}/pong", "127.0.0.1", 8002) as ann:
        first = ann.node.sample()
        await asyncio.to_thread(kz.delete, first)
        second = await ann.node.wait_for(lambda n: n is not None and n != first, 5)
        assert list(await members(kz, f"{base}/pong")) == [second.rsplit("/", 1)[1]]


async def test_registers_once_zookeeper_comes_up():
    port = free_port()
    ann = Announcer(f"127.0.0.1:{port}", "/discovery/late", "127.0.0.1", 8002)
    await ann.start()  # returns at once although nothing listens
    zk = None
    try:
        await asyncio.sleep(0.3)
        assert ann.node.sample() is None
        zk = await asyncio.to_thread(lambda: ZooKeeperServer(port=port).start())
        node = await ann.wait_registered(30)  # generous: ZooKeeper starts slowly on a loaded machine
        assert node.startswith("/discovery/late/member_")
    finally:
        await ann.close()
        if zk is not None:
            zk.cleanup()


def test_sync_context_manager_from_plain_threads(zk_server, base):
    kz = KazooClient(zk_server.hosts, timeout=15)
    kz.start(30)
    try:
        result = {}

        def service():
            with announce(zk_server.hosts, f"{base}/threaded", "127.0.0.1", 8080, shard=1) as a:
                result["node"] = a.node
                result["children"] = kz.get_children(f"{base}/threaded")

        t = threading.Thread(target=service)
        t.start()
        t.join(20)
        assert result["node"].startswith(f"{base}/threaded/member_")
        assert len(result["children"]) == 1
        assert kz.get_children(f"{base}/threaded") == []
    finally:
        kz.stop()
        kz.close()
