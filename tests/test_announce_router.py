"""Router announcers: `announcers: [{kind: io.l5d.serversets, ...}]` + a server's `announce` list."""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from kazoo.client import KazooClient

from namerouter.announcers import announce_server
from namerouter.announcers.serversets import ServersetsAnnouncer, ServersetsAnnouncerConfig, announce_host
from namerouter.namers.serversets import ZkAddr


@dataclass
class Top:
    """A config with Linkerd's top-level ``announcers`` list, as the main config will have."""

    announcers: list[Any] = field(default_factory=list, metadata={"plugins": "ANNOUNCERS"})


@pytest.fixture
def kz(zk_server):
    c = KazooClient(zk_server.hosts, timeout=15)
    c.start(30)
    yield c
    c.stop()
    c.close()


async def test_server_announce_paths_go_to_pathprefix(zk_server, kz):
    prefix = "/r-" + uuid.uuid4().hex[:8]
    ann = ServersetsAnnouncer.from_config(ServersetsAnnouncerConfig(
        zkAddrs=[ZkAddr("127.0.0.1", zk_server.port)], pathPrefix=prefix))
    group = await announce_server([ann], ["/#/io.l5d.serversets/pong", "/#/io.l5d.serversets/team/ping"],
                                  ("127.0.0.1", 4141))
    try:
        for a in group.items:
            await a.wait_registered(5)
        [pong] = await asyncio.to_thread(kz.get_children, f"{prefix}/pong")
        [ping] = await asyncio.to_thread(kz.get_children, f"{prefix}/team/ping")
        data, _ = await asyncio.to_thread(kz.get, f"{prefix}/pong/{pong}")
        assert json.loads(data) == {"serviceEndpoint": {"host": "127.0.0.1", "port": 4141},
                                    "additionalEndpoints": {}, "status": "ALIVE", "shard": 0}
        assert ann.admin_state()[0]["path"] == f"{prefix}/pong"
    finally:
        await group.close()
    assert await asyncio.to_thread(kz.get_children, f"{prefix}/pong") == []
    assert await asyncio.to_thread(kz.get_children, f"{prefix}/team/ping") == []
    assert ann.admin_state() == []


async def test_unclaimed_announce_path_is_a_clear_error(zk_server):
    ann = ServersetsAnnouncer(zk_server.hosts)
    with pytest.raises(ValueError, match=r"announce path /#/io.l5d.fs/x matches no announcer "
                                         r"\(announcers: /#/io.l5d.serversets\)"):
        await announce_server([ann], ["/#/io.l5d.fs/x"], ("127.0.0.1", 4141))
    with pytest.raises(ValueError, match="names no serverset"):
        await announce_server([ann], ["/#/io.l5d.serversets"], ("127.0.0.1", 4141))


async def test_custom_prefix_and_wildcard_bind(zk_server, kz):
    prefix = "/r-" + uuid.uuid4().hex[:8]
    ann = ServersetsAnnouncer.from_config(ServersetsAnnouncerConfig(
        zkAddrs=[ZkAddr("127.0.0.1", zk_server.port)], pathPrefix=prefix, prefix="/zk"))
    group = await announce_server([ann], ["/#/zk/web"], ("0.0.0.0", 4142))
    try:
        await group.items[0].wait_registered(5)
        [m] = await asyncio.to_thread(kz.get_children, f"{prefix}/web")
        data, _ = await asyncio.to_thread(kz.get, f"{prefix}/web/{m}")
        host = json.loads(data)["serviceEndpoint"]["host"]
        assert host == await announce_host("0.0.0.0") and host != "0.0.0.0"
    finally:
        await group.close()


def test_bad_path_prefix():
    with pytest.raises(ValueError, match="pathPrefix must start with /"):
        ServersetsAnnouncer("127.0.0.1:2181", path_prefix="discovery")


async def test_announce_servers_uses_each_servers_bound_address(zk_server, kz):
    from namerouter.announcers import announce_servers, build_announcers

    @dataclass
    class Server:  # the two attributes the wiring reads from a router's server config
        port: int
        announce: list = field(default_factory=list)

    prefix = "/r-" + uuid.uuid4().hex[:8]
    cfg = ServersetsAnnouncerConfig(zkAddrs=[ZkAddr("127.0.0.1", zk_server.port)], pathPrefix=prefix)
    cfg.kind = "io.l5d.serversets"
    announcers = build_announcers([cfg])
    servers = [Server(0, ["/#/io.l5d.serversets/in"]), Server(4140)]
    handle = await announce_servers(announcers, servers, [("127.0.0.1", 41410), ("127.0.0.1", 4140)])
    try:
        [a] = handle.items
        await a.wait_registered(5)
        [m] = await asyncio.to_thread(kz.get_children, f"{prefix}/in")
        data, _ = await asyncio.to_thread(kz.get, f"{prefix}/in/{m}")
        assert json.loads(data)["serviceEndpoint"] == {"host": "127.0.0.1", "port": 41410}
    finally:
        await handle.close()
    assert await asyncio.to_thread(kz.get_children, f"{prefix}/in") == []


def test_announcer_config_validates_with_linkerd_keys():
    """The dataclass works with the generic validator the way the main config will use it."""
    from namerouter.announcers import build_announcers
    from namerouter.config import ConfigError
    from namerouter.config.validate import loads

    v = loads(Top, """
announcers:
- kind: io.l5d.serversets
  zkAddrs: [{host: zk1, port: 2181}, {host: zk2}]
  pathPrefix: /services
""")
    [ann] = build_announcers(v.config.announcers)
    assert isinstance(ann, ServersetsAnnouncer)
    assert ann.zk_hosts == "zk1:2181,zk2:2181" and ann.path_prefix == "/services"
    with pytest.raises(ConfigError) as e:
        loads(Top, "announcers:\n- kind: io.l5d.serversets\n  pathPrefix: /x\n")
    assert "announcers[0]" in str(e.value) and "zkAddrs" in str(e.value)
