"""Request metrics: recorded once per request, viewed per scope at export.

Linkerd reports every request under three scopes — the server that took it, the
service (logical name) and the client (bound id) — with ``requests``, ``success``,
``failures``, ``status/<code>`` and ``request_latency_ms`` (plus ``failures/<exception>``
for responses cut after their head went out), and each client once more
per service (``rt/<r>/client/<id>/service/<svc>/{requests,success,failures}``).
Recording into four sets of counters costs four times the work per request; here a
request is recorded once, into the :class:`Cell` of its (server, service, client,
client-per-service) combination, and each scope (:class:`Scope`) is a registry *view*
that sums its cells when the metrics are read.

Success and failure are decided when the request is recorded, by the service's response
classifier (``responseClassifier``: with ``io.l5d.http.allSuccessful`` a 500 is a
success in every scope), so a view only adds up. A retried attempt is recorded in the
client scopes only (as a failure: it was retried because its classifier said so).

A cell holds a status histogram and a sparse latency histogram (bucket -> count), so a
scope costs memory by the latencies seen, not by the size of the bucket table. When a
service or client scope is evicted its cells go with it; what they counted is folded
into the surviving scopes' ``retired`` cell, so a server's counters never go backwards.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from ..metrics import Counter, Metric, MetricsRegistry, Stat, bucket_of

CellKey = tuple[Optional["Scope"], Optional["Scope"], Optional["Scope"], Optional["Scope"]]


def scope_label(path_text: str) -> str:
    """Linkerd writes a path scope without its leading slash (``svc/web``, ``#/io.l5d.fs/web``)."""
    return path_text[1:] if path_text.startswith("/") else path_text


class Cell:
    """What the requests of one (server, service, client, client-per-service) combination
    recorded."""

    __slots__ = ("statuses", "hist", "n", "fails", "sum", "min", "max", "scopes", "key", "failed", "extra")

    def __init__(self, scopes: tuple["Scope", ...] = (), key: Optional[CellKey] = None) -> None:
        #: a codec's own per-request figures (HTTP/2 streams: ``h2/stats.py``), or None;
        #: it has ``empty()``, ``add_to(other)`` and ``view(prefix)``
        self.extra: Any = None
        self.statuses: dict[int, int] = {}
        self.hist: dict[int, int] = {}
        self.n = 0
        #: requests the classifier called failures
        self.fails = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.scopes = scopes
        self.key = key
        #: requests that failed after their response head went out (cut responses), by
        #: exception name (they are in ``fails`` too)
        self.failed: Optional[dict[str, int]] = None

    def record(self, status: int, ms: float, failed: bool) -> None:
        """One request (or one attempt) answered with ``status`` (0: none) after ``ms``;
        ``failed``: the classifier's verdict."""
        s = self.statuses
        s[status] = s.get(status, 0) + 1
        i = bucket_of(ms)
        h = self.hist
        h[i] = h.get(i, 0) + 1
        self.n += 1
        if failed:
            self.fails += 1
        self.sum += ms
        if ms > self.max:
            self.max = ms
        if ms < self.min:
            self.min = ms

    def record_failure(self, status: int, ms: float, exc_name: str) -> None:
        """A request whose response was cut after its head (``status`` went out) by
        ``exc_name``: counted under its status, and as a failure whatever the status."""
        self.record(status, ms, True)
        f = self.failed
        if f is None:
            f = self.failed = {}
        f[exc_name] = f.get(exc_name, 0) + 1

    def add_to(self, other: "Cell") -> None:
        for k, v in self.statuses.items():
            other.statuses[k] = other.statuses.get(k, 0) + v
        for k, v in self.hist.items():
            other.hist[k] = other.hist.get(k, 0) + v
        other.n += self.n
        other.fails += self.fails
        other.sum += self.sum
        other.min = min(other.min, self.min)
        other.max = max(other.max, self.max)
        if self.failed:
            f = other.failed
            if f is None:
                f = other.failed = {}
            for name, count in self.failed.items():
                f[name] = f.get(name, 0) + count
        ext = self.extra
        if ext is not None:
            if other.extra is None:
                other.extra = ext.empty()
            ext.add_to(other.extra)


class Scope:
    """One scope's request metrics (``<prefix>requests`` …), a view over its cells.
    ``full``: with ``status/<code>`` and ``request_latency_ms`` (a client-per-service
    scope has the three counters only)."""

    __slots__ = ("registry", "prefix", "cells", "retired", "table", "full", "dropped")

    def __init__(self, table: "Cells", prefix: str, full: bool = True) -> None:
        self.table = table
        self.registry = table.registry
        self.prefix = prefix
        self.full = full
        #: the cells this scope sums (a dict used as an ordered set: O(1) removal)
        self.cells: dict[Cell, None] = {}
        #: what evicted cells of this scope counted
        self.retired = Cell()
        self.dropped = False
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
        if self.full:
            for status, n in t.statuses.items():
                if status > 0:
                    c = out[f"{p}status/{status}"] = Counter(f"{p}status/{status}")
                    c.value = n
            for name, n in (t.failed or {}).items():
                c = out[f"{p}failures/{name}"] = Counter(f"{p}failures/{name}")
                c.value = n
            ext = t.extra
            if ext is not None:
                out.update(ext.view(p))
        for name, value in (("requests", t.n), ("success", t.n - t.fails), ("failures", t.fails)):
            c = out[p + name] = Counter(p + name)
            c.value = value
        if self.full:
            out[p + "request_latency_ms"] = Stat.of(p + "request_latency_ms", t.hist, t.n, t.sum, t.min, t.max)
        return out

    def drop(self) -> None:
        """The scope is evicted: its metrics go, its cells' counts stay with the others."""
        if self.dropped:
            return
        self.dropped = True
        self.registry.remove_prefix(self.prefix)
        self.table.drop(self)


class Cells:
    """A router's cells, one per (server, service, client, client-per-service) seen."""

    __slots__ = ("registry", "cells")

    def __init__(self, registry: MetricsRegistry) -> None:
        self.registry = registry
        self.cells: dict[CellKey, Cell] = {}

    def scope(self, prefix: str, full: bool = True) -> Scope:
        return Scope(self, prefix, full)

    def cell(self, server: Optional[Scope], service: Optional[Scope], client: Optional[Scope],
             pair: Optional[Scope] = None) -> Cell:
        key = (server, service, client, pair)
        c = self.cells.get(key)
        if c is None:
            c = self._new(key)
        return c

    def _new(self, key: CellKey) -> Cell:
        # A request still in flight when its stage was evicted records into the scopes that
        # remain (a dropped scope must not be given cells: nobody would ever remove them).
        server, service, client, pair = key
        key = (server if server is not None and not server.dropped else None,
               service if service is not None and not service.dropped else None,
               client if client is not None and not client.dropped else None,
               pair if pair is not None and not pair.dropped else None)
        c = self.cells.get(key)
        if c is None:
            scopes = tuple(s for s in key if s is not None)
            c = self.cells[key] = Cell(scopes, key)
            for s in scopes:
                s.cells[c] = None
        return c

    def drop(self, scope: Scope) -> None:
        for c in scope.cells:
            if c.key is not None:
                self.cells.pop(c.key, None)
            for s in c.scopes:
                if s is not scope:
                    s.cells.pop(c, None)
                    c.add_to(s.retired)
        scope.cells = {}
