"""Decorrelated jittered backoff for every watch/re-sync loop (Finagle's
``Backoff.decorrelatedJittered(start, maximum)``, as in the Finagle versions Linkerd 1 uses).

The sequence is::

    d0 = min_s
    dn = min(max_s, uniform(min_s, 3 * d(n-1)))

Why this one: a fleet of routers whose watches failed together (a ZooKeeper, Consul or
Kubernetes API restart) must not come back in lockstep. Plain exponential backoff keeps
them synchronised; "decorrelated" jitter makes each delay depend on that loop's own
previous random delay, so the retries spread out while still growing towards ``max_s``
(AWS architecture blog, "Exponential Backoff And Jitter", 2015, which Finagle cites).
The first delay is exactly ``min_s`` so a single transient error costs almost nothing.

Used by the ZooKeeper serverset watch (``zk/serverset_watch.py``), the announcer
(``announce.py``), the Consul namer (``namers/consul.py``), namerd's Consul store and the
Kubernetes object watch (``k8s/watch.py``), namerd's etcd store, and the data plane's
configurable ``{kind: jittered, minMs, maxMs}`` retry / failure-accrual backoff
(``proxy/policy/retries.py``).
"""
from __future__ import annotations

import random
from typing import Callable, Iterator, Optional


def decorrelated_jittered(min_s: float, max_s: float, rng: Optional[random.Random] = None) -> Iterator[float]:
    """An endless iterator of delays in seconds (see the module docstring).

    ``min_s`` and ``max_s`` must be > 0 (checked here, not at the first ``next()``); a
    ``max_s`` below ``min_s`` wins (every delay is then ``max_s``), so a configured cap
    smaller than a caller's default floor is obeyed.
    """
    if not min_s > 0:
        raise ValueError(f"backoff: the minimum delay must be > 0 s, got {min_s!r}")
    if not max_s > 0:
        raise ValueError(f"backoff: the maximum delay must be > 0 s, got {max_s!r}")
    return _delays(min(min_s, max_s), max_s, (rng or random).uniform)


def _delays(lo: float, hi_cap: float, uniform: Callable[[float, float], float]) -> Iterator[float]:
    cur = lo
    yield cur
    while True:
        hi = cur * 3
        cur = min(hi_cap, uniform(lo, hi)) if hi > lo else lo
        yield cur


class JitteredBackoff:
    """Stateful form for retry loops: ``next()`` after a failure, ``reset()`` after a
    success (the next failure starts again at ``min_s``)."""

    __slots__ = ("min_s", "max_s", "_rng", "_it")

    def __init__(self, min_s: float = 0.01, max_s: float = 5.0, rng: Optional[random.Random] = None) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng
        self._it = decorrelated_jittered(min_s, max_s, rng)  # validates the bounds now

    def next(self) -> float:
        """The delay to wait before the next attempt, in seconds."""
        return next(self._it)

    def reset(self) -> None:
        """Forget the failures so far."""
        self._it = decorrelated_jittered(self.min_s, self.max_s, self._rng)

    def __repr__(self) -> str:
        return f"JitteredBackoff({self.min_s}, {self.max_s})"
