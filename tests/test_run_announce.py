"""The main job registers servers with the router's announcers (Linkerd's router
``announcers`` + server ``announce``) in a real ZooKeeper and withdraws them on close.

The config objects are built in code here (tests/test_linker_announce_yaml.py covers the
same path from YAML through the config loader).
"""
from __future__ import annotations

import asyncio
import json

from kazoo.client import KazooClient

from namerouter.announcers.serversets import ServersetsAnnouncerConfig
from namerouter.config.schema import AdminConfig, LinkerConfig
from namerouter.config.validate import Validated
from namerouter.linker import Linker
from namerouter.namers.serversets import ZkAddr
from namerouter.proxy.config import RouterConfig, ServerConfig
from tests.support.ports import free_port


def _members(zk: KazooClient, path: str) -> list[dict]:
    if not zk.exists(path):
        return []
    return [json.loads(zk.get(f"{path}/{c}")[0]) for c in zk.get_children(path) if c.startswith("member_")]


async def test_servers_are_announced_and_withdrawn(zk_server):
    host, port = zk_server.hosts.split(",")[0].rsplit(":", 1)
    ann = ServersetsAnnouncerConfig(zkAddrs=[ZkAddr(host=host, port=int(port))], pathPrefix="/linker-announce")
    router_port = free_port()
    rcfg = RouterConfig(label="in", dtab="/svc=>/$/inet/127.1/1", announcers=[ann],
                            servers=[ServerConfig(port=router_port, ip="127.0.0.1",
                                                      announce=["/#/io.l5d.serversets/pong"])])
    cfg = LinkerConfig(routers=[rcfg], admin=AdminConfig(port=free_port()))
    cfg.interpreters.append(None)
    object.__setattr__(ann, "_kind", "io.l5d.serversets")
    linker = Linker(Validated(cfg, [], {}))
    zk = KazooClient(hosts=zk_server.hosts)
    await asyncio.to_thread(zk.start, 15)
    try:
        await linker.start()
        try:
            members: list[dict] = []
            for _ in range(200):
                members = await asyncio.to_thread(_members, zk, "/linker-announce/pong")
                if members:
                    break
                await asyncio.sleep(0.025)
            assert [m["serviceEndpoint"] for m in members] == [{"host": "127.0.0.1", "port": router_port}]
            assert members[0]["status"] == "ALIVE"
        finally:
            await linker.close(grace_s=1.0)
        assert await asyncio.to_thread(_members, zk, "/linker-announce/pong") == []
    finally:
        await asyncio.to_thread(zk.stop)
        await asyncio.to_thread(zk.close)
