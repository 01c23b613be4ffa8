"""Router announcers from YAML: Linkerd's ``routers[].announcers`` +
``servers[].announce``, loaded by the real config loader and run through the Linker
against the real ZooKeeper. The member znode appears with the server's address once the
router listens, and is withdrawn on close *before* in-flight requests finish draining."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from namerouter.announcers.serversets import ServersetsAnnouncerConfig
from namerouter.config.loader import ConfigError
from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.support.backends import Backend
from tests.support.ports import free_port


def config(zk_port: int, prefix: str, router_port: int, admin_port: int, backend_port: int) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
routers:
- protocol: http
  label: incoming
  dtab: /svc => /$/inet/127.1/{backend_port};
  announcers:
  - kind: io.l5d.serversets
    zkAddrs:
    - host: 127.0.0.1
      port: {zk_port}
    pathPrefix: {prefix}
  servers:
  - port: {router_port}
    ip: 127.0.0.1
    announce:
    - /#/io.l5d.serversets/pong
"""


def _members(zk: KazooClient, path: str) -> list[dict]:
    if not zk.exists(path):
        return []
    out = []
    for c in zk.get_children(path):
        if not c.startswith("member_"):
            continue
        try:
            out.append(json.loads(zk.get(f"{path}/{c}")[0]))
        except NoNodeError:
            pass  # withdrawn between the listing and the read: it is gone
    return out


@pytest.fixture
def zk(zk_server):
    c = KazooClient(hosts=zk_server.hosts, timeout=15)
    c.start(30)
    yield c
    c.stop()
    c.close()


async def test_yaml_announcers_register_and_withdraw_before_drain(zk_server, zk):
    prefix = "/yaml-announce-" + uuid.uuid4().hex[:8]
    router_port, admin_port = free_port(), free_port()
    async with Backend("pong") as backend:
        validated = loads_linker(config(zk_server.port, prefix, router_port, admin_port, backend.port))
        rcfg = validated.config.routers[0]
        # the loader built the announcer's own config class from the YAML mapping
        assert isinstance(rcfg.announcers[0], ServersetsAnnouncerConfig)
        assert rcfg.announcers[0].pathPrefix == prefix
        assert rcfg.servers[0].announce == ["/#/io.l5d.serversets/pong"]

        linker = Linker(validated)
        await linker.start()
        closing: asyncio.Task | None = None
        try:
            [group] = linker.announcements
            for a in group.items:
                await a.wait_registered(10)
            members = await asyncio.to_thread(_members, zk, f"{prefix}/pong")
            assert [m["serviceEndpoint"] for m in members] == [{"host": "127.0.0.1", "port": router_port}]
            assert members[0]["status"] == "ALIVE"

            # A slow request is in flight when the linker is asked to close: the member
            # must be gone from ZooKeeper while the router still drains that request.
            async with aiohttp.ClientSession() as s:
                slow = asyncio.ensure_future(s.get(f"http://127.0.0.1:{router_port}/slow?ms=1500",
                                                   headers={"Host": "pong"}))
                t0 = time.monotonic()
                while not backend.requests or not backend.requests[-1].uri.startswith("/slow"):
                    assert time.monotonic() - t0 < 5, "the slow request never reached the backend"
                    await asyncio.sleep(0.01)
                closing = asyncio.ensure_future(linker.close(grace_s=5.0))
                while await asyncio.to_thread(_members, zk, f"{prefix}/pong"):
                    assert time.monotonic() - t0 < 5, "member still registered while draining"
                    await asyncio.sleep(0.02)
                assert not slow.done(), "the request finished before the member was withdrawn"
                resp = await slow
                assert (resp.status, await resp.text()) == (200, "slow")  # drained, not cut
                resp.release()
            await closing
        finally:
            if closing is None:
                await linker.close(grace_s=1.0)
        assert await asyncio.to_thread(_members, zk, f"{prefix}/pong") == []


def test_yaml_announcer_of_unknown_kind_is_a_clear_error():
    text = config(2181, "/x", 4140, 9990, 1).replace("kind: io.l5d.serversets", "kind: io.l5d.serverset")
    with pytest.raises(ConfigError, match=r"routers\[0\]\.announcers\[0\]\.kind: unknown kind 'io.l5d.serverset'"):
        loads_linker(text)
