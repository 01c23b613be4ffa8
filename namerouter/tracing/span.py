"""Recorded spans: what a sampled request leaves behind for the telemeters.

A span is made only for a request some telemeter samples (see ``tracer.py``); unsampled
requests allocate none. Fields follow Zipkin's v2 model (kind, timestamps in epoch
microseconds, local and remote endpoint, string tags, timed annotations); each exporter
converts from here (``zipkin.py``: v2 JSON, ``otlp.py``: OpenTelemetry spans).

Tag keys are Linkerd's where Linkerd has them (``router.label``, ``service``, ``client``,
``residual``, ``dtab.base``, ``dtab.local``, ``http.uri``, ``http.req.method``,
``http.rsp.status``, ``clnt/namer.path``, ``clnt/retry_attempt``, ``l5d.success``) plus
Zipkin's conventional ``http.method``, ``http.path``, ``http.status_code`` and ``error``
that Zipkin's UI understands. Annotations ``l5d.retryable`` / ``l5d.failure`` (Linkerd's
response classification) and ``finagle.retry`` are timed events.
"""
from __future__ import annotations

import time
from typing import Optional

SERVER = "SERVER"
CLIENT = "CLIENT"

#: Longest tag value kept (a URI, a dtab): a span's size stays bounded whatever the
#: client sent.
MAX_TAG = 1024


def _clip(v: str) -> str:
    return v if len(v) <= MAX_TAG else v[:MAX_TAG - 3] + "..."


class Endpoint:
    """``serviceName`` and an address (``host`` may be an IP literal or a host name;
    ``port`` 0 = unknown)."""

    __slots__ = ("service", "host", "port")

    def __init__(self, service: Optional[str], host: Optional[str], port: int = 0) -> None:
        self.service = service
        self.host = host
        self.port = port

    def __repr__(self) -> str:
        return f"Endpoint({self.service!r}, {self.host!r}, {self.port})"


class Span:
    __slots__ = ("trace_id", "trace_hi", "id", "parent_id", "kind", "name", "timestamp_us",
                 "_start_ns", "duration_us", "local", "remote", "tags", "annotations", "debug",
                 "error", "status")

    def __init__(self, trace_id: int, trace_hi: int, span_id: int, parent_id: Optional[int], kind: str,
                 name: str, local: Endpoint, remote: Optional[Endpoint], debug: bool) -> None:
        self.trace_id = trace_id
        self.trace_hi = trace_hi
        self.id = span_id
        self.parent_id = parent_id
        self.kind = kind
        self.name = name
        self.timestamp_us = time.time_ns() // 1000
        self._start_ns = time.monotonic_ns()
        self.duration_us: Optional[int] = None
        self.local = local
        self.remote = remote
        self.tags: dict[str, str] = {}
        #: (epoch microseconds, value)
        self.annotations: list[tuple[int, str]] = []
        self.debug = debug
        #: failure description when the classifier says the response failed
        self.error: Optional[str] = None
        self.status: Optional[int] = None

    def tag(self, key: str, value: object) -> None:
        self.tags[key] = _clip(value if isinstance(value, str) else str(value))

    def annotate(self, value: str) -> None:
        self.annotations.append((time.time_ns() // 1000, value))

    def end(self, status: Optional[int], failure: Optional[str], retryable: bool) -> None:
        """Close the span with the response status (None: no response) and Linkerd's
        classification: ``failure`` None = success, else why (→ ``error`` tag and an
        ``l5d.retryable`` or ``l5d.failure`` annotation)."""
        if self.duration_us is not None:
            return
        if status is not None:
            self.status = status
            s = str(status)
            self.tags["http.rsp.status"] = s
            self.tags["http.status_code"] = s
        if failure is None:
            self.tags["l5d.success"] = "1.0"
        else:
            self.error = _clip(failure)
            self.tags["error"] = self.error
            self.annotate("l5d.retryable" if retryable else "l5d.failure")
        # Zipkin: "durations of less than one are rounded up"
        self.duration_us = max(1, (time.monotonic_ns() - self._start_ns) // 1000)

    @property
    def finished(self) -> bool:
        return self.duration_us is not None

    def trace_hex(self) -> str:
        return f"{self.trace_hi:016x}{self.trace_id:016x}" if self.trace_hi else f"{self.trace_id:016x}"

    def __repr__(self) -> str:
        return (f"Span({self.kind} {self.name!r} trace={self.trace_hex()} id={self.id:016x} "
                f"parent={self.parent_id and f'{self.parent_id:016x}'})")


class TraceRecord:
    """One request's spans, handed to each telemeter that sampled it: the server span
    and one client span per attempt (requeues and retries included)."""

    __slots__ = ("server", "attempts", "router")

    def __init__(self, router: str, server: Span, attempts: list[Span]) -> None:
        self.router = router
        self.server = server
        self.attempts = attempts

    def spans(self) -> list[Span]:
        return [self.server, *self.attempts]
