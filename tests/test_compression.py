"""``compressionLevel``: a real HTTP/1.1 router gzips responses for clients that accept
it (curl ``--compressed`` decodes them), per Linkerd/Finagle's rules: textual types only
at -1, every type at 1-9, never at 0 or without the key, never for HEAD, 204/304 or
an already-encoded body, and never for a client that did not ask."""
from __future__ import annotations

import gzip
import hashlib
import json

from namerouter.proxy.compression import accepts_gzip
from tests.support.backends import Backend, RawClient, RouterHarness, curl, get


def test_accept_encoding_rules():
    assert accepts_gzip(b"gzip") and accepts_gzip(b"deflate, gzip;q=0.5") and accepts_gzip(b"*")
    assert not accepts_gzip(b"gzip;q=0") and not accepts_gzip(b"deflate") and not accepts_gzip(None)
    assert not accepts_gzip(b"*;q=0") and accepts_gzip(b"br, x-gzip")


async def fetch(port: int, path: str, *args: str) -> tuple[dict[str, str], bytes]:
    rc, out, err = await curl("-D", "-", "-o", "/dev/stdout", *args, "-H", "Host: web",
                              f"http://127.0.0.1:{port}{path}")
    assert rc == 0, err
    head, _, body = out.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(": ")
        headers[k.lower()] = v
    return headers, body.encode("latin-1", "replace")


async def test_textual_responses_are_gzipped_at_minus_one():
    async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", compressionLevel=-1) as h:
        hdrs, body = await fetch(h.port, "/echo?x=" + "a" * 2000, "--compressed")
        assert hdrs["content-encoding"] == "gzip" and "content-length" not in hdrs
        assert hdrs["transfer-encoding"] == "chunked" and "Accept-Encoding" in hdrs["vary"]
        assert json.loads(body)["uri"].endswith("a" * 2000)  # curl decoded it
        # binary content types are left alone at -1
        hdrs, body = await fetch(h.port, "/stream?bytes=100000", "--compressed")
        assert "content-encoding" not in hdrs and hdrs["content-length"] == "100000"
        # no Accept-Encoding: nothing changes
        hdrs, body = await fetch(h.port, "/pong")
        assert "content-encoding" not in hdrs and body == b"pong"


async def test_every_type_at_level_nine_streamed_and_exact():
    async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", compressionLevel=9) as h:
        async with RawClient(h.port) as c:
            await c.send(get("/stream?bytes=300000&chunked=1", host="web", headers={"Accept-Encoding": "gzip"}))
            r = await c.read_response()
            assert r.status == 200 and r.header("content-encoding") == "gzip"
            raw = gzip.decompress(r.body)
            assert len(raw) == 300000 and len(r.body) < 300000
            # the connection stays usable (chunked framing ended properly)
            await c.send(get("/pong", host="web", headers={"Accept-Encoding": "gzip"}))
            r = await c.read_response()
            assert gzip.decompress(r.body) == b"pong"
            # HEAD and 204 are never encoded
            await c.send(get("/pong", host="web", method="HEAD", headers={"Accept-Encoding": "gzip"}))
            r = await c.read_response(head_request=True)
            assert r.header("content-encoding") is None
            await c.send(get("/status/204", host="web", headers={"Accept-Encoding": "gzip"}))
            r = await c.read_response()
            assert r.status == 204 and r.header("content-encoding") is None


async def test_level_zero_and_absent_key_never_compress():
    for fields in ({"compressionLevel": 0}, {}):
        async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", **fields) as h:
            hdrs, body = await fetch(h.port, "/pong", "--compressed")
            assert "content-encoding" not in hdrs and body == b"pong"
            assert hashlib.sha256(body).hexdigest() == hashlib.sha256(b"pong").hexdigest()
