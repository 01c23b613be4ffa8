"""The trace telemeters' ``telemetry`` blocks (Linkerd's keys, plus ours) and building them.

Linkerd's keys: ``io.l5d.zipkin`` (``host``, ``port``, ``sampleRate``), the linkerd-zipkin
plugin's ``io.zipkin.http`` (``host``, ``hostHeader``, ``compressionEnabled``,
``initialSampleRate``),
``io.l5d.tracelog`` (``sampleRate``, ``level``, and ``host``, documented by Linkerd but
unused), ``io.l5d.recentRequests`` (``sampleRate`` (required), ``capacity``). Ours:
``io.l5d.zipkin.url`` (the HTTP collector; we do not speak Scribe), the
``io.namerouter.otlp`` kind, and the export queue keys of both exporters
(``maxQueueSize``, ``maxExportBatchSize``, ``scheduleDelayMs``, ``exportTimeoutMs``, named
after OpenTelemetry's batch span processor settings).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional
from urllib.parse import urlsplit

from ..metrics import MetricsRegistry
from .tracelog import LEVELS
from .tracer import TraceTelemeter, Tracer

log = logging.getLogger("namerouter.tracing")

_RATE = {"min": 0.0, "max": 1.0}


def _check_url(v: str) -> None:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {v!r}")


_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:([0-9]{1,5}))?")


def _check_host_port(v: str) -> None:
    m = _HOST_PORT.fullmatch(v)
    if m is None or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
        raise ValueError(f"expected host:port, got {v!r}")


def _check_level(v: str) -> None:
    if v.upper() not in LEVELS:
        raise ValueError(f"unknown level {v!r} (one of {', '.join(LEVELS)})")


@dataclass
class ExportQueueKeys:
    #: spans waiting to be sent; beyond this they are dropped and counted
    maxQueueSize: int = field(default=2048, metadata={"min": 1, "max": 100_000})
    maxExportBatchSize: int = field(default=512, metadata={"min": 1, "max": 100_000})
    scheduleDelayMs: int = field(default=1000, metadata={"min": 1, "max": 3_600_000})
    exportTimeoutMs: int = field(default=10000, metadata={"min": 1, "max": 3_600_000})

    def queue_kwargs(self) -> dict[str, Any]:
        return {"max_queue": self.maxQueueSize, "max_batch": min(self.maxExportBatchSize, self.maxQueueSize),
                "delay_s": self.scheduleDelayMs / 1000.0, "timeout_s": self.exportTimeoutMs / 1000.0}


@dataclass
class ZipkinConfig(ExportQueueKeys):
    kind: str = "io.l5d.zipkin"
    host: str = "localhost"
    #: the HTTP collector's port (Linkerd's default, 9410, was Zipkin's Scribe port)
    port: int = field(default=9411, metadata={"min": 1, "max": 65535})
    sampleRate: float = field(default=0.001, metadata=_RATE)
    #: ours: the collector URL; default http://<host>:<port>/api/v2/spans
    url: Optional[str] = field(default=None, metadata={"check": _check_url})

    def collector_url(self) -> str:
        if self.url:
            return self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api/v2/spans"


@dataclass
class ZipkinHttpConfig(ExportQueueKeys):
    """``io.zipkin.http``, the telemeter of the linkerd-zipkin plugin: the same export as
    ``io.l5d.zipkin`` with that plugin's keys."""

    kind: str = "io.zipkin.http"
    #: host:port of the Zipkin HTTP service
    host: str = field(default="localhost:9411", metadata={"check": _check_host_port})
    hostHeader: str = "zipkin"
    compressionEnabled: bool = True
    initialSampleRate: float = field(default=0.001, metadata=_RATE)

    def collector_url(self) -> str:
        return f"http://{self.host}/api/v2/spans"


@dataclass
class TracelogConfig:
    kind: str = "io.l5d.tracelog"
    #: Linkerd clamps this to [0, 1] rather than refusing it
    sampleRate: float = 1.0
    level: str = field(default="INFO", metadata={"check": _check_level})
    #: in Linkerd's docs table, never read by its code; accepted and ignored
    host: Optional[str] = None


@dataclass
class RecentRequestsConfig:
    sampleRate: float = field(metadata=_RATE)
    kind: str = "io.l5d.recentRequests"
    capacity: int = field(default=10, metadata={"min": 1, "max": 10_000})


@dataclass
class OtlpConfig(ExportQueueKeys):
    kind: str = "io.namerouter.otlp"
    #: the collector's OTLP/HTTP traces URL
    endpoint: str = field(default="http://localhost:4318/v1/traces", metadata={"check": _check_url})
    #: resource ``service.name``; default: each router's label
    serviceName: Optional[str] = None
    sampleRate: float = field(default=0.001, metadata=_RATE)
    resourceAttributes: dict[str, str] = field(default_factory=dict)
    #: extra HTTP headers on each export (e.g. an API key)
    headers: dict[str, str] = field(default_factory=dict)
    compression: Literal["none", "gzip"] = "none"


#: kind → config class, for the ``telemetry`` list of the router's config
TRACE_TELEMETERS: dict[str, type] = {
    "io.l5d.zipkin": ZipkinConfig,
    "io.zipkin.http": ZipkinHttpConfig,
    "io.l5d.tracelog": TracelogConfig,
    "io.l5d.recentRequests": RecentRequestsConfig,
    "io.namerouter.otlp": OtlpConfig,
}


def telemetry_problems(raw: list[Any]) -> list[tuple[int, str]]:
    """Problems across the (raw) ``telemetry`` items: ``(index, message)``."""
    out = []
    seen = False
    for i, t in enumerate(raw):
        if isinstance(t, dict) and t.get("kind") == "io.l5d.recentRequests":
            if seen:
                out.append((i, "only one io.l5d.recentRequests telemeter may be configured (it serves /requests)"))
            seen = True
    return out


def _scopes(telemetry: list[Any]) -> list[str]:
    counts: dict[str, int] = {}
    out = []
    for t in telemetry:
        n = counts.get(t.kind, 0)
        counts[t.kind] = n + 1
        out.append(f"telemetry/{t.kind}" + (f"-{n}" if n else ""))
    return out


def build_tracer(telemetry: list[Any], metrics: Optional[MetricsRegistry] = None) -> Tracer:
    """The process's tracer from the validated ``telemetry`` list (other kinds skipped)."""
    items = [t for t in telemetry if type(t) in TRACE_TELEMETERS.values()]
    telemeters: list[TraceTelemeter] = []
    for cfg, scope in zip(items, _scopes(items)):
        if isinstance(cfg, ZipkinConfig):
            from .zipkin import ZipkinTelemeter

            if cfg.url is None and cfg.port == 9410:
                log.warning("io.l5d.zipkin: port 9410 is Zipkin's Scribe port, but namerouter sends Zipkin v2 "
                            "JSON over HTTP (to %s); Zipkin's HTTP collector listens on 9411 (set port or url)",
                            cfg.collector_url())
            telemeters.append(ZipkinTelemeter(cfg.collector_url(), cfg.sampleRate, metrics, scope=scope,
                                              **cfg.queue_kwargs()))
        elif isinstance(cfg, ZipkinHttpConfig):
            from .zipkin import ZipkinTelemeter

            telemeters.append(ZipkinTelemeter(cfg.collector_url(), cfg.initialSampleRate, metrics, scope=scope,
                                              host_header=cfg.hostHeader, gzip=cfg.compressionEnabled,
                                              kind=cfg.kind, **cfg.queue_kwargs()))
        elif isinstance(cfg, OtlpConfig):
            from .otlp import OtlpTelemeter

            telemeters.append(OtlpTelemeter(
                cfg.endpoint, cfg.sampleRate, metrics, service_name=cfg.serviceName,
                resource_attributes=cfg.resourceAttributes, headers=cfg.headers, compression=cfg.compression,
                scope=scope, **cfg.queue_kwargs()))
        elif isinstance(cfg, TracelogConfig):
            from .tracelog import TracelogTelemeter

            telemeters.append(TracelogTelemeter(cfg.sampleRate, cfg.level))
        elif isinstance(cfg, RecentRequestsConfig):
            from .recent import RecentRequestsTelemeter

            telemeters.append(RecentRequestsTelemeter(cfg.sampleRate, cfg.capacity))
    return Tracer(telemeters)
