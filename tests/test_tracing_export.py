"""Trace telemeters against real collectors: Zipkin v2 JSON (validated against Zipkin's
model by the test collector), OTLP/HTTP (decoded with opentelemetry-proto), the log, the
recent-requests table; and export when the collector is down, slow or failing (bounded
queue, counted drops, the event loop never stalls)."""
from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from namerouter.metrics import MetricsRegistry
from namerouter.tracing.otlp import OtlpTelemeter
from namerouter.tracing.recent import RecentRequestsTelemeter
from namerouter.tracing.tracelog import TracelogTelemeter
from namerouter.tracing.tracer import Tracer
from namerouter.tracing.zipkin import ZipkinTelemeter
from tests.support.ports import free_port
from tests.support.zipkin_schema import problems

B3_SAMPLED = [(b"x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"), (b"x-b3-spanid", b"a2fb4a1d1a96d312"),
              (b"x-b3-sampled", b"1")]


def one_request(router, headers=None, *, status=200, fail_first=True, remote=("127.0.0.1", 50123),
                backend=("127.0.0.1", 8080)):
    """A request through the hooks as the data plane calls them: a failed attempt, a
    retry, the response."""
    t = router.begin(headers, remote=remote, local=("127.0.0.1", 4140), method=b"GET", uri=b"/pong?x=1",
                     host=b"pong")
    t.routed("/svc/pong")
    if fail_first:
        t.attempt("/#/io.l5d.fs/pong", "/", backend[0], backend[1])
        t.attempt_done(503, "503 Service Unavailable", True)
    t.attempt("/#/io.l5d.fs/pong", "/", backend[0], backend[1], retry=fail_first)
    t.attempt_done(status, None if status < 500 else f"{status}", False)
    t.finish(status, None if status < 500 else f"{status}")
    return t


async def started(*telemeters):
    tr = Tracer(list(telemeters))
    await tr.start()
    return tr


# --- Zipkin ------------------------------------------------------------------------------------

async def test_zipkin_spans_reach_the_collector_as_valid_v2_json(zipkin_collector):
    metrics = MetricsRegistry()
    z = ZipkinTelemeter(zipkin_collector.url, 1.0, metrics, delay_s=0.05)
    tr = await started(z)
    try:
        r = tr.router("outgoing", dtab="/svc=>/#/io.l5d.fs")
        t = one_request(r, B3_SAMPLED)
        spans = await zipkin_collector.await_for(3)
    finally:
        await tr.close()
    assert zipkin_collector.invalid == []
    by_kind = {}
    for s in spans:
        by_kind.setdefault(s["kind"], []).append(s)
    (server,) = by_kind["SERVER"]
    clients = by_kind["CLIENT"]
    assert len(clients) == 2
    assert server["traceId"] == "463ac35c9f6413ad48485a3953bb6124"
    assert server["parentId"] == "a2fb4a1d1a96d312" and server["id"] == f"{t.span_id:016x}"
    assert server["name"] == "/svc/pong"
    assert server["localEndpoint"] == {"serviceName": "outgoing", "ipv4": "127.0.0.1", "port": 4140}
    assert server["remoteEndpoint"] == {"ipv4": "127.0.0.1", "port": 50123}
    assert server["tags"]["router.label"] == "outgoing" and server["tags"]["http.status_code"] == "200"
    for c in clients:
        assert c["parentId"] == server["id"] and c["traceId"] == server["traceId"]
        assert c["remoteEndpoint"] == {"serviceName": "/#/io.l5d.fs/pong", "ipv4": "127.0.0.1", "port": 8080}
        assert c["tags"]["client"] == "/#/io.l5d.fs/pong"
    failed = [c for c in clients if "error" in c["tags"]]
    assert len(failed) == 1 and {"timestamp": failed[0]["annotations"][0]["timestamp"],
                                 "value": "l5d.retryable"} == failed[0]["annotations"][0]
    assert metrics.get("telemetry/io.l5d.zipkin/spans_sent").value == 3
    assert metrics.get("telemetry/io.l5d.zipkin/spans_dropped").value == 0


async def test_zipkin_endpoints_ipv6_and_host_names(zipkin_collector):
    z = ZipkinTelemeter(zipkin_collector.url, 1.0, delay_s=0.05)
    tr = await started(z)
    try:
        r = tr.router("r")
        one_request(r, remote=("::1", 40000), backend=("backend.example", 80), fail_first=False)
        one_request(r, remote=("::ffff:10.1.2.3", 40001), backend=("2001:db8::1", 8443), fail_first=False)
        spans = await zipkin_collector.await_for(4)
    finally:
        await tr.close()
    assert zipkin_collector.invalid == []
    remotes = sorted(json.dumps(s["remoteEndpoint"], sort_keys=True) for s in spans)
    assert json.dumps({"ipv6": "::1", "port": 40000}, sort_keys=True) in remotes
    assert json.dumps({"ipv4": "10.1.2.3", "port": 40001}, sort_keys=True) in remotes  # mapped → ipv4
    assert json.dumps({"serviceName": "/#/io.l5d.fs/pong", "port": 80}, sort_keys=True) in remotes  # no IP
    assert json.dumps({"serviceName": "/#/io.l5d.fs/pong", "ipv6": "2001:db8::1", "port": 8443},
                      sort_keys=True) in remotes


async def test_the_collector_model_refuses_bad_spans():
    """The validator the collector uses is not a pushover."""
    good = {"traceId": "463ac35c9f6413ad", "id": "a2fb4a1d1a96d312", "kind": "SERVER", "timestamp": 1,
            "duration": 1, "tags": {"a": "b"}}
    assert problems([good]) == []
    for bad in ({**good, "traceId": "463AC35C9F6413AD"}, {**good, "id": "0" * 16}, {**good, "kind": "server"},
                {**good, "tags": {"a": 1}}, {**good, "duration": 0}, {**good, "timestamp": 1.5},
                {**good, "localEndpoint": {"ipv4": "not-an-ip"}}, {**good, "shard": True},
                {k: v for k, v in good.items() if k != "id"}):
        assert problems([bad]), bad


async def test_zipkin_collector_down_drops_and_counts(caplog):
    metrics = MetricsRegistry()
    url = f"http://127.0.0.1:{free_port()}/api/v2/spans"  # nothing listens there
    z = ZipkinTelemeter(url, 1.0, metrics, delay_s=0.02, timeout_s=2.0)
    tr = await started(z)
    try:
        r = tr.router("r")
        for _ in range(5):
            one_request(r, fail_first=False)  # 2 spans each
        await wait_until(lambda: z.queue.dropped.value == 10)
    finally:
        await tr.close()
    assert metrics.get("telemetry/io.l5d.zipkin/errors").value >= 1
    assert metrics.get("telemetry/io.l5d.zipkin/spans_sent").value == 0
    assert "could not export" in caplog.text


async def test_zipkin_collector_errors_are_counted(zipkin_collector):
    zipkin_collector.status = 500
    z = ZipkinTelemeter(zipkin_collector.url, 1.0, delay_s=0.02)
    tr = await started(z)
    try:
        one_request(tr.router("r"), fail_first=False)
        await wait_until(lambda: z.queue.errors.value == 1)
    finally:
        await tr.close()
    assert z.queue.dropped.value == 2 and "collector answered 500" in z.queue.last_error


async def test_slow_collector_bounded_queue_counted_drops_no_stall(zipkin_collector):
    """The collector holds every request for 30 s: exports time out, the queue stays at its
    bound, every span is accounted for, and the loop keeps turning meanwhile."""
    zipkin_collector.delay_s = 30
    metrics = MetricsRegistry()
    z = ZipkinTelemeter(zipkin_collector.url, 1.0, metrics, max_queue=100, max_batch=10, delay_s=0.01,
                        timeout_s=0.5)
    tr = await started(z)
    r = tr.router("r")
    offered = 0
    lag = LagProbe()
    lag.start()
    try:
        for _ in range(2000):  # 4000 spans offered while the collector hangs
            one_request(r, fail_first=False)
            offered += 2
            assert len(z.queue) <= 100
        await wait_until(lambda: z.queue.errors.value >= 2)  # two batches timed out
    finally:
        lag.stop()
        zipkin_collector.reset()  # release the held requests
        await tr.close()
    q = z.queue
    assert q.sent.value + q.dropped.value == offered
    assert q.dropped.value >= offered - 100
    assert metrics.get("telemetry/io.l5d.zipkin/queue_size").value == 0
    assert lag.max_lag < 1.0, f"the loop stalled for {lag.max_lag:.2f} s"


async def test_close_flushes_what_is_queued(zipkin_collector):
    z = ZipkinTelemeter(zipkin_collector.url, 1.0, delay_s=3600)  # would wait an hour
    tr = await started(z)
    one_request(tr.router("r"), fail_first=False)
    assert len(z.queue) == 2
    await tr.close()
    assert len(zipkin_collector.wait_for(2, timeout=5)) == 2 and z.queue.sent.value == 2


async def test_a_full_batch_goes_without_waiting_for_the_delay(zipkin_collector):
    z = ZipkinTelemeter(zipkin_collector.url, 1.0, max_batch=4, delay_s=3600)
    tr = await started(z)
    try:
        for _ in range(2):
            one_request(tr.router("r"), fail_first=False)
        assert len(await zipkin_collector.await_for(4)) == 4
    finally:
        await tr.close()


# --- OTLP --------------------------------------------------------------------------------------------

async def test_otlp_spans_reach_a_receiver(otlp_receiver):
    metrics = MetricsRegistry()
    o = OtlpTelemeter(otlp_receiver.url, 1.0, metrics, delay_s=0.05,
                      resource_attributes={"deployment.environment": "test"})
    tr = await started(o)
    try:
        t = one_request(tr.router("outgoing"), B3_SAMPLED, status=502)
        spans = await otlp_receiver.await_for(3)
    finally:
        await tr.close()
    server = [s for s in spans if s["kind"] == "SPAN_KIND_SERVER"][0]
    clients = [s for s in spans if s["kind"] == "SPAN_KIND_CLIENT"]
    assert server["trace_id"] == "463ac35c9f6413ad48485a3953bb6124"
    assert server["span_id"] == f"{t.span_id:016x}" and server["parent_span_id"] == "a2fb4a1d1a96d312"
    assert server["name"] == "/svc/pong" and server["end"] > server["start"] > 0
    assert server["status"] == "STATUS_CODE_ERROR" and server["status_message"] == "502"
    assert server["attributes"]["router.label"] == "outgoing"
    assert server["attributes"]["http.response.status_code"] == 502
    assert server["attributes"]["client.address"] == "127.0.0.1"
    assert server["resource"]["service.name"] == "outgoing"
    assert server["resource"]["deployment.environment"] == "test"
    assert server["scope"] == "namerouter"
    assert len(clients) == 2 and all(c["parent_span_id"] == server["span_id"] for c in clients)
    assert {c["attributes"]["server.port"] for c in clients} == {8080}
    retried = [c for c in clients if "clnt/retry_attempt" in c["attributes"]][0]
    assert [e[0] for e in retried["events"]] == ["finagle.retry", "l5d.failure"]
    assert metrics.get("telemetry/io.namerouter.otlp/spans_sent").value == 3


async def test_otlp_service_name_and_64_bit_ids(otlp_receiver):
    o = OtlpTelemeter(otlp_receiver.url, 1.0, service_name="edge", delay_s=0.05, compression="gzip")
    tr = await started(o)
    try:
        t = one_request(tr.router("outgoing"), fail_first=False)
        spans = await otlp_receiver.await_for(2)
    finally:
        await tr.close()
    assert {s["resource"]["service.name"] for s in spans} == {"edge"}
    assert {s["trace_id"] for s in spans} == {f"{0:016x}{t.trace_id:016x}"}
    root = [s for s in spans if s["kind"] == "SPAN_KIND_SERVER"][0]
    assert root["parent_span_id"] == ""  # a new trace: the server span is the root


async def test_otlp_hung_receiver_bounded_no_stall(otlp_receiver):
    otlp_receiver.delay_s = 30
    o = OtlpTelemeter(otlp_receiver.url, 1.0, max_queue=50, max_batch=10, delay_s=0.01, timeout_s=0.5)
    tr = await started(o)
    lag = LagProbe()
    lag.start()
    offered = 0
    try:
        r = tr.router("r")
        for _ in range(500):
            one_request(r, fail_first=False)
            offered += 2
        await wait_until(lambda: o.queue.errors.value >= 2)
    finally:
        lag.stop()
        otlp_receiver.reset()
        await tr.close()
    assert o.queue.sent.value + o.queue.dropped.value == offered
    assert lag.max_lag < 1.0, f"the loop stalled for {lag.max_lag:.2f} s"


async def test_otlp_receiver_down_counts_errors():
    o = OtlpTelemeter(f"http://127.0.0.1:{free_port()}/v1/traces", 1.0, delay_s=0.02, timeout_s=1.0)
    tr = await started(o)
    try:
        one_request(tr.router("r"), fail_first=False)
        await wait_until(lambda: o.queue.errors.value == 1, timeout=20)
    finally:
        await tr.close()
    assert o.queue.dropped.value == 2 and o.queue.sent.value == 0


# --- tracelog -------------------------------------------------------------------------------------------

def test_tracelog_logs_each_span_as_zipkin_json(caplog):
    caplog.set_level(logging.INFO, logger="io.l5d.tracelog")
    tr = Tracer([TracelogTelemeter(1.0, "INFO")])
    one_request(tr.router("r"))
    lines = [r for r in caplog.records if r.name == "io.l5d.tracelog"]
    assert len(lines) == 3 and all(r.levelno == logging.INFO for r in lines)
    spans = [json.loads(r.getMessage()) for r in lines]
    assert problems(spans) == []
    assert {s["kind"] for s in spans} == {"SERVER", "CLIENT"}


@pytest.mark.parametrize("level,logger_level,logged", [
    ("OFF", logging.DEBUG, 0), ("DEBUG", logging.INFO, 0), ("TRACE", 1, 3), ("warning", logging.INFO, 3),
])
def test_tracelog_levels(caplog, level, logger_level, logged):
    caplog.set_level(logger_level, logger="io.l5d.tracelog")
    tr = Tracer([TracelogTelemeter(1.0, level)])
    one_request(tr.router("r"))
    assert len([r for r in caplog.records if r.name == "io.l5d.tracelog"]) == logged


# --- recent requests ---------------------------------------------------------------------------------------

async def test_recent_requests_table_and_json():
    rr = RecentRequestsTelemeter(1.0, capacity=3)
    tr = Tracer([rr])
    r = tr.router("outgoing")
    for i in range(5):
        t = r.begin(remote=("10.0.0.1", 1000 + i), local=("127.0.0.1", 4140), method=b"GET", uri=b"/x%d" % i)
        t.routed(f"/svc/<script>alert({i})</script>")
        t.attempt("/#/io.l5d.fs/web", "/", "127.0.0.1", 8080)
        t.attempt_done(200)
        t.finish(200 if i != 4 else 502, None if i != 4 else "no hosts")
    app = web.Application()
    for method, path, handler in tr.admin_routes():
        app.router.add_route(method, path, handler)
    async with TestClient(TestServer(app)) as client:
        rows = await (await client.get("/requests.json")).json()
        page = await client.get("/requests")
        text = await page.text()
    assert len(rows) == 3  # capacity
    newest = rows[0]
    assert newest["source"] == "10.0.0.1:1004" and newest["server"] == "127.0.0.1:4140"
    assert newest["router"] == "outgoing" and newest["logicalName"] == "/svc/<script>alert(4)</script>"
    assert newest["concreteName"] == "/#/io.l5d.fs/web" and newest["destination"] == "127.0.0.1:8080"
    assert newest["status"] == 502 and newest["error"] == "no hosts" and newest["attempts"] == 1
    assert newest["latencyMs"] >= 0 and len(newest["traceId"]) == 16
    assert [r["uri"] for r in rows] == ["/x4", "/x3", "/x2"]
    assert page.content_type == "text/html"
    assert "<script>" not in text and "&lt;script&gt;alert(4)&lt;/script&gt;" in text
    assert 'href="delegator?router=outgoing#/svc/%3Cscript%3Ealert%284%29%3C/script%3E"' in text
    assert "Recent Requests" in text and "/#/io.l5d.fs/web" in text


# --- helpers -------------------------------------------------------------------------------------------------

async def wait_until(pred, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class LagProbe:
    """How late the loop runs a callback scheduled every 10 ms (the worst lateness seen)."""

    def __init__(self) -> None:
        self.max_lag = 0.0
        self._handle = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 0.01

        def tick(expected: float) -> None:
            now = loop.time()
            self.max_lag = max(self.max_lag, now - expected)
            self._handle = loop.call_at(now + interval, tick, now + interval)

        self._handle = loop.call_at(loop.time() + interval, tick, loop.time() + interval)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
