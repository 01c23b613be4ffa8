"""Protocol attacks on an h2 router's server, each sent for real over TCP: the router ends
that connection (GOAWAY with the HTTP/2 error code) or that stream (RST_STREAM), and
keeps serving everyone else.

Frames ``h2`` refuses to build are built with hyperframe (its framing layer) and HPACK
blocks with hpack, so the router sees exactly the bytes an attacker would send.
"""
from __future__ import annotations

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame,
)

from namerouter.proxy.h2.config import H2ServerConfig
from tests.support.h2 import PREFACE, H2Backend, H2Harness, RawH2, client_h2, curl_h2
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

PROTOCOL_ERROR, FLOW_CONTROL_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x1, 0x3, 0x7, 0xB
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web"), (b":path", b"/echo")]


def preface() -> bytes:
    return PREFACE + SettingsFrame(0).serialize()


def headers_frame(sid: int, block: bytes, end_stream: bool = True, end_headers: bool = True) -> bytes:
    flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
    return HeadersFrame(sid, data=block, flags=flags).serialize()


async def still_serves(port: int) -> None:
    rc, out, err = await curl_h2("-H", "Host: web", f"http://127.0.0.1:{port}/echo")
    assert rc == 0 and '"headers"' in out, err


async def goaway_of(raw: RawH2) -> GoAwayFrame:
    f = await raw.until(lambda f: isinstance(f, GoAwayFrame))
    assert f is not None, "no GOAWAY"
    return f


@pytest.fixture
async def router():
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}",
                                           servers=[H2ServerConfig(port=free_port(),
                                                                   maxConcurrentStreamsPerConnection=4)]) as h:
        yield h


async def test_bad_preface_and_garbage(router):
    async with RawH2(router.port) as raw:
        raw.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\0" * 20)
        assert (await goaway_of(raw)).error_code == PROTOCOL_ERROR
    async with RawH2(router.port) as raw:
        raw.send(b"\x16\x03\x01 garbage\r\n\r\n")
        data = await raw.reader.read(1000)
        assert data.startswith(b"HTTP/1.1 400")
    await still_serves(router.port)


async def test_invalid_frames(router):
    async with RawH2(router.port) as raw:  # DATA on stream 0: connection error
        frame = bytearray(DataFrame(1, data=b"x").serialize())
        frame[5:9] = b"\0\0\0\0"  # hyperframe will not build it: the stream id patched to 0
        raw.send(preface() + bytes(frame))
        assert (await goaway_of(raw)).error_code == PROTOCOL_ERROR
    async with RawH2(router.port) as raw:  # SETTINGS_ENABLE_PUSH = 2
        raw.send(PREFACE + SettingsFrame(0, settings={0x2: 2}).serialize())
        assert (await goaway_of(raw)).error_code == PROTOCOL_ERROR
    async with RawH2(router.port) as raw:  # a CONTINUATION flood on an unfinished header block
        enc = Encoder()
        frames = headers_frame(1, enc.encode(GET), end_headers=False)
        frames += b"".join(ContinuationFrame(1, data=b"\x00").serialize() for _ in range(200))
        raw.send(preface() + frames)
        assert (await goaway_of(raw)).error_code == PROTOCOL_ERROR
    await still_serves(router.port)


async def test_hpack_bomb_and_oversized_headers(router):
    async with RawH2(router.port) as raw:
        enc = Encoder()
        enc.header_table_size = 4096
        # one 3 KB value in the dynamic table, referenced 200 times: a small block that
        # decodes to 600 KB
        block = enc.encode(GET + [(b"x-bomb", b"a" * 3000)] * 200)
        assert len(block) < 16384
        raw.send(preface() + headers_frame(1, block))
        assert (await goaway_of(raw)).error_code == ENHANCE_YOUR_CALM
    async with RawH2(router.port) as raw:
        enc = Encoder()
        block = enc.encode(GET + [(b"x-big-%d" % i, b"b" * 1000) for i in range(12)])  # > 8 KB, no reuse
        raw.send(preface() + headers_frame(1, block))
        assert (await goaway_of(raw)).error_code == ENHANCE_YOUR_CALM
    await still_serves(router.port)


async def test_too_many_streams(router):
    async with RawH2(router.port) as raw:
        c = client_h2()
        for sid in (1, 3, 5, 7, 9):  # the limit is 4; none of them ends
            c.send_headers(sid, [(b":method", b"POST")] + GET[1:], end_stream=False) if sid < 9 else None
        raw.send(c.data_to_send())
        enc = c.encoder
        raw.send(headers_frame(9, enc.encode([(b":method", b"POST")] + GET[1:]), end_stream=False))
        f = await raw.until(lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)) and
                            (isinstance(f, GoAwayFrame) or f.stream_id == 9))
        assert f is not None and f.error_code in (PROTOCOL_ERROR, REFUSED_STREAM)
    await still_serves(router.port)


async def test_window_overflow_and_data_beyond_the_window(router):
    async with RawH2(router.port) as raw:  # the connection window past 2^31-1
        raw.send(preface() + WindowUpdateFrame(0, window_increment=2**31 - 1).serialize())
        assert (await goaway_of(raw)).error_code == FLOW_CONTROL_ERROR
    async with RawH2(router.port) as raw:  # more DATA than the 64 KB stream window allows
        enc = Encoder()
        frames = headers_frame(1, enc.encode([(b":method", b"POST")] + GET[1:]), end_stream=False)
        frames += b"".join(DataFrame(1, data=b"z" * 16384).serialize() for _ in range(6))
        raw.send(preface() + frames)
        f = await raw.until(lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)))
        assert f is not None and f.error_code == FLOW_CONTROL_ERROR
    await still_serves(router.port)


async def test_a_reset_stream_leaves_the_others_alone(router):
    async with RawH2(router.port) as raw:
        c = client_h2()
        c.send_headers(1, [(b":method", b"POST")] + GET[1:])
        c.send_headers(3, GET, end_stream=True)
        c.reset_stream(1)
        raw.send(c.data_to_send())
        f = await raw.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 3 and "END_STREAM" in f.flags)
        assert f is not None


async def test_malformed_grpc_request_gets_a_grpc_status(router):
    """(h2 itself ends the connection for malformed HTTP/2 — a bad content-length, a
    missing pseudo-header; what reaches the router malformed is answered in gRPC terms.)"""
    async with RawH2(router.port) as raw:
        c = client_h2()
        c.send_headers(1, [(b":method", b"POST")] + GET[1:3] + [(b":path", b"/demo.Echo/Say"),
                                                               (b"content-type", b"application/grpc"),
                                                               (b"l5d-dtab", b"/svc => (")], end_stream=True)
        raw.send(c.data_to_send())
        f = await raw.until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1)
        assert f is not None and "END_STREAM" in f.flags
        from hpack import Decoder
        hs = dict(Decoder().decode(bytes(f.data), raw=True))
        assert hs[b":status"] == b"200" and hs[b"grpc-status"] == b"13"
        assert b"l5d-dtab" in hs[b"grpc-message"] and hs[b"l5d-err"]
    await still_serves(router.port)


# --- connection limits (serverSession, maxConnections: namerouter/proxy/sessions.py) ----

def _session_servers(**session: int) -> list:
    from namerouter.proxy.config import ServerSessionConfig
    return [H2ServerConfig(port=free_port(), serverSession=ServerSessionConfig(**session), maxConnections=2)]


async def test_idle_connection_is_closed_and_slowloris_preface_is_cut():
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}",
                                           servers=_session_servers(idleTimeMs=300,
                                                                    headerReadTimeoutMs=300)) as h:
        async with RawH2(h.port) as raw:  # an HTTP/2 connection that opens no stream
            raw.send(preface())
            f = await raw.until(lambda f: isinstance(f, GoAwayFrame), timeout=10.0)
            assert f is not None and f.error_code == 0, "an idle h2 connection was not closed"
        assert h.metric("rt/h2/server/127.0.0.1/%d/expired/idle" % h.port) == 1
        async with RawH2(h.port) as raw:  # half a preface, never finished
            raw.send(PREFACE[:10])
            data = await raw.reader.read(1000)
            assert data.startswith(b"HTTP/1.1 408"), data
        assert h.metric("rt/h2/server/127.0.0.1/%d/read_timeout/header" % h.port) == 1
        await still_serves(h.port)


async def test_connections_over_max_connections_are_refused():
    async with H2Backend() as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}",
                                           servers=_session_servers()) as h:
        async with RawH2(h.port) as one, RawH2(h.port) as two:
            one.send(preface())
            two.send(preface())
            for c in (one, two):  # both admitted: the server's SETTINGS arrive
                assert await c.until(lambda f: isinstance(f, SettingsFrame)) is not None
            async with RawH2(h.port) as three:
                data = await three.reader.read(1000)
                assert data.startswith(b"HTTP/1.1 503") and b"maxConnections (2)" in data, data
        assert h.metric("rt/h2/server/127.0.0.1/%d/connects_refused" % h.port) == 1
        await still_serves(h.port)
