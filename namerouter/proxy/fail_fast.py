"""Client ``failFast`` (Finagle's ``FailFastFactory``): an endpoint whose connect fails is
marked down at once and a background task reconnects to it with backoff (1 s first,
jittered, at most 32 s apart, as Finagle's); the first connection that succeeds marks it
available again and goes into the endpoint's pool. Meanwhile the balancers pass it over
(``Node.available``) and an attempt that lands on it anyway (every endpoint down) fails
at once without dialling — the request is requeued elsewhere or answered 502 — instead
of waiting for another connect to fail. Off (Linkerd's default), nothing of this runs.

Metrics (Finagle's names) under ``rt/<label>/client/<id>/failfast/``: ``marked_dead``,
``marked_available`` (counters), ``unhealthy_num_tries`` (reconnects that failed) and
``unhealthy`` (a gauge: endpoints marked down now).
"""
from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..backoff import decorrelated_jittered
from ..metrics import Counter, MetricsRegistry

if TYPE_CHECKING:  # pragma: no cover
    from .pool import Endpoint

log = logging.getLogger(__name__)

#: Finagle's FailFastFactory backoff bounds (seconds)
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 32.0


class FailedFast(OSError):
    """The endpoint is marked down by failFast: no connection was attempted."""


class FailFast:
    """One client's failFast state: the endpoints marked down and their reconnect tasks."""

    def __init__(self, registry: MetricsRegistry, prefix: str, first_s: float = FIRST_RETRY_S,
                 max_s: float = MAX_RETRY_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.marked_dead: Counter = registry.counter(prefix + "failfast/marked_dead")
        self.marked_available: Counter = registry.counter(prefix + "failfast/marked_available")
        self.tries: Counter = registry.counter(prefix + "failfast/unhealthy_num_tries")
        self.probes: dict["Endpoint", "asyncio.Task[None]"] = {}
        registry.gauge(prefix + "failfast/unhealthy", lambda: len(self.probes))

    def is_down(self, ep: "Endpoint") -> bool:
        return ep in self.probes

    def connect_failed(self, ep: "Endpoint") -> None:
        """A connect to ``ep`` failed: mark it down until a reconnect succeeds."""
        if ep in self.probes or ep.retired:
            return
        self.marked_dead.value += 1
        ep.down_until = math.inf
        self.probes[ep] = asyncio.get_running_loop().create_task(self._reconnect(ep))

    async def _reconnect(self, ep: "Endpoint") -> None:
        delays: Iterator[float] = decorrelated_jittered(self.first_s, self.max_s)
        try:
            while not ep.retired:
                await asyncio.sleep(next(delays))
                if ep.retired:
                    return
                conn: Optional[Any] = None
                try:
                    conn = await ep.connector.connect(ep)
                except (OSError, asyncio.TimeoutError) as e:
                    self.tries.value += 1
                    log.debug("failFast: %s still down: %s", ep.label, e)
                    continue
                ep.down_until = 0.0
                self.marked_available.value += 1
                ep.release(conn)  # a warm connection for the next request
                return
        finally:
            if self.probes.get(ep) is asyncio.current_task():
                del self.probes[ep]
            if ep.down_until == math.inf:
                ep.down_until = 0.0

    def close(self) -> None:
        for t in list(self.probes.values()):
            t.cancel()
        self.probes.clear()
