"""io.l5d.namerd.http against real namerd processes (``python -m namerd``), issue 5's
router-facing acceptance tests:

* the interpreter follows a dtab change made through namerd's API within 1 s;
* an fs address change flows through namerd's addr stream into the BoundName's Var;
* a namerd restart: last state served while it is down, a dtab change made meanwhile
  (through a second namerd on the same ZooKeeper store) picked up within 2 s of its return;
* fail-over between two namerd addresses;
* a real HttpRouter keeps routing through a namerd restart with zero failed requests and
  routes to the new destination within 2 s of namerd's return.

namerd runs with ZooKeeper storage (the session ``zk_server`` fixture), an ``io.l5d.fs``
namer over a temp dir, and its HTTP controller on a fixed free port so a restart keeps
the address. Dtab writes go through namerd's API with curl, as an operator would.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Optional

import aiohttp
import pytest
from aiohttp import web

from namerouter.config.validate import validate
from namerouter.dtab import Dtab, Path
from namerouter.interpreters.namerd_http import NamerdHttpConfig, NamerdHttpInterpreter
from namerouter.linker import Runtime
from namerouter.metrics import MetricsRegistry
from namerouter.naming import AddrBound, Address, Ok
from tests.support.ports import free_port
from tests.support.routing import RouterProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SVC_WEB = Path.of("svc", "web")


class NamerdProcess:
    """One real namerd process; ``kill`` + ``start`` is a crash and restart on the same port.
    Plain Popen (no asyncio objects), so one pair can serve every test of the module."""

    def __init__(self, workdir: str, zk_hosts: str, prefix: str, disco: str, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.config_path = os.path.join(workdir, f"namerd-{self.port}.yaml")
        self.log_path = os.path.join(workdir, f"namerd-{self.port}.log")
        host, zk_port = zk_hosts.split(",")[0].rsplit(":", 1)
        with open(self.config_path, "w") as f:
            f.write(
                "admin: {port: 0}\n"
                "storage:\n"
                "  kind: io.l5d.zk\n"
                f"  zkAddrs: [{{host: {host}, port: {zk_port}}}]\n"
                f"  pathPrefix: {prefix}\n"
                "namers:\n"
                f"- {{kind: io.l5d.fs, rootDir: {disco}}}\n"
                "interfaces:\n"
                f"- {{kind: io.l5d.httpController, ip: 127.0.0.1, port: {self.port}}}\n"
            )
        self.proc: Optional[subprocess.Popen] = None

    @property
    def dst(self) -> str:
        return f"/$/inet/127.0.0.1/{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "namerd", self.config_path],
                                         cwd=ROOT, stdout=log, stderr=log)

    def _check_alive(self, deadline: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"namerd exited: {open(self.log_path).read()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"namerd on {self.port} not ready: {open(self.log_path).read()[-2000:]}")

    def wait_ready_sync(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(deadline)
            try:
                with urllib.request.urlopen(self.url + "/api/1/dtabs", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.02)

    async def start(self, timeout: float = 20.0) -> "NamerdProcess":
        """Spawn and return once the HTTP API answers."""
        self.spawn()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while True:
                self._check_alive(deadline)
                try:
                    async with s.get(self.url + "/api/1/dtabs", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return self
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.02)

    def kill_sync(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    async def kill(self) -> None:
        """SIGKILL: no goodbye, every stream cut by the kernel."""
        await asyncio.to_thread(self.kill_sync)


async def curl_dtab(namerd: NamerdProcess, ns: str, text: str, method: str = "PUT") -> None:
    """Write a dtab through namerd's API with curl (application/dtab)."""
    p = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-f", "-X", method, "-H", "Content-Type: application/dtab",
        "--data-binary", text, f"{namerd.url}/api/1/dtabs/{ns}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    assert p.returncode == 0, f"curl {method} failed: {err.decode()} {out.decode()}"


def write_fs(disco: str, name: str, *addrs: tuple[str, int]) -> None:
    tmp = os.path.join(disco, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write("".join(f"{h} {p}\n" for h, p in addrs))
    os.replace(tmp, os.path.join(disco, name))


def is_tree(*ids: str):
    return lambda st: isinstance(st, Ok) and sorted(b.id.show() for b in st.value.leaves()) == sorted(ids)


def make_interp(dst, metrics: Optional[MetricsRegistry] = None, label: str = "out") -> NamerdHttpInterpreter:
    cfg = validate(NamerdHttpConfig, {"kind": "io.l5d.namerd.http", "experimental": True, "dst": dst,
                                      "namespace": "default"}).config
    return NamerdHttpInterpreter.from_config(cfg, Runtime(metrics or MetricsRegistry(), router_label=label))


DEFAULT_DTAB = "/svc=>/#/io.l5d.fs"


@pytest.fixture(scope="module")
def namerd_pair(zk_server, tmp_path_factory):
    """Two namerd processes sharing one ZooKeeper store, for the whole module (starting
    them is the slow part); ``cluster`` puts them back in shape before each test."""
    work = tmp_path_factory.mktemp("namerd")
    disco = work / "disco"
    disco.mkdir()
    prefix = f"/h8test/{uuid.uuid4().hex}"
    procs = [NamerdProcess(str(work), zk_server.hosts, prefix, str(disco)) for _ in range(2)]
    try:
        for p in procs:
            p.spawn()
        for p in procs:
            p.wait_ready_sync()
        yield procs, str(disco)
    finally:
        for p in procs:
            p.kill_sync()


@pytest.fixture
def disco(namerd_pair) -> str:
    return namerd_pair[1]


@pytest.fixture
async def cluster(namerd_pair):
    """Both namerds running, ``default`` = DEFAULT_DTAB as seen by both, fs files web/web2."""
    procs, disco = namerd_pair
    await asyncio.gather(*(p.start() for p in procs if not p.running))
    write_fs(disco, "web", ("127.0.0.1", 8081))
    write_fs(disco, "web2", ("127.0.0.1", 8082))
    await curl_dtab(procs[0], "default", DEFAULT_DTAB)  # PUT without If-Match: upsert
    want = [{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]
    async with aiohttp.ClientSession() as s:  # both have seen it through ZooKeeper
        for p in procs:
            for _ in range(250):
                async with s.get(p.url + "/api/1/dtabs/default") as r:
                    if r.status == 200 and await r.json() == want:
                        break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"namerd {p.port} did not see the reset dtab")
    yield procs


async def test_follows_dtab_changes_through_the_api_within_1s(cluster):
    a, b = cluster
    interp = make_interp(a.dst)
    try:
        act = interp.bind(Dtab(), SVC_WEB)
        await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 5)
        worst = 0.0
        for n in range(4):  # alternate, and write through either namerd
            target = "web2" if n % 2 == 0 else "web"
            t0 = time.monotonic()
            await curl_dtab(cluster[n % 2], "default", f"/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/{target}")
            await act.states.wait_for(is_tree(f"/#/io.l5d.fs/{target}"), 1.0)
            worst = max(worst, time.monotonic() - t0)
        assert worst < 1.0
        print(f"\ndtab change -> router interpreter: worst {worst * 1000:.0f} ms over 4 writes")
    finally:
        await interp.close()


async def test_addr_changes_flow_into_the_bound_names_var(cluster, disco):
    a, _ = cluster
    interp = make_interp(a.dst)
    try:
        st = await interp.bind(Dtab(), SVC_WEB).states.wait_for(is_tree("/#/io.l5d.fs/web"), 5)
        addr = st.value.value.addr
        await addr.wait_for(lambda x: x == AddrBound([Address("127.0.0.1", 8081)]), 5)
        write_fs(disco, "web", ("127.0.0.1", 8081), ("127.0.0.2", 8083))
        await addr.wait_for(lambda x: isinstance(x, AddrBound) and len(x.addrs) == 2, 3)
        assert interp.metrics.get("rt/out/interpreter/io.l5d.namerd.http/addr/active").value == 1
    finally:
        await interp.close()


async def test_namerd_restart_keeps_last_state_and_resyncs_within_2s(cluster):
    a, b = cluster
    interp = make_interp(a.dst)  # this router only knows namerd a
    try:
        act = interp.bind(Dtab(), SVC_WEB)
        tree = (await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 5)).value
        await tree.value.addr.wait_for(lambda x: isinstance(x, AddrBound), 5)
        before = act.sample()
        await a.kill()
        # changed while a is down (through b, same store)
        await curl_dtab(b, "default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
        await asyncio.sleep(1.0)
        assert act.sample() == before  # last known state served meanwhile
        assert not interp.client.reachable
        await a.start()
        t0 = time.monotonic()
        st = await act.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 2.0)
        took = time.monotonic() - t0
        await st.value.value.addr.wait_for(lambda x: x == AddrBound([Address("127.0.0.1", 8082)]), 2)
        print(f"\nnamerd back -> change made while it was down seen after {took * 1000:.0f} ms")
        assert took < 2.0
    finally:
        await interp.close()


async def test_failover_between_two_namerds(cluster):
    a, b = cluster
    interp = make_interp([a.dst, b.dst])
    try:
        act = interp.bind(Dtab(), SVC_WEB)
        await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 5)
        await a.kill()
        await curl_dtab(b, "default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
        t0 = time.monotonic()
        await act.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 2.0)
        print(f"\nfail-over to the second namerd: change seen after {(time.monotonic() - t0) * 1000:.0f} ms")
        assert interp.client.current.port == b.port
    finally:
        await interp.close()


# -- the real router --------------------------------------------------------------------------

async def _backend(name: str) -> tuple[web.AppRunner, int]:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_router_routes_through_namerd_restart_with_zero_failures(cluster, disco):
    from namerouter.proxy.config import RouterConfig, ServerConfig
    from namerouter.proxy.router import HttpRouter

    a, b = cluster
    v1, p1 = await _backend("v1")
    v2, p2 = await _backend("v2")
    write_fs(disco, "web", ("127.0.0.1", p1))
    write_fs(disco, "web2", ("127.0.0.1", p2))
    metrics = MetricsRegistry()
    interp = make_interp(a.dst, metrics)
    rport = free_port()
    router = HttpRouter(RouterConfig(label="out", servers=[ServerConfig(ip="127.0.0.1", port=rport)]),
                        interp, metrics)
    await router.start()
    results: list[tuple[float, int, str]] = []
    stop = asyncio.Event()

    async def load() -> None:
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                try:
                    async with s.get(f"http://127.0.0.1:{rport}/", headers={"Host": "web"},
                                     timeout=aiohttp.ClientTimeout(total=5)) as r:
                        results.append((time.monotonic(), r.status, await r.text()))
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    results.append((time.monotonic(), 0, repr(e)))
                await asyncio.sleep(0.005)

    loaders = [asyncio.create_task(load()) for _ in range(4)]
    try:
        async def until_body(body: str, timeout: float) -> float:
            deadline = time.monotonic() + timeout
            while True:
                if results and results[-1][2] == body and all(r[2] == body for r in results[-8:]):
                    return time.monotonic()
                if time.monotonic() > deadline:
                    raise AssertionError(f"router did not switch to {body}: last {results[-3:]}")
                await asyncio.sleep(0.01)

        await until_body("v1", 10)
        await a.kill()
        killed = time.monotonic()
        await curl_dtab(b, "default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
        await asyncio.sleep(1.5)
        during = [r for r in results if r[0] > killed]
        assert during and all(r[2] == "v1" for r in during), during[-5:]
        await a.start()
        back = time.monotonic()
        switched = await until_body("v2", 2.0)
        stop.set()
        await asyncio.gather(*loaders)
        failures = [r for r in results if r[1] != 200]
        print(f"\nrouter through namerd kill+restart: {len(results)} requests, {len(failures)} failed, "
              f"{len(during)} while namerd was down, switched {(switched - back) * 1000:.0f} ms after namerd returned")
        assert not failures, failures[:5]
        assert switched - back < 2.0
    finally:
        stop.set()
        for t in loaders:
            t.cancel()
        await router.close(1.0)
        await interp.close()
        await v1.cleanup()
        await v2.cleanup()


async def test_namerouter_run_with_namerd_interpreter_end_to_end(cluster, disco, tmp_path):
    """As a user would: `namerouter run config.yaml` with io.l5d.namerd.http, curl through it,
    read the interpreter state and the delegator from its admin."""
    a, b = cluster
    v1, p1 = await _backend("v1")
    write_fs(disco, "web", ("127.0.0.1", p1))
    rport, aport = free_port(), free_port()
    cfg = tmp_path / "linkerd.yaml"
    cfg.write_text(
        f"admin: {{port: {aport}}}\n"
        "routers:\n"
        "- protocol: http\n"
        "  label: out\n"
        "  interpreter:\n"
        "    kind: io.l5d.namerd.http\n"
        "    experimental: true\n"
        f"    dst: [{a.dst}, {b.dst}]\n"
        "    namespace: default\n"
        "    retry: {baseSeconds: 1, maxSeconds: 10}\n"
        "  servers:\n"
        f"  - port: {rport}\n")
    try:
        async with RouterProcess(str(cfg), str(tmp_path / "router.log"), ROOT) as router:
            await router.until_body(rport, "web", "v1")
            curl = router.curl
            rc, out = await curl(f"http://127.0.0.1:{aport}/out/interpreter_state/io.l5d.namerd.http/default.json")
            import json

            state = json.loads(out)
            assert state["namerd"]["current"] == f"127.0.0.1:{a.port}" and state["namerd"]["reachable"]
            assert state["dtab"] == "/svc=>/#/io.l5d.fs"  # namerd's dtab for the namespace, live
            assert state["bind"]["/svc/web"]["value"] == "/#/io.l5d.fs/web"
            assert state["addr"]["/#/io.l5d.fs/web"]["value"]["addrs"] == [{"ip": "127.0.0.1", "port": p1, "meta": {}}]
            rc, out = await curl(f"http://127.0.0.1:{aport}/delegator.json?path=/svc/web")
            tree = json.loads(out)  # namerd's delegate tree, through the router's admin
            assert tree["type"] == "delegate" and tree["delegate"]["dentry"] == {"prefix": "/svc", "dst": "/#/io.l5d.fs"}
            rc, out = await curl(f"http://127.0.0.1:{aport}/admin/metrics.json")
            metrics = json.loads(out)
            assert metrics["rt/out/interpreter/io.l5d.namerd.http/bind/active"] == 1
            assert metrics["rt/out/interpreter/io.l5d.namerd.http/connected"] == 1
    finally:
        await v1.cleanup()


async def test_delegate_through_real_namerd(cluster):
    a, _ = cluster
    interp = make_interp(a.dst)
    try:
        d = await interp.delegate(Dtab.read("/svc/web=>/$/inet/127.0.0.1/4444"), SVC_WEB)
        assert d["path"] == "/svc/web"
        assert "/$/inet/127.0.0.1/4444" in json_text(d)
    finally:
        await interp.close()


def json_text(doc) -> str:
    import json

    return json.dumps(doc)


async def test_many_names_follow_one_dtab_change(cluster):
    """300 live bindings (300 bind streams, one shared addr stream) all follow one dtab
    write within 1 s; prints the spread. NAMERD_HTTP_NAMES=1000 for a bigger run."""
    a, _ = cluster
    await curl_dtab(a, "default", "/svc=>/$/inet/127.0.0.1/8081")
    interp = make_interp(a.dst)
    n = int(os.environ.get("NAMERD_HTTP_NAMES", "300"))
    try:
        acts = [interp.bind(Dtab(), Path.of("svc", f"name-{i}")) for i in range(n)]
        holds = [x.observe(lambda s: None) for x in acts]

        def port_of(st) -> int:
            return int(st.value.value.id[3]) if isinstance(st, Ok) and st.value.leaves() else 0

        await asyncio.gather(*(x.states.wait_for(lambda s: port_of(s) == 8081, 10) for x in acts))
        assert len(interp._addrs.entries) == 1
        seen: dict[int, float] = {}
        for i, x in enumerate(acts):
            x.observe(lambda s, i=i: port_of(s) == 8082 and seen.setdefault(i, time.monotonic()), initial=False)
        t0 = time.monotonic()
        await curl_dtab(a, "default", "/svc=>/$/inet/127.0.0.1/8082")
        await asyncio.gather(*(x.states.wait_for(lambda s: port_of(s) == 8082, 5) for x in acts))
        lat = sorted(seen[i] - t0 for i in range(n))
        p50, p99, mx = lat[n // 2], lat[int(n * 0.99) - 1], lat[-1]
        print(f"\n{n} bind streams, one dtab PUT (incl. curl): p50 {p50 * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms, max {mx * 1000:.0f} ms")
        assert mx < 1.0
        for h in holds:
            h.close()
    finally:
        await interp.close()


async def test_router_releases_junk_names_after_idle_ttls(cluster, disco):
    """A scanner's random Host headers: every name opens a bind stream to namerd; once the
    router's binding cache and then the interpreter drop them, the streams are closed."""
    from namerouter.proxy.config import BindingCacheConfig, RouterConfig, ServerConfig
    from namerouter.proxy.router import HttpRouter

    a, _ = cluster
    v1, p1 = await _backend("v1")
    write_fs(disco, "web", ("127.0.0.1", p1))
    metrics = MetricsRegistry()
    cfg = validate(NamerdHttpConfig, {"dst": a.dst, "cache": {
        "bindingCacheInactiveTTLSecs": 0.5, "addrCacheInactiveTTLSecs": 0.5}}).config
    interp = NamerdHttpInterpreter.from_config(cfg, Runtime(metrics, router_label="out"))
    rport = free_port()
    router = HttpRouter(RouterConfig(label="out", servers=[ServerConfig(ip="127.0.0.1", port=rport)],
                                     bindingCache=BindingCacheConfig(idleTtlSecs=1)), interp, metrics)
    await router.start()
    g = lambda name: metrics.get(f"rt/out/interpreter/io.l5d.namerd.http/{name}").value  # noqa: E731
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{rport}/", headers={"Host": "web"}) as r:
                assert r.status == 200 and await r.text() == "v1"
            statuses = []
            for n in range(30):
                async with s.get(f"http://127.0.0.1:{rport}/", headers={"Host": f"scan-{uuid.uuid4().hex[:8]}"}) as r:
                    statuses.append(r.status)
            assert 200 not in statuses  # nothing behind those names
            assert g("bind/active") + g("bind/inactive") == 31 and g("streams") >= 31
            deadline = time.monotonic() + 6
            while g("bind/active") + g("bind/inactive") + g("addr/active") + g("addr/inactive") > 0:
                assert time.monotonic() < deadline, (g("bind/active"), g("bind/inactive"), g("addr/active"))
                await asyncio.sleep(0.1)
            assert g("streams") == 0 and g("bind/evictions") == 31
            async with s.get(f"http://127.0.0.1:{rport}/", headers={"Host": "web"}) as r:
                assert r.status == 200 and await r.text() == "v1"  # and it binds again
    finally:
        await router.close(1.0)
        await interp.close()
        await v1.cleanup()
