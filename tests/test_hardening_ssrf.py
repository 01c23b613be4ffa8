"""Issue 17, item 3: the data port must not reach the control plane.

The attacks of the issue, against a real router process and a real namerd: a request
dtab sending ``POST /admin/shutdown`` (and ``GET /config.json``) to the router's own
admin port, a request to its own server port, to namerd's write API; request dtabs that
name ``/$/inet`` on a server bound to a non-loopback address; ``/config.json`` showing
secrets; the admin servers answering a foreign ``Host`` (DNS rebinding) and a simple
cross-site ``POST /admin/shutdown``.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from urllib.parse import unquote_plus

import pytest

from namerouter.admin.app import REDACTED, build_admin_app, redact
from namerouter.metrics import MetricsRegistry
from namerouter.proxy.protected import Protected
from namerouter.proxy.request_dtab import ANY, system_reach
from namerouter.dtab.dtab import Dtab
from tests.support.backends import Backend, request
from tests.support.namerd_proc import ROOT, running_namerd
from tests.support.ports import free_port


def err_text(r) -> str:
    return unquote_plus(r.header("l5d-err") or "")


def req(path: str, host: str, headers: dict[str, str] | None = None, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture(scope="module")
def namerd(tmp_path_factory):
    yield from running_namerd(tmp_path_factory, "ssrf-namerd", {}, dtab="/svc=>/#/io.l5d.fs")


@pytest.fixture
async def router(tmp_path, namerd):
    """A router process with three routers: ``loop`` on loopback, ``edge`` on 0.0.0.0,
    ``viaNamerd`` binding through namerd; a consul namer whose token must not leak."""
    async with Backend("pong") as b:
        ports = {"admin": free_port(), "loop": free_port(), "edge": free_port(), "namerd": free_port()}
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"""admin: {{port: {ports['admin']}}}
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {free_port()}
  token: s3cret-consul-token
routers:
- protocol: http
  label: loop
  dtab: /svc/pong => /$/inet/127.1/{b.port}
  servers: [{{port: {ports['loop']}}}]
- protocol: http
  label: edge
  dtab: /svc/pong => /$/inet/127.1/{b.port}
  servers: [{{port: {ports['edge']}, ip: 0.0.0.0}}]
- protocol: http
  label: viaNamerd
  interpreter: {{kind: io.l5d.namerd.http, dst: /$/inet/127.1/{namerd.http}, namespace: default}}
  servers: [{{port: {ports['namerd']}}}]
""")
        log = open(tmp_path / "router.log", "wb")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "namerouter", str(cfg), cwd=ROOT,
                                                    stdout=log, stderr=log)
        try:
            for _ in range(500):
                try:
                    r = await request(ports["admin"], req("/admin/ping", "localhost"))
                    if r.status == 200:
                        break
                except OSError:
                    await asyncio.sleep(0.02)
            yield ports, b, proc
        finally:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 15)
            log.close()


async def test_request_dtabs_cannot_reach_the_admin_port_own_servers_or_namerd(router, namerd):
    ports, backend, proc = router
    admin = ports["admin"]
    attacks = [
        (f"/svc/web => /$/inet/127.0.0.1/{admin}", "the admin server"),
        (f"/svc/web => /$/inet/127.1/{admin}", "the admin server"),
        (f"/svc/web => /$/inet/localhost/{admin}", "the admin server"),
        (f"/svc/web => /$/io.buoyant.rinet/{admin}/127.0.0.1", "the admin server"),
        (f"/svc/web => /$/inet/127.1/{ports['loop']}", "own server"),
    ]
    for dtab, what in attacks:
        # the POST would stop the router if it were forwarded (it is a non-simple request)
        raw = req("/admin/shutdown", "web", {"l5d-dtab": dtab, "Content-Type": "application/json"}, "POST")
        r = await request(ports["loop"], raw)
        assert r.status == 403 and what in err_text(r), (dtab, r)
        r = await request(ports["loop"], req("/config.json", "web", {"l5d-dtab": dtab}))
        assert r.status == 403 and b"s3cret" not in r.body, dtab
    # namerd's write API, through a router that binds with namerd
    dtab = f"/svc/web => /$/inet/127.1/{namerd.http}"
    raw = req("/api/1/dtabs/default", "web", {"l5d-dtab": dtab, "Content-Type": "application/dtab"}, "PUT", b"/x=>/y")
    r = await request(ports["namerd"], raw)
    assert r.status == 403 and "namerd" in err_text(r), r
    # ... while the router keeps serving and its admin answers
    assert proc.returncode is None
    assert (await request(ports["loop"], req("/pong", "pong"))).status == 200
    assert (await request(admin, req("/admin/ping", "localhost"))).status == 200


async def test_non_loopback_servers_refuse_system_namers_in_request_dtabs(router):
    ports, backend, _ = router
    edge = ports["edge"]
    for dtab in (f"/svc/web => /$/inet/127.1/{backend.port}",
                 f"/svc/web => /$/fixedinet/127.1/{backend.port}",
                 f"/svc/web => /$/io.buoyant.rinet/{backend.port}/127.1",
                 "/svc/web => /$/io.buoyant.http.anyHost/x",  # a rewrite could build /$/inet
                 "/svc => /$", "/svc => /"):
        r = await request(edge, req("/pong", "web", {"l5d-dtab": dtab}))
        assert r.status == 400 and "localDtabSystemNamers" in err_text(r), (dtab, r)
        r = await request(edge, req("/pong", "web", {"l5d-ctx-dtab": dtab}))
        assert r.status == 400, dtab
    # what a request dtab may still do there: reuse the router's names, answer a status
    r = await request(edge, req("/pong", "web", {"l5d-dtab": "/svc/web => /svc/pong"}))
    assert r.status == 200 and r.body == b"pong"
    r = await request(edge, req("/pong", "web", {"l5d-dtab": "/svc/web => /$/io.buoyant.http.status/418"}))
    assert r.status == 418
    # the loopback server keeps Linkerd's behaviour
    r = await request(ports["loop"], req("/pong", "web", {"l5d-dtab": f"/svc/web => /$/inet/127.1/{backend.port}"}))
    assert r.status == 200


async def test_config_json_redacts_secrets(router):
    ports, _, _ = router
    r = await request(ports["admin"], req("/config.json", "localhost"))
    assert r.status == 200 and b"s3cret" not in r.body
    assert json.loads(r.body)["namers"][0]["token"] == REDACTED


def test_redact_walks_every_secret_shape():
    doc = {"namers": [{"kind": "io.l5d.consul", "token": "t", "host": "h", "port": 8500}],
           "storage": {"kind": "io.l5d.zk", "authInfo": {"scheme": "digest", "auth": "user:pw"}},
           "telemetry": [{"kind": "io.namerouter.otlp", "headers": {"Authorization": "Bearer x", "X-Other": "ok"},
                          "endpoint": "https://user:pw@collector:4318/v1/traces"}],
           "admin": {"tls": {"certPath": "/c.pem", "keyPath": "/k.pem", "requireClientAuth": True},
                     "security": {"password": "p", "apiKey": "k", "clientSecret": "s"}}}
    out = redact(doc)
    assert out["namers"][0] == {"kind": "io.l5d.consul", "token": REDACTED, "host": "h", "port": 8500}
    assert out["storage"]["authInfo"] == {"scheme": "digest", "auth": REDACTED}
    assert out["telemetry"][0]["headers"] == {"Authorization": REDACTED, "X-Other": "ok"}
    assert out["telemetry"][0]["endpoint"] == f"https://user:{REDACTED}@collector:4318/v1/traces"
    assert out["admin"]["tls"] == doc["admin"]["tls"]  # paths and flags are not secrets
    assert set(out["admin"]["security"].values()) == {REDACTED}
    assert doc["namers"][0]["token"] == "t"  # the config itself is untouched


async def test_router_admin_refuses_foreign_hosts_and_simple_shutdowns(router):
    ports, _, proc = router
    admin = ports["admin"]
    for host in ("evil.example", f"evil.example:{admin}", "127.0.0.1.nip.io", "10.1.2.3"):
        r = await request(admin, req("/admin/ping", host))
        assert r.status == 403 and b"DNS rebinding" in r.body, host
    for host in ("localhost", f"localhost:{admin}", f"127.0.0.1:{admin}", "[::1]", "app.localhost"):
        assert (await request(admin, req("/admin/ping", host))).status == 200, host
    # a cross-site page can send these; none may stop the router
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "multipart/form-data; boundary=x"}):
        r = await request(admin, req("/admin/shutdown", "localhost", headers, "POST"))
        assert r.status == 403 and b"non-simple" in r.body, headers
    assert proc.returncode is None
    r = await request(admin, req("/admin/shutdown", "localhost", {"X-Requested-With": "curl"}, "POST"))
    assert r.status == 200
    await asyncio.wait_for(proc.wait(), 15)


async def test_namerd_admin_refuses_foreign_hosts_and_simple_writes(namerd):
    r = await request(namerd.admin, req("/admin/ping", "evil.example"))
    assert r.status == 403
    assert (await request(namerd.admin, req("/admin/ping", "localhost"))).status == 200
    for ctype, status in (("text/plain", 403), (None, 403), ("application/dtab", 201)):
        # text/plain (or none) is what a cross-site form could send; the editor sends application/dtab
        r = await request(namerd.admin, req("/admin/dtab/ssrftest", f"localhost:{namerd.admin}",
                                            {"Content-Type": ctype} if ctype else {}, "POST", b"/a=>/b"))
        assert r.status == status, (ctype, r)
    r = await request(namerd.admin, req("/admin/shutdown", "localhost", {}, "POST"))
    assert r.status == 403


async def test_host_whitelist_and_listen_address():
    from namerouter.config.schema import AdminSecurityConfig
    from aiohttp import web

    app = build_admin_app(MetricsRegistry(), security=AdminSecurityConfig(hostWhitelist=["l5d.internal"]),
                          listen_ip="127.0.0.1")
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        assert (await request(port, req("/admin/ping", "l5d.internal:9990"))).status == 200
        assert (await request(port, req("/admin/ping", "L5D.internal"))).status == 200
        assert (await request(port, req("/admin/ping", "other.internal"))).status == 403
    finally:
        await runner.cleanup()


def test_protected_addresses_match_what_a_connection_reached():
    root = Protected()
    root.add("0.0.0.0", 9990, "the admin server")
    root.add("10.0.0.7", 4180, "namerd")
    mine = Protected(root)
    mine.add("127.0.0.1", 4140, "own server")
    assert mine.refusal("127.0.0.1", 9990, "127.0.0.1") == "the admin server"
    assert mine.refusal("127.0.0.2", 9990, "127.0.0.1") == "the admin server"  # loopback, wildcard
    assert mine.refusal("192.168.1.5", 9990, "192.168.1.5") == "the admin server"  # this host
    assert mine.refusal("192.168.1.9", 9990, "192.168.1.5") is None  # another host's 9990
    assert mine.refusal("::ffff:10.0.0.7", 4180, "10.0.0.1") == "namerd"
    assert mine.refusal("127.0.0.1", 4140, "127.0.0.1") == "own server"
    assert mine.refusal("127.0.0.1", 4141, "127.0.0.1") is None
    assert Protected(root).refusal("127.0.0.1", 4140, "127.0.0.1") is None  # another router's server


def test_system_reach_of_request_dtabs():
    assert system_reach(Dtab.read("/svc/a => /svc/b; /svc/c => /#/io.l5d.fs/c")) == frozenset()
    assert system_reach(Dtab.read("/svc/a => /$/inet/1.2.3.4/80")) == {"inet"}
    assert system_reach(Dtab.read("/svc/a => /$/nil | /$/io.buoyant.http.status/404")) == {
        "nil", "io.buoyant.http.status"}
    assert system_reach(Dtab.read("/svc/a => /$/io.buoyant.hostportPfx/inet")) == {ANY}
    assert system_reach(Dtab.read("/a => /$; /b => /")) == {ANY}
    assert system_reach(Dtab.read("/a => /$/com.twitter.finagle.namer.global/$/inet/1/2")) == {ANY}
