"""The main job in-process: several routers and servers from one config, namers and
interpreters built from their kinds, the admin server wired to them, clean close."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker, StartupError
from tests.support.backends import Backend
from tests.support.ports import free_port


async def get(url: str, **kw) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, **kw) as r:
            return r.status, await r.text(), dict(r.headers)


async def test_two_routers_fs_namer_interpreter_kind_and_admin(tmp_path):
    async with Backend("web") as web, Backend("api") as api:
        disco = tmp_path / "disco"
        disco.mkdir()
        (disco / "web").write_text(f"127.0.0.1 {web.port}\n")
        admin, a1, a2, b1 = free_port(), free_port(), free_port(), free_port()
        text = f"""
admin: {{ip: 127.0.0.1, port: {admin}, shutdownGraceMs: 2000}}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
- protocol: http
  label: files
  interpreter: {{kind: default}}
  dtab: /svc => /#/io.l5d.fs;
  servers:
  - {{port: {a1}, ip: 127.0.0.1}}
  - {{port: {a2}, ip: 127.0.0.1}}
- protocol: http
  label: static
  identifier: {{kind: io.l5d.path, segments: 1, consume: true}}
  dtab: /svc/api => /$/inet/127.0.0.1/{api.port};
  servers:
  - {{port: {b1}, ip: 127.0.0.1}}
telemetry:
- kind: io.l5d.prometheus
  prefix: "nr_"
"""
        linker = Linker(loads_linker(text))
        await linker.start()
        try:
            for port in (a1, a2):
                status, body, _ = await get(f"http://127.0.0.1:{port}/pong", headers={"Host": "web"})
                assert (status, body) == (200, "pong")
            assert len(web.requests) == 2
            status, body, _ = await get(f"http://127.0.0.1:{b1}/api/pong")
            assert (status, body) == (200, "pong") and api.last.uri == "/pong"

            # a service file that appears later is picked up (the fs namer watches)
            status, _, _ = await get(f"http://127.0.0.1:{a1}/pong", headers={"Host": "api"})
            assert status == 502
            (disco / "api").write_text(f"127.0.0.1 {api.port}\n")
            for _ in range(100):
                status, body, _ = await get(f"http://127.0.0.1:{a1}/pong", headers={"Host": "api"})
                if status == 200:
                    break
                await asyncio.sleep(0.05)
            assert (status, body) == (200, "pong")

            base = f"http://127.0.0.1:{admin}"
            _, body, _ = await get(f"{base}/admin/metrics.json")
            m = json.loads(body)
            assert m[f"rt/files/server/127.0.0.1/{a1}/requests"] >= 2
            assert m[f"rt/files/server/127.0.0.1/{a2}/requests"] == 1
            assert m[f"rt/static/server/127.0.0.1/{b1}/requests"] == 1
            assert "rt/files/bindcache/tree/size" in m
            status, text_, _ = await get(f"{base}/admin/metrics/prometheus")
            assert status == 200 and 'nr_rt:server:requests{rt="static", server="127.0.0.1/' in text_
            _, body, _ = await get(f"{base}/namer_state/io.l5d.fs.json")
            assert "web" in json.loads(body)["files"]
            _, body, _ = await get(f"{base}/bound-names.json")
            assert set(json.loads(body)) >= {"/#/io.l5d.fs/web", "/#/io.l5d.fs/api"}
            _, body, _ = await get(f"{base}/client_state.json")
            state = json.loads(body)
            assert "/#/io.l5d.fs/web" in state["files"] and set(state) == {"files", "static"}
        finally:
            await linker.close()
        # everything is closed: the ports are free again
        for port in (admin, a1, a2, b1):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            w.close()
            raise AssertionError(f"port {port} still open")


async def test_admin_port_in_use_fails_startup_and_releases_router_ports():
    async with Backend("x") as busy:
        port = free_port()
        text = f"""
admin: {{port: {busy.port}}}
routers:
- protocol: http
  servers: [{{port: {port}}}]
"""
        linker = Linker(loads_linker(text))
        try:
            await linker.start()
            raise AssertionError("started on a busy port")
        except StartupError as e:
            assert f"admin: cannot listen on 127.0.0.1:{busy.port}" in str(e)
        finally:
            await linker.close()
        # the router that had started was closed again
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            raise AssertionError("router port still open")
        except OSError:
            pass


async def test_second_server_port_in_use_releases_the_first():
    async with Backend("x") as busy:
        first = free_port()
        text = f"""
admin: {{port: {free_port()}}}
routers:
- protocol: http
  servers: [{{port: {first}}}, {{port: {busy.port}}}]
"""
        linker = Linker(loads_linker(text))
        try:
            await linker.start()
            raise AssertionError("started on a busy port")
        except StartupError as e:
            assert f"cannot listen on 127.0.0.1:{first}, 127.0.0.1:{busy.port}" in str(e)
        finally:
            await linker.close()
        try:
            _, w = await asyncio.open_connection("127.0.0.1", first)
            w.close()
            raise AssertionError("first server's port still open")
        except OSError:
            pass
