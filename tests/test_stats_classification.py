"""The service's response classifier decides success and failure in every request stat
(server, service, client, client-per-service), as Linkerd's
``ResponseClassificationEndToEndTest`` asserts: a real router, real backends, the
metrics read back from the registry by their Linkerd names."""
from __future__ import annotations

from typing import Any

from tests.support.backends import Backend, RouterHarness, get, request
from tests.support.load import FlakyBackend
from tests.support.ports import free_port


def classifier(kind: str) -> dict[str, Any]:
    return {"kind": "io.l5d.global", "responseClassifier": {"kind": f"io.l5d.http.{kind}"}}


def counts(h: RouterHarness, prefix: str) -> tuple[Any, Any]:
    return h.metric(prefix + "success"), h.metric(prefix + "failures")


def scopes(h: RouterHarness, backend_port: int, svc: str) -> dict[str, str]:
    client = f"rt/outgoing/client/$/inet/127.1/{backend_port}/"
    return {"server": f"rt/outgoing/server/127.0.0.1/{h.port}/", "service": f"rt/outgoing/service/svc/{svc}/",
            "client": client, "pair": f"{client}service/svc/{svc}/"}


async def test_success_and_non_retryable_failure():
    async with Backend("ds") as b, RouterHarness(f"/svc/* => /$/inet/127.1/{b.port}",
                                                 service=classifier("retryableRead5XX")) as h:
        assert (await request(h.port, get("/pong", host="foo"))).status == 200
        s = scopes(h, b.port, "foo")
        assert {k: counts(h, p) for k, p in s.items()} == {k: (1, 0) for k in s}
        # a POST answered 500: not retryable with retryableRead5XX, a failure everywhere
        assert (await request(h.port, get("/status/500", host="foo", method="POST", body=b"x"))).status == 500
        assert {k: counts(h, p) for k, p in s.items()} == {k: (1, 1) for k in s}
        assert h.metric(s["pair"] + "requests") == 2


async def test_a_retried_failure_counts_in_the_client_scopes_only():
    async with FlakyBackend("ds", fail_first=1) as b, RouterHarness(
            f"/svc/* => /$/inet/127.1/{b.port}", service=classifier("retryableRead5XX")) as h:
        assert (await request(h.port, get("/", host="foo"))).status == 200
        s = scopes(h, b.port, "foo")
        assert counts(h, s["server"]) == (1, 0) and counts(h, s["service"]) == (1, 0)
        # the attempt answered 500 was retried: the client saw a failure and a success
        assert counts(h, s["pair"]) == (1, 1) and counts(h, s["client"]) == (1, 1)


async def test_a_retried_post_with_retryable_all_5xx():
    async with FlakyBackend("ds", fail_first=1) as b, RouterHarness(
            f"/svc/* => /$/inet/127.1/{b.port}", service=classifier("retryableAll5XX")) as h:
        assert (await request(h.port, get("/", host="foo", method="POST", body=b"x"))).status == 200
        s = scopes(h, b.port, "foo")
        assert counts(h, s["server"]) == (1, 0) and counts(h, s["service"]) == (1, 0)
        assert counts(h, s["pair"]) == (1, 1)


async def test_per_service_classification():
    async with FlakyBackend("a", fail_first=1) as fa, Backend("b") as fb, RouterHarness(
            f"/svc/a => /$/inet/127.1/{fa.port}; /svc/b => /$/inet/127.1/{fb.port}",
            service={"kind": "io.l5d.static", "configs": [
                {"prefix": "/svc/a", "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}},
                {"prefix": "/svc/b", "responseClassifier": {"kind": "io.l5d.http.nonRetryable5XX"}}]}) as h:
        assert (await request(h.port, get("/", host="a"))).status == 200
        a = scopes(h, fa.port, "a")
        assert counts(h, a["server"]) == (1, 0) and counts(h, a["service"]) == (1, 0)
        assert counts(h, a["pair"]) == (1, 1)
        assert (await request(h.port, get("/status/500", host="b"))).status == 500
        b = scopes(h, fb.port, "b")
        assert counts(h, b["server"]) == (1, 1)
        assert counts(h, b["service"]) == (0, 1) and counts(h, b["pair"]) == (0, 1)


async def test_all_successful_makes_a_500_a_success_in_every_stat():
    dead = free_port()
    async with Backend("ds") as b, RouterHarness(f"/svc/* => /$/inet/127.1/{b.port}; /svc/dead => /$/inet/127.1/{dead}",
                                                 service=classifier("allSuccessful")) as h:
        r = await request(h.port, get("/status/500", host="foo", method="POST", body=b"x"))
        assert r.status == 500 and r.header("l5d-success-class") == "1.0"
        s = scopes(h, b.port, "foo")
        assert {k: counts(h, p) for k, p in s.items()} == {k: (1, 0) for k in s}
        assert h.metric(s["service"] + "status/500") == 1
        # a router-made 502 (no response at all: connection refused) is still a failure, as
        # in Finagle, whose default classifier (allSuccessful's) fails every exception
        assert (await request(h.port, get("/", host="dead"))).status == 502
        assert counts(h, "rt/outgoing/service/svc/dead/") == (0, 1)


async def test_without_a_service_block_5xx_fail():
    async with Backend("ds") as b, RouterHarness(f"/svc/* => /$/inet/127.1/{b.port}") as h:
        assert (await request(h.port, get("/status/503", host="foo"))).status == 503
        assert (await request(h.port, get("/status/404", host="foo"))).status == 404
        s = scopes(h, b.port, "foo")
        assert {k: counts(h, p) for k, p in s.items()} == {k: (1, 1) for k in s}
        # the client-per-service scope has the three counters only
        assert h.metric(s["pair"] + "status/503") is None and h.metric(s["pair"] + "request_latency_ms") is None
