"""namerd on a real ZooKeeper: several namerds share it, restarts lose nothing, an
outage keeps the last known dtabs, ACLs map to 403."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from namerd.storage.zk import ZkDtabStore
from tests.namerd_support import WatchStream, start_namerd

DTAB = "application/dtab"


@pytest.fixture
def prefix():
    return f"/namerd-{uuid.uuid4().hex[:8]}/dtabs"


async def put(http, url, text, **headers):
    async with http.put(url, data=text, headers={"Content-Type": DTAB, **headers}) as r:
        return r.status


async def get(http, url):
    async with http.get(url, headers={"Accept": DTAB}) as r:
        return r.status, r.headers.get("ETag"), await r.read()


async def test_a_write_through_one_namerd_reaches_the_others_watch_within_1s(zk_server, prefix):
    a = await start_namerd(ZkDtabStore(zk_server.hosts, prefix, 4000))
    b = await start_namerd(ZkDtabStore(zk_server.hosts, prefix, 4000))
    try:
        async with aiohttp.ClientSession() as http:
            assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/#/io.l5d.fs") == 204
            async with WatchStream(http, b.url + "/api/1/dtabs/default?watch=1", {"Accept": DTAB}) as w, \
                    WatchStream(http, b.url + "/api/1/bind/default?path=/svc/web&watch=1") as bw:
                assert await w.line() == b"/svc=>/#/io.l5d.fs"
                assert await bw.json() == {"type": "neg"}
                loop = asyncio.get_running_loop()
                for i in range(5):
                    t0 = loop.time()
                    assert await put(http, a.url + "/api/1/dtabs/default", f"/svc=>/$/inet/127.0.0.1/{8000 + i}") == 204
                    assert await w.line(timeout=1.0) == f"/svc=>/$/inet/127.0.0.1/{8000 + i}".encode()
                    doc = await bw.json(timeout=1.0)
                    assert doc["bound"]["addr"]["addrs"][0]["port"] == 8000 + i
                    assert loop.time() - t0 < 1.0
            # Both serve the same version.
            assert (await get(http, a.url + "/api/1/dtabs/default"))[1] == \
                   (await get(http, b.url + "/api/1/dtabs/default"))[1] == "AAAABQ=="  # stat.version 5 (created at 0, 5 updates)
    finally:
        await a.close()
        await b.close()


async def test_namerd_restarted_loses_nothing(zk_server, prefix):
    a = await start_namerd(ZkDtabStore(zk_server.hosts, prefix, 4000))
    async with aiohttp.ClientSession() as http:
        for i in range(5):
            assert await put(http, a.url + f"/api/1/dtabs/ns{i}", f"/svc=>/#/io.l5d.fs/n{i}") == 204
        before = [await get(http, a.url + f"/api/1/dtabs/ns{i}") for i in range(5)]
        await a.close()
        b = await start_namerd(ZkDtabStore(zk_server.hosts, prefix, 4000))
        try:
            after = [await get(http, b.url + f"/api/1/dtabs/ns{i}") for i in range(5)]
            assert after == before
            async with http.get(b.url + "/api/1/dtabs") as r:
                assert await r.json() == [f"ns{i}" for i in range(5)]
            # The ETag read before the restart still guards an update.
            assert await put(http, b.url + "/api/1/dtabs/ns0", "/svc=>/x", **{"If-Match": before[0][1]}) == 204
            assert await put(http, b.url + "/api/1/dtabs/ns0", "/svc=>/y", **{"If-Match": before[0][1]}) == 412
        finally:
            await b.close()


async def test_zookeeper_outage_keeps_last_known_dtabs_and_resyncs(zk_server, prefix):
    a = await start_namerd(ZkDtabStore(zk_server.hosts, prefix, 4000))
    try:
        async with aiohttp.ClientSession() as http:
            assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/before") == 204
            async with WatchStream(http, a.url + "/api/1/dtabs/default?watch=1", {"Accept": DTAB}) as w:
                assert await w.line() == b"/svc=>/before"
                zk_server.stop()
                try:
                    for _ in range(100):  # wait until kazoo noticed
                        if not a.store._client.connected:
                            break
                        await asyncio.sleep(0.05)
                    status, etag, body = await get(http, a.url + "/api/1/dtabs/default")
                    assert (status, body) == (200, b"/svc=>/before\n")  # last known
                    async with http.get(a.url + "/api/1/dtabs") as r:
                        assert await r.json() == ["default"]
                    async with http.put(a.url + "/api/1/dtabs/default", data="/svc=>/during",
                                        headers={"Content-Type": DTAB}) as r:
                        assert r.status == 503
                        assert "ZooKeeper" in await r.text()
                finally:
                    zk_server.start()
                # Another writer changes the dtab right after ZooKeeper returns.
                from kazoo.client import KazooClient
                from kazoo.retry import KazooRetry

                # zk_server.start() returns once ZooKeeper serves sessions. Kazoo's default
                # connection retry doubles its pause up to an hour, so one refused attempt
                # on a busy box could push the next one past start()'s deadline: retry
                # every <=0.5 s instead, with a deadline generous for a loaded 2-core CI box.
                kz = KazooClient(hosts=zk_server.hosts, timeout=10,
                                 connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5))
                await asyncio.to_thread(kz.start, 60)
                try:
                    await asyncio.to_thread(kz.set, f"{prefix}/default", b"/svc=>/after")
                finally:
                    await asyncio.to_thread(kz.stop)
                    kz.close()
                assert await w.line(timeout=20) == b"/svc=>/after"
    finally:
        await a.close()


async def test_acls_and_auth_map_noauth_to_403(zk_server, prefix):
    from kazoo.security import make_digest_acl_credential

    ident = make_digest_acl_credential("alice", "secret")
    owner = ZkDtabStore(zk_server.hosts, prefix, 4000, auth=("digest", "alice:secret"),
                        acls=[("digest", ident, "crwda")])
    stranger = ZkDtabStore(zk_server.hosts, prefix, 4000)
    a = await start_namerd(owner)
    try:
        async with aiohttp.ClientSession() as http:
            assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/a") == 204
            assert (await get(http, a.url + "/api/1/dtabs/default"))[0] == 200
            b = await start_namerd(stranger)
            try:
                assert (await get(http, b.url + "/api/1/dtabs/default"))[0] == 403
                assert await put(http, b.url + "/api/1/dtabs/default", "/svc=>/evil") == 403
                async with http.get(b.url + "/api/1/dtabs") as r:
                    assert r.status == 403
            finally:
                await b.close()
            assert (await get(http, a.url + "/api/1/dtabs/default"))[2] == b"/svc=>/a\n"
    finally:
        await a.close()


async def test_an_expired_zookeeper_session_is_replaced_and_watches_resume(zk_server, prefix):
    """Linkerd #847/#1829: watches left on an expired session. Here kazoo opens a new
    session and the store's watchers re-read, so streams keep following the dtab."""
    from kazoo.client import KazooClient
    from kazoo.protocol.states import KazooState

    a = await start_namerd(ZkDtabStore(zk_server.hosts, prefix, 4000))
    try:
        async with aiohttp.ClientSession() as http:
            assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/one") == 204
            async with WatchStream(http, a.url + "/api/1/dtabs/default?watch=1", {"Accept": DTAB}) as w:
                assert await w.line() == b"/svc=>/one"
                client = a.store._client
                lost = asyncio.Event()
                loop = asyncio.get_running_loop()
                client.add_listener(lambda st: st == KazooState.LOST and loop.call_soon_threadsafe(lost.set))
                old_session = client.client_id[0]
                # The classic way to expire a session: a second client joins it and leaves.
                twin = KazooClient(hosts=zk_server.hosts, client_id=client.client_id)
                await asyncio.to_thread(twin.start, 10)
                await asyncio.to_thread(twin.stop)
                twin.close()
                await asyncio.wait_for(lost.wait(), 15)
                for _ in range(200):
                    if client.connected and client.client_id and client.client_id[0] != old_session:
                        break
                    await asyncio.sleep(0.05)
                assert client.client_id[0] != old_session
                assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/two") == 204
                assert await w.line(timeout=5) == b"/svc=>/two"
    finally:
        await a.close()


async def test_an_unparseable_znode_is_500_and_ends_watch_streams_with_the_error(zk_server, prefix):
    """Someone wrote garbage straight into ZooKeeper: GET says why (500), a watch writes
    the error as one line of text and ends (the client reconnects), as Linkerd."""
    from kazoo.client import KazooClient

    a = await start_namerd(ZkDtabStore(zk_server.hosts, prefix, 4000))
    kz = KazooClient(hosts=zk_server.hosts, timeout=10)
    await asyncio.to_thread(kz.start, 30)
    try:
        async with aiohttp.ClientSession() as http:
            assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/ok") == 204
            async with WatchStream(http, a.url + "/api/1/dtabs/default?watch=1", {"Accept": DTAB}) as w:
                assert await w.line() == b"/svc=>/ok"
                await asyncio.to_thread(kz.set, f"{prefix}/default", b"/svc=>")
                err = await w.line(timeout=5)
                assert f"znode {prefix}/default:1:7".encode() in err
                with pytest.raises(EOFError):
                    await w.line(timeout=5)
            status, _, body = await get(http, a.url + "/api/1/dtabs/default")
            assert status == 500 and f"znode {prefix}/default".encode() in body
            # Fixing the znode through the API works (PUT without If-Match).
            assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/fixed") == 204
            assert (await get(http, a.url + "/api/1/dtabs/default"))[2] == b"/svc=>/fixed\n"
    finally:
        await asyncio.to_thread(kz.stop)
        kz.close()
        await a.close()
