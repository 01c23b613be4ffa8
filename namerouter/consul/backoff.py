"""Decorrelated jittered backoff (Finagle's ``Backoff.decorrelatedJittered``) for watch retries."""
from __future__ import annotations

import random


class JitteredBackoff:
    """Each delay is random in [min, 3 * previous], capped at ``max_s``; ``reset()`` after success.

    Jitter keeps a fleet of routers from reconnecting to a restarted server in lockstep.
    """

    def __init__(self, min_s: float = 0.01, max_s: float = 5.0, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self._last = min_s

    def reset(self) -> None:
        self._last = self.min_s

    def next(self) -> float:
        delay = min(self.max_s, self._rng.uniform(self.min_s, max(self.min_s, self._last * 3)))
        self._last = delay
        return delay
