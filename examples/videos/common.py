"""What the three video apps share: reading their settings and calling each other.

An app names the services it calls by URL from its environment (``VIDEOS_API_URL``,
``PLAYLISTS_API_URL``). Pointed straight at an instance (``http://127.0.0.1:7003``) it
calls it directly. Pointed at a service name (``http://videos-api``) with ``http_proxy``
set to the router (``http://127.0.0.1:4140``), every call goes through the router, which
names it ``/svc/videos-api`` from the Host and applies its retries and failure accrual —
no code change in the app.
"""
from __future__ import annotations

import os
from typing import Any

import aiohttp
from aiohttp import web


def port(default: int) -> int:
    return int(os.environ.get("PORT", default))


def host() -> str:
    """Listen address: loopback on a laptop, ``HOST=0.0.0.0`` in a pod (examples/kubernetes)."""
    return os.environ.get("HOST", "127.0.0.1")


def session() -> aiohttp.ClientSession:
    # trust_env: honour http_proxy / no_proxy, as Linkerd-1 apps did with their router
    return aiohttp.ClientSession(trust_env=True, timeout=aiohttp.ClientTimeout(total=10))


async def _open_session(a: web.Application) -> None:
    a["session"] = session()


async def _close_session(a: web.Application) -> None:
    await a["session"].close()


def calling_app(routes: list[web.RouteDef]) -> web.Application:
    """An app serving ``routes`` whose handlers call other services through
    ``request.app["session"]`` (opened when the app starts, closed when it stops)."""
    a = web.Application()
    a.add_routes(routes)
    a.on_startup.append(_open_session)
    a.on_cleanup.append(_close_session)
    return a


class UpstreamError(Exception):
    def __init__(self, url: str, status: int, detail: str) -> None:
        super().__init__(f"{url} answered {status}: {detail}")
        self.status = status


async def get_json(s: aiohttp.ClientSession, url: str) -> Any:
    """GET a JSON document; any non-200 is an UpstreamError (the apps do not retry:
    that is the router's job)."""
    async with s.get(url) as r:
        if r.status != 200:
            raise UpstreamError(url, r.status, (await r.text())[:200].strip())
        return await r.json()
