"""io.l5d.k8s against the Kubernetes API simulator: names, ports, watches and recovery."""
from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import time
from typing import Any

import pytest

from namerouter.dtab.path import Path
from namerouter.dtab.tree import NEG, Leaf
from namerouter.k8s.client import K8sApi
from namerouter.naming.addr import ADDR_NEG, AddrBound
from namerouter.naming.var import Ok
from namerouter.namers.k8s import K8sNamer, K8sNamerConfig, make_api
from tests.sim.k8s_sim import K8sApiSim, subset


@pytest.fixture
async def k8s():
    sim = K8sApiSim()
    await sim.start()
    yield sim
    await sim.stop()


def make_namer(sim: K8sApiSim, **kw: Any) -> K8sNamer:
    kw.setdefault("max_backoff_s", 0.2)
    return K8sNamer(K8sApi(sim.url), **kw)


class Watching:
    def __init__(self, namer: K8sNamer, path: str) -> None:
        self.act = namer.lookup(Path.read(path))
        self._c = self.act.observe(lambda s: None)
        self._ac = None

    async def tree(self, timeout: float = 3.0):
        return await self.act.wait_ok(timeout)

    async def bound(self, timeout: float = 3.0):
        t = await self.act.states.wait_for(lambda s: isinstance(s, Ok) and isinstance(s.value, Leaf), timeout)
        b = t.value.value
        if self._ac is None:
            self._ac = b.addr.observe(lambda a: None)
        return b

    def close(self) -> None:
        self._c.close()
        if self._ac is not None:
            self._ac.close()


def hostports(addr) -> set[tuple[str, int]]:
    assert isinstance(addr, AddrBound), addr
    return {(a.host, a.port) for a in addr.addrs}


def web_endpoints(sim: K8sApiSim, ips=("10.1.0.1", "10.1.0.2"), ns="prod", name="web", labels=None):
    return sim.set_endpoints(ns, name, [
        subset([(ip, f"node-{i}") for i, ip in enumerate(ips)], {"http": 8080, "admin": 9990, "same": 82},
               not_ready=[("10.1.9.9", "node-x")]),
        subset(["10.1.5.5"], [{"name": "dns", "port": 53, "protocol": "UDP"}]),
    ], labels=labels)


async def test_named_port_binds_ready_tcp_addresses_and_follows_changes(k8s: K8sApiSim, record_property):
    web_endpoints(k8s)
    namer = make_namer(k8s)
    w = Watching(namer, "/prod/HTTP/Web/rest/of/path")
    try:
        b = await w.bound()
        assert b.id == Path.read("/#/io.l5d.k8s/prod/http/web")
        assert b.residual == Path.read("/rest/of/path")
        addr = b.addr.sample()
        assert hostports(addr) == {("10.1.0.1", 8080), ("10.1.0.2", 8080)}  # notReady ignored
        assert {a.meta["nodeName"] for a in addr.addrs} == {"node-0", "node-1"}
        # Scale up, one pod at a time, each change followed by the watch. Not a timing
        # assertion (shared machine): generous waits, latencies recorded (target < 200 ms).
        latencies = []
        for n in range(3, 6):
            ips = [f"10.1.0.{i}" for i in range(1, n + 1)]
            t0 = time.monotonic()
            web_endpoints(k8s, ips)
            await b.addr.wait_for(lambda a, n=n: len(a.addrs) == n, 5)
            latencies.append(round((time.monotonic() - t0) * 1000, 1))
        record_property("k8s_change_latency_ms", latencies)
        web_endpoints(k8s, [])  # no ready pod: bound, empty
        await b.addr.wait_for(lambda a: isinstance(a, AddrBound) and not a.addrs, 5)
        assert isinstance(await w.tree(), Leaf)
        k8s.delete("endpoints", "prod", "web")  # gone: negative
        await w.act.states.wait_for(lambda s: s == Ok(NEG), 5)
        assert b.addr.sample() is ADDR_NEG
        # the list used a field selector; the watch continued from the list's version
        reqs = [p for m, p, h in k8s.requests if "/endpoints" in p]
        assert "fieldSelector=metadata.name%3Dweb" in reqs[0] and "watch" not in reqs[0]
        assert "watch=true" in reqs[1] and "resourceVersion=" in reqs[1] and "allowWatchBookmarks=true" in reqs[1]
    finally:
        w.close()
        await namer.close()


async def test_negative_names_and_late_creation(k8s: K8sApiSim):
    web_endpoints(k8s)
    namer = make_namer(k8s)
    ws = {p: Watching(namer, p) for p in ("/prod/dns/web", "/prod/nosuch/web", "/prod/http/later")}
    try:
        assert await ws["/prod/dns/web"].tree() is NEG  # UDP port: not routable
        assert await ws["/prod/nosuch/web"].tree() is NEG
        assert await ws["/prod/http/later"].tree() is NEG
        assert namer.lookup(Path.read("/prod/http")).sample() == Ok(NEG)
        k8s.set_endpoints("prod", "later", [subset(["10.3.0.1"], {"http": 80})])
        b = await ws["/prod/http/later"].bound(0.5)
        assert hostports(b.addr.sample()) == {("10.3.0.1", 80)}
    finally:
        for w in ws.values():
            w.close()
        await namer.close()


async def test_numeric_port_goes_through_service_target_port(k8s: K8sApiSim):
    web_endpoints(k8s)
    k8s.set_service("prod", "web", [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                                    {"name": "adm", "port": 81, "targetPort": "admin"},
                                    {"name": "same", "port": 82}])
    namer = make_namer(k8s)
    w80, w81, w82, w99 = (Watching(namer, f"/prod/{p}/web") for p in (80, 81, 82, 99))
    try:
        assert hostports((await w80.bound()).addr.sample()) == {("10.1.0.1", 8080), ("10.1.0.2", 8080)}
        assert hostports((await w81.bound()).addr.sample()) == {("10.1.0.1", 9990), ("10.1.0.2", 9990)}
        assert hostports((await w82.bound()).addr.sample()) == {("10.1.0.1", 82), ("10.1.0.2", 82)}
        assert await w99.tree() is NEG  # the Service has no port 99
        b80 = await w80.bound()
        k8s.set_service("prod", "web", [{"name": "http", "port": 80, "targetPort": 8181}])
        await b80.addr.wait_for(lambda a: hostports(a) == {("10.1.0.1", 8181), ("10.1.0.2", 8181)}, 5)
        k8s.delete("services", "prod", "web")
        await w80.act.states.wait_for(lambda s: s == Ok(NEG), 5)
    finally:
        for w in (w80, w81, w82, w99):
            w.close()
        await namer.close()


async def test_label_selector_segment(k8s: K8sApiSim):
    web_endpoints(k8s, labels={"version": "v1"})
    namer = make_namer(k8s, label_selector="version")
    w1 = Watching(namer, "/prod/http/web/v1/x")
    w2 = Watching(namer, "/prod/http/web/v2")
    try:
        b1 = await w1.bound()
        assert b1.id == Path.read("/#/io.l5d.k8s/prod/http/web/v1") and b1.residual == Path.read("/x")
        assert await w2.tree() is NEG
        assert any("labelSelector=version%3Dv2" in p for m, p, h in k8s.requests)
        web_endpoints(k8s, ["10.2.0.1"], labels={"version": "v2"})  # relabel: v1 loses it, v2 gets it
        b2 = await w2.bound(0.5)
        assert hostports(b2.addr.sample()) == {("10.2.0.1", 8080)}
        await w1.act.states.wait_for(lambda s: s == Ok(NEG), 0.5)
        assert namer.lookup(Path.read("/prod/http/web")).sample() == Ok(NEG)  # value segment missing
    finally:
        w1.close()
        w2.close()
        await namer.close()


def _watch(namer: K8sNamer, resource="endpoints"):
    return next(w for w in namer._objects.values() if w.running and w.resource == resource)


@pytest.mark.parametrize("gone_as_http", [False, True])
async def test_410_relists_and_continues(gone_as_http: bool):
    sim = K8sApiSim(gone_as_http=gone_as_http)
    await sim.start()
    web_endpoints(sim)
    namer = make_namer(sim)
    w = Watching(namer, "/prod/http/web")
    try:
        b = await w.bound()
        ow = _watch(namer)
        assert ow.lists == 1
        # 1. an open stream is told ERROR 410 Expired: re-list, then watch again
        web_endpoints(sim, ["10.1.0.7"])  # a change the watch sees
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.7", 8080)}, 0.5)
        sim.expire_watches()
        await asyncio.sleep(0.05)
        web_endpoints(sim, ["10.1.0.8"])
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.8", 8080)}, 1.0)
        assert ow.lists == 2 and "410" in ow.last_error
        # 2. the stream ends, history is compacted meanwhile: re-watching from the last
        #    version earns 410 (HTTP or ERROR event) → re-list → the change is seen
        sim.compact()
        sim.end_watches()
        web_endpoints(sim, ["10.1.0.9"])
        sim.compact()
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.9", 8080)}, 1.0)
        assert ow.lists >= 2
    finally:
        w.close()
        await namer.close()
        await sim.stop()


async def test_stream_end_rewatches_from_last_version_and_bookmarks(k8s: K8sApiSim):
    web_endpoints(k8s)
    namer = make_namer(k8s)
    w = Watching(namer, "/prod/http/web")
    try:
        b = await w.bound()
        ow = _watch(namer)
        web_endpoints(k8s, ["10.1.0.3"])
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.3", 8080)}, 0.5)
        rv_seen = ow.resource_version
        assert rv_seen == str(k8s.rv)
        k8s.set_endpoints("prod", "other", [subset(["10.9.0.1"], {"http": 1})])  # moves the global rv
        k8s.send_bookmarks()
        await asyncio.sleep(0.05)
        assert ow.resource_version == str(k8s.rv)  # the bookmark advanced our version
        before = len(k8s.requests)
        k8s.end_watches()  # EOF
        await asyncio.sleep(0.05)
        new = [p for m, p, h in k8s.requests[before:] if "/endpoints" in p]
        assert len(new) == 1 and "watch=true" in new[0] and f"resourceVersion={k8s.rv}" in new[0]
        assert ow.lists == 1  # no re-list needed
        web_endpoints(k8s, ["10.1.0.4"])
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.4", 8080)}, 5)
    finally:
        w.close()
        await namer.close()


async def test_server_timeout_seconds_ends_streams_and_watch_goes_on(k8s: K8sApiSim):
    web_endpoints(k8s)
    namer = make_namer(k8s, watch_timeout_s=1)
    w = Watching(namer, "/prod/http/web")
    try:
        b = await w.bound()
        await asyncio.sleep(0.05)
        assert any("timeoutSeconds=1" in p for m, p, h in k8s.requests)
        await asyncio.sleep(1.2)
        assert _watch(namer).watches >= 2
        web_endpoints(k8s, ["10.1.0.6"])
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.6", 8080)}, 5)
    finally:
        w.close()
        await namer.close()


async def test_restart_keeps_addresses_and_resumes(k8s: K8sApiSim):
    web_endpoints(k8s)
    namer = make_namer(k8s)
    w = Watching(namer, "/prod/http/web")
    try:
        b = await w.bound()
        seen: list = []
        c = b.addr.observe(seen.append, initial=False)
        await k8s.stop()
        await asyncio.sleep(0.4)
        assert seen == [] and len(b.addr.sample().addrs) == 2
        web_endpoints(k8s, ["10.1.0.3"])  # changed while the API was away
        await k8s.start()
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.3", 8080)}, 1.0)
        c.close()
        assert all(isinstance(a, AddrBound) and a.addrs for a in seen)  # never dropped in between
    finally:
        w.close()
        await namer.close()


async def test_outage_at_startup_then_api_appears():
    sim = K8sApiSim()
    namer = make_namer(sim)
    w = Watching(namer, "/prod/http/web")
    try:
        assert await w.tree() is NEG
        web_endpoints(sim)
        await sim.start()
        b = await w.bound(2.0)
        assert len(b.addr.sample().addrs) == 2
        st = namer.admin_state()
        assert st["names"]["/#/io.l5d.k8s/prod/http/web"]["type"] == "bound"
        assert st["watches"][0]["errors"] >= 1
        assert namer.enumerate() == [Path.read("/#/io.l5d.k8s/prod/http/web")]
    finally:
        w.close()
        await namer.close()
        await sim.stop()


async def test_watches_released_when_unobserved(k8s: K8sApiSim):
    web_endpoints(k8s)
    namer = make_namer(k8s)
    ws = [Watching(namer, f"/prod/http/junk{i}") for i in range(10)] + [Watching(namer, "/prod/80/web")]
    for w in ws:
        await w.tree()
    await asyncio.sleep(0.05)
    assert namer.watch_count() == 12 and k8s.open_watches == 12  # 10 + endpoints and service of web
    for w in ws:
        w.close()
    assert namer.watch_count() == 0
    await asyncio.sleep(0.05)
    assert k8s.open_watches == 0
    await namer.close()


def _openssl() -> str:
    exe = shutil.which("openssl")
    if not exe:
        pytest.fail("openssl is needed to make the test CA")
    return exe


async def test_in_cluster_https_with_service_account(tmp_path):
    sa = tmp_path / "sa"
    sa.mkdir()
    key, crt = tmp_path / "key.pem", tmp_path / "crt.pem"
    subprocess.run(
        [_openssl(), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
         "-days", "1", "-subj", "/CN=kubernetes", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    shutil.copy(crt, sa / "ca.crt")
    (sa / "token").write_text("tok-1\n")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(crt), str(key))
    sim = K8sApiSim(token="tok-1", ssl_context=server_ctx)
    await sim.start()
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(sim.port)}
    api = make_api(None, None, sa_dir=str(sa), environ=env)
    assert api.base_url == f"https://127.0.0.1:{sim.port}"
    assert make_api("localhost", None).base_url == "http://localhost:8001"  # explicit host: kubectl proxy
    assert make_api(None, None, sa_dir=str(tmp_path / "none"), environ=env).base_url == "http://localhost:8001"
    web_endpoints(sim)
    namer = K8sNamer(api, max_backoff_s=0.2)
    w = Watching(namer, "/prod/http/web")
    try:
        b = await w.bound()
        assert len(b.addr.sample().addrs) == 2
        assert all(h.get("Authorization") == "Bearer tok-1" for m, p, h in sim.requests)
        # The kubelet rotates the token: the next request uses the new one.
        sim.token = "tok-2"
        (sa / "token").write_text("tok-2\n")
        os.utime(sa / "token", (time.time() + 5, time.time() + 5))
        sim.end_watches()
        web_endpoints(sim, ["10.1.0.5"])
        await b.addr.wait_for(lambda a: hostports(a) == {("10.1.0.5", 8080)}, 2.0)
        assert sim.requests[-1][2].get("Authorization") == "Bearer tok-2"
    finally:
        w.close()
        await namer.close()
        await sim.stop()


def test_from_config_defaults_to_kubectl_proxy(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    n = K8sNamer.from_config(K8sNamerConfig())
    assert n.api.base_url == "http://localhost:8001" and n.prefix == Path.read("/io.l5d.k8s")
    n = K8sNamer.from_config(K8sNamerConfig(host="10.0.0.1", port=8080, prefix="/k8s", labelSelector="v"))
    assert n.api.base_url == "http://10.0.0.1:8080" and n.prefix == Path.read("/k8s") and n.name_length == 4
