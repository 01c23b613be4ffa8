"""``io.l5d.zipkin`` (and ``io.zipkin.http``): spans as Zipkin v2 JSON, POSTed to a Zipkin
HTTP collector.

Linkerd's telemeter sent Thrift over Scribe (port 9410); we send the v2 JSON model
(``POST /api/v2/spans``, ``application/json``), which every Zipkin server and most
collectors (OpenTelemetry Collector's zipkin receiver, Jaeger) accept on port 9411. The
collector URL is ``url`` or ``http://<host>:<port>/api/v2/spans``. ``io.zipkin.http`` (the
linkerd-zipkin plugin's kind) is the same export with that plugin's keys: gzip bodies and
a ``Host`` header of its choice.

Encoding runs in a worker thread and the POST on the event loop (aiohttp), both off the
request path; batching, bounds and drop counts are ``export_queue.SpanQueue``'s.
"""
from __future__ import annotations

import asyncio
import gzip as gzip_module
import ipaddress
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Optional

import aiohttp

from ..metrics import MetricsRegistry
from .export_queue import SpanQueue
from .span import Endpoint, Span, TraceRecord
from .tracer import DECIDES, TraceTelemeter

log = logging.getLogger("namerouter.tracing")


@lru_cache(maxsize=4096)
def _ip_field(host: str) -> Optional[tuple[str, str]]:
    """("ipv4" | "ipv6", text) for an IP literal, None for a host name (Zipkin's
    endpoint takes addresses only)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # Zipkin: prefer ipv4 for mapped addresses
        return "ipv4", str(ip.ipv4_mapped)
    return ("ipv4" if ip.version == 4 else "ipv6"), str(ip)


def endpoint_json(ep: Optional[Endpoint]) -> Optional[dict[str, Any]]:
    if ep is None:
        return None
    out: dict[str, Any] = {}
    if ep.service:
        out["serviceName"] = ep.service
    if ep.host:
        ip = _ip_field(ep.host)
        if ip is not None:
            out[ip[0]] = ip[1]
    if ep.port and 0 < ep.port < 65536:
        out["port"] = ep.port
    return out or None


def span_json(span: Span) -> dict[str, Any]:
    """A span in Zipkin's v2 model (zipkin2-api.yaml ``Span``)."""
    out: dict[str, Any] = {
        "traceId": span.trace_hex(),
        "id": f"{span.id:016x}",
        "kind": span.kind,
        "name": span.name,
        "timestamp": span.timestamp_us,
        "duration": span.duration_us if span.duration_us is not None else 1,
    }
    if span.parent_id is not None:
        out["parentId"] = f"{span.parent_id:016x}"
    local = endpoint_json(span.local)
    if local is not None:
        out["localEndpoint"] = local
    remote = endpoint_json(span.remote)
    if remote is not None:
        out["remoteEndpoint"] = remote
    if span.annotations:
        out["annotations"] = [{"timestamp": ts, "value": v} for ts, v in span.annotations]
    if span.tags:
        out["tags"] = dict(span.tags)
    if span.debug:
        out["debug"] = True
    return out


def encode_spans(spans: list[Span], gzip: bool = False) -> bytes:
    body = json.dumps([span_json(s) for s in spans], separators=(",", ":")).encode()
    return gzip_module.compress(body, 5) if gzip else body


class ZipkinTelemeter(TraceTelemeter):
    kind = "io.l5d.zipkin"
    mode = DECIDES

    def __init__(self, url: str, sample_rate: float, metrics: Optional[MetricsRegistry] = None, *,
                 scope: str = "telemetry/io.l5d.zipkin", max_queue: int = 2048, max_batch: int = 512,
                 delay_s: float = 1.0, timeout_s: float = 10.0, host_header: Optional[str] = None,
                 gzip: bool = False, kind: str = "io.l5d.zipkin") -> None:
        super().__init__(sample_rate)
        self.kind = kind
        self.url = url
        self.gzip = gzip
        self._headers = {"Content-Type": "application/json"}
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        if host_header:
            self._headers["Host"] = host_header
        self.queue = SpanQueue(f"{self.kind} → {url}", self._export, metrics, scope, max_queue=max_queue,
                               max_batch=max_batch, delay_s=delay_s, timeout_s=timeout_s)
        self._session: Optional[aiohttp.ClientSession] = None
        self._pool: Optional[ThreadPoolExecutor] = None

    def record(self, rec: TraceRecord) -> None:
        self.queue.offer(rec.spans())

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zipkin-encode")
        self._session = aiohttp.ClientSession(headers=self._headers)
        self.queue.start()

    async def _export(self, batch: list[Span]) -> None:
        assert self._session is not None and self._pool is not None
        body = await asyncio.get_running_loop().run_in_executor(self._pool, encode_spans, batch, self.gzip)
        async with self._session.post(self.url, data=body) as rsp:
            if rsp.status >= 300:
                text = (await rsp.content.read(200)).decode("utf-8", "replace").strip()
                raise RuntimeError(f"collector answered {rsp.status}" + (f": {text}" if text else ""))

    async def close(self) -> None:
        try:
            await self.queue.close()
        finally:
            if self._session is not None:
                await self._session.close()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
