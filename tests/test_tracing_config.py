"""Trace telemeters in the router's config: Linkerd's examples load without warnings, bad
values are refused with their key path, the linker builds them and exposes them as
``runtime.tracer`` (the routers call its hooks: tests/test_tracing_routers.py)."""
from __future__ import annotations

import logging
import os
import sys

import aiohttp
import pytest

from namerouter.cli_run import main as namerouter_main
from namerouter.config.loader import ConfigError
from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from namerouter.tracing.config import build_tracer
from namerouter.tracing.otlp import OtlpTelemeter
from namerouter.tracing.recent import RecentRequestsTelemeter
from namerouter.tracing.tracelog import TracelogTelemeter
from namerouter.tracing.zipkin import ZipkinTelemeter
from tests.support.ports import free_port
from tests.test_linkerd_examples import fixtures, localized  # noqa: F401 - the fixture is used below

ROUTER = """
routers:
- protocol: http
  label: out
  dtab: /svc => /$/inet/127.1/9
  servers:
  - port: {port}
"""


def config(telemetry: str, port: int = 4140, admin: str = "") -> str:
    return admin + ROUTER.format(port=port) + "telemetry:\n" + telemetry


@pytest.mark.parametrize("name", ["zipkin.yaml", "tracelog.yaml", "recent-requests.yaml"])
def test_linkerd_tracing_examples_load_without_warnings(name, fixtures, tmp_path, capsys):  # noqa: F811
    path = localized("linkerd", name, fixtures, str(tmp_path))
    assert namerouter_main(["--check", path]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{path}: config is valid" and err == ""


def test_the_telemeters_are_built_from_their_keys(caplog):
    v = loads_linker(config("""
- kind: io.l5d.zipkin
  host: zipkin.internal
  port: 9410
  sampleRate: 0.25
- kind: io.l5d.zipkin
  url: https://collector.example/api/v2/spans
  maxQueueSize: 10
  maxExportBatchSize: 50
- kind: io.zipkin.http
  host: zipkin:9411
  initialSampleRate: 0.5
- kind: io.l5d.tracelog
  sampleRate: 3
  level: trace
- kind: io.l5d.recentRequests
  sampleRate: 0.5
  capacity: 3
- kind: io.namerouter.otlp
  endpoint: http://otel:4318/v1/traces
  serviceName: edge
  sampleRate: 0.1
  resourceAttributes: {deployment.environment: prod}
  headers: {x-api-key: secret}
  compression: gzip
- kind: io.l5d.prometheus
"""))
    with caplog.at_level(logging.WARNING, logger="namerouter.tracing"):
        tracer = build_tracer(v.config.telemetry)
    z1, z2, zh, tl, rr, ot = tracer.telemeters
    assert isinstance(z1, ZipkinTelemeter) and z1.url == "http://zipkin.internal:9410/api/v2/spans"
    assert z1.sampler.rate == 0.25 and "Scribe port" in caplog.text
    assert z2.url == "https://collector.example/api/v2/spans"
    assert (z2.queue.max_queue, z2.queue.max_batch) == (10, 10)  # a batch never exceeds the queue
    assert zh.kind == "io.zipkin.http" and zh.url == "http://zipkin:9411/api/v2/spans" and zh.gzip
    assert zh._headers["Host"] == "zipkin" and zh.sampler.rate == 0.5
    assert isinstance(tl, TracelogTelemeter) and tl.sampler.rate == 1.0 and tl.level == 5
    assert isinstance(rr, RecentRequestsTelemeter) and rr.capacity == 3
    assert isinstance(ot, OtlpTelemeter) and ot.endpoint == "http://otel:4318/v1/traces"
    assert ot.resource("out").attributes["service.name"] == "edge"
    assert ot.resource("out").attributes["deployment.environment"] == "prod"
    assert tracer.decider.rate == 0.5  # the highest rate among zipkin and otlp
    # two zipkin telemeters: their metrics do not collide
    assert z1.queue.sent is not z2.queue.sent


@pytest.mark.parametrize("telemetry,where,what", [
    ("- {kind: io.l5d.zipkin, sampleRate: 2}", "telemetry[0].sampleRate", "1"),
    ("- {kind: io.l5d.zipkin, url: 'ftp://x'}", "telemetry[0].url", "http:// or https:// URL"),
    ("- {kind: io.l5d.zipkin, hots: x}", "telemetry[0].hots", "did you mean 'host'"),
    ("- {kind: io.l5d.recentRequests}", "telemetry[0].sampleRate", "required"),
    ("- {kind: io.l5d.recentRequests, sampleRate: 1.5}", "telemetry[0].sampleRate", "1"),
    ("- {kind: io.l5d.recentRequests, sampleRate: 1, capacity: 0}", "telemetry[0].capacity", "1"),
    ("- {kind: io.l5d.recentRequests, sampleRate: 1}\n- {kind: io.l5d.recentRequests, sampleRate: 1}",
     "telemetry[1]", "only one io.l5d.recentRequests"),
    ("- {kind: io.l5d.tracelog, level: LOUD}", "telemetry[0].level", "unknown level"),
    ("- {kind: io.namerouter.otlp, endpoint: localhost:4318}", "telemetry[0].endpoint", "URL"),
    ("- {kind: io.namerouter.otlp, compression: zstd}", "telemetry[0].compression", "gzip"),
    ("- {kind: io.namerouter.otlp, resourceAttributes: [a]}", "telemetry[0].resourceAttributes", "mapping"),
    ("- {kind: io.zipkin.http, host: 'a b:9411'}", "telemetry[0].host", "host:port"),
    ("- {kind: io.zipkin.http, host: 'zipkin:99999'}", "telemetry[0].host", "host:port"),
])
def test_bad_telemeter_configs_are_refused(telemetry, where, what):
    with pytest.raises(ConfigError) as e:
        loads_linker(config(telemetry + "\n"))
    text = str(e.value)
    assert where in text and what in text, text


def test_trace_propagator_key():
    cfg = ROUTER.format(port=4140).replace("  label: out\n", "  label: out\n  tracePropagator: {kind: io.l5d.zipkin}\n")
    assert loads_linker(cfg).config.routers[0].tracePropagator.kind == "io.l5d.zipkin"
    with pytest.raises(ConfigError) as e:
        loads_linker(cfg.replace("io.l5d.zipkin", "io.l5d.b3"))
    assert "routers[0].tracePropagator.kind" in str(e.value) and "io.l5d.default" in str(e.value)


async def test_linker_serves_requests_page_and_exports_through_runtime_tracer(zipkin_collector):
    """The linker's tracer, driven here by calling the hooks directly, exports to Zipkin,
    fills /requests on the admin server and shows its counters in the admin metrics
    (tests/test_tracing_routers.py does the same through real routers)."""
    admin = free_port()
    linker = Linker(loads_linker(config(f"""
- kind: io.l5d.zipkin
  url: {zipkin_collector.url}
  sampleRate: 1.0
  scheduleDelayMs: 20
- kind: io.l5d.recentRequests
  sampleRate: 1.0
- kind: io.l5d.prometheus
""", free_port(), f"admin: {{port: {admin}}}\n")))
    await linker.start()
    try:
        rt = linker.runtime.tracer.router("out", "/svc => /$/inet/127.1/9")
        t = rt.begin(remote=("127.0.0.1", 40000), local=("127.0.0.1", 4140), method=b"GET", uri=b"/")
        t.routed("/svc/web")
        t.attempt("/$/inet/127.1/9", "/", "127.0.0.1", 9)
        t.attempt_done(None, "connection refused", True)
        t.finish(502, "connection refused")
        spans = await zipkin_collector.await_for(2)
        assert zipkin_collector.invalid == [] and {s["kind"] for s in spans} == {"SERVER", "CLIENT"}
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{admin}/requests.json") as r:
                rows = await r.json()
            async with s.get(f"http://127.0.0.1:{admin}/requests") as r:
                page = await r.text()
            await _wait_metric(s, admin, "telemetry/io.l5d.zipkin/spans_sent", 2)
            async with s.get(f"http://127.0.0.1:{admin}/admin/metrics/prometheus") as r:
                prom = await r.text()
        assert rows[0]["logicalName"] == "/svc/web" and rows[0]["status"] == 502
        assert "Recent Requests" in page and "/svc/web" in page
        assert "spans_sent" in prom
    finally:
        await linker.close()


async def _wait_metric(session, admin, name, want):
    import asyncio

    for _ in range(500):
        async with session.get(f"http://127.0.0.1:{admin}/admin/metrics.json") as r:
            if (await r.json()).get(name) == want:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} never reached {want}")


def test_readme_tracing_block_is_a_valid_config(tmp_path, capsys):
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    after = readme[readme.index("<!-- tracing-telemetry"):]
    start = after.index("```yaml\n") + len("```yaml\n")
    block = after[start:after.index("```", start)]
    path = tmp_path / "config.yaml"
    path.write_text(ROUTER.format(port=free_port()) + block)
    assert namerouter_main(["--check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "config is valid" in out
    kinds = [t.kind for t in build_tracer(loads_linker(path.read_text()).config.telemetry).telemeters]
    assert kinds == ["io.l5d.zipkin", "io.namerouter.otlp", "io.l5d.tracelog", "io.l5d.recentRequests"]
