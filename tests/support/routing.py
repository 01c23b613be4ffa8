"""Client-side helpers for end-to-end tests that drive traffic through a real router."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp

from .ports import free_port


class Traffic:
    """Requests in a loop on keep-alive connections until stopped; records every status."""

    def __init__(self, port: int, host: str = "web", concurrency: int = 4, path: str = "/pong",
                 pause: float = 0.0) -> None:
        self.url = f"http://127.0.0.1:{port}{path}"
        #: seconds between two requests of one loop (0: as fast as the router answers)
        self.pause = pause
        self.host = host
        self.concurrency = concurrency
        self.statuses: list[int] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def _loop(self) -> None:
        async with aiohttp.ClientSession() as s:
            while not self._stop.is_set():
                async with s.get(self.url, headers={"Host": self.host}) as r:
                    await r.read()
                    self.statuses.append(r.status)
                if self.pause:
                    await asyncio.sleep(self.pause)

    def start(self) -> "Traffic":
        self._tasks = [asyncio.ensure_future(self._loop()) for _ in range(self.concurrency)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def route_status(port: int, host: str = "web") -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/pong", headers={"Host": host}) as r:
            return r.status, await r.text()


async def until_routed(port: int, timeout_s: float, host: str = "web") -> str:
    """Ask the router until it answers 200 (a namer's backend appeared); the body."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await route_status(port, host)
        if status == 200:
            return body
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


async def until(pred, timeout_s: float, what: str):
    """Await ``pred()`` every 50 ms until it returns something true (returned), failing
    with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = await pred()
        if v:
            return v
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def reaches(port: int, backend, host: str = "web") -> bool:
    """One request through the router: answered 200 by ``backend`` (a tests Backend)?"""
    n = len(backend.requests)
    status, _ = await route_status(port, host)
    return status == 200 and len(backend.requests) > n


@asynccontextmanager
async def running_router(dtab: str, extra: str = "", namers: str = "", router_extra: str = "",
                         admin_extra: str = "") -> AsyncIterator[tuple[Any, str, int]]:
    """A real linker (router ``outgoing`` on one server, admin server) from ``dtab`` (one
    dentry per line), ``extra`` top-level YAML (e.g. ``telemetry:``), ``namers`` YAML and
    ``router_extra`` keys of the router (two-space indented), ``admin_extra`` keys of the
    admin block (flow style, e.g. ``", security: {...}"``). Yields (linker, admin base URL,
    router port)."""
    from namerouter.config.schema import loads_linker
    from namerouter.linker import Linker

    admin, port = free_port(), free_port()
    lines = "".join(f"    {line.strip()}\n" for line in dtab.strip().splitlines())
    linker = Linker(loads_linker(f"""
admin: {{ip: 127.0.0.1, port: {admin}{admin_extra}}}
{namers}
routers:
- protocol: http
  label: outgoing
  dtab: |
{lines}{router_extra}
  servers:
  - {{port: {port}, ip: 127.0.0.1}}
{extra}
"""))
    await linker.start()
    try:
        yield linker, f"http://127.0.0.1:{admin}", port
    finally:
        await linker.close(0)


class RouterProcess:
    """``namerouter run config.yaml`` as a user runs it, with curl as the client."""

    def __init__(self, config_path: str, log_path: str, cwd: str) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.cwd = cwd
        self.proc: "asyncio.subprocess.Process | None" = None
        self._log = None

    async def __aenter__(self) -> "RouterProcess":
        import sys

        self._log = open(self.log_path, "wb")
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "namerouter", "run", self.config_path,
                                                         cwd=self.cwd, stdout=self._log, stderr=self._log)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._log is not None:
            self._log.close()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    @staticmethod
    async def curl(*args: str) -> tuple[int, str]:
        p = await asyncio.create_subprocess_exec("curl", "-sS", "-m", "5", *args, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
        out, err = await p.communicate()
        return p.returncode or 0, out.decode() + err.decode()

    async def until_body(self, port: int, host: str, body: str, timeout: float = 20.0) -> None:
        """curl through the router until it answers ``body``."""
        deadline = time.monotonic() + timeout
        while True:
            rc, out = await self.curl("-H", f"Host: {host}", f"http://127.0.0.1:{port}/")
            if rc == 0 and out == body:
                return
            assert self.proc is not None and self.proc.returncode is None, self.log()[-2000:]
            assert time.monotonic() < deadline, (out, self.log()[-2000:])
            await asyncio.sleep(0.1)
