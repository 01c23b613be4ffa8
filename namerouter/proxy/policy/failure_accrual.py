"""Failure accrual: stop sending to endpoints that keep failing, probe them, bring them back.

One ``Accrual`` per endpoint, fed with the outcome of every attempt sent to it (a
response status, or a failure without response: connect refused, connection lost,
per-attempt timeout). Policies, as Linkerd's ``failureAccrual`` kinds:

- ``io.l5d.consecutiveFailures`` (``failures``; Linkerd's default, 5);
- ``io.l5d.successRate`` (``successRate``, ``requests``): EWMA over that many requests;
- ``io.l5d.successRateWindowed`` (``successRate``, ``window`` seconds): time-decayed EWMA;
- ``none``.

When the policy trips, the endpoint is marked dead for the next backoff interval
(default jittered 5 s – 300 s): its ``down_until`` makes the load balancer skip it (when
every endpoint is dead the balancer still picks one, as Finagle does). When the interval
is over the endpoint is eligible again; the outcome of the first attempt after that is
its probe: success revives it (backoff reset), failure marks it dead for the next
interval. Outcomes of attempts that were already in flight while it was dead are ignored.

Metrics per client (Linkerd's names): ``failure_accrual/removals``, ``.../revivals``,
``.../probes``, ``.../removed_for_ms`` (total time endpoints spent removed), and the
gauge ``failure_accrual/removed`` (endpoints dead right now).

Failure = a 5XX or a failure without response (Linkerd classifies 5XX as failures for
accrual with every HTTP classifier except allSuccessful).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

from ...metrics import MetricsRegistry
from .retries import BackoffPolicy
from .static_config import get

_monotonic = time.monotonic

#: Finagle's default failure accrual backoff: jittered between 5 s and 300 s.
DEFAULT_BACKOFF = BackoffPolicy("jittered", 5.0, 300.0)
#: successRate policies need this many samples before judging (Finagle's minRequestThreshold).
MIN_REQUESTS = 5


class AccrualStats:
    """A client's failure-accrual counters (shared by its endpoints)."""

    __slots__ = ("removals", "revivals", "probes", "removed_for_ms", "dead")

    def __init__(self, registry: MetricsRegistry, prefix: str) -> None:
        p = prefix + "failure_accrual/"
        self.removals = registry.counter(p + "removals")
        self.revivals = registry.counter(p + "revivals")
        self.probes = registry.counter(p + "probes")
        self.removed_for_ms = registry.counter(p + "removed_for_ms")
        self.dead: set[Any] = set()
        registry.gauge(p + "removed", lambda: len(self.dead))


class AccrualPolicy:
    """A ``failureAccrual`` block compiled once per client; ``new(node)`` per endpoint."""

    def __init__(self, cfg: Any, stats: AccrualStats, clock: Callable[[], float] = _monotonic) -> None:
        kind = get(cfg, "kind", "io.l5d.consecutiveFailures")
        self.kind = kind
        self.stats = stats
        self.clock = clock
        self.backoff = BackoffPolicy.from_config(get(cfg, "backoff"), DEFAULT_BACKOFF)
        if kind == "io.l5d.consecutiveFailures":
            self.failures = int(get(cfg, "failures", 5))
        elif kind == "io.l5d.successRate":
            self.rate = float(_required(cfg, "successRate", kind))
            self.requests = int(_required(cfg, "requests", kind))
        elif kind == "io.l5d.successRateWindowed":
            self.rate = float(_required(cfg, "successRate", kind))
            self.window = float(_required(cfg, "window", kind))
        elif kind != "none":
            raise ValueError(f"failureAccrual.kind: unknown kind {kind!r}; known: io.l5d.consecutiveFailures, "
                             "io.l5d.successRate, io.l5d.successRateWindowed, none")

    def new(self, node: Any) -> Optional["Accrual"]:
        if self.kind == "none":
            return None
        if self.kind == "io.l5d.consecutiveFailures":
            return ConsecutiveFailures(self, node)
        if self.kind == "io.l5d.successRate":
            return SuccessRate(self, node)
        return SuccessRateWindowed(self, node)


def _required(cfg: Any, key: str, kind: str) -> Any:
    v = get(cfg, key)
    if v is None:
        raise ValueError(f"failureAccrual: kind {kind} needs {key}")
    return v


class Accrual:
    """Per-endpoint state machine: alive -> dead (down_until) -> probing -> alive/dead."""

    __slots__ = ("policy", "node", "dead_since", "backoff")

    def __init__(self, policy: AccrualPolicy, node: Any) -> None:
        self.policy = policy
        self.node = node
        self.dead_since = 0.0  # 0 = alive
        self.backoff: Any = None

    # the data plane calls these -------------------------------------------------------
    def record(self, status: int) -> None:
        """An attempt got a response with ``status``."""
        if status < 500:
            self.success()
        else:
            self.failure()

    def success(self) -> None:
        if self.dead_since:
            if not self._probe_result():
                return
            self._revive()
        self._observe(True)

    def failure(self) -> None:
        if self.dead_since:
            if not self._probe_result():
                return
            self._mark_dead(again=True)
            return
        if self._observe(False):
            self._mark_dead(again=False)

    # -----------------------------------------------------------------------------------
    def _probe_result(self) -> bool:
        """Whether an outcome while marked dead is a probe's (the interval is over)."""
        if self.policy.clock() < self.node.down_until:
            return False  # an attempt that was in flight when the endpoint was removed
        self.policy.stats.probes.value += 1
        return True

    def _mark_dead(self, again: bool) -> None:
        now = self.policy.clock()
        if self.backoff is None:
            self.backoff = self.policy.backoff.stream()
        wait = next(self.backoff)
        self.node.down_until = now + max(wait, 0.001)
        st = self.policy.stats
        if not again:
            self.dead_since = now
            st.removals.value += 1
            st.dead.add(self)

    def _revive(self) -> None:
        now = self.policy.clock()
        st = self.policy.stats
        st.revivals.value += 1
        st.removed_for_ms.value += int((now - self.dead_since) * 1000)
        st.dead.discard(self)
        self.dead_since = 0.0
        self.backoff = None
        self.node.down_until = 0.0
        self._reset()

    def retire(self) -> None:
        """The endpoint left the address set."""
        self.policy.stats.dead.discard(self)

    def state(self) -> dict[str, Any]:
        """For ``/client_state.json`` and the dashboard: ``alive``, ``dead`` (removed from
        the balancer until ``retryInMs`` from now) or ``probing`` (the removal is over; the
        next attempt's outcome decides), plus the policy's own figure."""
        out: dict[str, Any] = {"kind": self.policy.kind}
        if self.dead_since:
            now = self.policy.clock()
            wait = self.node.down_until - now
            out["state"] = "dead" if wait > 0 else "probing"
            out["removedForMs"] = int((now - self.dead_since) * 1000)
            if wait > 0:
                out["retryInMs"] = int(wait * 1000)
        else:
            out["state"] = "alive"
        self._describe(out)
        return out

    def _describe(self, out: dict[str, Any]) -> None:
        pass

    # policy-specific -------------------------------------------------------------------
    def _observe(self, ok: bool) -> bool:
        """Record an outcome while alive; True when the endpoint must be marked dead."""
        raise NotImplementedError

    def _reset(self) -> None:
        pass

    @property
    def dead(self) -> bool:
        return bool(self.dead_since)


class ConsecutiveFailures(Accrual):
    __slots__ = ("count",)

    def __init__(self, policy: AccrualPolicy, node: Any) -> None:
        super().__init__(policy, node)
        self.count = 0

    def record(self, status: int) -> None:
        # The common case (alive, success, no failures pending) costs one comparison.
        if status < 500 and not self.dead_since:
            if self.count:
                self.count = 0
            return
        Accrual.record(self, status)

    def _observe(self, ok: bool) -> bool:
        if ok:
            self.count = 0
            return False
        self.count += 1
        return self.count >= self.policy.failures

    def _reset(self) -> None:
        self.count = 0

    def _describe(self, out: dict[str, Any]) -> None:
        out["consecutiveFailures"] = self.count


class SuccessRate(Accrual):
    """EWMA of successes over ``requests`` requests (each sample weighs
    ``1 - exp(-1 / requests)``, as Finagle's count-based Ema)."""

    __slots__ = ("ema", "seen")

    def __init__(self, policy: AccrualPolicy, node: Any) -> None:
        super().__init__(policy, node)
        self._reset()

    def _reset(self) -> None:
        self.ema = 1.0
        self.seen = 0

    def _observe(self, ok: bool) -> bool:
        alpha = 1.0 - math.exp(-1.0 / self.policy.requests)
        self.ema += alpha * ((1.0 if ok else 0.0) - self.ema)
        self.seen += 1
        return self.seen >= min(MIN_REQUESTS, self.policy.requests) and self.ema < self.policy.rate

    def _describe(self, out: dict[str, Any]) -> None:
        out["successRate"] = round(self.ema, 4)


class SuccessRateWindowed(Accrual):
    """Time-decayed EWMA of successes with time constant ``window`` seconds."""

    __slots__ = ("ema", "stamp", "seen")

    def __init__(self, policy: AccrualPolicy, node: Any) -> None:
        super().__init__(policy, node)
        self._reset()

    def _reset(self) -> None:
        self.ema = 1.0
        self.stamp = self.policy.clock()
        self.seen = 0

    def _observe(self, ok: bool) -> bool:
        now = self.policy.clock()
        dt = max(now - self.stamp, 0.0)
        self.stamp = now
        # Finagle's time-based Ema: a sample weighs by the time elapsed since the last one
        w = 1.0 - math.exp(-dt / self.policy.window)
        self.ema += w * ((1.0 if ok else 0.0) - self.ema)
        self.seen += 1
        return self.seen >= MIN_REQUESTS and self.ema < self.policy.rate

    def _describe(self, out: dict[str, Any]) -> None:
        out["successRate"] = round(self.ema, 4)
