"""The binding cache: one live bound tree per (dtab, path), shared, bounded, idle-evicted.

Why: binding is per *name*, not per request. The first ``bind(dtab, path)`` builds the
reactive binding and the cache keeps it warm (observed) so that every later caller gets
the same current tree at once, and namer watches keep it current. A router that sees
random Host headers (a scanner, Linkerd #1766) must not grow memory or watches without
bound, so:

* an entry nobody observes (apart from the cache itself) and nobody asked for during
  ``idle_ttl`` seconds is released: its warm observation is closed, which closes the
  namer watches and DNS polls under it (if nobody else holds them);
* the cache holds at most ``max_size`` entries; past that the least recently used
  entries go first, preferring those nobody observes.

Callers that keep using a binding should observe its Activity (the proxy does, per
name); an evicted Activity that is still observed stays live for its observers (it is
lazy), it is only no longer shared. Sampling an Activity without observing it is fine
while it is cached.

Measured memory per cached name: see the ``interpreter`` module docstring (about 1.4 KB
static, 10 KB through the fs namer; ``tests/test_naming_cache.py`` prints the figures).
"""
from __future__ import annotations

import asyncio
import gc
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable, Optional

from .var import Activity, Closable


def _noop(_: Any) -> None:
    pass


#: Releasing at least this many entries at once gives freed memory back to the system.
TRIM_AFTER = 64
_trim: Optional[Callable[[int], int]] = None


def release_free_memory(collect: bool = False) -> None:
    """Hand freed heap memory back to the operating system (glibc's ``malloc_trim``);
    ``collect``: run the cycle collector first (what was released may be cyclic).

    A burst of distinct names (a scanner, hostile request dtabs) fills the caches with
    many small objects; once they expire, the C allocator keeps the freed pages, so the
    process would stay at its peak size. Best effort: a no-op where glibc is absent.
    """
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = lambda _: 0  # noqa: E731 - not glibc: nothing to do
    if collect:
        gc.collect()
    _trim(0)


class _Entry:
    __slots__ = ("activity", "warm", "last_used")

    def __init__(self, activity: Activity[Any], now: float) -> None:
        self.activity = activity
        self.warm: Optional[Closable] = activity.observe(_noop)
        self.last_used = now

    @property
    def observed_outside(self) -> bool:
        # The cache's own warm observation is one observer.
        return self.activity.states.observer_count > 1

    def release(self) -> None:
        warm, self.warm = self.warm, None
        if warm is not None:
            warm.close()


class BindingCache:
    """Maps keys to live Activities. Not thread-safe: used on the event loop."""

    def __init__(
        self,
        max_size: int = 1000,
        idle_ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("binding cache max_size must be at least 1")
        if idle_ttl <= 0:
            raise ValueError("binding cache idle_ttl must be positive")
        self.max_size = max_size
        self.idle_ttl = float(idle_ttl)
        self._clock = clock
        self._entries: "OrderedDict[Hashable, _Entry]" = OrderedDict()
        self._sweep_handle: Optional[asyncio.TimerHandle] = None
        self._sweep_loop: Optional[asyncio.AbstractEventLoop] = None
        self._last_sweep = clock()
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self.evicted = 0

    def get(self, key: Hashable, make: Callable[[], Activity[Any]]) -> Activity[Any]:
        now = self._clock()
        e = self._entries.get(key)
        if e is not None:
            self.hits += 1
            e.last_used = now
            self._entries.move_to_end(key)
            return e.activity
        self.misses += 1
        e = _Entry(make(), now)
        self._entries[key] = e
        if len(self._entries) > self.max_size:
            self._evict_for_size()
        self._maybe_sweep(now)
        return e.activity

    def peek(self, key: Hashable) -> Optional[Activity[Any]]:
        e = self._entries.get(key)
        return None if e is None else e.activity

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    # eviction ----------------------------------------------------------------------
    def _evict_for_size(self) -> None:
        excess = len(self._entries) - self.max_size
        if excess <= 0:
            return
        # Least recently used first, unobserved ones before observed ones; never the
        # entry just added (its caller is about to use it).
        newest = next(reversed(self._entries))
        # Same victims as filtering the whole cache, but stop at the first `excess`
        # found: a full scan per insert made a full cache cost O(size) per new name
        # (namerd re-binding 1,000 watched names after its 10th dtab change: >10 s).
        victims = []
        for k, e in self._entries.items():
            if k != newest and not e.observed_outside:
                victims.append(k)
                if len(victims) == excess:
                    break
        if len(victims) < excess:
            candidates = [k for k in self._entries if k != newest]
            chosen = set(victims)
            victims += [k for k in candidates if k not in chosen][: excess - len(victims)]
        for k in victims:
            self._entries.pop(k).release()
            self.evicted += 1

    def sweep(self, now: Optional[float] = None) -> int:
        """Release entries idle for ``idle_ttl``; returns how many went."""
        now = self._clock() if now is None else now
        self._last_sweep = now
        gone = []
        for k, e in self._entries.items():
            if e.observed_outside:
                e.last_used = now  # in use: idle time starts when the last observer leaves
            elif now - e.last_used >= self.idle_ttl:
                gone.append(k)
        for k in gone:
            self._entries.pop(k).release()
            self.expired += 1
        if len(gone) >= TRIM_AFTER:
            release_free_memory()
        return len(gone)

    @property
    def sweep_interval(self) -> float:
        return max(0.02, min(self.idle_ttl / 4.0, 60.0))

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep >= self.sweep_interval:
            self.sweep(now)
        self._schedule()

    def _schedule(self) -> None:
        """Keep a timer running while there are entries, so idle ones go even when no
        new name arrives."""
        if not self._entries:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        h = self._sweep_handle
        if h is not None:
            if self._sweep_loop is loop:
                return
            h.cancel()  # a timer left on another (closed) loop
        self._sweep_loop = loop
        self._sweep_handle = loop.call_later(self.sweep_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._sweep_handle = None
        self.sweep()
        self._schedule()

    def clear(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for e in self._entries.values():
            e.release()
        self._entries.clear()

    def stats(self) -> dict[str, Any]:
        observed = sum(1 for e in self._entries.values() if e.observed_outside)
        return {
            "size": len(self._entries),
            "observed": observed,
            "idle": len(self._entries) - observed,
            "maxSize": self.max_size,
            "idleTtlSecs": self.idle_ttl,
            "hits": self.hits,
            "misses": self.misses,
            "expires": self.expired,
            "evicts": self.evicted,
        }
