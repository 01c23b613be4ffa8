"""Tracing through h2 routers, end to end: gRPC calls (grpcio on both ends) through two
real h2 linkers are one trace at the Zipkin collector; a gRPC failure in the trailers
marks the server span failed; the trace context travels as HTTP/2 header fields
(``tracePropagator: io.l5d.zipkin`` writes B3), and the caller's own trace fields are
read, not forwarded as received."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.support.h2 import GrpcServer, H2Backend, curl_h2, grpc_stubs, header
from tests.support.ports import free_port
from tests.support.tracing import b3_headers, one_trace, telemetry_yaml

pytestmark = pytest.mark.integration

pb, pb_grpc = grpc_stubs()


def h2_config(label: str, port: int, dst_port: int, telemetry: str, extra: str = "") -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {free_port()}, shutdownGraceMs: 1000}}
routers:
- protocol: h2
  label: {label}
  identifier: {{kind: io.l5d.header.path, segments: 1}}
  dtab: /svc/demo.Echo => /$/inet/127.0.0.1/{dst_port};
  service: {{responseClassifier: {{kind: io.l5d.h2.grpc.default}}}}
{extra}  servers:
  - {{ip: 127.0.0.1, port: {port}}}
{telemetry}"""


async def test_grpc_calls_through_two_h2_routers_are_traces(zipkin_collector: Any) -> None:
    telemetry = telemetry_yaml(zipkin_collector.url, rate=1.0)
    edge_port, inner_port = free_port(), free_port()
    async with GrpcServer("t") as srv:
        inner = Linker(loads_linker(h2_config("inner", inner_port, srv.port, telemetry)))
        edge = Linker(loads_linker(h2_config("edge", edge_port, inner_port, telemetry)))
        await inner.start()
        await edge.start()
        try:
            def calls() -> tuple[Any, grpc.RpcError]:
                with grpc.insecure_channel(f"127.0.0.1:{edge_port}") as ch:
                    stub = pb_grpc.EchoStub(ch)
                    reply = stub.Say(pb.Msg(text="traced"), timeout=10)
                    try:
                        stub.Fail(pb.Msg(text="no such thing", n=5), timeout=10)
                    except grpc.RpcError as e:
                        return reply, e
                raise AssertionError("Fail succeeded")

            reply, err = await asyncio.to_thread(calls)
            assert reply.text == "t: traced" and err.code() == grpc.StatusCode.NOT_FOUND
            spans = await zipkin_collector.await_for(8)
            failures = edge.metrics.snapshot()["rt/edge/service/svc/demo.Echo/failures"].value
        finally:
            await edge.close(1.0)
            await inner.close(1.0)
    assert zipkin_collector.invalid == []
    traces: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        traces.setdefault(s["traceId"], []).append(s)
    assert len(traces) == 2
    ok, failed = sorted((one_trace(t) for t in traces.values()), key=lambda t: "error" in t[0]["tags"])
    for trace in (ok, failed):
        edge_server, edge_client, inner_server, inner_client = trace
        assert [s["kind"] for s in trace] == ["SERVER", "CLIENT", "SERVER", "CLIENT"]
        assert edge_server["localEndpoint"]["serviceName"] == "edge" and edge_server["name"] == "/svc/demo.Echo"
        assert inner_server["localEndpoint"]["serviceName"] == "inner"
        assert edge_client["remoteEndpoint"]["port"] == inner_port
        assert inner_client["remoteEndpoint"]["port"] == srv.port
        assert edge_server["remoteEndpoint"]["ipv4"] == "127.0.0.1"
    assert "error" not in ok[0]["tags"] and ok[0]["tags"]["http.status_code"] == "200"
    # grpc-status 5 in an HTTP 200 answer: the gRPC classifier's verdict, in spans and metrics
    assert failed[0]["tags"]["error"] == "grpc-status 5" and failed[2]["tags"]["error"] == "grpc-status 5"
    assert failed[0]["tags"]["http.status_code"] == "200" and failures == 1


async def test_trace_fields_in_and_out_of_an_h2_router() -> None:
    """``tracePropagator: io.l5d.zipkin``: the backend gets B3 fields of the router's client
    span in the caller's trace, ``l5d-ctx-trace`` and ``l5d-reqid``; the caller's B3 fields
    are not forwarded as they came."""
    async with H2Backend("b") as b:
        port = free_port()
        lk = Linker(loads_linker(f"""
admin: {{ip: 127.0.0.1, port: {free_port()}}}
routers:
- protocol: h2
  label: edge
  tracePropagator: {{kind: io.l5d.zipkin}}
  dtab: /svc/web => /$/inet/127.0.0.1/{b.port};
  servers:
  - {{ip: 127.0.0.1, port: {port}}}
"""))
        await lk.start()
        try:
            incoming = b3_headers(sampled="1")
            args = [a for k, v in incoming.items() for a in ("-H", f"{k}: {v}")]
            rc, out, err = await curl_h2(*args, "-H", "Host: web", f"http://127.0.0.1:{port}/echo")
            assert rc == 0, err
        finally:
            await lk.close(1.0)
    sent = json.loads(out)["headers"]
    assert [n for n, _ in sent] == [n.lower() for n, _ in sent]  # HTTP/2: lower-case field names
    got = b.last
    assert header(got, "x-b3-traceid") == incoming["X-B3-TraceId"]
    assert header(got, "x-b3-parentspanid") is not None
    assert header(got, "x-b3-spanid") not in (None, incoming["X-B3-SpanId"])
    assert header(got, "x-b3-sampled") == "1"
    assert header(got, "l5d-reqid") == incoming["X-B3-TraceId"][-16:] and header(got, "l5d-ctx-trace")
    assert [n for n, _ in sent].count("x-b3-spanid") == 1
