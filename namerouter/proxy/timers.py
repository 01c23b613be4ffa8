"""The data plane's one timer mechanism: a coarse timer wheel on the event loop.

Finagle's default timer is a hashed wheel with 10 ms ticks; so is this one. Deadlines
are rounded up to the next tick and the event loop gets one timer per tick that has
entries, instead of one per request: arming is a dict lookup and a list append,
cancelling clears the entry in place (no heap removal).

Everything the data plane waits for with a time limit goes through a router's wheel:
request timeouts (``totalTimeoutMs``, ``requestAttemptTimeoutMs``), the binding wait
(``bindingTimeoutMs``), connect timeouts, retry backoffs, the lingering close after a
refused request, idle-connection and idle-route sweeps. Connection-level
timeouts (idle, header read, stalled bodies) belong here too, armed per connection.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional


class Timer:
    """One armed entry; ``cancel()`` is idempotent and O(1)."""

    __slots__ = ("fn", "arg")

    def __init__(self, fn: Callable[[Any], None], arg: Any) -> None:
        self.fn: Optional[Callable[[Any], None]] = fn
        self.arg = arg

    def cancel(self) -> None:
        self.fn = None
        self.arg = None

    @property
    def active(self) -> bool:
        return self.fn is not None


#: the wheel's resolution (seconds)
TICK = 0.01


class TimerWheel:
    __slots__ = ("loop", "tick", "buckets")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = TICK) -> None:
        self.loop = loop
        self.tick = tick
        self.buckets: dict[int, list[Timer]] = {}

    def at(self, when: float, fn: Callable[[Any], None], arg: Any = None) -> Timer:
        """Call ``fn(arg)`` at ``when`` (loop time) or up to one tick later."""
        tick = int(when / self.tick) + 1
        bucket = self.buckets.get(tick)
        if bucket is None:
            bucket = self.buckets[tick] = []
            self.loop.call_at(tick * self.tick, self._fire, tick)
        t = Timer(fn, arg)
        bucket.append(t)
        return t

    def after(self, delay: float, fn: Callable[[Any], None], arg: Any = None) -> Timer:
        """Call ``fn(arg)`` in ``delay`` seconds (rounded up to the tick)."""
        return self.at(self.loop.time() + delay, fn, arg)

    def time(self) -> float:
        return self.loop.time()

    def _fire(self, tick: int) -> None:
        for t in self.buckets.pop(tick, ()):
            fn = t.fn
            if fn is not None:
                arg = t.arg
                t.fn = t.arg = None
                fn(arg)
