"""videos-api: the catalog. ``GET /videos`` lists ids, ``GET /videos/<id>`` one video.

``FLAKY=true`` makes about a third of the requests fail with 500 (a bad deploy, an
overloaded database...): the failure the router is there to absorb.
"""
from __future__ import annotations

import os
import random

from aiohttp import web

from common import host, port

CATALOG = {
    i: {"id": i, "title": title, "minutes": minutes}
    for i, (title, minutes) in enumerate([
        ("Dtabs in five minutes", 5), ("Retry budgets explained", 12), ("Failure accrual", 9),
        ("Naming is routing", 7), ("namerd in production", 21), ("Canaries with weights", 8),
        ("The p2c balancer", 6), ("Deadlines across hops", 11), ("ZooKeeper serversets", 14),
        ("Consul and blocking queries", 10), ("Kubernetes endpoints", 13), ("Linker-to-linker", 16),
    ], start=1)
}

FLAKY = os.environ.get("FLAKY", "").lower() in ("1", "true", "yes")
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0.3333"))


@web.middleware
async def flaky(request: web.Request, handler):
    if FLAKY and random.random() < FAIL_RATE:
        return web.Response(status=500, text="videos-api: simulated failure (FLAKY=true)\n")
    return await handler(request)


async def list_videos(request: web.Request) -> web.Response:
    return web.json_response(sorted(CATALOG))


async def get_video(request: web.Request) -> web.Response:
    try:
        v = CATALOG[int(request.match_info["id"])]
    except (KeyError, ValueError):
        return web.json_response({"error": f"no video {request.match_info['id']!r}"}, status=404)
    return web.json_response(v)


def app() -> web.Application:
    a = web.Application(middlewares=[flaky])
    a.add_routes([web.get("/videos", list_videos), web.get("/videos/{id}", get_video)])
    return a


if __name__ == "__main__":
    web.run_app(app(), host=host(), port=port(7003), print=None)
