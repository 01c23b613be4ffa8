"""``streamingEnabled: false`` (Linkerd's HTTP/1.1 router key; Finagle ``withStreaming(false)``),
end to end: a real router process, real backends, curl and raw sockets.

- requests and responses are buffered whole: a chunked request or response is forwarded
  whole, with a Content-Length;
- a request body over ``maxRequestKB`` is refused with 413 before any backend sees it
  (Content-Length announced, or chunked and counted), and the router reads no more of it
  than the limit;
- a response over ``maxResponseKB`` (Content-Length announced, or chunked and counted)
  is a 502 with ``l5d-err`` — never a cut connection; on a clearContext server, the status
  only;
- buffered requests are replayable: a chunked body larger than the streaming replay limit
  (64 KB) is retried.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.support.backends import Backend, RawClient
from tests.support.ports import free_port
from tests.test_run_seed import RouterProcess, curl

LIMIT_KB = 128


def _body(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


@pytest.fixture
async def buffered(tmp_path: Path):
    """A router process with streamingEnabled: false (limits 128 KB) in front of a backend;
    a plain and a clearContext server; retries of idempotent 5xx."""
    async with Backend("web") as backend:
        admin, plain, hidden = free_port(), free_port(), free_port()
        cfg = tmp_path / "router.yaml"
        cfg.write_text(f"""admin: {{ip: 127.0.0.1, port: {admin}}}
routers:
- protocol: http
  label: buffered
  dtab: /svc => /$/inet/127.1/{backend.port};
  streamingEnabled: false
  maxRequestKB: {LIMIT_KB}
  maxResponseKB: {LIMIT_KB}
  service:
    responseClassifier: {{kind: io.l5d.http.retryableIdempotent5XX}}
  servers:
  - {{port: {plain}, ip: 127.0.0.1, serverSession: {{idleTimeMs: 1000}}}}
  - {{port: {hidden}, ip: 127.0.0.1, clearContext: true}}
""")
        rp = RouterProcess(cfg, admin)
        await rp.start()
        try:
            yield backend, plain, hidden, admin
        finally:
            await rp.stop()


async def _curl_body(port: int, path: str, body: bytes, *extra: str) -> tuple[int, str]:
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(body)
    try:
        return await curl("-i", "-H", "Host: web", "-H", "Expect:", *extra, "--data-binary", f"@{f.name}",
                          f"http://127.0.0.1:{port}{path}")
    finally:
        os.unlink(f.name)


def _split(out: str) -> tuple[str, str]:
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    return head.lower(), body


async def test_bodies_up_to_the_limits_are_forwarded_whole(buffered):
    backend, plain, _, _ = buffered
    body = _body(100_000)
    for framing in ((), ("-H", "Transfer-Encoding: chunked")):
        code, out = await _curl_body(plain, "/upload", body, *framing)
        assert code == 0, out
        head, rest = _split(out)
        assert head.startswith("http/1.1 200"), out
        assert json.loads(rest.rsplit("\n", 1)[0]) == {
            "bytes": 100_000, "sha256": hashlib.sha256(body).hexdigest(), "backend": "web"}
    # Expect: 100-continue is answered by the router, which reads the body itself
    async with RawClient(plain) as c:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert (await c.read_response()).status == 100
        await c.send(b"hello")
        r = await c.read_response()
        assert r.status == 200 and r.json()["bytes"] == 5, r.body
    # a chunked request goes out whole, with its Content-Length
    code, out = await _curl_body(plain, "/echo", body, "-H", "Transfer-Encoding: chunked")
    got = json.loads(_split(out)[1].rsplit("\n", 1)[0])
    names = {k.lower(): v for k, v in got["headers"]}
    assert names.get("content-length") == "100000" and "transfer-encoding" not in names, got["headers"]
    assert (got["body_len"], got["sha256"]) == (100_000, hashlib.sha256(body).hexdigest())
    # a chunked response goes out whole, with its Content-Length
    for q in ("bytes=100000&chunked=1", "bytes=100000"):
        async with RawClient(plain) as c:
            await c.send(f"GET /stream?{q} HTTP/1.1\r\nHost: web\r\n\r\n".encode())
            r = await c.read_response()
            assert r.status == 200 and r.header("content-length") == "100000", r.headers
            assert r.header("transfer-encoding") is None and len(r.body) == 100_000


async def test_a_request_over_max_request_kb_is_refused_before_any_backend_sees_it(buffered):
    backend, plain, hidden, _ = buffered
    big = _body(LIMIT_KB * 1024 + 1)
    for framing in ((), ("-H", "Transfer-Encoding: chunked")):
        code, out = await _curl_body(plain, "/upload", big, *framing)
        assert code == 0, out
        head, rest = _split(out)
        assert head.startswith("http/1.1 413"), out
        assert "l5d-err: " in head and "maxrequestkb" in head, head
        assert "maxRequestKB (128 KB)" in rest, rest
        # clearContext: the status only
        code, out = await _curl_body(hidden, "/upload", big, *framing)
        head, rest = _split(out)
        assert code == 0 and head.startswith("http/1.1 413") and "l5d-" not in head and rest == "\n413", out
    assert backend.requests == []

    # The attack itself: a Content-Length of 10 GB is refused on its head, and a chunked
    # body that never ends is refused after the limit; either way the connection is closed
    # without reading (and keeping) the rest.
    async with RawClient(plain) as c:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 10000000000\r\n\r\n" + b"x" * 1000)
        r = await c.read_response()
        assert r.status == 413 and "10000000000 bytes" in r.body.decode()
        assert await c.closed_by_peer()
    async with RawClient(plain) as c:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%b\r\n" % (16384, b"y" * 16384)
        sent = 0
        answer = asyncio.ensure_future(c.read_response())
        try:
            while not answer.done() and sent < 64 * 1024 * 1024:  # the router answers long before
                await c.send(piece)
                sent += 16384
                await asyncio.sleep(0)
        except ConnectionError:
            pass
        r = await answer
        assert r.status == 413 and "(chunked)" in r.body.decode()
        assert sent < 16 * 1024 * 1024, sent
    assert backend.requests == []


async def test_a_response_over_max_response_kb_is_a_502_never_a_cut(buffered):
    backend, plain, hidden, _ = buffered
    n = LIMIT_KB * 1024 + 1
    for q in (f"bytes={n}", f"bytes={n}&chunked=1"):
        # two requests on one curl connection: the 502 is a whole answer, the connection carries on
        code, out = await curl("-i", "-H", "Host: web", f"http://127.0.0.1:{plain}/stream?{q}",
                               f"http://127.0.0.1:{plain}/pong")
        assert code == 0, out
        head, rest = _split(out)
        assert head.startswith("http/1.1 502"), out
        assert "l5d-err: " in head and "maxresponsekb" in head, head
        assert "larger than maxResponseKB (128 KB)" in rest, rest
        assert rest.rstrip().endswith("pong\n200") or rest.rstrip().endswith("pong200"), rest
        # clearContext: the status only
        code, out = await curl("-i", "-H", "Host: web", f"http://127.0.0.1:{hidden}/stream?{q}")
        head, rest = _split(out)
        assert code == 0 and head.startswith("http/1.1 502") and "l5d-" not in head and rest == "\n502", out


async def test_buffered_requests_are_retried_whole(buffered):
    """A chunked 100 KB PUT is never retried when streamed (over the 64 KB replay limit);
    buffered, every attempt carries the whole body."""
    backend, plain, _, _ = buffered
    body = _body(100 * 1024 - 7)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(body)
    try:
        code, out = await curl("-i", "-X", "PUT", "-H", "Host: web", "-H", "Expect:", "-H", "Transfer-Encoding: chunked",
                               "--data-binary", f"@{f.name}", f"http://127.0.0.1:{plain}/status/503")
    finally:
        os.unlink(f.name)
    assert code == 0 and out.rstrip().endswith("503"), out
    attempts = [r for r in backend.requests if r.uri == "/status/503"]
    assert len(attempts) > 1, len(attempts)
    for r in attempts:
        assert (r.body_len, r.sha.hexdigest()) == (len(body), hashlib.sha256(body).hexdigest())


async def test_a_stalled_buffered_upload_is_answered_408_and_counted(buffered):
    backend, plain, _, admin = buffered
    async with RawClient(plain) as c:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        r = await c.read_response()  # idleTimeMs: 1000 on this server
        assert r.status == 408 and "request body stalled" in r.body.decode(), r.body
        assert await c.closed_by_peer()
    code, out = await curl(f"http://127.0.0.1:{admin}/admin/metrics.json")
    metrics = json.loads(out.rsplit("\n", 1)[0])
    assert metrics.get(f"rt/buffered/server/127.0.0.1/{plain}/status/408") == 1, sorted(
        k for k in metrics if "status" in k)
    assert backend.requests == []
