"""Retry budgets and backoffs, with Finagle's semantics.

``RetryBudget`` is Finagle's token retry budget over a leaky bucket:

- every request *deposits* ``1000`` tokens; every retry *withdraws* ``1000 /
  percentCanRetry`` tokens (when percentCanRetry is 0 requests deposit nothing and a
  retry costs 1: only the reserve pays);
- deposits and withdrawals are kept in a windowed sum over the last ``ttlSecs``
  (10 slices, so they expire a slice at a time);
- a reserve of ``minRetriesPerSec × ttlSecs`` withdrawals is always added to the sum, so
  a quiet client can still retry ``minRetriesPerSec`` times per second.

So over any ``ttlSecs`` window the retries allowed are about
``minRetriesPerSec × ttlSecs + percentCanRetry × requests`` — the arithmetic the
failure-injection tests check against the ``retries/total`` metric.

Backoffs are iterators of seconds: ``constant`` (``ms``) and ``jittered`` (Finagle's
``decorrelatedJittered``: first ``minMs``, then uniform in ``[minMs, 3 × previous]``,
capped at ``maxMs``).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Optional

from ...backoff import decorrelated_jittered

SCALE = 1000
_SLICES = 10


class WindowedAdder:
    """Sum of what was added over the last ``window_s`` seconds, in ``slices`` steps."""

    __slots__ = ("slice_s", "slices", "values", "base", "clock", "cur", "next_t")

    def __init__(self, window_s: float, slices: int = _SLICES, clock: Callable[[], float] = time.monotonic) -> None:
        self.slice_s = window_s / slices
        self.slices = slices
        self.values = [0] * slices
        self.clock = clock
        #: index (in slice units since the epoch of ``clock``) of the current slice
        self.base = int(clock() / self.slice_s)
        self.cur = self.base % slices
        #: when the current slice ends (adds before then need no roll)
        self.next_t = (self.base + 1) * self.slice_s

    def _roll(self) -> None:
        now = int(self.clock() / self.slice_s)
        gap = now - self.base
        if gap > 0:
            vals = self.values
            n = self.slices
            if gap >= n:
                for i in range(n):
                    vals[i] = 0
            else:
                for k in range(1, gap + 1):
                    vals[(self.base + k) % n] = 0
            self.base = now
            self.cur = now % n
            self.next_t = (now + 1) * self.slice_s

    def add(self, n: int) -> None:
        if self.clock() >= self.next_t:
            self._roll()
        self.values[self.cur] += n

    def sum(self) -> int:
        if self.clock() >= self.next_t:
            self._roll()
        return sum(self.values)


class RetryBudget:
    """Finagle's ``RetryBudget(ttl, minRetriesPerSec, percentCanRetry)``."""

    __slots__ = ("ttl_s", "min_per_sec", "percent", "deposit_amount", "withdraw_amount", "reserve", "window")

    def __init__(self, ttl_secs: float = 10, min_retries_per_sec: float = 10, percent_can_retry: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= ttl_secs <= 60:
            raise ValueError(f"ttlSecs must be within 1 and 60, got {ttl_secs}")
        if min_retries_per_sec < 0:
            raise ValueError(f"minRetriesPerSec must be non-negative, got {min_retries_per_sec}")
        if not 0.0 <= percent_can_retry <= 1000.0:
            raise ValueError(f"percentCanRetry must be within 0 and 1000, got {percent_can_retry}")
        self.ttl_s = ttl_secs
        self.min_per_sec = min_retries_per_sec
        self.percent = percent_can_retry
        # percentCanRetry 0: requests earn nothing, a retry costs 1, all credit is the reserve
        self.deposit_amount = 0 if percent_can_retry == 0.0 else SCALE
        self.withdraw_amount = 1 if percent_can_retry == 0.0 else int(SCALE / percent_can_retry)
        self.reserve = int(min_retries_per_sec * ttl_secs * self.withdraw_amount)
        self.window = WindowedAdder(ttl_secs, _SLICES, clock)

    @classmethod
    def from_config(cls, cfg: Any, clock: Callable[[], float] = time.monotonic) -> "RetryBudget":
        from .static_config import get
        return cls(get(cfg, "ttlSecs", 10), get(cfg, "minRetriesPerSec", 10), get(cfg, "percentCanRetry", 0.2),
                   clock)

    def deposit(self) -> None:
        self.window.add(self.deposit_amount)

    def try_withdraw(self) -> bool:
        w = self.window
        if w.sum() + self.reserve >= self.withdraw_amount:
            w.add(-self.withdraw_amount)
            return True
        return False

    @property
    def balance(self) -> int:
        """Retries that could be made right now."""
        return (self.window.sum() + self.reserve) // self.withdraw_amount

    def allowance(self, requests: int, seconds: float) -> float:
        """Retries a saturated budget allows for ``requests`` requests spread evenly over
        ``seconds`` (≥ ttl): ``minRetriesPerSec × seconds + percentCanRetry × requests``."""
        return self.min_per_sec * max(seconds, self.ttl_s) + self.percent * requests

    def max_retries(self, requests: int, seconds: float) -> float:
        """Strict upper bound for a fresh budget: the sum is kept per 1/10-ttl slice, so
        ``seconds`` touch at most ``ceil(seconds / slice) + 1`` slices, and any 10
        consecutive slices allow one reserve plus what their requests deposited."""
        slice_s = self.ttl_s / _SLICES
        touched = int(-(-seconds // slice_s)) + 1
        windows = -(-touched // _SLICES)
        return windows * self.min_per_sec * self.ttl_s + self.percent * requests


# --- backoffs ---------------------------------------------------------------------------------

def constant(seconds: float) -> Iterator[float]:
    while True:
        yield seconds


#: Finagle's ``Backoff.decorrelatedJittered(min, max)``: the one implementation the watch
#: loops use too.
decorrelated_jitter = decorrelated_jittered


class BackoffPolicy:
    """A backoff config compiled once; ``stream()`` starts a fresh sequence (per request
    for retries, per endpoint death for failure accrual)."""

    __slots__ = ("kind", "a", "b", "zero")

    def __init__(self, kind: str, a: float, b: float = 0.0) -> None:
        self.kind = kind
        self.a = a
        self.b = b
        #: constant 0: retries go out at once, no timer needed
        self.zero = kind == "constant" and a == 0.0

    @classmethod
    def from_config(cls, cfg: Any, default: Optional["BackoffPolicy"] = None) -> "BackoffPolicy":
        from .static_config import get
        if cfg is None:
            return default if default is not None else cls("constant", 0.0)
        kind = get(cfg, "kind", "constant")
        if kind == "constant":
            return cls("constant", get(cfg, "ms", 0) / 1000.0)
        if kind == "jittered":
            lo, hi = get(cfg, "minMs"), get(cfg, "maxMs")
            if lo is None or hi is None:
                raise ValueError("backoff: kind jittered needs minMs and maxMs")
            if hi < lo:
                raise ValueError(f"backoff: maxMs ({hi}) must not be below minMs ({lo})")
            return cls("jittered", lo / 1000.0, hi / 1000.0)
        raise ValueError(f"backoff.kind: expected constant or jittered, got {kind!r}")

    def stream(self) -> Iterator[float]:
        if self.kind == "constant":
            return constant(self.a)
        if self.a <= 0:
            # minMs 0 (Finagle rejects it): uniform in [0, 3 × 0] is 0 s every time.
            return constant(0.0)
        return decorrelated_jitter(self.a, self.b)

    def __repr__(self) -> str:
        return f"BackoffPolicy({self.kind}, {self.a}, {self.b})"
