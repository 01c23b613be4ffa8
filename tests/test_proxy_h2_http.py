"""Plain HTTP/2 through an h2 router: curl (prior knowledge), nghttp (Upgrade: h2c),
nghttpd as a real backend, and a small h2 backend that reports what it received.

Covers h2c both ways in, streams multiplexed on one backend connection, request and
response trailers, l5d headers and Via, router-made errors with HTTP statuses, stream
resets and GOAWAY from the backend, graceful shutdown, and the access log.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest

from namerouter.proxy.h2.config import H2ServerConfig
from tests.support.h2 import H2Backend, H2Harness, RawH2, client_h2, curl_h2, header
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


async def test_curl_prior_knowledge_headers_trailers_and_l5d_headers():
    async with H2Backend("b1") as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}/rest") as h:
        rc, out, err = await curl_h2("-i", "-H", "Host: web", "-H", "l5d-dtab: /svc/x => /svc/web",
                                     "-H", "l5d-dst-service: forged", "-H", "x-keep: 1",
                                     f"http://127.0.0.1:{h.port}/echo?q=1")
        assert rc == 0, err
        assert "HTTP/2 200" in out and "via: h2 linkerd" in out and "x-backend: b1" in out
        req = b.last
        assert header(req, ":path") == "/echo?q=1" and header(req, ":authority") == "web"
        assert header(req, "l5d-dst-service") == "/svc/web"
        assert header(req, "l5d-dst-client") == f"/$/inet/127.1/{b.port}"
        assert header(req, "l5d-dst-residual") == "/rest"
        assert header(req, "l5d-ctx-dtab") == "/svc/x=>/svc/web"
        assert header(req, "via") == "h2 linkerd" and header(req, "x-keep") == "1"
        assert len(header(req, "l5d-reqid") or "") == 16
        assert [v for n, v in req["headers"] if n == "l5d-dst-service"] == ["/svc/web"]


async def test_trailers_both_ways_and_te_trailers_forwarded():
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}") as h:
        async with RawH2(h.port) as raw:
            c = client_h2()
            c.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"web"),
                               (b":path", b"/echo"), (b"te", b"trailers"), (b"x-want-trailers", b"1")])
            c.send_data(1, b"abc")
            c.send_headers(1, [(b"x-req-trailer", b"t1")], end_stream=True)
            raw.send(c.data_to_send())
            from hyperframe.frame import HeadersFrame
            got = await raw.until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1 and
                                  "END_STREAM" in f.flags)
            assert got is not None
        req = b.last
        assert req["trailers"] == [("x-req-trailer", "t1")] and len(req["body"]) == 3
        assert header(req, "te") == "trailers"


async def test_many_concurrent_streams_share_one_backend_connection():
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}") as h:
        # nghttp opens the 40 streams at once on one connection (curl 7.88's --parallel
        # fails on prior-knowledge connections, against nghttpd too)
        urls = [f"http://127.0.0.1:{h.port}/echo/{i}" for i in range(40)]
        p = await asyncio.create_subprocess_exec("nghttp", "-n", "-s", "-H", ":authority: web", *urls,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(p.communicate(), 30)
        assert p.returncode == 0, out
        assert out.decode().count(" 200 ") == 40 or len(b.requests) == 40, out
        assert len(b.requests) == 40
        assert len(b.conns) == 1  # streams multiplexed on one connection
        assert h.metric(f"rt/h2/client/$/inet/127.1/{b.port}/connects") == 1


async def test_h2c_upgrade_with_nghttp_and_http1_without_upgrade_is_refused():
    async with H2Backend() as b, H2Harness(f"/svc => /$/inet/127.1/{b.port}") as h:
        p = await asyncio.create_subprocess_exec(
            "nghttp", "-uv", f"http://127.0.0.1:{h.port}/echo", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(p.communicate(), 20)
        text = out.decode()
        assert "HTTP Upgrade success" in text and '"early": false' in text, text
        assert header(b.last, ":path") == "/echo"
        rc, out, err = await _curl_h1(f"http://127.0.0.1:{h.port}/echo")
        assert out.startswith("505"), out


async def _curl_h1(url: str) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    return p.returncode or 0, out.decode(), err.decode()


async def test_nghttpd_backend_and_router_errors_with_http_statuses(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.html").write_bytes(b"hello nghttpd\n")
    port = free_port()
    p = await asyncio.create_subprocess_exec("nghttpd", "--no-tls", "-d", str(docs), str(port),
                                             stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with H2Harness(f"/svc/web => /$/inet/127.1/{port}; /svc/none => /$/nil") as h:
            for _ in range(50):
                rc, out, _ = await curl_h2("-H", "Host: web", f"http://127.0.0.1:{h.port}/index.html")
                if rc == 0 and out == "hello nghttpd\n":
                    break
                await asyncio.sleep(0.1)
            assert out == "hello nghttpd\n"
            rc, out, err = await curl_h2("-i", "-H", "Host: none", f"http://127.0.0.1:{h.port}/")
            assert "HTTP/2 502" in out and "l5d-err: No+hosts" in out and "No hosts are available" in out
            rc, out, err = await curl_h2("-i", "-H", "Host: other", f"http://127.0.0.1:{h.port}/")
            assert "HTTP/2 502" in out and "No route to /svc/other" in out
    finally:
        p.kill()
        await p.wait()


async def test_backend_reset_fails_only_that_stream_and_goaway_lets_others_finish():
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}") as h:
        base = f"http://127.0.0.1:{h.port}"
        results = await asyncio.gather(
            curl_h2("-i", "-H", "Host: web", f"{base}/reset", "-H", "x-reset-code: 2"),
            curl_h2("-H", "Host: web", f"{base}/echo/a"),
            curl_h2("-H", "Host: web", f"{base}/echo/b"))
        assert "HTTP/2 502" in results[0][1] and "reset the stream (RST_STREAM INTERNAL_ERROR)" in results[0][1]
        assert all(json.loads(r[1])["body_len"] == 0 for r in results[1:])
        rc, out, err = await curl_h2("-H", "Host: web", f"{base}/reset-mid")
        assert rc != 0  # the response had started: the stream is reset towards the client
        rc, out, err = await curl_h2("-i", "-H", "Host: web", f"{base}/goaway")
        assert "HTTP/2 502" in out
        rc, out, err = await curl_h2("-H", "Host: web", f"{base}/echo/after")
        assert rc == 0 and json.loads(out)["early"] is False  # a new backend connection


async def test_plain_status_answer_and_early_response():
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}; /svc/teapot => "
                                           f"/$/io.buoyant.http.status/418") as h:
        rc, out, err = await curl_h2("-i", "-H", "Host: teapot", f"http://127.0.0.1:{h.port}/")
        assert "HTTP/2 418" in out
        # the backend answers before the request ends: the client gets the answer, then
        # RST_STREAM NO_ERROR (stop sending), and the connection carries on
        async with RawH2(h.port) as raw:
            from hyperframe.frame import DataFrame, RstStreamFrame
            c = client_h2()
            c.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"web"),
                               (b":path", b"/early")])
            c.send_data(1, b"x" * 1000)
            raw.send(c.data_to_send())
            data = await raw.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1 and f.data)
            assert json.loads(bytes(data.data))["early"] is True
            rst = await raw.until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1)
            assert rst is not None and rst.error_code == 0


async def test_graceful_shutdown_sends_goaway_and_finishes_open_streams():
    async with H2Backend() as b:
        h = H2Harness(f"/svc/web => /$/inet/127.1/{b.port}")
        await h.router.start()
        async with RawH2(h.port) as raw:
            c = client_h2()
            c.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"web"),
                               (b":path", b"/echo")])
            raw.send(c.data_to_send())
            from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame
            await asyncio.sleep(0.2)
            closing = asyncio.ensure_future(h.router.close(10.0))
            ga = await raw.until(lambda f: isinstance(f, GoAwayFrame))
            assert ga is not None and ga.last_stream_id == 1 and ga.error_code == 0
            # stream 3 comes after the GOAWAY: refused; stream 1 still completes
            c.send_headers(3, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web"),
                               (b":path", b"/echo")], end_stream=True)
            c.send_data(1, b"late body", end_stream=True)
            raw.send(c.data_to_send())
            frames = []
            f = await raw.until(lambda f: (frames.append(f) or False))
            kinds = {(type(x).__name__, x.stream_id) for x in frames}
            assert ("RstStreamFrame", 3) in kinds and ("HeadersFrame", 1) in kinds
            assert any(isinstance(x, RstStreamFrame) and x.stream_id == 3 and x.error_code == 7 for x in frames)
            await closing
        assert b.last["body"] == b"late body"


async def test_h2_access_log(tmp_path):
    log = tmp_path / "access.log"
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}", h2AccessLog=str(log)) as h:
        await curl_h2("-H", "Host: web", "-A", "agent/1", f"http://127.0.0.1:{h.port}/echo")
    text = log.read_text()
    assert text.startswith("web 127.0.0.1 - - [") and '"GET /echo HTTP/2" 200' in text and '"agent/1"' in text


@pytest.mark.slow
async def test_a_1gb_streamed_response_passes_in_bounded_memory(tmp_path):
    """1 GB from nghttpd through the router (a separate process) to curl; the router's
    peak RSS stays far below the size of the response (flow control both ways)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(docs / "big", "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GB of zeros
    bport, rport, aport = free_port(), free_port(), free_port()
    cfg = tmp_path / "router.yaml"
    cfg.write_text(f"admin: {{port: {aport}}}\nrouters:\n- protocol: h2\n  dtab: /svc => /$/inet/127.0.0.1/{bport}\n"
                   f"  servers:\n  - port: {rport}\n")
    backend = await asyncio.create_subprocess_exec("nghttpd", "--no-tls", "-d", str(docs), str(bport),
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    exe = shutil.which("namerouter", path=os.path.dirname(os.path.abspath(__import__("sys").executable)))
    router = await asyncio.create_subprocess_exec(exe or "namerouter", str(cfg), stdout=asyncio.subprocess.DEVNULL,
                                                  stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(100):
            rc, out, _ = await curl_h2("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{rport}/missing")
            if out == "404":
                break
            await asyncio.sleep(0.1)

        def rss_kb(field: str) -> int:
            with open(f"/proc/{router.pid}/status") as f:
                for line in f:
                    if line.startswith(field):
                        return int(line.split()[1])
            return 0

        before = rss_kb("VmRSS:")
        rc, out, err = await curl_h2("-o", "/dev/null", "-w", "%{size_download}", f"http://127.0.0.1:{rport}/big",
                                     timeout=600)
        assert rc == 0 and out == str(1 << 30), err
        peak = rss_kb("VmHWM:")
        assert peak - before < 100 * 1024, (before, peak)  # < 100 MB growth for 1 GB relayed
    finally:
        for p in (router, backend):
            if p.returncode is None:
                p.kill()
                await p.wait()
