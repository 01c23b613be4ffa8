"""Helpers for tracing tests through real routers (see also ``trace_collectors.py`` and the
``zipkin_collector`` / ``otlp_receiver`` fixtures in ``tests/conftest.py``).

- ``telemetry_yaml``: the ``telemetry:`` block that points a router at the collectors.
- ``one_trace``: checks that spans (Zipkin v2 dicts or the OTLP receiver's dicts) form
  one trace whose parent links all resolve inside it, and returns them ordered from the
  root down (each span after its parent).
- ``b3_headers`` / ``l5d_trace_header``: incoming context for curl or aiohttp.
"""
from __future__ import annotations

import base64
import struct
from typing import Any, Optional


def telemetry_yaml(zipkin_url: Optional[str] = None, otlp_url: Optional[str] = None, rate: float = 1.0,
                   recent: bool = False, delay_ms: int = 20) -> str:
    out = "telemetry:\n"
    if zipkin_url:
        out += (f"- kind: io.l5d.zipkin\n  url: {zipkin_url}\n  sampleRate: {rate}\n"
                f"  scheduleDelayMs: {delay_ms}\n")
    if otlp_url:
        out += (f"- kind: io.namerouter.otlp\n  endpoint: {otlp_url}\n  sampleRate: {rate}\n"
                f"  scheduleDelayMs: {delay_ms}\n")
    if recent:
        out += f"- kind: io.l5d.recentRequests\n  sampleRate: {rate}\n  capacity: 100\n"
    return out


def _ids(span: dict[str, Any]) -> tuple[str, str, Optional[str]]:
    if "traceId" in span:  # Zipkin v2
        return span["traceId"], span["id"], span.get("parentId")
    return span["trace_id"], span["span_id"], span.get("parent_span_id") or None  # OTLP receiver


def one_trace(spans: list[dict[str, Any]], external_parent: Optional[str] = None) -> list[dict[str, Any]]:
    """Assert ``spans`` are one trace: one trace id, unique span ids, exactly one root (no
    parent, or ``external_parent``: the caller's span id when the request came with
    one) and every other parent inside the set. Returns the spans root first, each after
    its parent."""
    assert spans, "no spans"
    traces = {_ids(s)[0] for s in spans}
    assert len(traces) == 1, f"spans of {len(traces)} traces: {sorted(traces)}"
    by_id = {}
    for s in spans:
        _, sid, _ = _ids(s)
        assert sid not in by_id, f"span id {sid} twice"
        by_id[sid] = s
    roots = [s for s in spans if _ids(s)[2] in (None, external_parent)]
    assert len(roots) == 1, f"{len(roots)} roots: {roots}"
    for s in spans:
        parent = _ids(s)[2]
        assert parent in (None, external_parent) or parent in by_id, f"parent {parent} of {s} is not in the trace"
    ordered: list[dict[str, Any]] = []
    frontier = [roots[0]]
    while frontier:
        s = frontier.pop(0)
        ordered.append(s)
        sid = _ids(s)[1]
        frontier.extend(c for c in spans if _ids(c)[2] == sid)
    assert len(ordered) == len(spans), "spans unreachable from the root"
    return ordered


def b3_headers(trace_id: str = "463ac35c9f6413ad48485a3953bb6124", span_id: str = "a2fb4a1d1a96d312",
               sampled: Optional[str] = "1") -> dict[str, str]:
    h = {"X-B3-TraceId": trace_id, "X-B3-SpanId": span_id}
    if sampled is not None:
        h["X-B3-Sampled"] = sampled
    return h


def l5d_trace_header(span: int, parent: int, trace: int, flags: int = 6) -> str:
    """An ``l5d-ctx-trace`` value as Finagle writes it (flags 6: sampled)."""
    return base64.b64encode(struct.pack(">QQQQ", span, parent, trace, flags)).decode()
