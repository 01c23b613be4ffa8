"""A namerd (from a config, in-process) with an fs namer, and a router that binds through
it with ``io.l5d.namerd.http``: the setting of the namerd UI tests, where the dry run
must find the names routers really have bound."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp

from namerd.config import loads_namerd
from namerd.server import Namerd
from namerouter.config.schema import loads_linker
from namerouter.linker import Linker

from .ports import free_port


@asynccontextmanager
async def namerd_with_router(tmp_path: Any, backends: dict[str, int], dtab: str, admin_extra: str = ""
                             ) -> AsyncIterator[tuple[Namerd, str, int]]:
    """namerd (namespace ``default`` = ``dtab``, fs files for ``backends``) and a router on
    it. Yields (namerd, namerd admin base URL, router port)."""
    disco = tmp_path / "disco"
    disco.mkdir(exist_ok=True)
    for name, port in backends.items():
        (disco / name).write_text(f"127.0.0.1 {port}\n")
    api, admin = free_port(), free_port()
    nd = Namerd.from_config(loads_namerd(f"""
admin:
  ip: 127.0.0.1
  port: {admin}
{admin_extra}
storage:
  kind: io.l5d.inMemory
  namespaces:
    default: "{dtab}"
namers:
- {{kind: io.l5d.fs, rootDir: {disco}}}
interfaces:
- {{kind: io.l5d.httpController, ip: 127.0.0.1, port: {api}}}
"""))
    await nd.start()
    rport, radmin = free_port(), free_port()
    linker = Linker(loads_linker(f"""
admin: {{ip: 127.0.0.1, port: {radmin}}}
routers:
- protocol: http
  interpreter: {{kind: io.l5d.namerd.http, dst: /$/inet/127.0.0.1/{api}, namespace: default}}
  servers: [{{port: {rport}, ip: 127.0.0.1}}]
"""))
    try:
        await linker.start()
        yield nd, f"http://127.0.0.1:{admin}", rport
    finally:
        await linker.close(0)
        await nd.close()


async def route(port: int, host: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/pong", headers={"Host": host}) as r:
            return r.status, await r.text()


async def http(method: str, url: str, body: Any = None, headers: Any = None) -> tuple[int, Any, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, data=body, headers=headers or {}) as r:
            raw = await r.read()
            if r.content_type == "application/json":
                import json
                return r.status, json.loads(raw), dict(r.headers)
            return r.status, raw.decode("utf-8", "replace"), dict(r.headers)
