"""Jittered exponential backoff for ZooKeeper re-syncs (decorrelated, capped)."""
from __future__ import annotations

import random


class Backoff:
    """``next()`` returns delays growing from ``base`` to ``cap`` seconds with jitter, so
    many watches that failed together do not retry together; ``reset()`` after success."""

    def __init__(self, base: float = 0.05, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self._last = 0.0

    def next(self) -> float:
        if self._last <= 0:
            self._last = self.base
        else:
            self._last = min(self.cap, random.uniform(self.base, self._last * 3))
        return self._last

    def reset(self) -> None:
        self._last = 0.0
