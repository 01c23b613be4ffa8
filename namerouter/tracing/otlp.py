"""``io.namerouter.otlp``: spans to an OpenTelemetry collector over OTLP/HTTP (protobuf).

The encoding and the HTTP transport are the OpenTelemetry SDK's: each recorded span
becomes an ``opentelemetry.sdk.trace.ReadableSpan`` (our ids, timestamps, kind,
attributes, events and status, with the caller's span as remote parent) and a batch goes
to ``OTLPSpanExporter.export`` — the call the SDK's own batch processor makes. We build the
ReadableSpans ourselves instead of going through the SDK's tracer because the ids are
fixed by the trace context we propagate, and the SDK's tracer would draw its own.

``export`` blocks (``requests``), so it runs in a worker thread; at most one export is in
flight, so a hung collector holds one batch, and the bounded queue in front
(``export_queue.SpanQueue``) drops and counts the rest.

Resource: ``service.name`` is ``serviceName`` or, when unset, the router's label (one
resource per router, as Zipkin's ``localEndpoint.serviceName``), plus
``resourceAttributes``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Mapping, Optional

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..metrics import MetricsRegistry
from .export_queue import SpanQueue
from .span import CLIENT, Span, TraceRecord
from .tracer import DECIDES, TraceTelemeter

_SCOPE = InstrumentationScope("namerouter")
#: The SDK exporter logs every failed batch; we keep its words for our own (rate-limited)
#: log line and metrics instead of letting a dead collector flood the log.
_EXPORTER_LOGGER = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")


class _KeepLastMessage(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.last: Optional[str] = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.last = record.getMessage()
            return False
        return True

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _attributes(span: Span) -> dict[str, Any]:
    """Our tags (Linkerd's keys) plus the OpenTelemetry semantic-convention names."""
    attrs: dict[str, Any] = dict(span.tags)
    method = span.tags.get("http.req.method")
    if method:
        attrs["http.request.method"] = method
    path = span.tags.get("http.path")
    if path:
        attrs["url.path"] = path
    if span.status is not None:
        attrs["http.response.status_code"] = span.status
    if span.remote is not None and span.remote.host:
        if span.kind == CLIENT:
            attrs["server.address"] = span.remote.host
            if span.remote.port:
                attrs["server.port"] = span.remote.port
        else:
            attrs["client.address"] = span.remote.host
            if span.remote.port:
                attrs["client.port"] = span.remote.port
        attrs["network.peer.address"] = span.remote.host
        if span.remote.port:
            attrs["network.peer.port"] = span.remote.port
    return attrs


def to_readable(span: Span, resource: Resource) -> ReadableSpan:
    trace_id = (span.trace_hi << 64) | span.trace_id
    ctx = SpanContext(trace_id, span.id, is_remote=False, trace_flags=_SAMPLED)
    parent = None
    if span.parent_id is not None:
        parent = SpanContext(trace_id, span.parent_id, is_remote=True, trace_flags=_SAMPLED)
    start_ns = span.timestamp_us * 1000
    end_ns = start_ns + (span.duration_us or 1) * 1000
    status = Status(StatusCode.ERROR, span.error) if span.error is not None else Status(StatusCode.UNSET)
    return ReadableSpan(
        name=span.name,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes=_attributes(span),
        events=[Event(v, None, ts * 1000) for ts, v in span.annotations],
        kind=SpanKind.CLIENT if span.kind == CLIENT else SpanKind.SERVER,
        status=status,
        start_time=start_ns,
        end_time=end_ns,
        instrumentation_scope=_SCOPE,
    )


class OtlpTelemeter(TraceTelemeter):
    kind = "io.namerouter.otlp"
    mode = DECIDES

    def __init__(self, endpoint: str, sample_rate: float, metrics: Optional[MetricsRegistry] = None, *,
                 service_name: Optional[str] = None, resource_attributes: Optional[Mapping[str, str]] = None,
                 headers: Optional[Mapping[str, str]] = None, compression: str = "none",
                 scope: str = "telemetry/io.namerouter.otlp", max_queue: int = 2048, max_batch: int = 512,
                 delay_s: float = 1.0, timeout_s: float = 10.0) -> None:
        super().__init__(sample_rate)
        self.endpoint = endpoint
        self.service_name = service_name
        self.resource_attributes = dict(resource_attributes or {})
        self._resources: dict[str, Resource] = {}
        self._exporter = OTLPSpanExporter(
            endpoint=endpoint, headers=dict(headers or {}), timeout=timeout_s,
            compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression)
        self.queue = SpanQueue(f"{self.kind} → {endpoint}", self._export, metrics, scope, max_queue=max_queue,
                               max_batch=max_batch, delay_s=delay_s, timeout_s=timeout_s)
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._inflight: Optional[concurrent.futures.Future[SpanExportResult]] = None
        self._messages = _KeepLastMessage()

    def resource(self, label: str) -> Resource:
        name = self.service_name or label
        r = self._resources.get(name)
        if r is None:
            r = self._resources[name] = Resource.create({**self.resource_attributes, "service.name": name})
        return r

    def record(self, rec: TraceRecord) -> None:
        # The resource goes with the spans: conversion happens in the export thread.
        self.queue.offer([(rec.router, s) for s in rec.spans()])

    async def start(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-export")
        _EXPORTER_LOGGER.addFilter(self._messages)
        self.queue.start()

    def _export_sync(self, batch: list[tuple[str, Span]]) -> SpanExportResult:
        return self._exporter.export([to_readable(s, self.resource(label)) for label, s in batch])

    async def _export(self, batch: list[tuple[str, Span]]) -> None:
        assert self._pool is not None
        if self._inflight is not None and not self._inflight.done():
            raise RuntimeError("the previous export is still running (collector too slow)")
        fut = self._pool.submit(self._export_sync, batch)
        self._inflight = fut
        result = await asyncio.wrap_future(fut)
        if result is not SpanExportResult.SUCCESS:
            why, self._messages.last = self._messages.last, None
            raise RuntimeError(why or f"OTLP export to {self.endpoint} failed")

    async def close(self) -> None:
        try:
            await self.queue.close()
        finally:
            if self._pool is not None:
                pool = self._pool
                # shutdown() may block on a hung request: let a thread wait for it
                await asyncio.get_running_loop().run_in_executor(None, self._exporter.shutdown)
                pool.shutdown(wait=False)
            _EXPORTER_LOGGER.removeFilter(self._messages)
