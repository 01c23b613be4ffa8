"""Distributed tracing: trace context on every request, spans for the sampled ones, and
the trace telemeters (see docs/architecture.md, "Tracing").

- ``propagation``: the header formats (``l5d-ctx-trace``, B3 single and multi, W3C
  ``traceparent``/``tracestate``, ``l5d-sample``), which one wins, what is written.
- ``sampler``: Linkerd's trace-id sampler.
- ``tracer``: ``Tracer`` (per process), ``RouterTracer`` (per router), ``RequestTrace``
  (per request: the hooks the data plane calls).
- ``span``: recorded spans; ``export_queue``: bounded, batched, asynchronous export.
- telemeters: ``zipkin`` (``io.l5d.zipkin``, v2 JSON over HTTP), ``otlp``
  (``io.namerouter.otlp``), ``tracelog`` (``io.l5d.tracelog``), ``recent``
  (``io.l5d.recentRequests``, ``/requests``); ``config``: their config blocks.
- ``diagnostic``: diagnostic ``TRACE`` requests (``l5d-add-context``, ``Max-Forwards``).

Layer: below ``proxy/``; imports ``metrics.py`` only (and aiohttp, the OpenTelemetry SDK).
"""
from .propagation import TRACE_HEADERS
from .tracer import NO_TELEMETERS, RequestTrace, RouterTracer, TraceTelemeter, Tracer

__all__ = ["TRACE_HEADERS", "Tracer", "RouterTracer", "RequestTrace", "TraceTelemeter", "NO_TELEMETERS"]
