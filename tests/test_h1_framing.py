"""HTTP/1.1 framing as pure code: heads classified and written byte for byte, no sockets
(namerouter/proxy/h1/heads.py and encode.py)."""
from __future__ import annotations

import pytest

from namerouter.proxy.h1 import encode
from namerouter.proxy.h1.heads import (
    FramingError, head_end, head_limit_error, parse_request, parse_response, skip_empty_lines,
)
from namerouter.proxy.message import HeaderBlock, SimpleRequestHead

DST = b"l5d-dst-service: /svc/pong\r\nl5d-dst-client: /$/inet/127.1/8080\r\n"


def forward(raw: bytes, *, clear: bool = False, host: bytes | None = None, deadline: bytes | None = None,
            uri: bytes | None = None) -> bytes:
    h = parse_request(raw, clear)
    return b"".join(encode.request_head(h, uri if uri is not None else h.uri, host, b"10.0.0.1:80", DST,
                                        b"l5d-reqid: 00000000000000aa\r\n", deadline))


# --- finding heads and limits ---------------------------------------------------------------

def test_head_end_and_empty_lines():
    buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2"
    start = skip_empty_lines(buf, 0)
    assert start == 4
    end = head_end(buf, start)
    assert buf[start:end] == b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert head_end(buf, end) == -1  # the next head is not complete


def test_limits_name_the_setting():
    assert head_limit_error(b"GET /" + b"a" * 100, 0, 105, 64, 1024).startswith("request line longer than maxInitialLineKB")
    big = b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 2000 + b"\r\n"
    assert head_limit_error(big, 0, len(big), 4096, 1024).startswith("request headers larger than maxHeadersKB")
    assert head_limit_error(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 27, 4096, 1024) is None


# --- request heads -----------------------------------------------------------------------------

def test_plain_request_is_forwarded_as_its_bytes_plus_the_routers_lines():
    raw = b"GET /pong?x=1 HTTP/1.1\r\nHost: pong\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"
    h = parse_request(raw)
    assert (h.method, h.uri, h.version, h.host, h.keep_alive, h.plain) == (
        b"GET", b"/pong?x=1", "1.1", b"pong", True, True)
    assert forward(raw) == raw[:-2] + b"Via: 1.1 linkerd\r\n" + DST + b"l5d-reqid: 00000000000000aa\r\n\r\n"


def test_hop_by_hop_via_and_l5d_lines_are_cut_out():
    raw = (b"POST /u HTTP/1.1\r\nHost: pong\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n"
           b"TE: trailers\r\nProxy-Authorization: Basic x\r\nVia: 1.1 a\r\nl5d-dtab: /a=>/b\r\nl5d-dst-service: /forged\r\n"
           b"l5d-reqid: forged\r\nl5d-ctx-trace: dHJhY2U=\r\nl5d-name: /n\r\nContent-Length: 2\r\nX-Keep: yes\r\n\r\n")
    h = parse_request(raw)
    assert h.dtab == b"/a=>/b" and h.via == b"1.1 a" and h.content_length == 2
    assert h.trace_headers == [(b"l5d-ctx-trace", b"dHJhY2U=")]
    assert not h.plain
    out = forward(raw)
    assert out == (b"POST /u HTTP/1.1\r\nHost: pong\r\nl5d-name: /n\r\n"
                   b"Content-Length: 2\r\nX-Keep: yes\r\nVia: 1.1 a, 1.1 linkerd\r\n" + DST +
                   b"l5d-reqid: 00000000000000aa\r\n\r\n")
    assert h.header(b"x-keep") == b"yes" and h.header(b"x-hop") is None and h.header(b"l5d-name") == b"/n"
    assert [n for n, _ in h.fields()] == [b"Host", b"l5d-name", b"Content-Length", b"X-Keep"]


def test_trace_context_fields_are_collected_in_the_same_scan_and_not_forwarded():
    raw = (b"GET / HTTP/1.1\r\nHost: a\r\nX-B3-TraceId: 463AC35C9F6413AD\r\nx-b3-spanid: a2fb4a1d1a96d312\r\n"
           b"X-B3-Other: keep\r\nB3: 1\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
           b"TraceState: Congo=t61rcWkgMzE\r\nl5d-sample: 0.5\r\nAccept: x\r\n\r\n")
    h = parse_request(raw)
    assert h.trace_headers == [
        (b"x-b3-traceid", b"463AC35C9F6413AD"), (b"x-b3-spanid", b"a2fb4a1d1a96d312"), (b"b3", b"1"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"tracestate", b"Congo=t61rcWkgMzE"), (b"l5d-sample", b"0.5")]
    assert not h.plain
    out = forward(raw)
    assert out == (b"GET / HTTP/1.1\r\nHost: a\r\nX-B3-Other: keep\r\nAccept: x\r\nVia: 1.1 linkerd\r\n" + DST
                   + b"l5d-reqid: 00000000000000aa\r\n\r\n")
    # without any, nothing is collected and the head stays on the fast path
    plain = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nTrace: x\r\nBx: y\r\n\r\n")
    assert plain.trace_headers is None and plain.plain
    # clearContext drops the l5d-* ones only
    h = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nl5d-ctx-trace: AAAA\r\nb3: 0\r\n\r\n", clear_context=True)
    assert h.trace_headers == [(b"b3", b"0")]
    # another codec's head: the same split
    other = SimpleRequestHead(b"GET", b"/", b"a", "2", [(b"B3", b"1"), (b"accept", b"x")])
    assert other.trace_headers == [(b"b3", b"1")] and other.fields() == [(b"accept", b"x")]


def test_clear_context_drops_every_l5d_header():
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nl5d-dtab: /a=>/b\r\nl5d-ctx-deadline: 1 2\r\nl5d-name: x\r\n\r\n"
    h = parse_request(raw, clear_context=True)
    assert h.dtab is None and h.deadline is None
    assert b"l5d-dtab" not in forward(raw, clear=True) and b"l5d-name" not in forward(raw, clear=True)


def test_names_are_case_insensitive_and_values_keep_their_case():
    raw = b"GET / HTTP/1.1\r\nhOsT:  Pong.Example \r\nCONNECTION: close\r\nL5D-DTAB: /A=>/B\r\n\r\n"
    h = parse_request(raw)
    assert h.host == b"Pong.Example" and h.keep_alive is False and h.dtab == b"/A=>/B"


@pytest.mark.parametrize("raw,why", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host header"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "only chunked"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     "Content-Length with Transfer-Encoding"),
    (b"THIS IS NOT HTTP\r\n\r\n", "malformed request line"),
    (b"GET\r\n\r\n", "malformed request line"),
])
def test_refused_request_heads(raw, why):
    with pytest.raises(FramingError, match=why):
        parse_request(raw)


def test_chunked_upgrade_and_keep_alive_rules():
    h = parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert h.chunked and h.has_body
    assert forward(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").endswith(
        b"Transfer-Encoding: chunked\r\n\r\n")
    up = parse_request(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert up.upgrade == b"websocket"
    assert forward(up.raw).endswith(b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    # Upgrade without Connection: upgrade is not an upgrade request
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade is None
    assert parse_request(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n").keep_alive is False
    assert parse_request(b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").keep_alive is True


def test_absolute_form_http_10_and_host_rewrite():
    out = forward(b"GET http://user@pong:81/p?q HTTP/1.1\r\nHost: other\r\nAccept: x\r\n\r\n")
    assert out.startswith(b"GET /p?q HTTP/1.1\r\nAccept: x\r\nHost: pong:81\r\n")
    # HTTP/1.0 without Host: forwarded as 1.0 (as Linkerd does), asking the backend to keep
    # the pooled connection, and the endpoint is the Host
    out = forward(b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: 10.0.0.1:80\r\nVia: 1.0 linkerd\r\n")
    # RewriteHostHeader and an identifier that consumed a path prefix
    out = forward(b"GET /svc/x HTTP/1.1\r\nHost: pong\r\nA: b\r\n\r\n", host=b"pong.service.dc1.consul", uri=b"/x")
    assert out.startswith(b"GET /x HTTP/1.1\r\nA: b\r\nHost: pong.service.dc1.consul\r\n")


def test_deadline_replaced_or_dropped():
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nl5d-ctx-deadline: 1 2\r\nB: c\r\n\r\n"
    assert b"l5d-ctx-deadline: 1 2\r\n" in forward(raw)  # no policy: forwarded as received
    out = forward(raw, deadline=b"5 9")
    assert b"l5d-ctx-deadline: 1 2" not in out and out.count(b"l5d-ctx-deadline: 5 9\r\n") == 1
    assert b"l5d-ctx-deadline" not in forward(raw, deadline=b"")


def test_a_head_from_another_codec_is_written_from_its_fields():
    head = SimpleRequestHead(b"GET", b"/p", b"pong", "2", [(b"accept", b"x"), (b"host", b"ignored")])
    out = b"".join(encode.request_head(head, b"/p", None, b"e:1", DST, b"l5d-reqid: r\r\n", None))
    assert out == (b"GET /p HTTP/1.1\r\nHost: pong\r\naccept: x\r\nVia: 1.1 linkerd\r\n" + DST +
                   b"l5d-reqid: r\r\n\r\n")


# --- response heads ----------------------------------------------------------------------------

NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
         b"Connection: keep-alive\r\n\r\n")


def test_response_head_classified_and_rewritten():
    r = parse_response(NGINX)
    assert (r.status, r.reason, r.content_length, r.keep_alive, r.chunked) == (200, b"OK", 4, True, False)
    assert encode.response_head(r, b"", b"") == (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
                                                  b"Content-Length: 4\r\nVia: 1.1 linkerd\r\n\r\n")
    assert parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive is False
    assert parse_response(b"HTTP/1.0 200 OK\r\n\r\n").keep_alive is False
    assert parse_response(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive is True


def test_response_framing_classification_and_clear_context():
    raw = (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n"
           b"Via: 1.1 b\r\nConnection: X-Drop\r\nX-Drop: 1\r\nl5d-success-class: 0.0\r\nl5d-retryable: true\r\n"
           b"l5d-err: x\r\nUpgrade: h2\r\n\r\n")
    r = parse_response(raw)
    assert r.chunked and r.content_length is None and r.retryable and r.has_class and r.via == b"1.1 b"
    extra = HeaderBlock([(b"l5d-success-class", b"0.0")])
    out = encode.response_head(r, extra.h1, encode.CHUNKED, drop_class=True)
    assert out == (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nl5d-err: x\r\n"
                   b"l5d-success-class: 0.0\r\nVia: 1.1 b, 1.1 linkerd\r\nTransfer-Encoding: chunked\r\n\r\n")
    cleared = encode.response_head(r, b"", b"", clear_l5d=True)
    assert b"l5d-" not in cleared
    kept = encode.response_head(r, b"", b"")  # no policy of ours: a downstream router's class stays
    assert b"l5d-retryable: true\r\n" in kept and b"l5d-err: x\r\n" in kept


def test_location_points_back_at_the_clients_host():
    r = parse_response(b"HTTP/1.1 302 Found\r\nLocation: http://pong.service.consul/next\r\nX: pong.service.consul\r\n\r\n")
    out = encode.response_head(r, b"", b"", unrewrite=(b"pong.service.consul", b"pong"))
    assert b"Location: http://pong/next\r\n" in out and b"X: pong.service.consul\r\n" in out


@pytest.mark.parametrize("raw", [b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1\r\n\r\n", b"NOPE\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
def test_refused_response_heads(raw):
    with pytest.raises(FramingError):
        parse_response(raw)


def test_status_line_without_reason():
    r = parse_response(b"HTTP/1.1 204\r\n\r\n")
    assert r.status == 204 and r.reason == b""
    assert encode.response_head(r, b"", b"").startswith(b"HTTP/1.1 204\r\n")


# --- bodies and router-made answers ------------------------------------------------------------

def test_chunk_framing_and_small_answers():
    assert encode.chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode.chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert encode.LAST_CHUNK == b"0\r\n\r\n"
    assert encode.interim(100, b"") == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert encode.status_only(418, close=True) == (b"HTTP/1.1 418 Unknown\r\nContent-Length: 0\r\n"
                                                   b"Via: 1.1 linkerd\r\nConnection: close\r\n\r\n")
    sw = encode.switching_protocols(parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                                   b"Connection: upgrade\r\n\r\n"))
    assert sw == (b"HTTP/1.1 101 Switching Protocols\r\nVia: 1.1 linkerd\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n")
