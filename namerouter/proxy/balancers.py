"""Load balancers over a client's endpoints (Finagle's p2c, peak-EWMA, round robin).

A balancer sees ``Node`` objects (an endpoint's weight, outstanding requests and
EWMA latency) and picks one per request. ``update(nodes)`` replaces the set when the
namer's address set changes; in-flight requests keep their node, so nothing is dropped.
Weights come from ``endpoint_addr_weight``; weight 0 nodes are never picked.

Cost per pick is O(log n) (weighted sampling by bisect over cumulative weights,
rebuilt only on update).
"""
from __future__ import annotations

import math
import random
import time
from bisect import bisect_right
from itertools import accumulate
from typing import Optional, Sequence

from .balancer_config import LoadBalancerConfig

_monotonic = time.monotonic


class Node:
    """Load-balancer state of one endpoint (the pool subclasses this)."""

    __slots__ = ("weight", "outstanding", "down_until", "ewma_cost", "ewma_stamp")

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight
        self.outstanding = 0
        #: after a connect failure the node is avoided until this monotonic time
        self.down_until = 0.0
        self.ewma_cost = 0.0
        self.ewma_stamp = _monotonic()

    @property
    def available(self) -> bool:
        return self.down_until == 0.0 or self.down_until <= _monotonic()


class Balancer:
    kind = ""
    #: whether :meth:`observe` uses latencies (the exchange skips the clock read if not)
    observes_latency = False

    def __init__(self, max_effort: int = 5) -> None:
        self.max_effort = max_effort
        self.nodes: list[Node] = []
        self._cum: list[float] = []
        self._total = 0.0

    def update(self, nodes: Sequence[Node]) -> None:
        self.nodes = [n for n in nodes if n.weight > 0]
        self._cum = list(accumulate(n.weight for n in self.nodes))
        self._total = self._cum[-1] if self._cum else 0.0

    def _weighted(self) -> Node:
        if len(self.nodes) == 1:
            return self.nodes[0]
        i = bisect_right(self._cum, random.random() * self._total)
        return self.nodes[i if i < len(self.nodes) else -1]

    def pick(self) -> Optional[Node]:
        raise NotImplementedError

    # Latency feedback (only EWMA uses it).
    def observe(self, node: Node, latency_s: float) -> None:
        pass


class P2CLeastLoaded(Balancer):
    """Power of two choices: two weighted-random nodes, the less loaded (per weight) wins.

    ``maxEffort`` bounds how many times we re-draw when a pick lands on a node that is
    down (recent connect failure) before giving up and using it anyway.
    """

    kind = "p2c"

    def _load(self, n: Node) -> float:
        return n.outstanding / n.weight

    def pick(self) -> Optional[Node]:
        nodes = self.nodes
        if not nodes:
            return None
        if len(nodes) == 1:
            return nodes[0]
        best = None
        for _ in range(self.max_effort):
            a = self._weighted()
            b = self._weighted()
            if a is b:
                b = self._weighted()
            a_ok, b_ok = a.available, b.available
            if a_ok and b_ok:
                best = a if self._load(a) <= self._load(b) else b
                return best
            if a_ok:
                return a
            if b_ok:
                return b
            best = a
        # Everything we drew is down: prefer any available node, else the drawn one.
        for n in nodes:
            if n.available:
                return n
        return best


class PeakEwma(P2CLeastLoaded):
    """p2c over peak-EWMA latency × (outstanding + 1) (Finagle's ``ewma``).

    The latency estimate jumps up to any slower sample at once (peak) and decays
    toward faster samples with time constant ``decayTimeMs``.
    """

    kind = "ewma"
    #: cost of a node with no latency sample yet but requests in flight (Finagle's penalty)
    PENALTY = 1e9

    def __init__(self, max_effort: int = 5, decay_time_ms: int = 10000) -> None:
        super().__init__(max_effort)
        self.tau = decay_time_ms / 1000.0

    def _cost(self, n: Node) -> float:
        now = _monotonic()
        dt = max(now - n.ewma_stamp, 0.0)
        cost = n.ewma_cost * math.exp(-dt / self.tau)
        if cost == 0.0 and n.outstanding:
            return self.PENALTY + n.outstanding
        return cost

    def _load(self, n: Node) -> float:
        return self._cost(n) * (n.outstanding + 1) / n.weight

    observes_latency = True

    def observe(self, node: Node, latency_s: float) -> None:
        now = _monotonic()
        rtt = latency_s * 1000.0
        cost = node.ewma_cost
        if rtt > cost:
            node.ewma_cost = rtt
        else:
            w = math.exp(-max(now - node.ewma_stamp, 0.0) / self.tau)
            node.ewma_cost = cost * w + rtt * (1.0 - w)
        node.ewma_stamp = now


class RoundRobin(Balancer):
    """Smooth weighted round robin (each node gets its share, evenly interleaved)."""

    kind = "roundRobin"

    def update(self, nodes: Sequence[Node]) -> None:
        super().update(nodes)
        self._current = [0.0] * len(self.nodes)

    def pick(self) -> Optional[Node]:
        nodes = self.nodes
        if not nodes:
            return None
        for _ in range(min(self.max_effort, len(nodes))):
            cur = self._current
            best_i = 0
            best = -math.inf
            for i, n in enumerate(nodes):
                cur[i] += n.weight
                if cur[i] > best:
                    best, best_i = cur[i], i
            cur[best_i] -= self._total
            n = nodes[best_i]
            if n.available:
                return n
        return nodes[best_i]


def make_balancer(config: Optional[LoadBalancerConfig] = None) -> Balancer:
    """A balancer from a validated ``loadBalancer`` block (None: Linkerd's default, p2c)."""
    c = config if config is not None else LoadBalancerConfig()
    kind = c.kind
    effort = c.maxEffort
    if kind == "p2c":
        return P2CLeastLoaded(effort)
    if kind == "ewma":
        return PeakEwma(effort, c.decayTimeMs)
    if kind == "roundRobin":
        return RoundRobin(effort)
    raise ValueError(f"loadBalancer.kind: unknown balancer {kind!r}; known: p2c, ewma, roundRobin")
