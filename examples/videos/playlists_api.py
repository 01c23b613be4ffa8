"""playlists-api: ``GET /playlists/<name>`` returns the playlist with each video's details,
fetched from videos-api (one call per video, concurrently). If any call fails the whole
playlist fails with 502 — the way real fan-out code often behaves, which is why a flaky
dependency breaks pages so easily.
"""
from __future__ import annotations

import asyncio
import os

from aiohttp import web

from common import UpstreamError, calling_app, get_json, host, port

VIDEOS_API = os.environ.get("VIDEOS_API_URL", "http://127.0.0.1:7003").rstrip("/")

PLAYLISTS = {
    "featured": [1, 2, 3, 4, 5, 6],
    "operations": [5, 8, 9, 10, 11, 12],
}


async def get_playlist(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    ids = PLAYLISTS.get(name)
    if ids is None:
        return web.json_response({"error": f"no playlist {name!r}"}, status=404)
    s = request.app["session"]
    try:
        videos = await asyncio.gather(*(get_json(s, f"{VIDEOS_API}/videos/{i}") for i in ids))
    except UpstreamError as e:
        return web.json_response({"error": str(e)}, status=502)
    return web.json_response({"name": name, "videos": videos})


def app() -> web.Application:
    return calling_app([web.get("/playlists/{name}", get_playlist)])


if __name__ == "__main__":
    web.run_app(app(), host=host(), port=port(7002), print=None)
