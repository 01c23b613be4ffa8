"""Per-scope request metrics with Linkerd's flat names, resolved once per scope.

A ``RequestStats`` holds the counter objects of one scope (a server, a service, a
client), so recording a request is a few attribute increments and one bucket bump:
no string formatting or registry lookup per request.
"""
from __future__ import annotations

from typing import Optional

from ..metrics import Counter, MetricsRegistry, Stat


def scope_label(path_text: str) -> str:
    """Linkerd writes a path scope without its leading slash (``svc/web``, ``#/io.l5d.fs/web``)."""
    return path_text[1:] if path_text.startswith("/") else path_text


class RequestStats:
    __slots__ = ("registry", "prefix", "requests", "success", "failures", "latency", "_status",
                 "_last_status", "_last_counter")

    def __init__(self, registry: MetricsRegistry, prefix: str) -> None:
        self.registry = registry
        self.prefix = prefix
        self.requests: Counter = registry.counter(prefix + "requests")
        self.success: Counter = registry.counter(prefix + "success")
        self.failures: Counter = registry.counter(prefix + "failures")
        self.latency: Stat = registry.stat(prefix + "request_latency_ms")
        self._status: dict[int, Counter] = {}
        #: the counter of the status seen last (nearly every request repeats it)
        self._last_status = 0
        self._last_counter: Optional[Counter] = None

    def record(self, status: int, latency_ms: float) -> None:
        # Runs three times per request (server, service, client scope): kept to plain
        # attribute arithmetic and one call.
        self.requests.value += 1
        # Linkerd's default classifier (nonRetryable5XX): 5xx is a failure.
        if status >= 500 or status <= 0:
            self.failures.value += 1
        else:
            self.success.value += 1
        if status > 0:
            if status == self._last_status:
                c = self._last_counter
            else:
                c = self._status.get(status)
                if c is None:
                    c = self._status[status] = self.registry.counter(f"{self.prefix}status/{status}")
                self._last_status = status
                self._last_counter = c
            c.value += 1  # type: ignore[union-attr]
        self.latency.add(latency_ms)

    def drop(self) -> None:
        """Remove this scope's metrics (an evicted client or service)."""
        self.registry.remove_prefix(self.prefix)
