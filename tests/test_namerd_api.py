"""io.l5d.httpController conformance: every status code, header and body shape of
linkerd1-map §2, against a real namerd (in-memory storage) over real HTTP."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess

import aiohttp
import pytest

from namerd.storage.memory import InMemoryDtabStore
from namerouter.dtab import Dtab
from tests.namerd_support import WatchStream, start_namerd

V1 = "AAAAAAAAAAE="
V2 = "AAAAAAAAAAI="
DTAB = "application/dtab"


@pytest.fixture
async def namerd():
    store = InMemoryDtabStore({"default": Dtab.read("/svc=>/#/io.l5d.fs"),
                               "staging": Dtab.read("/svc=>/$/inet/127.1/1;/x=>/y")})
    n = await start_namerd(store)
    yield n
    await n.close()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def call(http, method, url, **kw):
    async with http.request(method, url, **kw) as r:
        return r.status, r.headers, await r.read()


# --- list ------------------------------------------------------------------------------

async def test_list_is_sorted_json_for_any_method_and_trailing_slash(namerd, http):
    for method, path in (("GET", "/api/1/dtabs"), ("GET", "/api/1/dtabs/"), ("POST", "/api/1/dtabs")):
        status, headers, body = await call(http, method, namerd.url + path)
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        assert body == b'["default","staging"]\n'


# --- GET / HEAD ------------------------------------------------------------------------

async def test_get_negotiates_json_and_dtab_with_unquoted_base64_etag(namerd, http):
    status, headers, body = await call(http, "GET", namerd.url + "/api/1/dtabs/default")
    assert (status, headers["ETag"]) == (200, V1)
    assert headers["Content-Type"].startswith("application/json")
    assert body == b'[{"prefix":"/svc","dst":"/#/io.l5d.fs"}]\n'
    assert base64.b64decode(headers["ETag"]) == (1).to_bytes(8, "big")

    for accept in (DTAB, "text/plain", "text/html, application/dtab"):
        status, headers, body = await call(http, "GET", namerd.url + "/api/1/dtabs/staging",
                                           headers={"Accept": accept})
        assert status == 200
        assert headers["Content-Type"].split(";")[0] in (DTAB, "text/plain")
        assert body == b"/svc=>/$/inet/127.1/1;/x=>/y\n"


async def test_get_and_head_of_missing_namespace_are_404_with_empty_body(namerd, http):
    for method in ("GET", "HEAD"):
        status, _, body = await call(http, method, namerd.url + "/api/1/dtabs/nope")
        assert (status, body) == (404, b"")


async def test_head_returns_etag_only(namerd, http):
    status, headers, body = await call(http, "HEAD", namerd.url + "/api/1/dtabs/default")
    assert (status, headers["ETag"], body) == (200, V1, b"")


# --- PUT -------------------------------------------------------------------------------

async def test_put_with_if_match_then_stale_if_match_is_412(namerd, http):
    url = namerd.url + "/api/1/dtabs/default"
    status, _, body = await call(http, "PUT", url, data="/svc => /#/io.l5d.consul/.local",
                                 headers={"Content-Type": DTAB, "If-Match": V1})
    assert (status, body) == (204, b"")
    status, headers, body = await call(http, "GET", url, headers={"Accept": DTAB})
    assert (headers["ETag"], body) == (V2, b"/svc=>/#/io.l5d.consul/.local\n")
    status, _, _ = await call(http, "PUT", url, data="/svc => /lost", headers={"Content-Type": DTAB, "If-Match": V1})
    assert status == 412
    _, _, body = await call(http, "GET", url, headers={"Accept": DTAB})
    assert body == b"/svc=>/#/io.l5d.consul/.local\n"  # the stale write changed nothing


async def test_put_if_match_on_missing_namespace_is_404(namerd, http):
    status, _, _ = await call(http, "PUT", namerd.url + "/api/1/dtabs/ghost", data="/a=>/b",
                              headers={"Content-Type": DTAB, "If-Match": V1})
    assert status == 404


async def test_put_without_if_match_is_an_upsert(namerd, http):
    url = namerd.url + "/api/1/dtabs/fresh"
    status, _, _ = await call(http, "PUT", url, data="/a=>/b", headers={"Content-Type": "text/plain"})
    assert status == 204
    status, headers, body = await call(http, "GET", url, headers={"Accept": DTAB})
    assert (status, headers["ETag"], body) == (200, V1, b"/a=>/b\n")


async def test_put_json_body(namerd, http):
    url = namerd.url + "/api/1/dtabs/default"
    doc = [{"prefix": "/svc", "dst": "/#/io.l5d.k8s/prod/http"}, {"prefix": "/a", "dst": "/b | /c"}]
    status, _, _ = await call(http, "PUT", url, data=json.dumps(doc), headers={"Content-Type": "application/json"})
    assert status == 204
    _, _, body = await call(http, "GET", url)
    assert json.loads(body) == doc


async def test_bad_content_type_and_malformed_dtab_are_400_and_store_nothing(namerd, http):
    url = namerd.url + "/api/1/dtabs/default"
    status, _, body = await call(http, "PUT", url, data="/a=>/b",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400
    assert body.startswith(b'Invalid Content-Type "application/x-www-form-urlencoded".')
    status, _, body = await call(http, "PUT", url, data="/svc=>", headers={"Content-Type": DTAB, "If-Match": V1})
    assert status == 400
    assert b"expected but end of input found" in body  # the parser's own message
    status, _, body = await call(http, "PUT", url, data='[{"prefix":"/a","dst":null}]',
                                 headers={"Content-Type": "application/json"})
    assert status == 400 and b'null' in body
    status, _, body = await call(http, "POST", namerd.url + "/api/1/dtabs/new", data="/svc=>/a/*",
                                 headers={"Content-Type": DTAB})
    assert status == 400
    _, headers, body = await call(http, "GET", url, headers={"Accept": DTAB})
    assert (headers["ETag"], body) == (V1, b"/svc=>/#/io.l5d.fs\n")
    assert (await call(http, "GET", namerd.url + "/api/1/dtabs/new"))[0] == 404


# --- POST / DELETE ---------------------------------------------------------------------

async def test_post_creates_then_409(namerd, http):
    url = namerd.url + "/api/1/dtabs/prod"
    status, _, body = await call(http, "POST", url, data="/svc=>/a", headers={"Content-Type": DTAB})
    assert (status, body) == (204, b"")
    status, _, _ = await call(http, "POST", url, data="/svc=>/b", headers={"Content-Type": DTAB})
    assert status == 409
    _, _, body = await call(http, "GET", url, headers={"Accept": DTAB})
    assert body == b"/svc=>/a\n"


async def test_delete_then_404(namerd, http):
    url = namerd.url + "/api/1/dtabs/staging"
    assert (await call(http, "DELETE", url))[:1] == (204,)
    assert (await call(http, "DELETE", url))[0] == 404
    assert (await call(http, "GET", namerd.url + "/api/1/dtabs"))[2] == b'["default"]\n'


async def test_unmatched_paths_and_methods_are_404_with_empty_body(namerd, http):
    for method, path in (("GET", "/"), ("GET", "/api/2/dtabs"), ("GET", "/api/1/nope"),
                         ("PATCH", "/api/1/dtabs/default"), ("POST", "/api/1/bind/default?path=/a")):
        status, _, body = await call(http, method, namerd.url + path)
        assert (status, body) == (404, b""), (method, path)


async def test_namespace_that_would_escape_the_key_prefix_is_400(namerd, http):
    status, _, body = await call(http, "PUT", namerd.url + "/api/1/dtabs/a%2Fb", data="/a=>/b",
                                 headers={"Content-Type": DTAB})
    assert status == 400 and b"invalid namespace" in body


# --- concurrency -----------------------------------------------------------------------

async def test_concurrent_writers_with_if_match_exactly_one_wins(namerd, http):
    url = namerd.url + "/api/1/dtabs/default"
    results = await asyncio.gather(*[
        call(http, "PUT", url, data=f"/svc=>/#/w{i}", headers={"Content-Type": DTAB, "If-Match": V1})
        for i in range(20)])
    statuses = sorted(r[0] for r in results)
    assert statuses == [204] + [412] * 19
    _, headers, body = await call(http, "GET", url, headers={"Accept": DTAB})
    winner = [i for i, r in enumerate(results) if r[0] == 204][0]
    assert (headers["ETag"], body) == (V2, f"/svc=>/#/w{winner}\n".encode())


# --- watch streams ---------------------------------------------------------------------

async def test_dtab_watch_streams_one_doc_per_change_and_suppresses_duplicates(namerd, http):
    url = namerd.url + "/api/1/dtabs/default"
    async with WatchStream(http, url + "?watch=true", {"Accept": DTAB}) as w:
        assert w.resp.status == 200
        assert w.resp.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in w.resp.headers
        assert await w.line() == b"/svc=>/#/io.l5d.fs"
        await call(http, "PUT", url, data="/svc=>/b", headers={"Content-Type": DTAB})
        assert await w.line() == b"/svc=>/b"
        # Same dtab again: a new version, but an identical document -> suppressed.
        await call(http, "PUT", url, data="/svc => /b", headers={"Content-Type": DTAB})
        await w.nothing_for(0.3)
        # Deletion produces no frame; re-creation does.
        await call(http, "DELETE", url)
        await w.nothing_for(0.3)
        await call(http, "POST", url, data="/svc=>/c", headers={"Content-Type": DTAB})
        assert await w.line() == b"/svc=>/c"


async def test_dtab_watch_json_and_list_watch(namerd, http):
    async with WatchStream(http, namerd.url + "/api/1/dtabs/staging?watch=1") as w, \
            WatchStream(http, namerd.url + "/api/1/dtabs?watch=true") as lw:
        assert await w.json() == [{"prefix": "/svc", "dst": "/$/inet/127.1/1"}, {"prefix": "/x", "dst": "/y"}]
        assert await lw.json() == ["default", "staging"]
        await call(http, "POST", namerd.url + "/api/1/dtabs/alpha", data="/a=>/b", headers={"Content-Type": DTAB})
        assert await lw.json() == ["alpha", "default", "staging"]
        await call(http, "PUT", namerd.url + "/api/1/dtabs/staging", data="/x=>/z", headers={"Content-Type": DTAB})
        assert await w.json() == [{"prefix": "/x", "dst": "/z"}]
        await lw.nothing_for(0.2)  # a dtab change is not a list change


async def test_streams_are_released_when_clients_go_away(namerd, http):
    async with WatchStream(http, namerd.url + "/api/1/dtabs/default?watch=1") as w:
        await w.line()
        assert namerd.controller.open_streams["dtab"] == 1
        assert namerd.store.watch_count() == 1
    for _ in range(100):
        if namerd.controller.open_streams["dtab"] == 0 and namerd.store.watch_count() == 0:
            break
        await asyncio.sleep(0.02)
    assert namerd.controller.open_streams["dtab"] == 0
    assert namerd.store.watch_count() == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")
async def test_curl_sees_a_chunked_stream(namerd, http):
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sN", "-H", "Accept: application/dtab", namerd.url + "/api/1/dtabs/default?watch=true",
        stdout=subprocess.PIPE)
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 5) == b"/svc=>/#/io.l5d.fs\n"
        await call(http, "PUT", namerd.url + "/api/1/dtabs/default", data="/svc=>/new",
                   headers={"Content-Type": DTAB})
        assert await asyncio.wait_for(proc.stdout.readline(), 5) == b"/svc=>/new\n"
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_quiet_watch_stream_outlives_every_server_timeout(http):
    """Streams stay open for hours: nothing on the server closes a quiet one. With the
    between-requests keep-alive timeout cut to 0.2 s, a stream idle for 10x that still
    delivers the next change."""
    store = InMemoryDtabStore({"default": Dtab.read("/svc=>/a")})
    n = await start_namerd(store, keepalive_timeout=0.2)
    try:
        async with WatchStream(http, n.url + "/api/1/dtabs/default?watch=1", {"Accept": DTAB}) as w:
            assert await w.line() == b"/svc=>/a"
            await w.nothing_for(2.0)
            await call(http, "PUT", n.url + "/api/1/dtabs/default", data="/svc=>/b", headers={"Content-Type": DTAB})
            assert await w.line() == b"/svc=>/b"
    finally:
        await n.close()
