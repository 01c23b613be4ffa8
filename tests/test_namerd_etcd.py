"""namerd on a real etcd v3 (JSON gateway): end to end through the HTTP API, two
namerds sharing it, an etcd restart."""
from __future__ import annotations

import asyncio
import base64
import uuid

import aiohttp
import pytest

from namerd.storage.etcd import EtcdDtabStore
from tests.namerd_support import WatchStream, start_namerd

DTAB = "application/dtab"


@pytest.fixture
def prefix():
    return f"/namerd-{uuid.uuid4().hex[:8]}/dtabs"


async def put(http, url, text, **headers):
    async with http.put(url, data=text, headers={"Content-Type": DTAB, **headers}) as r:
        return r.status


async def test_end_to_end_with_etags_and_two_namerds(etcd_server, prefix):
    a = await start_namerd(EtcdDtabStore(etcd_server.url, prefix))
    b = await start_namerd(EtcdDtabStore(etcd_server.url, prefix))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(a.url + "/api/1/dtabs/default", data="/svc=>/#/io.l5d.fs",
                                 headers={"Content-Type": DTAB}) as r:
                assert r.status == 204
            async with http.get(b.url + "/api/1/dtabs/default", headers={"Accept": DTAB}) as r:
                etag = r.headers["ETag"]
                assert await r.read() == b"/svc=>/#/io.l5d.fs\n"
            assert base64.b64decode(etag).decode().isdigit()  # mod_revision as text
            # The key is where Linkerd's layout puts it, holding the dtab text.
            async with http.post(etcd_server.url + "/v3/kv/range",
                                 json={"key": base64.b64encode(f"{prefix}/default".encode()).decode()}) as r:
                kv = (await r.json())["kvs"][0]
                assert base64.b64decode(kv["value"]) == b"/svc=>/#/io.l5d.fs"
                assert kv["mod_revision"] == base64.b64decode(etag).decode()
            async with WatchStream(http, b.url + "/api/1/dtabs/default?watch=true", {"Accept": DTAB}) as w:
                assert await w.line() == b"/svc=>/#/io.l5d.fs"
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/new", **{"If-Match": etag}) == 204
                assert await w.line(timeout=1.0) == b"/svc=>/new"
                assert loop.time() - t0 < 1.0
                # The other namerd enforces the same version.
                assert await put(http, b.url + "/api/1/dtabs/default", "/svc=>/lost", **{"If-Match": etag}) == 412
                await w.nothing_for(0.2)
            async with http.delete(b.url + "/api/1/dtabs/default") as r:
                assert r.status == 204
            async with http.get(a.url + "/api/1/dtabs/default") as r:
                assert r.status == 404
    finally:
        await a.close()
        await b.close()


async def test_watch_survives_an_etcd_restart(etcd_server, prefix):
    a = await start_namerd(EtcdDtabStore(etcd_server.url, prefix))
    try:
        async with aiohttp.ClientSession() as http:
            assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/before") == 204
            async with WatchStream(http, a.url + "/api/1/dtabs/default?watch=1", {"Accept": DTAB}) as w:
                assert await w.line() == b"/svc=>/before"
                await asyncio.to_thread(etcd_server.stop)
                try:
                    async with http.get(a.url + "/api/1/dtabs/default", headers={"Accept": DTAB}) as r:
                        assert (r.status, await r.read()) == (200, b"/svc=>/before\n")  # last known
                    assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/during") == 503
                finally:
                    await asyncio.to_thread(etcd_server.start)
                assert await put(http, a.url + "/api/1/dtabs/default", "/svc=>/after") == 204
                assert await w.line(timeout=10) == b"/svc=>/after"
    finally:
        await a.close()
