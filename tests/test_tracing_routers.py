"""End to end, through real routers (linkers, curl as the client, real backends): a
request through two routers is one trace at the Zipkin collector and the OTLP receiver;
B3 and ``l5d-ctx-trace`` interoperate; an unsampled request emits nothing; retries are
client spans of their own; diagnostic ``TRACE`` appends each router's resolution;
``/requests`` and ``tracePropagator`` work from real requests.
"""
from __future__ import annotations

import json

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.support.backends import Backend, curl
from tests.support.load import FlakyBackend
from tests.support.ports import free_port
from tests.support.tracing import b3_headers, l5d_trace_header, one_trace, telemetry_yaml


def router_config(label: str, port: int, admin: int, dst_port: int, telemetry: str) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {admin}, shutdownGraceMs: 1000}}
routers:
- protocol: http
  label: {label}
  dtab: /svc/web => /$/inet/127.0.0.1/{dst_port};
  servers:
  - {{ip: 127.0.0.1, port: {port}}}
{telemetry}"""


class TwoRouters:
    """curl → router "edge" → router "inner" → backend "web"."""

    def __init__(self, telemetry: str) -> None:
        self.telemetry = telemetry
        self.edge_port, self.inner_port = free_port(), free_port()
        self.edge_admin, self.inner_admin = free_port(), free_port()

    async def __aenter__(self) -> "TwoRouters":
        self.backend = await Backend("web").start()
        self.inner = Linker(loads_linker(router_config("inner", self.inner_port, self.inner_admin,
                                                       self.backend.port, self.telemetry)))
        self.edge = Linker(loads_linker(router_config("edge", self.edge_port, self.edge_admin, self.inner_port,
                                                      self.telemetry)))
        await self.inner.start()
        await self.edge.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.edge.close(1.0)
        await self.inner.close(1.0)
        await self.backend.stop()

    async def get(self, *headers: str, method: str = "GET") -> str:
        args = [f"http://127.0.0.1:{self.edge_port}/echo", "-H", "Host: web", "-X", method]
        for h in headers:
            args += ["-H", h]
        rc, out, err = await curl(*args)
        assert rc == 0, err
        return out


async def test_a_request_through_two_routers_is_one_trace(zipkin_collector, otlp_receiver):
    async with TwoRouters(telemetry_yaml(zipkin_collector.url, otlp_receiver.url, rate=1.0)) as t:
        echo = json.loads(await t.get())
        spans = await zipkin_collector.await_for(4)
        otlp = await otlp_receiver.await_for(4)
    assert zipkin_collector.invalid == []
    edge_server, edge_client, inner_server, inner_client = one_trace(spans)
    assert [s["kind"] for s in (edge_server, edge_client, inner_server, inner_client)] == \
        ["SERVER", "CLIENT", "SERVER", "CLIENT"]
    assert edge_server["localEndpoint"]["serviceName"] == "edge" and edge_server["name"] == "/svc/web"
    assert inner_server["localEndpoint"]["serviceName"] == "inner"
    assert edge_client["remoteEndpoint"]["port"] == t.inner_port
    assert inner_client["remoteEndpoint"]["port"] == t.backend.port
    # the backend got the context of inner's client span
    sent = dict((k.lower(), v) for k, v in echo["headers"])
    assert sent["l5d-reqid"] == edge_server["traceId"][-16:]
    assert len(one_trace(otlp)) == 4 and {s["trace_id"] for s in otlp} == {f"{0:016x}" + edge_server["traceId"]}


async def test_b3_and_l5d_ctx_trace_interoperate(zipkin_collector):
    async with TwoRouters(telemetry_yaml(zipkin_collector.url, rate=0.0)) as t:
        await t.get(*(f"{k}: {v}" for k, v in b3_headers(sampled="1").items()))
        spans = await zipkin_collector.await_for(4)
        assert one_trace(spans, external_parent="a2fb4a1d1a96d312")[0]["traceId"] == \
            "463ac35c9f6413ad48485a3953bb6124"
        zipkin_collector.reset()
        await t.get(f"l5d-ctx-trace: {l5d_trace_header(0x1234, 0x1234, 0x5678)}")
        spans = await zipkin_collector.await_for(4)
        assert one_trace(spans, external_parent="0000000000001234")[0]["traceId"] == "0000000000005678"


async def test_an_unsampled_request_emits_nothing(zipkin_collector, otlp_receiver):
    async with TwoRouters(telemetry_yaml(zipkin_collector.url, otlp_receiver.url, rate=1.0, recent=True)) as t:
        await t.get(*(f"{k}: {v}" for k, v in b3_headers(sampled="0").items()))
        await t.get("l5d-sample: 0")
        await t.get()  # sampled: a marker that export works and has drained
        await zipkin_collector.await_for(4)
        await otlp_receiver.await_for(4)
    assert len(zipkin_collector.spans) == 4 and len(otlp_receiver.spans) == 4


# --- diagnostic TRACE (Linkerd 1.3+): curl through two real routers to a real backend ---------

def contexts(body: str) -> list[dict[str, str]]:
    """The router blocks appended to a diagnostic answer, in order (innermost first)."""
    out = []
    for block in body.split("--- Router: ")[1:]:
        lines = block.splitlines()
        d = {"router": lines[0].rstrip(" -")}
        for ln in lines[1:]:
            if ": " in ln and not ln.startswith(" "):
                k, v = ln.split(": ", 1)
                d[k] = v
        d["steps"] = "\n".join(ln.strip() for ln in lines if ln.startswith("  "))
        out.append(d)
    return out


async def test_diagnostic_trace_appends_each_routers_resolution():
    async with TwoRouters("") as t:
        body = await t.get("l5d-add-context: true", method="TRACE")
        answer, _, _ = body.partition("\n\n--- Router:")
        assert json.loads(answer)["method"] == "TRACE"  # the backend's answer comes first
        inner, edge = contexts(body)
        assert inner["router"] == "inner" and edge["router"] == "edge"
        assert inner["service name"] == "/svc/web" and inner["client name"] == f"/$/inet/127.0.0.1/{t.backend.port}"
        assert inner["selected address"] == f"127.0.0.1:{t.backend.port}"
        assert inner["addresses"] == f"[127.0.0.1:{t.backend.port}]"
        assert edge["selected address"] == f"127.0.0.1:{t.inner_port}"
        assert edge["steps"] == (f"/svc/web\n/$/inet/127.0.0.1/{t.inner_port} (/svc/web=>/$/inet/127.0.0.1/"
                                 f"{t.inner_port})")
        assert int(edge["request duration"].split()[0]) >= 0

        # Max-Forwards: 0 — the first router answers with its own block; 1 — the second does
        body = await t.get("l5d-add-context: true", "Max-Forwards: 0", method="TRACE")
        assert [c["router"] for c in contexts(body)] == ["edge"] and body.startswith("\n\n--- Router: edge")
        body = await t.get("l5d-add-context: true", "Max-Forwards: 1", method="TRACE")
        assert [c["router"] for c in contexts(body)] == ["inner", "edge"]
        # neither reached the backend: the last it saw is the first TRACE (no Max-Forwards)
        assert t.backend.last.method == "TRACE" and t.backend.last.header("max-forwards") is None
        # forwarded with Max-Forwards decremented, the context asked for the whole way
        await t.get("l5d-add-context: true", "Max-Forwards: 5", method="TRACE")
        assert t.backend.last.header("max-forwards") == "3" and t.backend.last.header("l5d-add-context") == "true"

        # without l5d-add-context a TRACE is a request like any other; a bad Max-Forwards is a 400
        body = await t.get(method="TRACE")
        assert "--- Router:" not in body and json.loads(body)["method"] == "TRACE"
        rc, out, _ = await curl(f"http://127.0.0.1:{t.edge_port}/echo", "-H", "Host: web", "-X", "TRACE",
                                "-H", "Max-Forwards: many", "-w", "\n%{http_code}")
        assert out.endswith("\n400") and "Invalid value for Max-Forwards header" in out


async def test_diagnostic_trace_of_a_chunked_answer_gets_the_placeholder():
    async with TwoRouters("") as t:
        args = [f"http://127.0.0.1:{t.inner_port}/stream?bytes=100000&chunked=1", "-H", "Host: web", "-X", "TRACE",
                "-H", "l5d-add-context: true", "-D", "-"]
        rc, out, err = await curl(*args)
        assert rc == 0, err
        head, _, body = out.partition("\r\n\r\n")
        assert "Diagnostic trace encountered chunked response. Response content discarded." in body
        assert "HTTP 200 - OK" in body and [c["router"] for c in contexts(body)] == ["inner"]
        length = [ln for ln in head.lower().splitlines() if ln.startswith("content-length:")]
        assert length == [f"content-length: {len(body.encode())}"]


# --- the telemeters fed by real requests ---------------------------------------------------------

async def test_recent_requests_page_shows_real_requests():
    async with TwoRouters("telemetry:\n- kind: io.l5d.recentRequests\n  sampleRate: 1.0\n  capacity: 5\n") as t:
        for _ in range(7):
            await t.get()
        rc, out, _ = await curl(f"http://127.0.0.1:{t.edge_admin}/requests.json")
        rows = json.loads(out)
        assert len(rows) == 5  # capacity
        row = rows[0]
        assert (row["router"], row["logicalName"], row["concreteName"], row["status"]) == (
            "edge", "/svc/web", f"/$/inet/127.0.0.1/{t.inner_port}", 200)
        assert row["destination"] == f"127.0.0.1:{t.inner_port}" and row["source"].startswith("127.0.0.1:")
        assert row["method"] == "GET" and row["uri"] == "/echo" and row["attempts"] == 1
        rc, page, _ = await curl(f"http://127.0.0.1:{t.edge_admin}/requests")
        assert "/svc/web" in page and "Recent Requests" in page


async def test_zipkin_propagator_writes_b3_on_every_request():
    async with Backend("web") as b:
        port, admin = free_port(), free_port()
        cfg = router_config("edge", port, admin, b.port, "").replace(
            "  label: edge\n", "  label: edge\n  tracePropagator:\n    kind: io.l5d.zipkin\n")
        linker = Linker(loads_linker(cfg))
        await linker.start()
        try:
            rc, out, err = await curl(f"http://127.0.0.1:{port}/echo", "-H", "Host: web")
            assert rc == 0, err
        finally:
            await linker.close(1.0)
    got = b.last
    trace_id = got.header("x-b3-traceid")
    assert trace_id and got.header("x-b3-spanid") and got.header("l5d-reqid") == trace_id[-16:]
    assert got.header("l5d-ctx-trace")


async def test_a_retried_request_is_one_server_span_and_a_client_span_per_attempt(zipkin_collector):
    async with FlakyBackend("web", fail_first=1) as b:
        port, admin = free_port(), free_port()
        cfg = router_config("edge", port, admin, b.port, telemetry_yaml(zipkin_collector.url, rate=1.0)).replace(
            "  label: edge\n", "  label: edge\n  service:\n    responseClassifier:\n"
                               "      kind: io.l5d.http.retryableRead5XX\n")
        linker = Linker(loads_linker(cfg))
        await linker.start()
        try:
            rc, out, err = await curl(f"http://127.0.0.1:{port}/", "-H", "Host: web", "-w", "%{http_code}")
            assert rc == 0 and out.endswith("200"), (out, err)
            spans = await zipkin_collector.await_for(3)
        finally:
            await linker.close(1.0)
    server, first, retry = one_trace(sorted(spans, key=lambda s: s["timestamp"]))
    assert server["kind"] == "SERVER" and server["tags"]["http.status_code"] == "200"
    assert first["tags"]["http.status_code"] == "500" and "error" in first["tags"]
    assert [a["value"] for a in first.get("annotations", [])] == ["l5d.retryable"]
    assert retry["tags"]["clnt/retry_attempt"] == "1" and retry["tags"]["http.status_code"] == "200"
    assert first["parentId"] == retry["parentId"] == server["id"]
