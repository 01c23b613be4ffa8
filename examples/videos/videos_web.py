"""videos-web: the page. ``GET /`` renders the featured playlist as HTML, from
playlists-api; if that fails the page says so and answers 502.
"""
from __future__ import annotations

import html
import os

from aiohttp import web

from common import UpstreamError, calling_app, get_json, host, port

PLAYLISTS_API = os.environ.get("PLAYLISTS_API_URL", "http://127.0.0.1:7002").rstrip("/")


async def index(request: web.Request) -> web.Response:
    name = request.query.get("playlist", "featured")
    try:
        pl = await get_json(request.app["session"], f"{PLAYLISTS_API}/playlists/{name}")
    except UpstreamError as e:
        body = f"<h1>Something went wrong</h1><p>{html.escape(str(e))}</p>"
        return web.Response(status=502, text=f"<html><body>{body}</body></html>", content_type="text/html")
    items = "".join(f"<li>{html.escape(v['title'])} ({v['minutes']} min)</li>" for v in pl["videos"])
    body = f"<h1>Videos: {html.escape(pl['name'])}</h1><ul>{items}</ul>"
    return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")


def app() -> web.Application:
    return calling_app([web.get("/", index)])


if __name__ == "__main__":
    web.run_app(app(), host=host(), port=port(7001), print=None)
