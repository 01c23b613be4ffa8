"""Per-scope request metrics with Linkerd's flat names, resolved once per scope.

A ``RequestStats`` holds the counter objects of one scope (a server, a service, a
client), so recording a request is a few attribute increments and one bucket bump:
no string formatting or registry lookup per request.
"""
from __future__ import annotations

from ..metrics import Counter, MetricsRegistry, Stat


def scope_label(path_text: str) -> str:
    """Linkerd writes a path scope without its leading slash (``svc/web``, ``#/io.l5d.fs/web``)."""
    return path_text[1:] if path_text.startswith("/") else path_text


class RequestStats:
    __slots__ = ("registry", "prefix", "requests", "success", "failures", "latency", "_status")

    def __init__(self, registry: MetricsRegistry, prefix: str) -> None:
        self.registry = registry
        self.prefix = prefix
        self.requests: Counter = registry.counter(prefix + "requests")
        self.success: Counter = registry.counter(prefix + "success")
        self.failures: Counter = registry.counter(prefix + "failures")
        self.latency: Stat = registry.stat(prefix + "request_latency_ms")
        self._status: dict[int, Counter] = {}

    def record(self, status: int, latency_ms: float) -> None:
        self.requests.value += 1
        # Linkerd's default classifier (nonRetryable5XX): 5xx is a failure.
        if status >= 500 or status <= 0:
            self.failures.value += 1
        else:
            self.success.value += 1
        if status > 0:
            c = self._status.get(status)
            if c is None:
                c = self._status[status] = self.registry.counter(f"{self.prefix}status/{status}")
            c.value += 1
        self.latency.add(latency_ms)

    def drop(self) -> None:
        """Remove this scope's metrics (an evicted client or service)."""
        self.registry.remove_prefix(self.prefix)
