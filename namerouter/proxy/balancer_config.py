"""The ``loadBalancer`` block (Linkerd's load_balancer.md): used by both the router schema
(``config.py``) and the client policy blocks (``policy/config.py``), so it sits in a
module of its own that imports neither."""
from __future__ import annotations

from dataclasses import dataclass, field

#: Load balancer kinds (see ``balancers.py``).
BALANCER_KINDS = ("p2c", "ewma", "roundRobin")


@dataclass
class LoadBalancerConfig:
    kind: str = field(default="p2c", metadata={"choices": BALANCER_KINDS})
    maxEffort: int = field(default=5, metadata={"min": 1, "max": 100})
    decayTimeMs: int = field(default=10000, metadata={"min": 1})
