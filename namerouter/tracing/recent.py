"""``io.l5d.recentRequests``: the last ``capacity`` sampled requests, on the admin server.

``/requests`` is an HTML table (Linkerd's columns — timestamp, source, server, router,
logical name, concrete name, destination — plus status, latency, attempts and the trace
id), ``/requests.json`` the same rows as JSON, newest first. Names link to the
delegator as Linkerd's page did (``delegator?router=<label>#<path>``).

Sampling is this telemeter's own ``sampleRate`` on the trace id only (Linkerd's
behaviour: it neither follows nor makes the trace's sampling decision). Memory is bounded
by ``capacity`` (at most 10,000) rows of strings clipped to 512 characters.
"""
from __future__ import annotations

import html
import json
import time
from collections import deque
from typing import Any, Optional
from urllib.parse import quote

from aiohttp import web

from .span import Endpoint, TraceRecord
from .tracer import OWN, TraceTelemeter

_MAX_FIELD = 512


def _clip(s: str) -> str:
    return s if len(s) <= _MAX_FIELD else s[:_MAX_FIELD - 3] + "..."


def _addr(ep: Optional[Endpoint]) -> str:
    if ep is None or not ep.host:
        return ""
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    return f"{host}:{ep.port}" if ep.port else host


class RecentRequestsTelemeter(TraceTelemeter):
    kind = "io.l5d.recentRequests"
    mode = OWN

    def __init__(self, sample_rate: float, capacity: int = 10) -> None:
        super().__init__(sample_rate)
        self.capacity = capacity
        self.rows: deque[dict[str, Any]] = deque(maxlen=capacity)

    def record(self, rec: TraceRecord) -> None:
        s = rec.server
        last = rec.attempts[-1] if rec.attempts else None
        self.rows.appendleft({
            "timestamp": s.timestamp_us // 1000,
            "source": _addr(s.remote),
            "server": _addr(s.local),
            "router": _clip(rec.router),
            "logicalName": _clip(s.tags.get("service", "")),
            "concreteName": _clip(last.tags.get("client", "")) if last is not None else "",
            "destination": _clip(_addr(last.remote)) if last is not None else "",
            "method": s.tags.get("http.req.method", ""),
            "uri": _clip(s.tags.get("http.uri", "")),
            "status": s.status,
            "latencyMs": round((s.duration_us or 0) / 1000.0, 3),
            "attempts": len(rec.attempts),
            "error": s.error,
            "traceId": s.trace_hex(),
        })

    def admin_routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/requests", self._html), ("GET", "/requests.json", self._json)]

    async def _json(self, request: web.Request) -> web.Response:
        pretty = request.query.get("pretty") is not None
        text = json.dumps(list(self.rows), indent=2 if pretty else None)
        return web.Response(text=text + "\n", content_type="application/json")

    async def _html(self, _: web.Request) -> web.Response:
        return web.Response(text=render_html(list(self.rows), self.capacity, self.sampler.rate),
                            content_type="text/html", charset="utf-8")


_COLUMNS = ("Timestamp", "Source", "Server", "Router", "Logical Name", "Concrete Name", "Destination",
            "Request", "Status", "Latency (ms)", "Attempts", "Trace")


def _delegator_link(router: str, path: str) -> str:
    if not path:
        return ""
    href = f"delegator?router={quote(router, safe='')}#{quote(path, safe='/')}"
    return f'<a href="{html.escape(href)}">{html.escape(path)}</a>'


def render_html(rows: list[dict[str, Any]], capacity: int, rate: float) -> str:
    """The ``/requests`` page: plain HTML, everything from a request escaped."""
    e = html.escape
    body = []
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["timestamp"] / 1000)) + \
            f".{r['timestamp'] % 1000:03d}Z"
        status = "" if r["status"] is None else str(r["status"])
        cls = ' class="failed"' if r["error"] else ""
        cells = [
            e(when), e(r["source"]), e(r["server"]), e(r["router"]),
            _delegator_link(r["router"], r["logicalName"]), _delegator_link(r["router"], r["concreteName"]),
            e(r["destination"]), e(f"{r['method']} {r['uri']}".strip()),
            e(status) + (f' <span class="err">{e(r["error"])}</span>' if r["error"] else ""),
            f"{r['latencyMs']:.3f}", str(r["attempts"]), f"<code>{e(r['traceId'])}</code>",
        ]
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    empty = "" if rows else f'<tr><td colspan="{len(_COLUMNS)}">no requests recorded yet</td></tr>'
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Recent Requests</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}
th {{ background: #f0f0f0; }}
tr.failed td {{ background: #fde8e8; }}
.err {{ color: #a00; }}
</style></head>
<body>
<h1 class="title">Recent Requests</h1>
<p>The last {capacity} sampled requests (sample rate {rate:g}), newest first.
<a href="requests.json">JSON</a></p>
<table class="table">
<thead><tr>{head}</tr></thead>
<tbody>{"".join(body)}{empty}</tbody>
</table>
</body></html>
"""
