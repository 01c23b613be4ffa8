"""namerd's naming endpoints: bind, addr, resolve, delegate, bound-names, with a real
io.l5d.fs namer on a temp directory and the default interpreter."""
from __future__ import annotations

import asyncio
import json
import os

import aiohttp
import pytest

from namerd.storage.memory import InMemoryDtabStore
from namerouter.dtab import Dtab
from namerouter.namers.fs import FsNamer
from tests.namerd_support import WatchStream, start_namerd

DTAB = "application/dtab"


@pytest.fixture
async def setup(tmp_path):
    disco = tmp_path / "disco"
    disco.mkdir()
    (disco / "web").write_text("127.0.0.1 8080\n127.0.0.1 8081\n")
    (disco / "api").write_text("127.0.0.2 9000\n")
    store = InMemoryDtabStore({"default": Dtab.read("/svc=>/#/io.l5d.fs")})
    n = await start_namerd(store, [FsNamer(str(disco))])
    async with aiohttp.ClientSession() as http:
        yield n, http, disco
    await n.close()


async def get(http, url, **kw):
    async with http.get(url, **kw) as r:
        return r.status, r.headers, await r.read()


def leaf(id_, addrs, path="/"):
    return {"type": "leaf", "bound": {"addr": {"type": "bound", "addrs": [
        {"ip": ip, "port": p, "meta": {}} for ip, p in addrs], "meta": {}}, "id": id_, "path": path}}


async def test_bind_returns_the_bound_tree_json(setup):
    n, http, _ = setup
    status, headers, body = await get(http, n.url + "/api/1/bind/default?path=/svc/web/extra")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == leaf("/#/io.l5d.fs/web", [("127.0.0.1", 8080), ("127.0.0.1", 8081)], "/extra")


async def test_bind_with_request_dtab_takes_precedence_and_union_shape(setup):
    n, http, _ = setup
    dtab = "/svc/web=>0.9*/#/io.l5d.fs/web & 0.1*/#/io.l5d.fs/api"
    status, _, body = await get(http, n.url + "/api/1/bind/default", params={"path": "/svc/web", "dtab": dtab})
    assert status == 200
    doc = json.loads(body)
    assert doc["type"] == "union"
    assert [u["weight"] for u in doc["union"]] == [0.9, 0.1]
    assert doc["union"][1]["tree"] == leaf("/#/io.l5d.fs/api", [("127.0.0.2", 9000)])


async def test_bind_neg_and_invalid_path_and_invalid_dtab(setup):
    n, http, _ = setup
    assert json.loads((await get(http, n.url + "/api/1/bind/default?path=/nothing/here"))[2]) == {"type": "neg"}
    status, _, body = await get(http, n.url + "/api/1/bind/default", params={"path": "not-a-path"})
    assert status == 400 and body.startswith(b"Invalid path: not-a-path")
    status, _, body = await get(http, n.url + "/api/1/bind/default", params={"path": "/svc/web", "dtab": "/a=>"})
    assert status == 400 and body.startswith(b"Invalid dtab:")


async def test_bind_watch_follows_dtab_and_address_changes(setup):
    n, http, disco = setup
    async with WatchStream(http, n.url + "/api/1/bind/default?path=/svc/web&watch=1") as w:
        assert (await w.json())["bound"]["id"] == "/#/io.l5d.fs/web"
        (disco / "web").write_text("127.0.0.1 8080\n")  # a backend leaves
        doc = await w.json(timeout=3)
        assert doc == leaf("/#/io.l5d.fs/web", [("127.0.0.1", 8080)])
        async with http.put(n.url + "/api/1/dtabs/default", data="/svc=>/#/io.l5d.fs;/svc/web=>/svc/api",
                            headers={"Content-Type": DTAB}) as r:
            assert r.status == 204
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert (await w.json(timeout=3))["bound"]["id"] == "/#/io.l5d.fs/api"
        assert loop.time() - t0 < 1.0


async def test_addr_resolves_ids_through_the_owning_namer_and_strips_transformer_prefix(setup):
    n, http, disco = setup
    expected = {"type": "bound", "addrs": [{"ip": "127.0.0.2", "port": 9000, "meta": {}}], "meta": {}}
    for path in ("/#/io.l5d.fs/api", "/%/io.l5d.port/4141/#/io.l5d.fs/api"):
        status, headers, body = await get(http, n.url + "/api/1/addr/default", params={"path": path})
        assert status == 200 and json.loads(body) == expected, path
    # Not through the dtab: /svc/api is no concrete id.
    _, _, body = await get(http, n.url + "/api/1/addr/default", params={"path": "/svc/api"})
    assert json.loads(body) == {"type": "neg"}
    assert json.loads((await get(http, n.url + "/api/1/addr/default?path=/$/inet/127.0.0.1/7"))[2])["addrs"] == [
        {"ip": "127.0.0.1", "port": 7, "meta": {}}]
    async with WatchStream(http, n.url + "/api/1/addr/default?path=/%23/io.l5d.fs/api&watch=true") as w:
        assert await w.json() == expected
        (disco / "api").write_text("127.0.0.2 9001\n")
        assert (await w.json(timeout=3))["addrs"][0]["port"] == 9001


async def test_resolve_collapses_to_one_leafs_addr(setup):
    n, http, _ = setup
    status, headers, body = await get(http, n.url + "/api/1/resolve/default?path=/svc/api")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["addrs"] == [{"ip": "127.0.0.2", "port": 9000, "meta": {}}]
    _, _, body = await get(http, n.url + "/api/1/resolve/default",
                           params={"path": "/svc/x", "dtab": "/svc/x=>/#/io.l5d.fs/missing|/#/io.l5d.fs/api"})
    assert json.loads(body)["addrs"][0]["port"] == 9000  # alt: first usable
    _, _, body = await get(http, n.url + "/api/1/resolve/default?path=/nothing")
    assert json.loads(body) == {"type": "neg"}


async def test_delegate_with_and_without_namespace_get_and_post(setup):
    n, http, _ = setup
    status, headers, body = await get(http, n.url + "/api/1/delegate/default", params={
        "path": "/svc/web", "dtab": "/svc/web=>/$/inet/127.1/8080"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["path"] == "/svc/web" and doc["type"] in ("delegate", "alt", "leaf")
    # Without a namespace only the given dtab is used.
    _, _, body = await get(http, n.url + "/api/1/delegate", params={"path": "/svc/web"})
    assert json.loads(body)["type"] == "neg"
    _, _, body = await get(http, n.url + "/api/1/delegate", params={"path": "/svc/web", "namespace": "default"})
    assert "/#/io.l5d.fs/web" in body.decode()
    async with http.post(n.url + "/api/1/delegate", json={"namespace": "default", "path": "/svc/api", "dtab": ""}) as r:
        assert r.status == 200 and "/#/io.l5d.fs/api" in await r.text()
    async with http.post(n.url + "/api/1/delegate", data="x", headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415
    async with http.put(n.url + "/api/1/delegate?path=/a") as r:
        assert r.status == 405
    async with http.post(n.url + "/api/1/delegate", data="{", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
    status, _, body = await get(http, n.url + "/api/1/delegate/default", params={"path": "/a", "dtab": "/a=>"})
    assert status == 400 and body.startswith(b"Invalid dtab:")


async def test_bound_names_lists_what_enumerating_namers_know(setup):
    n, http, disco = setup
    status, headers, body = await get(http, n.url + "/api/1/bound-names")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body == b'["/#/io.l5d.fs/api","/#/io.l5d.fs/web"]\n'
    async with WatchStream(http, n.url + "/api/1/bound-names?watch=true") as w:
        assert await w.json() == ["/#/io.l5d.fs/api", "/#/io.l5d.fs/web"]
        (disco / "db").write_text("127.0.0.3 5432\n")
        assert await w.json(timeout=3) == ["/#/io.l5d.fs/api", "/#/io.l5d.fs/db", "/#/io.l5d.fs/web"]


async def test_bind_streams_and_bindings_are_released(setup):
    n, http, _ = setup
    for i in range(20):  # a scanner asking for random names
        async with WatchStream(http, n.url + f"/api/1/bind/default?path=/svc/random{i}&watch=1") as w:
            await w.json()
    for _ in range(100):
        if n.controller.open_streams["bind"] == 0 and n.store.watch_count() == 0:
            break
        await asyncio.sleep(0.02)
    assert n.controller.open_streams["bind"] == 0
    assert n.store.watch_count() == 0
    # The interpreter's cache holds them unobserved until its idle TTL, then sweeps them.
    stats = n.interpreter.cache_stats()
    assert stats["observed"] == 0


async def test_names_nobody_watches_are_released_after_the_idle_ttl(tmp_path):
    """A scanner's random names (Linkerd #1766) cannot grow namerd's state: once their
    streams end, bindings expire after the TTL; the live counts are metrics."""
    store = InMemoryDtabStore({"default": Dtab.read("/svc=>/$/inet/127.0.0.1/1")})
    n = await start_namerd(store, binding_idle_ttl=0.3)
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(50):
                async with http.get(n.url + f"/api/1/bind/default?path=/svc/scan{i}") as r:
                    assert r.status == 200
            async with http.get(f"http://127.0.0.1:{n.admin_port}/admin/metrics.json") as r:
                assert (await r.json())["namerd/interpreter/bindcache/tree/size"] == 50
            async with WatchStream(http, n.url + "/api/1/bind/default?path=/svc/kept&watch=1") as w:
                await w.json()
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if n.interpreter.cache_stats()["size"] == 1:
                        break
                # Only the watched name is left; it stays while observed.
                assert n.interpreter.cache_stats()["size"] == 1
                async with http.get(f"http://127.0.0.1:{n.admin_port}/admin/metrics.json") as r:
                    m = await r.json()
                    assert m["namerd/interpreter/bindcache/tree/size"] == 1
                    assert m["namerd/http/streams/bind"] == 1
            for _ in range(100):
                await asyncio.sleep(0.05)
                if n.interpreter.cache_stats()["size"] == 0:
                    break
            assert n.interpreter.cache_stats()["size"] == 0
            assert n.controller.open_streams["bind"] == 0
    finally:
        await n.close()


async def test_a_binding_failure_is_500_or_an_error_line_that_ends_the_stream(setup):
    n, http, _ = setup
    params = {"path": "/svc/web", "dtab": "/svc=>/$/nope"}
    status, _, body = await get(http, n.url + "/api/1/bind/default", params=params)
    assert status == 500 and b"nope" in body
    async with WatchStream(http, n.url + "/api/1/bind/default?path=/svc/web&watch=1&dtab=/svc=>/$/nope") as w:
        assert b"nope" in await w.line()
        with pytest.raises(EOFError):
            await w.line(timeout=3)
