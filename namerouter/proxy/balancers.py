"""Load balancers over a client's endpoints (Finagle's p2c, peak-EWMA, round robin,
aperture and heap).

A balancer sees ``Node`` objects (an endpoint's weight, outstanding requests and
EWMA latency) and picks one per request. ``update(nodes)`` replaces the set when the
namer's address set changes; in-flight requests keep their node, so nothing is dropped.
Weights come from ``endpoint_addr_weight``; weight 0 nodes are never picked.

Cost per pick is O(log n) (weighted sampling by bisect over cumulative weights,
rebuilt only on update).
"""
from __future__ import annotations

import heapq
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


class Aperture(P2CLeastLoaded):
    """Finagle's aperture (least loaded): p2c among a window — the aperture — of the
    nodes, in an order random per balancer and stable across updates, so a client talks
    to few endpoints when its load is light and spreads out when it grows.

    The load is the window's outstanding requests per node, smoothed over
    ``smoothWindowMs`` (an EWMA); at or above ``highLoad`` the window grows by one node,
    at or below ``lowLoad`` it shrinks by one, never below ``minAperture`` nor beyond
    the nodes there are. When every draw in the window is down (``maxEffort``), the
    first available node outside it is used."""

    kind = "aperture"

    def __init__(self, max_effort: int = 5, smooth_window_ms: int = 5000, low_load: float = 0.5,
                 high_load: float = 2.0, min_aperture: int = 1) -> None:
        super().__init__(max_effort)
        self.tau = smooth_window_ms / 1000.0
        self.low = low_load
        self.high = high_load
        self.min_aperture = min_aperture
        #: every node, in this balancer's random order (the window is a prefix of it)
        self.ring: list[Node] = []
        self._rank: dict[int, float] = {}
        self.aperture = 0
        self.load = 0.0
        self._stamp = _monotonic()

    def update(self, nodes: Sequence[Node]) -> None:
        live = [n for n in nodes if n.weight > 0]
        rank = {id(n): self._rank.get(id(n), random.random()) for n in live}
        self._rank = rank
        self.ring = sorted(live, key=lambda n: rank[id(n)])
        start = self.aperture or self.min_aperture
        self._set_aperture(start)

    def _set_aperture(self, size: int) -> None:
        self.aperture = max(min(size, len(self.ring)), min(self.min_aperture, len(self.ring)))
        super().update(self.ring[:self.aperture])  # the p2c draws: the window, by weight

    def _adjust(self) -> None:
        """Smooth the window's load per node and move the aperture by one when it leaves the band."""
        window = self.nodes
        if not window:
            return
        now = _monotonic()
        sample = sum(n.outstanding for n in window) / len(window)
        w = math.exp(-max(now - self._stamp, 0.0) / self.tau)
        self._stamp = now
        self.load = self.load * w + sample * (1.0 - w)
        if self.load >= self.high and self.aperture < len(self.ring):
            self._set_aperture(self.aperture + 1)
        elif self.load <= self.low and self.aperture > self.min_aperture:
            self._set_aperture(self.aperture - 1)

    def pick(self) -> Optional[Node]:
        self._adjust()
        node = super().pick()
        if node is not None and not node.available:
            for n in self.ring[self.aperture:]:
                if n.available:
                    return n
        return node


class HeapLeastLoaded(Balancer):
    """Finagle's heap balancer: always the least loaded node (outstanding requests per
    weight), found in a min-heap, O(log n) per pick; among equals the one that waited
    longest. The heap learns of new load when a node is picked (it is re-filed with the
    request it is about to get) and of finished requests through :meth:`observe` (so
    the exchange reports completions: ``observes_latency``); every ``REBUILD_PICKS``
    picks it is refiled from the actual loads. Entries are versioned: a
    node re-filed leaves its older entry behind, skipped when it surfaces, and the heap
    is rebuilt when such entries outnumber the live ones. Down nodes are passed over
    (``maxEffort`` of them), then the least loaded is used anyway."""

    kind = "heap"
    observes_latency = True  # (for the completion callback; latencies are not used)
    #: the heap is refiled from the nodes' actual loads this often (a pick whose request
    #: was never sent, a request that became a tunnel, would otherwise stay counted)
    REBUILD_PICKS = 1000

    def __init__(self, max_effort: int = 5) -> None:
        super().__init__(max_effort)
        self.heap: list[tuple[float, int, Node]] = []
        self._version: dict[int, int] = {}
        self._seq = 0
        self._picks = 0

    def update(self, nodes: Sequence[Node]) -> None:
        super().update(nodes)
        self._rebuild()

    def _rebuild(self) -> None:
        self._picks = 0
        self._version = {}
        self.heap = []
        for n in self.nodes:
            self._file(n, n.outstanding / n.weight)

    def _file(self, n: Node, load: float) -> None:
        self._seq += 1
        self._version[id(n)] = self._seq
        heapq.heappush(self.heap, (load, self._seq, n))

    def _pop_min(self) -> Optional[tuple[float, Node]]:
        """The least loaded node and its load (its entry removed), or None when empty."""
        heap = self.heap
        version = self._version
        while heap:
            load, seq, n = heapq.heappop(heap)
            if version.get(id(n)) != seq:
                continue  # a node re-filed since (or gone)
            actual = n.outstanding / n.weight
            if actual > load:  # its load grew without telling us: file it as it is
                self._file(n, actual)
                continue
            # (a lower actual load is a pick whose request is not sent yet: keep counting it)
            return load, n
        return None

    def pick(self) -> Optional[Node]:
        if not self.nodes:
            return None
        self._picks += 1
        if len(self.heap) > 4 * len(self.nodes) + 16 or self._picks >= self.REBUILD_PICKS:
            self._rebuild()
        passed: list[tuple[float, Node]] = []
        chosen: Optional[tuple[float, Node]] = None
        for _ in range(self.max_effort):
            entry = self._pop_min()
            if entry is None:
                break
            if entry[1].available:
                chosen = entry
                break
            passed.append(entry)
        for load, n in passed:
            self._file(n, load)
        if chosen is None:
            if not passed:
                self._rebuild()
                return self.nodes[0]
            chosen = passed[0]
        load, node = chosen
        # the request it is about to carry counts already (it may not be sent yet)
        self._file(node, load + 1.0 / node.weight)
        return node

    def observe(self, node: Node, latency_s: float) -> None:
        if id(node) in self._version:
            self._file(node, node.outstanding / node.weight)


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
    if kind == "aperture":
        return Aperture(effort, c.smoothWindowMs, c.lowLoad, c.highLoad, c.minAperture)
    if kind == "heap":
        return HeapLeastLoaded(effort)
    raise ValueError(f"loadBalancer.kind: unknown balancer {kind!r}; known: p2c, ewma, roundRobin, aperture, heap")
