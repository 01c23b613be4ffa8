"""Router-generated errors (Linkerd's ErrorResponder mapping) and malformed input.

Each error must carry ``l5d-err`` and a text/plain body that explains why (logical
name, router dtab, request dtab, and for "no hosts" the bound name without addresses);
malformed requests get 400 and their connection closes while everyone else is served.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
from urllib.parse import unquote_plus

import pytest

from namerouter.dtab.path import Path
from namerouter.dtab.tree import Leaf
from namerouter.naming.addr import ADDR_PENDING, AddrBound, Address
from namerouter.naming.bound import BoundName
from namerouter.naming.namer import Namer
from namerouter.naming.var import Activity, Var
from namerouter.namers.fs import FsNamer
from namerouter.proxy import ServerConfig
from tests.support.backends import Backend, RawClient, RouterHarness, get, request
from tests.support.ports import free_port


class ControlledNamer(Namer):
    """A namer whose answers the test sets: ``/#/ctl/<name>``."""

    kind = "test.controlled"

    def __init__(self) -> None:
        super().__init__(Path.of("ctl"))
        self.pending: set[str] = set()
        self.addrs: dict[str, Var] = {}

    def lookup(self, path: Path):
        name = path.text_labels()[0]
        if name in self.pending:
            return Activity.pending()
        var = self.addrs.setdefault(name, Var(ADDR_PENDING))
        return Activity.value(Leaf(BoundName(self.bound_id(path.take(1)), var, path.drop(1))))


def err_text(r) -> str:
    return unquote_plus(r.header("l5d-err") or "")


async def test_unidentified_is_400_with_reason():
    async with RouterHarness("/svc => /$/inet/127.1/9") as h:
        r = await request(h.port, get("/", host=None, version="HTTP/1.0"))
        assert r.status == 400
        assert "Host header is absent" in err_text(r)
        assert r.header("content-type").startswith("text/plain")
        assert "Host header" in r.body.decode()


async def test_no_route_is_502_naming_the_name_and_both_dtabs():
    async with RouterHarness("/svc/pong => /$/inet/127.1/9") as h:
        async with RawClient(h.port) as c:
            await c.send(get("/", host="ghost", headers={"l5d-dtab": "/svc/other => /$/inet/127.1/8"}))
            r = await c.read_response()
            body = r.body.decode()
            assert r.status == 502
            assert "/svc/ghost" in body
            assert "/svc/pong=>/$/inet/127.1/9" in body  # router dtab
            assert "/svc/other=>/$/inet/127.1/8" in body  # request dtab
            assert "/svc/ghost" in err_text(r)
            # an error does not cost the connection
            await c.send(get("/", host="ghost"))
            assert (await c.read_response()).status == 502


async def test_no_hosts_names_the_bound_name_without_addresses():
    root = tempfile.mkdtemp()
    with open(os.path.join(root, "web"), "w") as f:
        f.write("# nobody home\n")
    fs = FsNamer(root)
    async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs]) as h:
        r = await request(h.port, get("/", host="web"))
        body = r.body.decode()
        assert r.status == 502
        assert "No hosts are available for /svc/web" in body
        assert "/#/io.l5d.fs/web" in body and "address set is empty" in body
        assert "/svc=>/#/io.l5d.fs" in body
    await fs.close()


async def test_connect_failure_is_502():
    port = free_port()  # nothing listens there
    async with RouterHarness(f"/svc/pong => /$/inet/127.1/{port}") as h:
        r = await request(h.port, get("/"))
        assert r.status == 502
        assert f"127.0.0.1:{port}" in r.body.decode() and "/svc/pong" in r.body.decode()
        assert h.metric(f"rt/outgoing/client/$/inet/127.1/{port}/failures/connect") >= 1


async def test_binding_timeout_is_502():
    namer = ControlledNamer()
    namer.pending.add("slow")
    async with RouterHarness("/svc => /#/ctl", namers=[namer], bindingTimeoutMs=200) as h:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await request(h.port, get("/", host="slow"))
        assert r.status == 502
        assert 0.15 < loop.time() - t0 < 2.0
        assert "binding timed out" in r.body.decode() and "/svc/slow" in r.body.decode()


async def test_pending_binding_resolves_while_the_request_waits():
    namer = ControlledNamer()
    async with Backend("late") as b, RouterHarness("/svc => /#/ctl", namers=[namer]) as h:
        fut = asyncio.ensure_future(request(h.port, get("/pong", host="late")))
        await asyncio.sleep(0.1)
        assert not fut.done()
        namer.addrs["late"].update(AddrBound([Address("127.0.0.1", b.port)]))
        r = await fut
        assert (r.status, r.body) == (200, b"pong")


async def test_status_namer_answers_itself():
    async with RouterHarness("/svc/teapot => /$/io.buoyant.http.status/418") as h:
        r = await request(h.port, get("/", host="teapot"))
        assert r.status == 418


async def test_backend_closing_before_answering_is_502():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        r = await request(h.port, get("/close"))
        assert r.status == 502 and "closed before the response" in r.body.decode()


MALFORMED = [
    ("bad request line", b"THIS IS NOT HTTP\r\n\r\n"),
    ("bad method", b"G@T / HTTP/1.1\r\nHost: pong\r\n\r\n"),
    ("conflicting content-length", b"POST / HTTP/1.1\r\nHost: pong\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    ("invalid content-length", b"POST / HTTP/1.1\r\nHost: pong\r\nContent-Length: 1x\r\n\r\nabcd"),
    ("content-length with chunked", b"POST / HTTP/1.1\r\nHost: pong\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("bad chunk size", b"POST /upload HTTP/1.1\r\nHost: pong\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ("headers over maxHeadersKB", b"GET / HTTP/1.1\r\nHost: pong\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"x" * 1000) for i in range(10)) + b"\r\n"),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: pong\r\nHost: evil\r\n\r\n"),
    ("transfer coding other than chunked", b"POST / HTTP/1.1\r\nHost: pong\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("initial line over maxInitialLineKB", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: pong\r\n\r\n"),
]


@pytest.mark.parametrize("what,raw", MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_requests_get_400_and_close(what, raw):
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as good:
            async with RawClient(h.port) as bad:
                await bad.send(raw)
                r = await bad.read_response()
                assert r.status == 400, what
                assert r.header("l5d-err"), what
                assert await bad.closed_by_peer(), what
            # the router keeps serving everyone else
            await good.send(get("/pong"))
            assert (await good.read_response()).body == b"pong"


async def test_limits_follow_the_config():
    async with Backend("pong") as b, \
            RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", maxHeadersKB=1, maxInitialLineKB=1) as h:
        r = await request(h.port, get("/", headers={"X-Big": "y" * 1500}))
        assert r.status == 400 and "maxHeadersKB" in r.body.decode()
        r = await request(h.port, get("/" + "p" * 1500))
        assert r.status == 400 and "maxInitialLineKB" in r.body.decode()
        assert (await request(h.port, get("/pong", headers={"X-Small": "y" * 500}))).status == 200


async def test_via_loop_guard():
    servers = [ServerConfig(port=free_port(), maxCallDepth=3)]
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", servers=servers) as h:
        ok = await request(h.port, get("/pong", headers={"Via": "1.1 a, 1.1 b, 1.1 c"}))
        assert ok.status == 200
        r = await request(h.port, get("/pong", headers={"Via": "1.1 a, 1.1 b, 1.1 c, 1.1 d"}))
        assert r.status == 400
        # Linkerd's MaxCallDepthFilterTest text (our error bodies end with a newline)
        assert r.body.decode() == "Maximum number of calls (3) has been exceeded. Please check for proxy loops.\n"


async def test_router_to_itself_loop_is_stopped():
    port = free_port()
    servers = [ServerConfig(port=port, maxCallDepth=5)]
    async with RouterHarness(f"/svc/loop => /$/inet/127.1/{port}", servers=servers) as h:
        r = await request(h.port, get("/", host="loop"))
        # a router never forwards to its own servers (issue 17: protected.py)
        assert r.status == 403 and "own server" in err_text(r)
    # a loop through two routers: each forwards, Via stops it
    pa, pb = free_port(), free_port()
    async with RouterHarness(f"/svc/loop => /$/inet/127.1/{pb}", servers=[ServerConfig(port=pa, maxCallDepth=5)]), \
            RouterHarness(f"/svc/loop => /$/inet/127.1/{pa}", servers=[ServerConfig(port=pb, maxCallDepth=5)],
                          label="other"):
        r = await request(pa, get("/", host="loop"))
        # the innermost hop refuses; every outer hop relays that answer
        assert r.status == 400
        assert "proxy loops" in r.body.decode()


async def test_max_concurrent_requests_rejects_with_503():
    servers = [ServerConfig(port=free_port(), maxConcurrentRequests=1)]
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", servers=servers) as h:
        slow = asyncio.ensure_future(request(h.port, get("/slow?ms=400")))
        while not b.requests:
            await asyncio.sleep(0.01)
        r = await request(h.port, get("/pong"))
        assert r.status == 503 and "maxConcurrentRequests" in r.body.decode()
        assert (await slow).status == 200
        assert (await request(h.port, get("/pong"))).status == 200


async def test_request_timeouts_are_503():
    async with Backend("pong") as b:
        service = {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/pong", "totalTimeoutMs": 200}]}
        async with RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", service=service) as h:
            r = await request(h.port, get("/hang"))
            assert r.status == 503
            assert "totalTimeoutMs" in r.body.decode() and "/svc/pong" in err_text(r)
            assert (await request(h.port, get("/slow?ms=50"))).status == 200  # under the limit
        client = {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 150}
        async with RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", client=client) as h:
            r = await request(h.port, get("/hang"))
            assert r.status == 503 and "requestAttemptTimeoutMs" in r.body.decode()
            assert h.metric(f"rt/outgoing/client/$/inet/127.1/{b.port}/status/503") == 1


async def test_client_going_away_mid_download_frees_the_backend():
    async with Backend("big") as b, RouterHarness(f"/svc/big => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            await c.send(get("/stream?bytes=200000000", host="big"))
            await c.reader.readexactly(100000)
        # the router notices, aborts the backend side and keeps serving
        client = h.router.core.table.clients[Path.read(f"/$/inet/127.1/{b.port}")]
        for _ in range(200):
            if all(e.outstanding == 0 for e in client.endpoints.values()) and not h.router.inflight:
                break
            await asyncio.sleep(0.01)
        assert all(e.outstanding == 0 for e in client.endpoints.values())
        assert h.router.inflight == 0
        assert (await request(h.port, get("/pong", host="big"))).body == b"pong"


async def test_backend_dying_mid_response_cuts_the_client_connection():
    b = Backend("dying")
    await b.start()
    async with RouterHarness(f"/svc/big => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            await c.send(get("/stream?bytes=500000000", host="big"))
            await c.reader.readexactly(100000)
            await b.stop()  # closes the backend's connections mid-body
            # Content-Length cannot be honoured any more: the only honest signal is to cut
            assert await c.closed_by_peer(timeout=10)
        assert (await request(h.port, get("/pong", host="big"))).status == 502  # nothing listens now
        assert h.router.inflight == 0


async def test_restarted_backend_stale_pooled_connection_is_not_a_failure():
    port = free_port()
    async with RouterHarness(f"/svc/pong => /$/inet/127.1/{port}") as h:
        for i in range(3):
            b = Backend(f"gen{i}", port=port)
            await b.start()
            for _ in range(3):
                r = await request(h.port, get("/echo"))
                assert r.status == 200 and r.json()["backend"] == f"gen{i}"
            await b.stop()
            await asyncio.sleep(0.05)


async def test_endless_header_line_is_cut_off():
    """httptools holds a header line until it ends: a line that never ends must not grow
    memory; the head is refused once it exceeds the configured limits."""
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: pong\r\nX-Endless: ")
            for _ in range(40):
                try:
                    await c.send(b"y" * 4096)
                except ConnectionError:
                    break
            r = await c.read_response()
            assert r.status == 400 and "maxHeadersKB" in r.body.decode()
            assert await c.closed_by_peer()


@pytest.mark.parametrize("host,status,says", [
    ("x", 502, "namer not found: nonexistent"),
    ("loop", 502, "Max recursion level"),
    ("f", 502, "sends it to ! (fail)"),
    ("e", 502, "No hosts are available for /svc/e"),
    ("unknown", 502, "bound to ~, neg"),
])
async def test_binding_outcomes_map_to_explained_502s(host, status, says):
    dtab = "/svc/x => /$/nonexistent/a; /svc/loop => /svc/loop; /svc/f => !; /svc/e => /$/nil"
    async with RouterHarness(dtab) as h:
        r = await request(h.port, get("/", host=host))
        assert r.status == status
        assert says in r.body.decode()
        assert f"/svc/{host}" in err_text(r)
        # and the router is fine afterwards
        assert (await request(h.port, get("/", host=host))).status == status
