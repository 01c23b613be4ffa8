"""Per-name and per-client policy through the real router: which ``service``/``client``
config applies to which request, the deadline header, the response headers, and the
policy's metrics in the router's registry."""
from __future__ import annotations

import time


from tests.support.backends import Backend, RouterHarness, get, request
from tests.support.load import FlakyBackend


async def test_static_service_configs_apply_by_prefix():
    async with FlakyBackend("a", fail_first=1) as a, FlakyBackend("b", fail_first=1) as b:
        dtab = f"/svc/a => /$/inet/127.1/{a.port}; /svc/b => /$/inet/127.1/{b.port}"
        service = {"kind": "io.l5d.static", "configs": [
            {"prefix": "/svc", "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}},
            {"prefix": "/svc/b", "responseClassifier": {"kind": "io.l5d.http.nonRetryable5XX"}},
        ]}
        async with RouterHarness(dtab, service=service) as h:
            ra = await request(h.port, get("/x", host="a"))
            rb = await request(h.port, get("/x", host="b"))
            assert (ra.status, a.total) == (200, 2)  # retried under /svc
            assert (rb.status, b.total) == (500, 1)  # /svc/b overrides the classifier
            assert rb.header("l5d-success-class") == "0.0" and rb.header("l5d-retryable") is None
            assert h.metric("rt/outgoing/service/svc/a/retries/total") == 1
            assert h.metric("rt/outgoing/service/svc/b/retries/total") == 0


async def test_static_client_configs_match_ids_with_captures():
    async with FlakyBackend("hang", mode="hang") as slow, FlakyBackend("ok") as ok:
        dtab = f"/svc/slow => /$/inet/127.1/{slow.port}; /svc/ok => /$/inet/127.1/{ok.port}"
        client = {"kind": "io.l5d.static", "configs": [
            {"prefix": "/$/inet/{host}/{port}", "requestAttemptTimeoutMs": 5000},
            {"prefix": f"/$/inet/*/{slow.port}", "requestAttemptTimeoutMs": 80},
        ]}
        async with RouterHarness(dtab, client=client) as h:
            t = time.monotonic()
            r = await request(h.port, get("/x", host="slow"))
            assert r.status == 503 and time.monotonic() - t < 1.0
            assert "requestAttemptTimeoutMs (80 ms)" in r.body.decode()
            assert (await request(h.port, get("/x", host="ok"))).status == 200
            stages = h.router.core.table.clients
            caps = {c.id_text: c.policy.captures for c in stages.values()}
            assert caps[f"/$/inet/127.1/{ok.port}"] == {"host": "127.1", "port": str(ok.port)}


async def test_success_class_header_only_with_a_policy():
    async with FlakyBackend("x", fail_first=1) as b:
        dtab = f"/svc/pong => /$/inet/127.1/{b.port}"
        async with RouterHarness(dtab) as h:  # no policy: nothing added
            r = await request(h.port, get("/pong"))
            assert r.status == 500 and r.header("l5d-success-class") is None
            r = await request(h.port, get("/pong"))
            assert r.status == 200 and r.header("l5d-success-class") is None
        async with RouterHarness(dtab, service={"kind": "io.l5d.global"}) as h:
            r = await request(h.port, get("/pong"))
            assert r.status == 200 and r.header_all("l5d-success-class") == ["1.0"]


async def test_deadline_header_and_downstream_classification_replaced():
    async with Backend("pong") as b:
        dtab = f"/svc/pong => /$/inet/127.1/{b.port}"
        async with RouterHarness(dtab) as h:  # no policy: no deadline
            r = await request(h.port, get("/pong"))
            assert b.last.header("l5d-ctx-deadline") is None
        service = {"kind": "io.l5d.global", "totalTimeoutMs": 1500}
        async with RouterHarness(dtab, service=service) as h:
            r = await request(h.port, get("/pong"))
            # the backend's own l5d-success-class is replaced by this hop's, not doubled
            assert r.status == 200 and r.header_all("l5d-success-class") == ["1.0"]
            ts, dl = map(int, b.last.header("l5d-ctx-deadline").split())
            assert dl - ts == 1_500_000_000
            assert abs(ts - time.time_ns()) < 5e9
            # a stricter incoming deadline wins; a looser one is replaced by ours
            now = time.time_ns()
            r = await request(h.port, get("/pong", headers={"l5d-ctx-deadline": f"{now} {now + 10**8}"}))
            (got,) = b.last.header_all("l5d-ctx-deadline")
            ts, dl = map(int, got.split())
            assert dl == now + 10**8 and ts >= now  # strictest deadline, latest timestamp
            r = await request(h.port, get("/pong", headers={"l5d-ctx-deadline": f"{now} {now + 10**12}"}))
            ts, dl = map(int, b.last.header("l5d-ctx-deadline").split())
            assert len(b.last.header_all("l5d-ctx-deadline")) == 1 and dl - ts == 1_500_000_000


async def test_l5d_retryable_from_a_router_further_down_is_honoured():
    body = b"x" * 100
    raw = b"POST /items HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + body
    async with FlakyBackend("a", fail_first=1, mark_retryable=True) as a:
        # default classifier (nonRetryable5XX): a POST is retried only because the
        # response says it is safe to
        async with RouterHarness(f"/svc/a => /$/inet/127.1/{a.port}", service={"kind": "io.l5d.global"}) as h:
            r = await request(h.port, raw)
            assert r.status == 200 and a.total == 2 and a.bodies == [100, 100]
            assert h.metric("rt/outgoing/service/svc/a/retries/total") == 1
