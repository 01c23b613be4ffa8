"""The ``loadBalancer`` block (Linkerd's load_balancer.md): used by both the router schema
(``config.py``) and the client policy blocks (``policy/config.py``), so it sits in a
module of its own that imports neither."""
from __future__ import annotations

from dataclasses import dataclass, field

#: Load balancer kinds (see ``balancers.py``).
BALANCER_KINDS = ("p2c", "ewma", "roundRobin", "aperture", "heap")


@dataclass
class LoadBalancerConfig:
    """Keys of every kind; each kind reads its own (``decayTimeMs``: ewma; ``smoothWindowMs``,
    ``lowLoad``, ``highLoad``, ``minAperture``: aperture)."""

    kind: str = field(default="p2c", metadata={"choices": BALANCER_KINDS})
    maxEffort: int = field(default=5, metadata={"min": 1, "max": 100})
    decayTimeMs: int = field(default=10000, metadata={"min": 1})
    smoothWindowMs: int = field(default=5000, metadata={"min": 1})
    lowLoad: float = field(default=0.5, metadata={"min": 0.0})
    highLoad: float = field(default=2.0, metadata={"min": 0.0})
    minAperture: int = field(default=1, metadata={"min": 1, "max": 100_000})

    def __post_init__(self) -> None:
        if self.lowLoad >= self.highLoad:
            raise ValueError(f"lowLoad ({self.lowLoad}) must be below highLoad ({self.highLoad})")
