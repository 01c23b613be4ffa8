"""End to end: requests through two real routers (two linkers, curl as the client, a
real backend) produce one trace at the Zipkin collector and the OTLP receiver.
"""
from __future__ import annotations

import json

import pytest

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.support.backends import Backend, curl
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

    async def get(self, *headers: str) -> str:
        args = [f"http://127.0.0.1:{self.edge_port}/echo", "-H", "Host: web"]
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
