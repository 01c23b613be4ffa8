"""``io.l5d.influxdb``: Linkerd's example config loads as it is; the router serves its
metrics in the line protocol at ``/admin/metrics/influxdb``, shaped as Linkerd's
telemeter shapes them; a real InfluxDB accepts what is served (its own parser is the
judge) and gives the same numbers back as ``/admin/metrics.json``, even for a hostile
Host header."""
from __future__ import annotations

import json
import os
import uuid

import aiohttp

from namerouter.admin.influx_export import influx_lines
from namerouter.config.schema import load_linker
from namerouter.metrics import MetricsRegistry
from namerouter.telemetry.influxdb import InfluxDbConfig
from tests.support.backends import Backend
from tests.support.ports import free_port
from tests.support.routing import running_router

EXAMPLES = os.path.join(os.path.dirname(__file__), "linkerd_examples", "linkerd")


def test_linkerd_example_loads_without_warnings():
    v = load_linker(os.path.join(EXAMPLES, "influxdb.yaml"))
    assert v.warnings == []
    assert [type(t) for t in v.config.telemetry] == [InfluxDbConfig]


def test_lines_have_linkerds_shape():
    reg = MetricsRegistry()
    reg.counter("foo/bar/bas").incr()
    assert influx_lines(reg) == "foo:bar,host=none bas=1\n"
    reg = MetricsRegistry()
    reg.counter("abc").incr()
    reg.counter("def").incr(2)
    reg.gauge("g", lambda: 1.0)
    assert influx_lines(reg) == "root,host=none abc=1,def=2,g=1.0\n"
    reg = MetricsRegistry()
    reg.counter("rt/incoming/service/svc/foo/requests").incr()
    reg.counter("rt/incoming/client/#/bar/requests").incr()
    reg.counter("rt/incoming/server/127.0.0.1/4141/requests").incr()
    assert sorted(influx_lines(reg).splitlines()) == [
        "rt:client,client=#/bar,host=none,rt=incoming requests=1",
        "rt:server,host=none,rt=incoming,server=127.0.0.1/4141 requests=1",
        "rt:service,host=none,rt=incoming,service=svc/foo requests=1",
    ]
    reg = MetricsRegistry()
    s = reg.stat("foo/bar/bas")
    assert influx_lines(reg) == ""  # nothing recorded yet
    s.add(1.0)
    s.add(2.0)
    assert influx_lines(reg) == ("foo:bar,host=none bas_avg=1.5,bas_count=2,bas_max=2.0,bas_min=1.0,bas_p50=1.0,"
                                 "bas_p90=2.0,bas_p95=2.0,bas_p99=2.0,bas_p999=2.0,bas_p9999=2.0,bas_sum=3.0\n")
    reg = MetricsRegistry()
    reg.gauge("x/nan", lambda: float("nan"))
    assert influx_lines(reg) == ""


async def test_a_real_influxdb_accepts_what_the_router_serves(influx_server, tmp_path):
    db = "t" + uuid.uuid4().hex[:8]
    influx_server.query(f"CREATE DATABASE {db}")
    hostile = 'evil host,x=1 y="2"\\'
    # the admin answers other names than its own only when listed (DNS rebinding protection)
    whitelist = f", security: {{hostWhitelist: {json.dumps(['telegraf', hostile])}}}"
    async with Backend("web") as web, running_router(f"/svc/web => /$/inet/127.0.0.1/{web.port};",
                                                     "telemetry: [{kind: io.l5d.influxdb}]",
                                                     admin_extra=whitelist) as (_, base, port):
        async with aiohttp.ClientSession() as s:
            for _ in range(7):
                async with s.get(f"http://127.0.0.1:{port}/pong", headers={"Host": "web"}) as r:
                    assert r.status == 200
            async with s.get(f"{base}/admin/metrics.json") as r:
                metrics = json.loads(await r.read())
            bodies = {}
            for host in ("telegraf:9990", hostile):
                async with s.get(f"{base}/admin/metrics/influxdb", headers={"Host": host}) as r:
                    assert r.status == 200 and r.content_type == "text/plain"
                    bodies[host] = await r.read()
    for host, body in bodies.items():
        status, err = influx_server.write(db, body)
        assert status == 204, (host, err, body[:500])

    def rows(q: str) -> list[dict]:
        res = influx_server.query(q, db)["results"][0]
        out = []
        for series in res.get("series", []):
            for values in series["values"]:
                out.append(dict(zip(series["columns"], values)))
        return out

    svc = rows('SELECT * FROM "rt:service" WHERE "host" = \'telegraf:9990\'')
    assert len(svc) == 1
    row = svc[0]
    assert (row["rt"], row["service"]) == ("outgoing", "svc/web")
    assert row["requests"] == metrics["rt/outgoing/service/svc/web/requests"] == 7
    assert row["request_latency_ms_count"] == 7
    assert row["request_latency_ms_p99"] == metrics["rt/outgoing/service/svc/web/request_latency_ms.p99"]
    server = rows('SELECT * FROM "rt:server" WHERE "host" = \'telegraf:9990\'')
    assert server[0]["server"] == f"127.0.0.1/{port}" and server[0]["requests"] == 7
    status = rows('SELECT * FROM "rt:service:status" WHERE "host" = \'telegraf:9990\'')
    assert status[0]["200"] == 7
    # the hostile Host header is one tag value, stored as sent (its backslash as \x5c)
    tagged = rows('SHOW TAG VALUES FROM "rt:service" WITH KEY = "host"')
    assert {r["value"] for r in tagged} == {"telegraf:9990", hostile.replace("\\", "\\x5c")}


async def test_namerd_serves_influxdb_too(influx_server):
    from namerd.config import loads_namerd
    from namerd.server import Namerd

    admin, api = free_port(), free_port()
    nd = Namerd.from_config(loads_namerd(f"""
admin: {{ip: 127.0.0.1, port: {admin}}}
storage: {{kind: io.l5d.inMemory, namespaces: {{default: /svc => /$/inet/127.0.0.1/1}}}}
interfaces: [{{kind: io.l5d.httpController, ip: 127.0.0.1, port: {api}}}]
telemetry: [{{kind: io.l5d.influxdb}}]
"""))
    await nd.start()
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                async with s.get(f"http://127.0.0.1:{api}/api/1/dtabs") as r:
                    assert r.status == 200
            async with s.get(f"http://127.0.0.1:{admin}/admin/metrics/influxdb") as r:
                body = await r.read()
    finally:
        await nd.close()
    db = "n" + uuid.uuid4().hex[:8]
    influx_server.query(f"CREATE DATABASE {db}")
    assert influx_server.write(db, body)[0] == 204
    res = influx_server.query('SELECT "requests" FROM "namerd:http"', db)["results"][0]
    assert res["series"][0]["values"][0][1] == 3
