"""Shared plumbing of the API simulators: an aiohttp app on a fixed loopback port that
can be stopped (like a crash: open connections are cut, blocked requests abort) and
started again on the same port, to test outages and restarts."""
from __future__ import annotations

import asyncio
from typing import Optional

from aiohttp import web

from tests.support.ports import free_port


class SimServer:
    """Base class: subclasses fill ``self.app`` routes in ``setup_routes``."""

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        self._runner: Optional[web.AppRunner] = None
        self._inflight: set[asyncio.Task] = set()
        #: Every request seen: (method, path_qs, headers) — tests assert on what clients sent.
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def setup_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @web.middleware
    async def _track(self, request: web.Request, handler):
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await handler(request)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def start(self) -> "SimServer":
        if self._runner is not None:
            return self
        app = web.Application(middlewares=[self._track])
        self.setup_routes(app)
        # handler_cancellation: a client hanging up ends its blocked request, as on a real server.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Go away abruptly: stop listening and cut every open request."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._inflight):
            task.cancel()
        self._inflight.clear()
        await runner.cleanup()

    async def restart(self, downtime: float = 0.0) -> None:
        await self.stop()
        if downtime:
            await asyncio.sleep(downtime)
        await self.start()

    async def __aenter__(self) -> "SimServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
