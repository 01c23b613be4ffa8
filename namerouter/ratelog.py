"""Rate-limited warnings for bad input from peers.

A hostile or broken peer can send bad input in a loop; every instance must be answered,
but the log must stay readable. One line per kind of event at most every ``interval``
seconds; the ones in between are counted and reported with the next line.
"""
from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    """One warning line per event kind at most every ``interval`` seconds; the ones in
    between are counted and reported with the next line (a hostile peer can send bad
    input in a loop; the log must stay readable)."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        if len(self._last) > 1024:  # kinds come from peers' input: keep the table bounded
            self._last.clear()
            self._suppressed.clear()
        self._last[kind] = now
        n = self._suppressed.pop(kind, 0)
        if n:
            msg += f" ({n} more like it suppressed)"
        self.logger.warning(msg, *args)
