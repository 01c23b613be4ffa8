"""Proxying through the real HttpRouter + DefaultInterpreter to real backends.

Covers the issue's Proxying and Headers bullets: absolute-form (http_proxy) and Host
routing with curl, keep-alive and pooling, HTTP/1.0, HEAD/204/304, chunked and
close-delimited bodies, hop-by-hop stripping, Via, the l5d headers, per-request dtabs
and clearContext, metrics and client_state.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from namerouter.proxy import ServerConfig
from tests.support.backends import Backend, RawClient, RouterHarness, curl, get, request
from tests.support.ports import free_port


async def test_curl_http_proxy_and_host_header_reach_the_backend():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        rc, out, err = await curl("http://pong/pong", env={"http_proxy": f"http://127.0.0.1:{h.port}"})
        assert (rc, out) == (0, "pong"), err
        # absolute-form URI was rewritten to origin form, authority moved into Host
        assert b.last.uri == "/pong"
        assert b.last.header("host") == "pong"
        rc, out, err = await curl("-H", "Host: pong", f"http://127.0.0.1:{h.port}/pong")
        assert (rc, out) == (0, "pong"), err
        rc, out, err = await curl("-x", f"http://127.0.0.1:{h.port}", "http://pong/echo?a=1&b=2")
        assert json.loads(out)["uri"] == "/echo?a=1&b=2"


async def test_l5d_headers_via_and_hop_by_hop_on_the_request():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}/extra/bits") as h:
        raw = get("/echo", headers={
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "must-go",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic x",
            "TE": "trailers",
            "Via": "1.1 upstream",
            "X-Keep": "stays",
            "l5d-dst-service": "/forged",
            "l5d-reqid": "forged",
            "dtab-local": "/svc=>/nowhere",
            "l5d-ctx-deadline": "1 2",
        })
        r = await request(h.port, raw)
        assert r.status == 200
        got = b.last
        assert got.header("x-hop") is None and got.header("keep-alive") is None
        assert got.header("proxy-authorization") is None and got.header("te") is None
        assert got.header("x-keep") == "stays"
        assert got.header_all("via") == ["1.1 upstream, 1.1 linkerd"]
        assert got.header_all("l5d-dst-service") == ["/svc/pong"]
        assert got.header("l5d-dst-client") == f"/$/inet/127.1/{b.port}"
        assert got.header("l5d-dst-residual") == "/extra/bits"
        reqid = got.header("l5d-reqid")
        assert reqid and reqid != "forged" and len(reqid) == 16
        assert got.header("dtab-local") == "/svc=>/nowhere"  # ignored, passed through
        assert got.header("l5d-ctx-deadline") == "1 2"
        assert got.header("l5d-ctx-dtab") is None  # no local dtab: not written
        # response side: hop-by-hop stripped (incl. the one named in Connection), Via added
        assert r.header("x-drop-me") is None and r.header("keep-alive") is None
        assert r.header("x-backend") == "pong"
        assert r.header("via") == "1.1 linkerd"
        assert r.header("l5d-err") is None


async def test_keep_alive_both_sides_reuses_one_backend_connection():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            for _ in range(20):
                await c.send(get("/pong"))
                r = await c.read_response()
                assert (r.status, r.body) == (200, b"pong")
        assert b.connections == 1
        # pipelined requests on one connection are answered in order
        async with RawClient(h.port) as c:
            await c.send(get("/echo?n=1") + get("/echo?n=2") + get("/echo?n=3"))
            uris = [(await c.read_response()).json()["uri"] for _ in range(3)]
        assert uris == ["/echo?n=1", "/echo?n=2", "/echo?n=3"]


async def test_http_1_0_clients():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            await c.send(get("/pong", version="HTTP/1.0"))
            r = await c.read_response()
            assert (r.status, r.body) == (200, b"pong")
            assert await c.closed_by_peer()
        async with RawClient(h.port) as c:  # 1.0 keep-alive
            for _ in range(2):
                await c.send(get("/pong", version="HTTP/1.0", headers={"Connection": "keep-alive"}))
                r = await c.read_response()
                assert r.body == b"pong" and r.header("connection") == "keep-alive"
        # a streamed (chunked) response reaches a 1.0 client close-delimited
        async with RawClient(h.port) as c:
            await c.send(get("/stream?bytes=100000&chunked=1", version="HTTP/1.0"))
            r = await c.read_response()
            assert r.header("transfer-encoding") is None and len(r.body) == 100000


async def test_head_204_304_have_no_body_and_keep_the_connection():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            await c.send(get("/pong", method="HEAD"))
            r = await c.read_response(head_request=True)
            assert r.status == 200 and r.header("content-length") == "4"
            for code in (204, 304):
                await c.send(get(f"/status/{code}"))
                r = await c.read_response()
                assert r.status == code and r.body == b""
            await c.send(get("/pong"))
            r = await c.read_response()
            assert r.body == b"pong"  # the stream stayed in sync after body-less responses


async def test_chunked_and_close_delimited_bodies():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            body = b"hello " * 1000
            chunks = b"".join(b"%x\r\n%b\r\n" % (len(body[i:i + 777]), body[i:i + 777]) for i in range(0, len(body), 777))
            await c.send(b"POST /upload HTTP/1.1\r\nHost: pong\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
            r = await c.read_response()
            assert r.json()["bytes"] == len(body)
            assert b.last.header("transfer-encoding") == "chunked"
            await c.send(get("/stream?bytes=300000&chunked=1"))
            r = await c.read_response()
            assert len(r.body) == 300000 and r.header("transfer-encoding") == "chunked"
            await c.send(get("/stream?bytes=5000&close=1"))
            r = await c.read_response()
            # close-delimited from the backend becomes chunked for an HTTP/1.1 client
            assert len(r.body) == 5000 and r.header("transfer-encoding") == "chunked"
            await c.send(get("/pong"))
            assert (await c.read_response()).body == b"pong"


async def test_request_dtab_headers_override_and_propagate():
    async with Backend("a") as a, Backend("b") as bb, Backend("c") as cc, \
            RouterHarness(f"/svc/pong => /$/inet/127.1/{a.port}") as h:
        r = await request(h.port, get("/echo"))
        assert r.json()["backend"] == "a"
        # l5d-dtab wins over the router dtab, and goes on as l5d-ctx-dtab
        r = await request(h.port, get("/echo", headers={"l5d-dtab": f"/svc/pong => /$/inet/127.1/{bb.port}"}))
        assert r.json()["backend"] == "b"
        assert bb.last.header("l5d-ctx-dtab") == f"/svc/pong=>/$/inet/127.1/{bb.port}"
        assert bb.last.header("l5d-dtab") is None
        # l5d-ctx-dtab then l5d-dtab: the latter is appended last, so it wins
        r = await request(h.port, get("/echo", headers={
            "l5d-ctx-dtab": f"/svc/pong => /$/inet/127.1/{bb.port}",
            "l5d-dtab": f"/svc/pong => /$/inet/127.1/{cc.port}"}))
        assert r.json()["backend"] == "c"
        assert cc.last.header("l5d-ctx-dtab") == (
            f"/svc/pong=>/$/inet/127.1/{bb.port};/svc/pong=>/$/inet/127.1/{cc.port}")
        # l5d-ctx-dtab alone also routes
        r = await request(h.port, get("/echo", headers={"l5d-ctx-dtab": f"/svc/pong=>/$/inet/127.1/{bb.port}"}))
        assert r.json()["backend"] == "b"
        # a malformed dtab header is a 400 that names the header
        r = await request(h.port, get("/echo", headers={"l5d-dtab": "/svc/pong =>"}))
        assert r.status == 400
        assert "l5d-dtab" in r.body.decode() and r.header("l5d-err")
        # l5d-reqid carries the trace id of an incoming l5d-ctx-trace (span, parent, trace, flags)
        import base64

        trace = base64.b64encode(bytes(range(8)) + bytes(8) + bytes.fromhex("00112233deadbeef") + bytes(8))
        await request(h.port, get("/echo", headers={"l5d-ctx-trace": trace.decode()}))
        assert a.last.header("l5d-reqid") == "00112233deadbeef"
        # the context goes on in the same trace, from a new span of this router's
        sent = base64.b64decode(a.last.header("l5d-ctx-trace"))
        assert sent[16:24] == bytes.fromhex("00112233deadbeef") and sent[:8] != bytes(range(8))


async def test_clear_context_strips_l5d_headers_both_ways():
    async with Backend("a") as a, Backend("b") as bb:
        servers = [ServerConfig(port=free_port(), clearContext=True)]
        async with RouterHarness(f"/svc/pong => /$/inet/127.1/{a.port}", servers=servers) as h:
            r = await request(h.port, get("/echo", headers={
                "l5d-dtab": f"/svc/pong => /$/inet/127.1/{bb.port}",
                "l5d-ctx-dtab": f"/svc/pong => /$/inet/127.1/{bb.port}",
                "l5d-ctx-trace": "AAAA", "l5d-sample": "1"}))
            assert r.json()["backend"] == "a"  # the untrusted override was ignored
            names = [k.lower() for k, _ in a.last.headers]
            assert "l5d-sample" not in names and "l5d-dtab" not in names
            # the incoming context was dropped: the router starts a trace of its own
            assert a.last.header("l5d-ctx-trace") != "AAAA" and names.count("l5d-ctx-trace") == 1
            assert "l5d-dst-service" in names  # the router's own headers are still written
            assert r.header("l5d-success-class") is None  # and l5d-* from the backend are dropped
        async with RouterHarness(f"/svc/pong => /$/inet/127.1/{a.port}") as h:
            r = await request(h.port, get("/echo"))
            assert r.header("l5d-success-class") == "1.0"  # without clearContext they pass


async def test_metrics_and_client_state():
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        for _ in range(3):
            assert (await request(h.port, get("/pong"))).status == 200
        assert (await request(h.port, get("/status/503"))).status == 503
        assert (await request(h.port, get("/pong", host="nope"))).status == 502
        srv = f"rt/outgoing/server/127.0.0.1/{h.port}/"
        assert h.metric(srv + "requests") == 5
        assert h.metric(srv + "success") == 3
        assert h.metric(srv + "failures") == 2
        assert h.metric(srv + "status/200") == 3
        assert h.metric(srv + "status/502") == 1
        assert h.metrics.get(srv + "request_latency_ms").count == 5
        svc = "rt/outgoing/service/svc/pong/"
        assert h.metric(svc + "requests") == 4 and h.metric(svc + "status/503") == 1
        cl = f"rt/outgoing/client/$/inet/127.1/{b.port}/"
        assert h.metric(cl + "requests") == 4 and h.metric(cl + "success") == 3
        assert h.metric(cl + "connections") == 1
        assert h.metric("rt/outgoing/service/svc/nope/failures") == 1
        state = h.router.client_state()
        assert state[f"/$/inet/127.1/{b.port}"]["addresses"] == [f"127.0.0.1:{b.port}"]
        assert state[f"/$/inet/127.1/{b.port}"]["state"] == "bound"


async def test_graceful_close_finishes_in_flight_requests():
    async with Backend("pong") as b:
        h = RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}")
        await h.router.start()
        async with RawClient(h.port) as c:
            await c.send(get("/slow?ms=300"))
            while not b.requests:
                await asyncio.sleep(0.01)
            closing = asyncio.ensure_future(h.router.close(5.0))
            r = await c.read_response()
            assert (r.status, r.body) == (200, b"slow")
            assert r.header("connection") == "close"
            await closing
        # after close nothing listens
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", h.port)


async def test_binding_cache_is_bounded_and_idle_routes_are_evicted():
    from namerouter.proxy.config import BindingCacheConfig

    async with Backend("pong") as b, RouterHarness(
            f"/svc => /$/inet/127.1/{b.port}", bindingCache=BindingCacheConfig(paths=5, idleTtlSecs=1)) as h:
        table = h.router.core.table
        for i in range(20):
            r = await request(h.port, get("/pong", host=f"random-{i}"))
            assert r.status == 200
            assert len(table.routes) <= 5
        assert b.last.header("l5d-dst-residual") == "/random-19"
        assert h.metric("rt/outgoing/service/svc/random-0/requests") is None  # evicted with its stage
        assert h.metric("rt/outgoing/service/svc/random-19/requests") == 1
        import time

        assert table.sweep(time.monotonic() + 5) == 5
        assert not table.routes and not table.clients


async def test_http_access_log(tmp_path):
    log = tmp_path / "access.log"
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}", httpAccessLog=str(log)) as h:
        await request(h.port, get("/pong", headers={"User-Agent": "tester/1", "Referer": "http://r/"}))
        await request(h.port, get("/x", host="nope"))
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("pong 127.0.0.1 - - [")
    assert lines[0].endswith('"GET /pong HTTP/1.1" 200 4 "http://r/" "tester/1"')
    assert '"GET /x HTTP/1.1" 502 - "-" "-"' in lines[1]


async def test_graceful_close_loses_no_in_flight_request_under_load():
    async with Backend("pong") as b:
        h = RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}")
        await h.router.start()
        # 20 requests in flight (each on its own connection), plus idle keep-alive clients
        flights = [asyncio.ensure_future(request(h.port, get(f"/slow?ms={200 + 10 * i}"))) for i in range(20)]
        idle = RawClient(h.port)
        await idle.__aenter__()
        while len(b.requests) < 20:
            await asyncio.sleep(0.01)
        await h.router.close(5.0)
        results = await asyncio.gather(*flights)
        assert [r.status for r in results] == [200] * 20
        assert all(r.body == b"slow" for r in results)
        assert await idle.closed_by_peer(timeout=1)  # idle connections are simply closed
        idle.close()


async def test_heads_in_one_read_after_a_chunked_body_and_repeated_heads():
    """The codec finds heads in the bytes: requests pipelined behind a chunked body in the
    same read (parsed with callbacks until the next boundary), then identical heads (reused
    as checked once) and a changed one (checked again) all reach the backend intact."""
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        async with RawClient(h.port) as c:
            chunked = b"POST /upload HTTP/1.1\r\nHost: pong\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            await c.send(chunked + get("/echo?n=1") + get("/echo?n=1") + get("/echo?n=2", headers={"X-A": "b"}))
            assert (await c.read_response()).json()["bytes"] == 5
            got = [(await c.read_response()).json() for _ in range(3)]
            assert [g["uri"] for g in got] == ["/echo?n=1", "/echo?n=1", "/echo?n=2"]
            assert b.last.header("x-a") == "b"
            for _ in range(3):  # the same bytes again, one read each
                await c.send(get("/echo?n=1"))
                assert (await c.read_response()).json()["uri"] == "/echo?n=1"
            await c.send(b"GET /echo HTTP/1.1\r\nHost: pong\r\nHost: evil\r\n\r\n")  # not a repeat: refused
            assert (await c.read_response()).status == 400


async def test_client_half_close_after_its_request_still_gets_the_answer(caplog):
    """A client that shuts down its sending side after the request (``shutdown(SHUT_WR)``,
    as ``nc -N`` does) still gets the whole answer, then the connection closes; nothing
    is logged as a protocol error."""
    async with Backend("pong") as b, RouterHarness(f"/svc/pong => /$/inet/127.1/{b.port}") as h:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
        writer.write(get("/pong"))
        await writer.drain()
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 10)  # until the router closes
        writer.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"pong"), data[:200]
        # with nothing in flight, a half-close just closes
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    assert "eof_received" not in caplog.text
