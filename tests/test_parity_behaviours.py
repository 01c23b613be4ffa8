"""Behaviours Linkerd 1's own tests assert (issue 15, "Behaviours to fix"), end to end:
real router processes or servers, real backends, curl and raw sockets.

- clearContext hides internals (HttpEndToEndTest "clearContext will remove linkerd
  error headers and body"): status only to the client, the explanation in the log and on
  the admin server's recent requests.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.support.backends import Backend, RawClient, get
from tests.support.ports import free_port
from tests.test_run_seed import RouterProcess, curl


def _router_config(tmp_path: Path, admin: int, dtab: str, servers: str, extra: str = "") -> Path:
    p = tmp_path / "router.yaml"
    p.write_text(f"""admin:
  ip: 127.0.0.1
  port: {admin}
telemetry:
- kind: io.l5d.recentRequests
  sampleRate: 1.0
routers:
- protocol: http
  label: parity
  dtab: {dtab}
{extra}  servers:
{servers}""")
    return p


@pytest.fixture
async def clear_router(tmp_path):
    """A router process with two servers: one with clearContext, one without."""
    admin, hidden, plain = free_port(), free_port(), free_port()
    dead = free_port()  # nothing listens there
    cfg = _router_config(tmp_path, admin, f"/svc/down => /$/inet/127.1/{dead}", f"""  - port: {hidden}
    ip: 127.0.0.1
    clearContext: true
  - port: {plain}
    ip: 127.0.0.1
""")
    rp = RouterProcess(cfg, admin)
    await rp.start()
    try:
        yield rp, admin, hidden, plain
    finally:
        await rp.stop()


async def test_clear_context_answers_router_errors_with_the_status_only(clear_router):
    rp, admin, hidden, plain = clear_router
    # no route, and a backend that refuses connections: 502 with nothing else to read
    for host in ("ghost", "down"):
        code, out = await curl("-i", "-H", f"Host: {host}", f"http://127.0.0.1:{hidden}/x")
        assert code == 0, out
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        assert head.startswith("HTTP/1.1 502"), out
        assert "l5d-" not in head.lower(), head
        assert body == "\n502", out  # an empty body (curl -w appends the status)
    # a malformed request is refused the same way
    async with RawClient(hidden) as c:
        await c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        r = await c.read_response()
        assert r.status == 400 and r.body == b"" and r.header("l5d-err") is None
    # the same router's other server still explains
    code, out = await curl("-i", "-H", "Host: ghost", f"http://127.0.0.1:{plain}/x")
    assert "l5d-err: " in out and "/svc/ghost" in out.split("\r\n\r\n", 1)[1], out
    code, out = await curl("-i", "-H", "Host: down", f"http://127.0.0.1:{plain}/x")
    assert "l5d-retryable: true" in out, out
    # the admin server has the explanation of the hidden answers
    code, out = await curl(f"http://127.0.0.1:{admin}/requests.json")
    rows = json.loads(out.rsplit("\n", 1)[0])
    hidden_rows = [r for r in rows if str(r.get("server", "")).endswith(str(hidden))]
    errors = " ".join(str(r["error"]) for r in (hidden_rows or rows))
    assert "/svc/ghost" in errors and "down" in errors, rows
    # and so does the log
    await rp.stop()
    err = (await rp.proc.stderr.read()).decode()
    assert "without explanation (clearContext)" in err and "/svc/ghost" in err, err


async def test_clear_context_drops_the_routers_classification_headers(tmp_path):
    async with Backend("a") as a:
        admin, port = free_port(), free_port()
        cfg = _router_config(tmp_path, admin, f"/svc/a => /$/inet/127.1/{a.port}", f"""  - port: {port}
    ip: 127.0.0.1
    clearContext: true
""", extra="""  service:
    responseClassifier:
      kind: io.l5d.http.retryableRead5XX
""")
        rp = RouterProcess(cfg, admin)
        await rp.start()
        try:
            code, out = await curl("-i", "-H", "Host: a", f"http://127.0.0.1:{port}/status/503")
            assert out.startswith("HTTP/1.1 503"), out
            assert "l5d-" not in out.lower(), out
        finally:
            await rp.stop()


# --- texts and shapes (MaxCallDepthFilterTest, DelegateApiHandlerTest, HttpControlServiceTest) --

#: DelegateApiHandlerTest's dtab without its test-only error namer
_DELEGATE_DTAB = ("/bah/humbug => /$/inet/127.1/8080 ; /foo => /bah | /$/fail ; /foo => /bar ; "
                  "/boo => /foo ; /meh => /heh ; /neg => ~")


async def test_max_call_depth_text_through_curl():
    from namerouter.proxy import ServerConfig
    from tests.support.backends import RouterHarness

    servers = [ServerConfig(port=free_port(), maxCallDepth=9)]
    async with Backend("a") as a, RouterHarness(f"/svc/a => /$/inet/127.1/{a.port}", servers=servers) as h:
        via = ", ".join(["1.1 x"] * 10)
        code, out = await curl("-H", "Host: a", "-H", f"Via: {via}", f"http://127.0.0.1:{h.port}/")
        assert out == "Maximum number of calls (9) has been exceeded. Please check for proxy loops.\n\n400", out
        assert not a.requests


@pytest.fixture
async def two_routers(tmp_path):
    """A router process with two routers, so /delegator.json has no default namespace."""
    admin = free_port()
    p = tmp_path / "two.yaml"
    p.write_text(f"""admin:
  ip: 127.0.0.1
  port: {admin}
routers:
- protocol: http
  label: plain
  dtab: /svc => /$/inet/127.1/1
  servers:
  - {{port: {free_port()}, ip: 127.0.0.1}}
- protocol: http
  label: other
  dtab: /svc => /$/inet/127.1/2
  servers:
  - {{port: {free_port()}, ip: 127.0.0.1}}
""")
    rp = RouterProcess(p, admin)
    await rp.start()
    try:
        yield f"http://127.0.0.1:{admin}"
    finally:
        await rp.stop()


async def test_router_delegator_json_is_compact_as_jackson_writes_it(two_routers):
    base = two_routers
    code, out = await curl("-G", "--data-urlencode", f"dtab={_DELEGATE_DTAB}",
                           f"{base}/delegator.json?namespace=plain&path=/boo/humbug")
    body, status = out.rsplit("\n", 1)
    assert status == "200"
    assert body == (
        '{"type":"delegate","path":"/boo/humbug","delegate":{'
        '"type":"alt","path":"/foo/humbug","dentry":{"prefix":"/boo","dst":"/foo"},"alt":['
        '{"type":"neg","path":"/bar/humbug","dentry":{"prefix":"/foo","dst":"/bar"}},'
        '{"type":"delegate","path":"/bah/humbug",'
        '"dentry":{"prefix":"/foo","dst":"/bah | /$/fail"},"delegate":{'
        '"type":"leaf","path":"/$/inet/127.1/8080","dentry":{"prefix":"/bah/humbug",'
        '"dst":"/$/inet/127.1/8080"},'
        '"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},'
        '"id":"/$/inet/127.1/8080","path":"/"}}},'
        '{"type":"fail","path":"/$/fail/humbug","dentry":{"prefix":"/foo","dst":"/bah | /$/fail"}}]}}')
    code, out = await curl("-G", "--data-urlencode", f"dtab={_DELEGATE_DTAB}",
                           f"{base}/delegator.json?namespace=plain&path=/neg")
    assert out == ('{"type":"delegate","path":"/neg","delegate":'
                   '{"type":"neg","path":"~","dentry":{"prefix":"/neg","dst":"~"}}}\n200'), out


async def test_router_delegator_bad_input_is_400_before_the_namespace(two_routers):
    base = two_routers
    code, out = await curl(f"{base}/delegator.json?path=/boo/humbug&dtab=invalid-param")
    assert out == "Invalid dtab: '/' expected but 'i' found at '[i]nvalid-param'\n400", out
    code, out = await curl(f"{base}/delegator.json?path=invalid-param&namespace=label")
    assert out == "Invalid path: '/' expected but 'i' found at '[i]nvalid-param'\n400", out
    # a good path and dtab with no namespace among two routers: which router is unknown
    code, out = await curl(f"{base}/delegator.json?path=/boo&dtab=/boo=>/foo")
    assert out.endswith("\n404"), out


async def test_namerd_delegate_is_compact_without_trailing_newline(tmp_path):
    from tests.support.namerd_proc import NamerdProcess

    disco = tmp_path / "disco"
    disco.mkdir()
    n = NamerdProcess(str(tmp_path), str(disco))
    await n.start()
    try:
        await n.put_dtab("/yeezy=>/yeezus")
        code, out = await curl(f"{n.url}/api/1/delegate/default?path=/yeezy")
        assert out == ('{"type":"delegate","path":"/yeezy","delegate":{"type":"neg","path":"/yeezus",'
                       '"dentry":{"prefix":"/yeezy","dst":"/yeezus"}}}\n200'), out
        code, out = await curl("-G", "--data-urlencode", "dtab=/foo=>/bar", f"{n.url}/api/1/delegate?path=/foo")
        assert out == ('{"type":"delegate","path":"/foo","delegate":{"type":"neg","path":"/bar",'
                       '"dentry":{"prefix":"/foo","dst":"/bar"}}}\n200'), out
    finally:
        await n.kill()


# --- retries (RetriesEndToEndTest, ResponseClassificationEndToEndTest) --------------------------

async def _metrics(admin: int) -> dict:
    code, out = await curl(f"http://127.0.0.1:{admin}/admin/metrics.json")
    return json.loads(out.rsplit("\n", 1)[0])


async def test_downstream_retryable_5xx_is_retried_under_the_default_classifier(tmp_path):
    """front -> back -> nothing listening: back answers 502 + l5d-retryable: true, and front
    (no service block: the default classifier) retries it until its default budget (10/s
    x 10 s reserve + 20 % of 1 request) is spent: exactly 100 retries."""
    admin, front, back, dead = free_port(), free_port(), free_port(), free_port()
    cfg = tmp_path / "chain.yaml"
    cfg.write_text(f"""admin: {{ip: 127.0.0.1, port: {admin}}}
routers:
- protocol: http
  label: front
  dtab: /svc/x => /$/inet/127.1/{back}
  servers: [{{port: {front}, ip: 127.0.0.1}}]
- protocol: http
  label: back
  dtab: /svc/x => /$/inet/127.1/{dead}
  servers: [{{port: {back}, ip: 127.0.0.1}}]
""")
    rp = RouterProcess(cfg, admin)
    await rp.start()
    try:
        code, out = await curl("-i", "-H", "Host: x", f"http://127.0.0.1:{front}/")
        assert out.startswith("HTTP/1.1 502"), out
        assert "l5d-retryable: true" in out  # the last answer is relayed as it came
        m = await _metrics(admin)
        assert m["rt/front/service/svc/x/retries/total"] == 100
        assert m["rt/front/service/svc/x/retries/budget_exhausted"] == 1
        assert m[f"rt/front/client/$/inet/127.1/{back}/status/502"] == 101
        assert m["rt/front/service/svc/x/requests"] == 1
        assert m["rt/back/service/svc/x/requests"] == 101
    finally:
        await rp.stop()


async def test_plain_5xx_is_not_retried_by_default_and_budget_gauges(tmp_path):
    async with Backend("a") as a:
        admin, port = free_port(), free_port()
        cfg = tmp_path / "one.yaml"
        cfg.write_text(f"""admin: {{ip: 127.0.0.1, port: {admin}}}
routers:
- protocol: http
  label: r
  dtab: /svc/a => /$/inet/127.1/{a.port}
  servers: [{{port: {port}, ip: 127.0.0.1}}]
""")
        rp = RouterProcess(cfg, admin)
        await rp.start()
        try:
            for _ in range(9):
                code, out = await curl("-H", "Host: a", f"http://127.0.0.1:{port}/pong")
                assert out == "pong\n200", out
            code, out = await curl("-H", "Host: a", f"http://127.0.0.1:{port}/status/500")
            assert out.endswith("500"), out
            assert len(a.requests) == 10  # the 500 (no l5d-retryable) was not retried
            m = await _metrics(admin)
            # Finagle's RetryBudget: (10/s x 10 s reserve + 20 % of 10 deposits) = 102
            assert m["rt/r/service/svc/a/retries/budget"] == 102
            assert m[f"rt/r/client/$/inet/127.1/{a.port}/retries/budget"] == 102
            assert m["rt/r/service/svc/a/retries/total"] == 0
        finally:
            await rp.stop()


# --- deadlines ------------------------------------------------------------------------------------

@pytest.mark.parametrize("service", [False, True])
async def test_several_incoming_deadlines_are_forwarded_as_one(tmp_path, service):
    """Latest timestamp, earliest deadline (Finagle's Deadline.combined), from separate
    lines and from one folded line; with a service block, combined with totalTimeoutMs."""
    import time

    async with Backend("a") as a:
        admin, port = free_port(), free_port()
        extra = "  service: {totalTimeoutMs: 120000}\n" if service else ""
        cfg = _router_config(tmp_path, admin, f"/svc/a => /$/inet/127.1/{a.port}",
                             f"  - {{port: {port}, ip: 127.0.0.1}}\n", extra=extra)
        rp = RouterProcess(cfg, admin)
        await rp.start()
        try:
            now = time.time_ns()
            early = f"{now} {now + 30 * 10**9}"
            late = f"{now + 10**6} {now + 60 * 10**9}"
            want = f"{now + 10**6} {now + 30 * 10**9}"
            code, out = await curl("-H", "Host: a", "-H", f"l5d-ctx-deadline: {early}",
                                   "-H", f"l5d-ctx-deadline: {late}", f"http://127.0.0.1:{port}/pong")
            assert out == "pong\n200", out
            _assert_deadline(a.last.header_all("l5d-ctx-deadline"), want, service)
            code, out = await curl("-H", "Host: a", "-H", f"l5d-ctx-deadline: {late}, {early}",
                                   f"http://127.0.0.1:{port}/pong")
            assert out == "pong\n200", out
            _assert_deadline(a.last.header_all("l5d-ctx-deadline"), want, service)
        finally:
            await rp.stop()


def _assert_deadline(got: list, want: str, own_timeout: bool) -> None:
    if not own_timeout:
        assert got == [want]
        return
    # the router's totalTimeoutMs joins in: its own "now" is the latest timestamp, the
    # incoming deadline (30 s) stays the earliest
    assert len(got) == 1
    ts, dl = (int(x) for x in got[0].split())
    assert ts >= int(want.split()[0]) and dl == int(want.split()[1])


# --- HTTP/1.0 (ViaHeaderAppenderFilterTest) ------------------------------------------------------

@pytest.fixture
async def plain_router():
    """A real router server in front of a real backend."""
    from tests.support.backends import RouterHarness

    async with Backend("a") as a, RouterHarness(f"/svc/a => /$/inet/127.1/{a.port}") as h:
        yield a, h


async def test_http10_request_is_forwarded_and_answered_as_http10(plain_router):
    a, h = plain_router
    code, out = await curl("--http1.0", "-i", "-H", "Host: a", f"http://127.0.0.1:{h.port}/pong")
    head = out.split("\r\n\r\n", 1)[0]
    assert head.startswith("HTTP/1.0 200"), out
    assert "\r\nVia: 1.0 linkerd" in head and "Connection: close" in head, head
    assert a.last.version == "HTTP/1.0"
    assert a.last.header("via") == "1.0 linkerd"
    # an HTTP/1.1 client is unchanged
    code, out = await curl("-i", "-H", "Host: a", f"http://127.0.0.1:{h.port}/pong")
    assert out.startswith("HTTP/1.1 200") and "Via: 1.1 linkerd" in out, out
    assert a.last.version == "HTTP/1.1"


async def test_http10_keep_alive_rules_on_a_raw_socket(plain_router):
    a, h = plain_router
    # without "Connection: keep-alive" the connection closes after the answer
    async with RawClient(h.port) as c:
        await c.send(b"GET /pong HTTP/1.0\r\nHost: a\r\n\r\n")
        r = await c.read_response()
        assert (r.version, r.status, r.body) == ("HTTP/1.0", 200, b"pong")
        assert await c.closed_by_peer()
    # with it, the connection carries on, each answer saying so; errors too
    async with RawClient(h.port) as c:
        for host, status in (("a", 200), ("ghost", 502), ("a", 200)):
            await c.send(f"GET /pong HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode())
            r = await c.read_response()
            assert (r.version, r.status) == ("HTTP/1.0", status), r
            assert r.header("connection") == "keep-alive" and r.header("via") == "1.0 linkerd", r
        await c.send(b"GET /pong HTTP/1.0\r\nHost: a\r\n\r\n")
        r = await c.read_response()
        assert r.version == "HTTP/1.0" and r.status == 200
        assert await c.closed_by_peer()


# --- CONNECT ----------------------------------------------------------------------------------------

async def test_connect_is_routed_by_its_authority_and_tunnelled(tmp_path):
    async with Backend("a") as a:
        admin, port, dead = free_port(), free_port(), free_port()
        cfg = _router_config(tmp_path, admin,
                             f"/svc/a:{a.port} => /$/inet/127.1/{a.port} ; /svc/down:1 => /$/inet/127.1/{dead}",
                             f"  - {{port: {port}, ip: 127.0.0.1}}\n",
                             extra="  service: {responseClassifier: {kind: io.l5d.http.retryableAll5XX}}\n")
        rp = RouterProcess(cfg, admin)
        await rp.start()
        try:
            # curl's proxytunnel: CONNECT a:<port>, then its own HTTP/1.1 exchange in the tunnel
            code, out = await curl("-p", "-x", f"http://127.0.0.1:{port}", "-i", f"http://a:{a.port}/pong")
            assert code == 0, out
            assert out.startswith("HTTP/1.1 200 Connection established\r\n"), out
            assert out.endswith("pong\n200"), out
            assert a.last.uri == "/pong" and a.last.header("l5d-dst-service") is None  # raw bytes
            # a raw socket: bytes both ways, several exchanges on the one tunnel
            async with RawClient(port) as c:
                await c.send(f"CONNECT a:{a.port} HTTP/1.1\r\nHost: elsewhere\r\n\r\n".encode())
                reader = c.reader
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 200 "), head
                for _ in range(2):
                    await c.send(b"GET /pong HTTP/1.1\r\nHost: a\r\n\r\n")
                    r = await c.read_response()
                    assert r.status == 200 and r.body == b"pong"
            # an authority the dtab cannot route, and one that refuses: an answer, then close,
            # never retried whatever the classifier
            for target, status in (("ghost:80", 502), ("down:1", 502)):
                async with RawClient(port) as c:
                    await c.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                    r = await c.read_response()
                    assert r.status == status, r
                    assert await c.closed_by_peer()
            m = await _metrics(admin)
            assert m["rt/parity/service/svc/down:1/retries/total"] == 0
            assert m["rt/parity/service/svc/down:1/requests"] == 1
        finally:
            await rp.stop()
