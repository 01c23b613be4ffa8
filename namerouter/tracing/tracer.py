"""The tracer: trace context for every request, spans for the sampled ones.

Three levels, each made once at its own scale:

- :class:`Tracer` — one per process (``Linker.tracer``, ``Runtime.tracer``): the
  configured trace telemeters, started and closed with the linker.
- :class:`RouterTracer` — one per router (``tracer.router(label, …)``): the router's
  label, base dtab and the order in which it reads trace headers.
- :class:`RequestTrace` — one per request (``router_tracer.begin(…)``): the ids of the
  request's server span and of each client attempt, the headers that carry them to
  the next hop, and — only when some telemeter samples the request — the spans.

**Sampling** follows Linkerd/Finagle. An incoming decision (``x-b3-sampled``, the
``l5d-ctx-trace`` flags, the W3C sampled flag, debug) is kept; ``l5d-sample: <rate>``
replaces it with Linkerd's sampler at that rate. When the caller deferred, the telemeters
that *decide* (``io.l5d.zipkin``, ``io.namerouter.otlp``) decide with the highest of their
``sampleRate``\\ s, and the decision travels downstream. ``io.l5d.tracelog`` follows the
decision when there is one and uses its own rate otherwise; ``io.l5d.recentRequests`` only
ever uses its own rate (both as in Linkerd). A request no telemeter wants costs the ids and
the header block, nothing else: ``trace.recording`` is False and every hook returns at once.

**Span ids** (Linkerd's router, not shared spans): the server span is a new span whose
parent is the caller's span (a new trace when there is none; its span id is then the trace
id, as in Finagle), and each attempt to a backend is a new client span, child of the server
span, whose id is what the next hop receives.
"""
from __future__ import annotations

import logging
from random import getrandbits
from typing import Any, Iterable, Optional, Sequence

from .propagation import (
    B3_MULTI, B3_SINGLE, DEBUG, DEFAULT_ORDER, L5D, PROPAGATOR_ORDERS, PROPAGATOR_WRITES, W3C, encode_b3_multi,
    encode_b3_single, encode_l5d, encode_traceparent, extract, trace_id_hex,
)
from .sampler import Sampler
from .span import CLIENT, SERVER, Endpoint, Span, TraceRecord

log = logging.getLogger("namerouter.tracing")

#: How a telemeter takes part in the sampling decision (see the module docstring).
DECIDES = "decides"
FOLLOWS = "follows"
OWN = "own"

Addr = Optional[tuple[str, int]]


class TraceTelemeter:
    """Base of the trace telemeters. ``record`` runs on the event loop for every sampled
    request and must be cheap (queue the record; encode and send elsewhere)."""

    kind = "?"
    mode = DECIDES

    def __init__(self, sample_rate: float) -> None:
        self.sampler = Sampler(sample_rate)

    def wants(self, sampled: Optional[bool], trace_id: int) -> bool:
        if self.mode == DECIDES:
            return sampled is True
        if self.mode == FOLLOWS and sampled is not None:
            return sampled
        return self.sampler(trace_id)

    def record(self, rec: TraceRecord) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def admin_routes(self) -> list[tuple[str, str, Any]]:
        return []


class Tracer:
    """The process's trace telemeters; ``router(...)`` gives each router its tracer."""

    def __init__(self, telemeters: Sequence[TraceTelemeter] = ()) -> None:
        self.telemeters = list(telemeters)
        deciders = [t.sampler.rate for t in self.telemeters if t.mode == DECIDES]
        #: the sampler of the telemeters that decide for deferred traces (None: nobody decides)
        self.decider: Optional[Sampler] = Sampler(max(deciders)) if deciders else None
        #: every telemeter only records sampled traces: an unsampled request needs no
        #: look at them (the common case at a low sample rate)
        self.only_deciders = bool(self.telemeters) and len(deciders) == len(self.telemeters)

    @property
    def enabled(self) -> bool:
        return bool(self.telemeters)

    def router(self, label: str, dtab: str = "", propagator: str = "io.l5d.default") -> "RouterTracer":
        """``propagator``: the router's ``tracePropagator`` kind; ``io.l5d.zipkin`` reads B3
        first and writes the B3 headers on every outgoing request (as Linkerd's does)."""
        return RouterTracer(self, label, dtab, PROPAGATOR_ORDERS.get(propagator, DEFAULT_ORDER),
                            PROPAGATOR_WRITES.get(propagator, 0))

    def select(self, sampled: Optional[bool], trace_id: int) -> Optional[list[TraceTelemeter]]:
        """The telemeters that record this trace, or None."""
        out = None
        for t in self.telemeters:
            if t.wants(sampled, trace_id):
                if out is None:
                    out = [t]
                else:
                    out.append(t)
        return out

    def admin_routes(self) -> list[tuple[str, str, Any]]:
        return [r for t in self.telemeters for r in t.admin_routes()]

    async def start(self) -> None:
        for t in self.telemeters:
            await t.start()

    async def close(self) -> None:
        for t in self.telemeters:
            try:
                await t.close()
            except Exception:
                log.exception("error while closing telemeter %s", t.kind)


#: A tracer with no telemeters: contexts and headers, never spans.
NO_TELEMETERS = Tracer()


def _text(v: Any) -> str:
    return v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v)


def _path_of(uri: str) -> str:
    if uri.startswith(("http://", "https://")):  # absolute-form (proxy requests)
        slash = uri.find("/", uri.find("//") + 2)
        uri = uri[slash:] if slash >= 0 else "/"
    q = uri.find("?")
    return uri if q < 0 else uri[:q]


class RouterTracer:
    __slots__ = ("tracer", "label", "dtab", "order", "writes")

    def __init__(self, tracer: Tracer, label: str, dtab: str, order: tuple[int, ...], writes: int = 0) -> None:
        self.tracer = tracer
        self.label = label
        self.dtab = dtab
        self.order = order
        #: formats written on every outgoing request besides those the request came with
        self.writes = writes

    def begin(self, headers: Optional[Iterable[tuple[bytes, bytes]]] = None, *, remote: Addr = None,
              local: Addr = None, method: Any = b"", uri: Any = b"", host: Any = None) -> "RequestTrace":
        """Start a request's trace from its trace headers (``(lower-case name, value)``
        pairs of :data:`~.propagation.TRACE_HEADERS`; None or empty when it had none).
        ``remote``/``local``: the client's and our server's (ip, port); ``method``, ``uri``,
        ``host``: the request line and Host (bytes or str). Those are only read when the
        request is sampled."""
        return RequestTrace(self, headers, remote, local, method, uri, host)


class RequestTrace:
    """One request's trace. The data plane calls, in order:

    ``begin`` (above) → ``routed(service, dtab_local)`` once the name is known →
    for each attempt ``attempt(bound_id, residual, host, port, retry=…)`` (returns the
    header lines to put on that outgoing request) and ``attempt_done(status, …)`` →
    ``finish(status, …)`` exactly once, whatever happened. ``reqid()`` is the
    ``l5d-reqid`` value. All hooks may be called when ``recording`` is False (never
    sampled, or already finished); they do nothing then, so the caller may skip them with
    ``if trace.recording``.
    """

    __slots__ = ("_rt", "trace_id", "trace_hi", "span_id", "parent_id", "sampled", "flags", "formats",
                 "tracestate", "wide", "recording", "span", "_sinks", "_attempt", "_attempts", "_n",
                 "_service", "_method", "_uri")

    def __init__(self, rt: RouterTracer, headers: Optional[Iterable[tuple[bytes, bytes]]], remote: Addr,
                 local: Addr, method: Any, uri: Any, host: Any) -> None:
        self._rt = rt
        sid = getrandbits(64) or 1
        self.span_id = sid
        self.tracestate: Optional[bytes] = None
        if headers:
            ex = extract(headers, rt.order)
            inc = ex.incoming
            self.formats = ex.formats | rt.writes
            self.tracestate = ex.tracestate
            if inc is not None and inc.span_id:
                self.trace_id = inc.trace_id
                self.trace_hi = inc.trace_hi
                self.parent_id: Optional[int] = inc.span_id
                self.wide = inc.wide
            else:
                self.trace_id, self.trace_hi, self.parent_id, self.wide = sid, 0, None, False
            sampled = inc.sampled if inc is not None else None
            self.flags = inc.flags if inc is not None else 0
            if ex.sample_rate is not None:  # l5d-sample overrides (Linkerd's TraceInitializer)
                sampled = Sampler(ex.sample_rate)(self.trace_id)
            if self.flags & DEBUG:
                sampled = True
        else:
            self.trace_id, self.trace_hi, self.parent_id, self.wide = sid, 0, None, False
            self.formats = rt.writes
            self.flags = 0
            sampled = None
        tracer = rt.tracer
        if sampled is None and tracer.decider is not None:
            sampled = tracer.decider(self.trace_id)
        self.sampled = sampled
        self._attempt: Optional[Span] = None
        self._n = 0
        sinks = (tracer.select(sampled, self.trace_id)
                 if tracer.telemeters and (sampled is True or not tracer.only_deciders) else None)
        self._sinks = sinks
        if sinks is None:
            self.recording = False
            self.span: Optional[Span] = None
            return
        self.recording = True
        self._attempts: list[Span] = []
        self._service = ""
        m = _text(method)
        u = _text(uri)
        self._method = m
        self._uri = u
        local_ep = Endpoint(rt.label, local[0] if local else None, local[1] if local else 0)
        remote_ep = Endpoint(None, remote[0], remote[1]) if remote else None
        span = Span(self.trace_id, self.trace_hi, sid, self.parent_id, SERVER, m.lower() or "request",
                    local_ep, remote_ep, bool(self.flags & DEBUG))
        span.tag("router.label", rt.label)
        _http_tags(span, m, u)
        if host is not None:
            span.tag("http.req.host", _text(host))
        if rt.dtab:
            span.tag("dtab.base", rt.dtab)
        self.span = span

    # -- propagation ------------------------------------------------------------------

    def reqid(self) -> bytes:
        """``l5d-reqid``: the trace id (low 64 bits), as Linkerd writes it."""
        return b"%016x" % self.trace_id

    def headers_for(self, span_id: int) -> bytes:
        """The trace header lines (CRLF-terminated) for an outgoing request whose client
        span is ``span_id``: ``l5d-ctx-trace``, ``l5d-reqid`` and every other format the
        incoming request carried."""
        sampled = self.sampled
        out = b"l5d-ctx-trace: %s\r\nl5d-reqid: %016x\r\n" % (
            encode_l5d(span_id, self.span_id, self.trace_id, self.trace_hi, self.flags, sampled), self.trace_id)
        formats = self.formats
        if formats & ~L5D:
            debug = bool(self.flags & DEBUG)
            if formats & (B3_SINGLE | B3_MULTI):
                th = trace_id_hex(self.trace_id, self.trace_hi, self.wide)
                if formats & B3_SINGLE:
                    out += b"b3: %s\r\n" % encode_b3_single(th, span_id, self.span_id, sampled, debug)
                if formats & B3_MULTI:
                    out += encode_b3_multi(th, span_id, self.span_id, sampled, debug)
            if formats & W3C:
                out += b"traceparent: %s\r\n" % encode_traceparent(self.trace_id, self.trace_hi, span_id, sampled)
                if self.tracestate is not None:
                    out += b"tracestate: %s\r\n" % self.tracestate
        return out

    # -- hooks ------------------------------------------------------------------------

    def routed(self, service: str, dtab_local: str = "") -> None:
        """The request was identified as ``service`` (the logical name, e.g. ``/svc/web``)
        with the request's local dtab (``l5d-dtab`` + ``l5d-ctx-dtab``)."""
        span = self.span
        if not self.recording or span is None:
            return
        self._service = service
        span.name = service
        span.tag("service", service)
        if dtab_local:
            span.tag("dtab.local", dtab_local)

    def attempt(self, bound_id: str, residual: str = "", host: Optional[str] = None, port: int = 0, *,
                retry: bool = False) -> bytes:
        """A new attempt to the backend (the first, a requeue, or a ``retry=True``
        retry by the response classifier): a new client span; returns the header lines
        to add to that outgoing request. ``host``/``port``: the chosen endpoint."""
        cid = getrandbits(64) or 1
        n = self._n
        self._n = n + 1
        if self.recording:
            self._start_attempt(cid, n, bound_id, residual, host, port, retry)
        return self.headers_for(cid)

    def _start_attempt(self, cid: int, n: int, bound_id: str, residual: str, host: Optional[str], port: int,
                       retry: bool) -> None:
        if self._attempt is not None:  # the data plane moved on without closing it
            self._attempt.end(None, "superseded by another attempt", True)
        span = self.span
        assert span is not None
        a = Span(self.trace_id, self.trace_hi, cid, self.span_id, CLIENT, bound_id or "client",
                 Endpoint(self._rt.label, span.local.host, 0), Endpoint(bound_id or None, host, port), span.debug)
        a.tag("router.label", self._rt.label)
        a.tag("client", bound_id)
        a.tag("clnt/namer.name", bound_id)
        if self._service:
            a.tag("service", self._service)
            a.tag("clnt/namer.path", self._service)
        if residual:
            a.tag("residual", residual)
        _http_tags(a, self._method, self._uri)
        if n:
            if retry:
                a.tag("clnt/retry_attempt", n)
                a.annotate("finagle.retry")
            else:
                a.tag("clnt/requeue_attempt", n)
        self._attempt = a
        self._attempts.append(a)

    def attempt_done(self, status: Optional[int], failure: Optional[str] = None, retryable: bool = False) -> None:
        """The current attempt ended: the backend's status (None: no response, e.g. a
        connect failure or a timeout) and the classification (``failure`` None = success)."""
        a = self._attempt
        if a is None or not self.recording:
            return
        self._attempt = None
        a.end(status, failure, retryable)

    def tag(self, key: str, value: object) -> None:
        """An extra tag on the server span (recording only)."""
        if self.recording and self.span is not None:
            self.span.tag(key, value)

    def finish(self, status: Optional[int], failure: Optional[str] = None, retryable: bool = False) -> None:
        """The response went out (or the request ended without one: ``status`` None).
        Hands the spans to the telemeters that sampled the request. Call exactly once."""
        span = self.span
        if not self.recording or span is None:
            return
        if self._attempt is not None:
            self.attempt_done(None, failure or "request ended during the attempt", retryable)
        span.end(status, failure, retryable)
        # From here on the spans belong to the telemeters (and their export threads):
        # later hook calls must not touch them.
        self.recording = False
        rec = TraceRecord(self._rt.label, span, self._attempts)
        for sink in self._sinks or ():
            try:
                sink.record(rec)
            except Exception:  # a telemeter's bug must not fail the request
                log.exception("telemeter %s failed to record a trace", sink.kind)


def _http_tags(span: Span, method: str, uri: str) -> None:
    if method:
        span.tags["http.req.method"] = method
        span.tags["http.method"] = method
    if uri:
        span.tag("http.uri", uri)
        span.tag("http.path", _path_of(uri))
