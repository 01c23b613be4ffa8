"""Live objects by key, closed once nobody has used them for a while.

Used wherever a peer's requests create long-lived watches: the namerd interpreters of
the router (one stream per name and per bound id) and namerd's thrift interface (one
long-poll observer per name). Items have ``start()`` and ``close()``. Observed
("active") items are never closed here; unobserved ("inactive") ones are closed after
``ttl`` seconds, and at most ``capacity`` of them are kept (least recently used closed
first), so names a scanner made up are forgotten. Every operation is O(1).
"""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Generic, Hashable, Optional, Protocol, TypeVar

from .binding_cache import TRIM_AFTER, release_free_memory


class Closeable(Protocol):
    def start(self) -> None: ...

    def close(self) -> None: ...


K = TypeVar("K", bound=Hashable)
W = TypeVar("W", bound=Closeable)


class IdleCache(Generic[K, W]):
    """Live watches by key. Observed ("active") watches are never closed here; unobserved
    ("inactive") ones are closed after ``ttl`` seconds and at most ``capacity`` of them are
    kept (least recently used closed first). Both operations are O(1)."""

    def __init__(self, name: str, capacity: int, ttl: float) -> None:
        self.name = name
        self.capacity = capacity
        self.ttl = ttl
        self.entries: dict[K, W] = {}
        self._inactive: "collections.OrderedDict[K, float]" = collections.OrderedDict()
        self._timer: Optional[asyncio.TimerHandle] = None
        self.evictions = 0

    def get(self, key: K) -> Optional[W]:
        return self.entries.get(key)

    def add(self, key: K, watch: W) -> None:
        """A new watch, not observed yet: it starts out inactive (so it expires if
        nobody ever observes it, e.g. a scanner's random Host header)."""
        self.entries[key] = watch
        self.deactivate(key, watch)

    def activate(self, key: K, watch: W) -> None:
        cur = self.entries.get(key)
        if cur is None:
            self.entries[key] = watch  # re-observed after eviction: back in the cache
        elif cur is not watch:
            watch.start()  # an evicted duplicate someone still holds: runs uncached
            return
        self._inactive.pop(key, None)
        watch.start()

    def deactivate(self, key: K, watch: W) -> None:
        if self.entries.get(key) is not watch:
            watch.close()  # an uncached duplicate: nobody else can find it
            return
        self._inactive.pop(key, None)
        self._inactive[key] = time.monotonic() + self.ttl
        while len(self._inactive) > self.capacity:
            old, _ = self._inactive.popitem(last=False)
            self._evict(old)
        self._schedule()

    def touch(self, key: K) -> None:
        """Looked up again while inactive: restart its idle clock."""
        if key in self._inactive:
            self._inactive.move_to_end(key)
            self._inactive[key] = time.monotonic() + self.ttl
            self._schedule()

    def _evict(self, key: K) -> None:
        w = self.entries.pop(key, None)
        if w is not None:
            self.evictions += 1
            w.close()

    def _schedule(self) -> None:
        if self._timer is not None or not self._inactive:
            return
        deadline = next(iter(self._inactive.values()))
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - time.monotonic())
        self._timer = loop.call_later(delay, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        gone = 0
        while self._inactive:
            key, deadline = next(iter(self._inactive.items()))
            if deadline > now:
                break
            del self._inactive[key]
            self._evict(key)
            gone += 1
        if gone >= TRIM_AFTER:
            # A flood of names (a scanner, unique request dtabs) expired at once: a watch
            # and its lazy Var refer to each other (the Var restarts it when re-observed),
            # so they wait for the cycle collector; run it, then give the pages back.
            release_free_memory(collect=True)
        self._schedule()

    @property
    def active(self) -> int:
        return len(self.entries) - len(self._inactive)

    @property
    def inactive(self) -> int:
        return len(self._inactive)

    def close(self) -> list[W]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ws = list(self.entries.values())
        self.entries.clear()
        self._inactive.clear()
        for w in ws:
            w.close()
        return ws
