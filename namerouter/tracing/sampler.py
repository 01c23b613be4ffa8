"""Linkerd's ``Sampler``: a sampling decision that depends on the trace id only.

``abs(id XOR salt) % 10000 < rate * 10000`` with a salt drawn once per process, as
``com.twitter.finagle.buoyant.Sampler`` (after Finagle's zipkin sampler): every span of a
trace gets the same answer in one process, and two processes sample different subsets.
Ids are compared as Java's signed 64-bit longs, as Linkerd does.
"""
from __future__ import annotations

import random
from typing import Optional

_SALT = random.getrandbits(64)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class Sampler:
    __slots__ = ("rate", "_threshold")

    def __init__(self, rate: float) -> None:
        self.rate = min(1.0, max(0.0, float(rate)))
        self._threshold = self.rate * 10000

    def __call__(self, trace_id: int, salt: Optional[int] = None) -> bool:
        if self.rate >= 1.0:
            return True
        if self.rate <= 0.0:
            return False
        v = (trace_id ^ (_SALT if salt is None else salt)) & 0xFFFFFFFFFFFFFFFF
        if v >> 63:  # a negative Java long: abs(v - 2**64), inlined (once per request)
            v = (1 << 64) - v
        return v % 10000 < self._threshold

    def __repr__(self) -> str:
        return f"Sampler({self.rate})"
