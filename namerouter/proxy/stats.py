"""Request metrics: recorded once per request, viewed per scope at export.

Linkerd reports every request under three scopes — the server that took it, the
service (logical name) and the client (bound id) — with ``requests``, ``success``,
``failures``, ``status/<code>`` and ``request_latency_ms``. Recording into three sets
of counters costs three times the work per request; here a request is recorded once,
into the :class:`Cell` of its (server, service, client) combination, and each scope
(:class:`Scope`) is a registry *view* that sums its cells when the metrics are read.

A cell holds a status histogram and a sparse latency histogram (bucket -> count), so a
scope costs memory by the latencies seen, not by the size of the bucket table. When a
service or client scope is evicted its cells go with it; what they counted is folded
into the surviving scopes' ``retired`` cell, so a server's counters never go backwards.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from ..metrics import Counter, Metric, MetricsRegistry, Stat, bucket_of


def scope_label(path_text: str) -> str:
    """Linkerd writes a path scope without its leading slash (``svc/web``, ``#/io.l5d.fs/web``)."""
    return path_text[1:] if path_text.startswith("/") else path_text


class Cell:
    """What the requests of one (server, service, client) combination recorded."""

    __slots__ = ("statuses", "hist", "n", "sum", "min", "max", "scopes", "extra")

    def __init__(self, scopes: tuple["Scope", ...] = ()) -> None:
        #: a codec's own per-request figures (HTTP/2 streams: ``h2/stats.py``), or None;
        #: it has ``empty()``, ``add_to(other)``, ``failed`` (requests classified failed
        #: whose status says success) and ``view(prefix, kind)``
        self.extra: Any = None
        self.statuses: dict[int, int] = {}
        self.hist: dict[int, int] = {}
        self.n = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.scopes = scopes

    def record(self, status: int, ms: float) -> None:
        """One request (or one attempt) answered with ``status`` (0: none) after ``ms``."""
        s = self.statuses
        s[status] = s.get(status, 0) + 1
        i = bucket_of(ms)
        h = self.hist
        h[i] = h.get(i, 0) + 1
        self.n += 1
        self.sum += ms
        if ms > self.max:
            self.max = ms
        if ms < self.min:
            self.min = ms

    def add_to(self, other: "Cell") -> None:
        for k, v in self.statuses.items():
            other.statuses[k] = other.statuses.get(k, 0) + v
        for k, v in self.hist.items():
            other.hist[k] = other.hist.get(k, 0) + v
        other.n += self.n
        other.sum += self.sum
        other.min = min(other.min, self.min)
        other.max = max(other.max, self.max)
        ext = self.extra
        if ext is not None:
            if other.extra is None:
                other.extra = ext.empty()
            ext.add_to(other.extra)


class Scope:
    """One scope's request metrics (``<prefix>requests`` …), a view over its cells."""

    __slots__ = ("registry", "prefix", "cells", "retired", "table", "kind")

    def __init__(self, table: "Cells", prefix: str) -> None:
        self.table = table
        self.registry = table.registry
        self.prefix = prefix
        #: "server", "service" or "client" (``rt/<label>/<kind>/…``)
        parts = prefix.split("/")
        self.kind = parts[2] if len(parts) > 2 else ""
        self.cells: list[Cell] = []
        #: what evicted cells of this scope counted
        self.retired = Cell()
        self.registry.add_view(prefix, self.view)

    def total(self) -> Cell:
        acc = Cell()
        self.retired.add_to(acc)
        for c in self.cells:
            c.add_to(acc)
        return acc

    def requests(self) -> int:
        return self.retired.n + sum(c.n for c in self.cells)

    def view(self) -> dict[str, Metric]:
        t = self.total()
        p = self.prefix
        out: dict[str, Metric] = {}
        failures = 0
        for status, n in t.statuses.items():
            if status >= 500 or status <= 0:  # Linkerd's default classification: 5xx fails
                failures += n
            if status > 0:
                c = out[f"{p}status/{status}"] = Counter(f"{p}status/{status}")
                c.value = n
        ext = t.extra
        if ext is not None:
            failures = min(t.n, failures + ext.failed)
            out.update(ext.view(p, self.kind))
        for name, value in (("requests", t.n), ("success", t.n - failures), ("failures", failures)):
            c = out[p + name] = Counter(p + name)
            c.value = value
        out[p + "request_latency_ms"] = Stat.of(p + "request_latency_ms", t.hist, t.n, t.sum, t.min, t.max)
        return out

    def drop(self) -> None:
        """The scope is evicted: its metrics go, its cells' counts stay with the others."""
        self.registry.remove_prefix(self.prefix)
        self.table.drop(self)


class Cells:
    """A router's cells, one per (server, service, client) combination seen."""

    __slots__ = ("registry", "cells")

    def __init__(self, registry: MetricsRegistry) -> None:
        self.registry = registry
        self.cells: dict[tuple[Optional[Scope], Optional[Scope], Optional[Scope]], Cell] = {}

    def scope(self, prefix: str) -> Scope:
        return Scope(self, prefix)

    def cell(self, server: Optional[Scope], service: Optional[Scope], client: Optional[Scope]) -> Cell:
        key = (server, service, client)
        c = self.cells.get(key)
        if c is None:
            scopes = tuple(s for s in key if s is not None)
            c = self.cells[key] = Cell(scopes)
            for s in scopes:
                s.cells.append(c)
        return c

    def drop(self, scope: Scope) -> None:
        for key in [k for k in self.cells if scope in k]:
            c = self.cells.pop(key)
            for s in c.scopes:
                if s is not scope:
                    s.cells.remove(c)
                    c.add_to(s.retired)
        scope.cells = []
