"""Routers with the io.l5d.mesh and io.l5d.namerd interpreters against a real namerd
process (``python -m namerd`` serving every interface; file-store dtabs that survive a
restart; io.l5d.fs names), real HTTP backends and real routers:

* a dtab PUT through namerd's API reaches the routing within 1 s;
* namerd SIGKILL + restart: zero failed requests for a known name while namerd is
  down, and the router follows a change made after namerd is back (its watches
  reconnected and re-synced);
* ``namerouter run config.yaml`` as a user would, with the interpreter's admin state.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from namerouter import plugins
from namerouter.config.validate import config_class_of, validate
from namerouter.linker import Runtime
from namerouter.metrics import MetricsRegistry
from tests.support.namerd_proc import ROOT, NamerdProcess, write_fs
from tests.support.ports import free_port
from tests.support.routing import RouterProcess

KINDS = ["io.l5d.mesh", "io.l5d.namerd"]
BASE = "/svc=>/#/io.l5d.fs"


@pytest.fixture(scope="module")
def namerd(tmp_path_factory):
    work = tmp_path_factory.mktemp("namerd-ifaces")
    disco = work / "disco"
    disco.mkdir()
    n = NamerdProcess(str(work), str(disco))
    n.disco = str(disco)  # type: ignore[attr-defined]
    try:
        n.start_sync()
        yield n
    finally:
        n.kill_sync()


@pytest.fixture
async def backends(namerd):
    runners = []

    async def start(name: str) -> int:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=name)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    if not namerd.running:
        await namerd.start()
    p1, p2 = await start("v1"), await start("v2")
    write_fs(namerd.disco, "web", ("127.0.0.1", p1))
    write_fs(namerd.disco, "web2", ("127.0.0.1", p2))
    await namerd.put_dtab(BASE)
    yield p1, p2
    for r in runners:
        await r.cleanup()


def make_interp(kind: str, dst: Any, metrics: MetricsRegistry, label: str = "out") -> Any:
    cls = plugins.load(plugins.INTERPRETERS, kind)
    raw = {"kind": kind, "dst": dst, "retry": {"baseSeconds": 0.2, "maxSeconds": 2}}
    if kind == "io.l5d.mesh":
        raw["root"] = "/default"
    else:
        raw["namespace"] = "default"
    cfg = validate(config_class_of(cls), raw).config
    return cls.from_config(cfg, Runtime(metrics, router_label=label))


class Load:
    """Requests in a loop through the router; every status and body recorded."""

    def __init__(self, port: int, concurrency: int = 4) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        self.results: list[tuple[float, int, str]] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.ensure_future(self._loop()) for _ in range(concurrency)]

    async def _loop(self) -> None:
        async with aiohttp.ClientSession() as s:
            while not self._stop.is_set():
                try:
                    async with s.get(self.url, headers={"Host": "web"}, timeout=aiohttp.ClientTimeout(total=5)) as r:
                        self.results.append((time.monotonic(), r.status, await r.text()))
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    self.results.append((time.monotonic(), 0, repr(e)))
                await asyncio.sleep(0.005)

    async def until_body(self, body: str, timeout: float) -> float:
        """When the last 8 answers are all ``body``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            tail = self.results[-8:]
            if len(tail) == 8 and all(r[2] == body for r in tail):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"router did not switch to {body}: last {self.results[-3:]}")
            await asyncio.sleep(0.005)

    def first_body_since(self, t0: float, body: str) -> float:
        return next(r[0] for r in self.results if r[0] >= t0 and r[2] == body)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def start_router(interp: Any, metrics: MetricsRegistry) -> tuple[Any, int]:
    from namerouter.proxy.config import RouterConfig, ServerConfig
    from namerouter.proxy.router import HttpRouter

    port = free_port()
    router = HttpRouter(RouterConfig(label="out", servers=[ServerConfig(ip="127.0.0.1", port=port)]), interp, metrics)
    await router.start()
    return router, port


@pytest.mark.parametrize("kind", KINDS)
async def test_router_follows_a_dtab_put_within_1s(kind, namerd, backends):
    metrics = MetricsRegistry()
    interp = make_interp(kind, namerd.dst(kind), metrics)
    router, port = await start_router(interp, metrics)
    load = Load(port)
    try:
        steady = await load.until_body("v1", 10)
        worst = 0.0
        for n in range(4):
            target, body = ("web2", "v2") if n % 2 == 0 else ("web", "v1")
            t0 = time.monotonic()
            await namerd.put_dtab(f"{BASE};/svc/web=>/#/io.l5d.fs/{target}")
            await load.until_body(body, 3)
            worst = max(worst, load.first_body_since(t0, body) - t0)
        print(f"\n{kind}: dtab PUT -> routed, worst of 4: {worst * 1000:.0f} ms")
        assert worst < 1.0
        assert not [r for r in load.results if r[1] != 200 and r[0] >= steady]
    finally:
        await load.stop()
        await router.close(1.0)
        await interp.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_router_survives_namerd_kill_and_restart_with_zero_failures(kind, namerd, backends):
    metrics = MetricsRegistry()
    interp = make_interp(kind, namerd.dst(kind), metrics)
    router, port = await start_router(interp, metrics)
    load = Load(port)
    try:
        steady = await load.until_body("v1", 10)  # counted from here: the name is known
        await namerd.kill()
        killed = time.monotonic()
        await asyncio.sleep(1.5)
        during = [r for r in load.results if r[0] > killed]
        assert during and all(r[1] == 200 and r[2] == "v1" for r in during), during[-5:]
        assert not interp.client.reachable or kind == "io.l5d.namerd"  # the thrift loop notices on its next call
        await namerd.start()
        back = time.monotonic()
        # A change made after the restart reaches the router: its watches are back.
        await namerd.put_dtab(f"{BASE};/svc/web=>/#/io.l5d.fs/web2")
        switched = await load.until_body("v2", 5)
        await load.stop()
        counted = [r for r in load.results if r[0] >= steady]
        failures = [r for r in counted if r[1] != 200]
        print(f"\n{kind}: namerd SIGKILL + restart: {len(counted)} requests, {len(failures)} failed, "
              f"{len(during)} while namerd was down; change after restart routed in {(switched - back) * 1000:.0f} ms")
        assert not failures, failures[:5]
        assert interp.client.reachable
    finally:
        await load.stop()
        await router.close(1.0)
        await interp.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_namerouter_run_with_the_interpreter_and_its_admin_state(kind, namerd, backends, tmp_path):
    rport, aport = free_port(), free_port()
    ns_key = "root: /default" if kind == "io.l5d.mesh" else "namespace: default"
    cfg = tmp_path / "linkerd.yaml"
    cfg.write_text(
        f"admin: {{port: {aport}}}\n"
        "routers:\n"
        "- protocol: http\n"
        "  label: out\n"
        "  interpreter:\n"
        f"    kind: {kind}\n"
        f"    dst: {namerd.dst(kind)}\n"
        f"    {ns_key}\n"
        "    retry: {baseSeconds: 1, maxSeconds: 10}\n"
        "  servers:\n"
        f"  - port: {rport}\n")
    async with RouterProcess(str(cfg), str(tmp_path / "router.log"), ROOT) as router:
        await router.until_body(rport, "web", "v1")
        rc, out = await router.curl(f"http://127.0.0.1:{aport}/out/interpreter_state/{kind}/default.json")
        state = json.loads(out)
        assert state["kind"] == kind and state["namerd"]["reachable"] is True
        assert state["bind"]["/svc/web"]["value"] == "/#/io.l5d.fs/web"
        assert state["addr"]["/#/io.l5d.fs/web"]["value"]["type"] == "bound"
        assert state["dtab"] == BASE
        rc, out = await router.curl(f"http://127.0.0.1:{aport}/delegator.json?path=/svc/web&namespace=out")
        assert rc == 0 and json.loads(out)["delegate"]["bound"]["id"] == "/#/io.l5d.fs/web", out
