"""Live figures for the admin dashboard (``GET /admin/dashboard.json``).

``/admin/metrics.json`` holds cumulative counters and *lifetime* latency histograms: good
for a scraper, useless for "what is failing right now". The dashboard needs rates,
success rates and percentiles of the last seconds, plus a few minutes of history for
its charts. :class:`DashboardSampler` computes them from the same registry: once a
second it reads every request scope's counters (``requests``, ``success``) and the
bucket counts of its ``request_latency_ms`` stat, and keeps

* per scope (router, server, service, client) a ring of per-second points — requests,
  successes, p99 (and p50/p95 and connections for routers and servers);
* the sparse bucket deltas of the last ``WINDOW_TICKS`` seconds, from which the table's
  p50/p95/p99 are computed for the scopes a response actually shows.

It runs only while someone looks: the first poll starts it, and it stops (and forgets
everything) ``IDLE_STOP_S`` after the last poll, so an admin server nobody watches pays
nothing. Its memory is bounded by the number of scopes in the registry, which the data
plane bounds (binding cache, idle eviction); a scope that leaves the registry leaves
the sampler on the next discovery.

Scopes are found by their Linkerd names, the contract with the data plane:
``rt/<label>/server/<ip>/<port>/``, ``rt/<label>/service/<name>/``,
``rt/<label>/client/<id>/``, each with ``requests``, ``success``, ``failures`` and
``request_latency_ms``; services add ``retries/total``, clients ``retries/requeues``,
``connections`` and ``failure_accrual/{removed,removals,revivals}``. Endpoint lists, pool
figures and limits (``pool.maxSize``) and each endpoint's failure-accrual state
(``alive`` / ``dead`` / ``probing``) of a client come from ``router.client_state()``.

Query parameters: ``router`` (a label), ``q`` (substring of the name, case-insensitive),
``sort`` (``successRate`` — worst first, the default —, ``rps``, ``p99``, ``name``),
``soffset``/``slimit`` and ``coffset``/``climit`` (paging of services and clients; the
limit is at most ``MAX_LIMIT``).
"""
from __future__ import annotations

import asyncio
import itertools
import math
import operator
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from aiohttp import web

from ..metrics import BUCKET_BOUNDS, Counter, Gauge, MetricsRegistry, Stat
from .app import json_response

TICK_S = 1.0
#: table figures (rates, success rate, percentiles) cover the last WINDOW_TICKS ticks
WINDOW_TICKS = 10
#: chart points kept per router/server and per service/client
HISTORY_TOP = 300
HISTORY_NAMES = 120
IDLE_STOP_S = 60.0
#: rediscover scopes at least this often even if the registry size did not change
REDISCOVER_TICKS = 5
DEFAULT_LIMIT = 25
MAX_LIMIT = 200

_LATENCY = "request_latency_ms"
_KINDS = ("server", "service", "client")
_NAN = float("nan")
_INDEXES = range(len(BUCKET_BOUNDS))

SparseDelta = list[tuple[int, int]]


def percentiles(delta: Iterable[tuple[int, int]], ps: tuple[float, ...], top: float) -> list[Optional[float]]:
    """Percentiles of a sparse histogram (bucket index, count); ``top`` stands in for the
    unbounded last bucket. None when the histogram is empty."""
    items = sorted(delta)
    total = sum(c for _, c in items)
    if total <= 0:
        return [None] * len(ps)
    out: list[Optional[float]] = []
    for p in ps:
        target = p * total
        seen = 0
        value = top
        for i, c in items:
            seen += c
            if seen >= target:
                b = BUCKET_BOUNDS[i]
                value = top if math.isinf(b) else min(b, top) if top > 0 else b
                break
        out.append(value)
    return out


def merge(deltas: Iterable[SparseDelta]) -> SparseDelta:
    acc: dict[int, int] = {}
    for d in deltas:
        for i, c in d:
            acc[i] = acc.get(i, 0) + c
    return list(acc.items())


class Ring:
    """Fixed-capacity columns of floats (one array per field): compact history."""

    __slots__ = ("fields", "capacity", "cols", "n")

    def __init__(self, fields: tuple[str, ...], capacity: int) -> None:
        self.fields = fields
        self.capacity = capacity
        self.cols = {f: array("f") for f in fields}
        self.n = 0

    def append(self, **values: float) -> None:
        for f, col in self.cols.items():
            col.append(values.get(f, _NAN))
            if len(col) > self.capacity:
                del col[0]
        self.n = len(next(iter(self.cols.values())))

    def last(self, field_: str, k: int) -> list[float]:
        col = self.cols[field_]
        return list(col[-k:]) if k else []


@dataclass
class Scope:
    """One request scope (a server, service or client of a router)."""

    router: str
    kind: str
    name: str
    #: the scope's metric names start with it; its metric objects are re-read every tick
    #: (the data plane's scopes are views: new objects on each read)
    prefix: str
    requests: Counter
    success: Counter
    latency: Stat
    extras: dict[str, Any]
    ring: Ring
    prev_requests: int = 0
    prev_success: int = 0
    prev_count: int = 0
    prev_hist: Optional[list[int]] = None
    #: [lo, hi): the buckets this scope's samples have used (see _hist_delta)
    span: tuple[int, int] = (0, 0)
    window: deque[SparseDelta] = field(default_factory=lambda: deque(maxlen=WINDOW_TICKS))
    #: the tick's sparse latency delta (routers merge those of their servers)
    tick_delta: SparseDelta = field(default_factory=list)
    tick_requests: int = 0
    tick_success: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.router, self.kind, self.name)


def _extras_for(metrics: dict[str, Any], prefix: str, kind: str) -> dict[str, Any]:
    names = {"service": ("retries/total", "retries/budget_exhausted"),
             "client": ("retries/requeues", "connections", "failures/connect", "failure_accrual/removed",
                        "failure_accrual/removals", "failure_accrual/revivals"),
             "server": ("connections",)}[kind]
    out = {}
    for n in names:
        m = metrics.get(prefix + n)
        if m is not None:
            out[n] = m
    return out


def _value(m: Any) -> Optional[float]:
    if isinstance(m, (Counter, Gauge)):
        v = m.value
        return None if isinstance(v, float) and math.isnan(v) else v
    return None


class DashboardSampler:
    """Per-second figures of every request scope, while someone polls (module doc)."""

    def __init__(self, registry: MetricsRegistry, tick_s: float = TICK_S, idle_stop_s: float = IDLE_STOP_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.tick_s = tick_s
        self.idle_stop_s = idle_stop_s
        self.clock = clock
        self.scopes: dict[tuple[str, str, str], Scope] = {}
        self.routers: dict[str, Scope] = {}
        #: wall-clock ms of each tick (the x axis of every series, aligned at the end)
        self.times: deque[int] = deque(maxlen=HISTORY_TOP)
        self.ticks = 0
        self._last_poll = 0.0
        self._registry_size = -1
        self._task: Optional[asyncio.Task[None]] = None

    # lifecycle -----------------------------------------------------------------------
    def touch(self) -> None:
        """A poll: start sampling if idle."""
        self._last_poll = self.clock()
        if self._task is None or self._task.done():
            self.tick()  # a first snapshot, so the next tick already has deltas
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        try:
            while self.clock() - self._last_poll < self.idle_stop_s:
                await asyncio.sleep(self.tick_s)
                self.tick()
        finally:
            self.reset()

    def reset(self) -> None:
        self.scopes.clear()
        self.routers.clear()
        self.times.clear()
        self._registry_size = -1

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.reset()

    # sampling ----------------------------------------------------------------------------
    def _discover(self, snap: dict[str, Any]) -> None:
        found: dict[tuple[str, str, str], str] = {}
        for name, m in snap.items():
            if not (isinstance(m, Stat) and name.endswith("/" + _LATENCY) and name.startswith("rt/")):
                continue
            prefix = name[: -len(_LATENCY)]
            parts = prefix[:-1].split("/")
            if len(parts) < 4 or parts[2] not in _KINDS:
                continue
            found[(parts[1], parts[2], "/".join(parts[3:]))] = prefix
        for key in [k for k in self.scopes if k not in found]:
            del self.scopes[key]
        for key, prefix in found.items():
            if key in self.scopes:
                continue
            latency = snap.get(prefix + _LATENCY)
            requests = snap.get(prefix + "requests")
            success = snap.get(prefix + "success")
            if not isinstance(requests, Counter) or not isinstance(success, Counter) or not isinstance(latency, Stat):
                continue
            router, kind, name = key
            ring = Ring(("requests", "success", "p50", "p95", "p99", "connections"), HISTORY_TOP) if kind == "server" \
                else Ring(("requests", "success", "p99"), HISTORY_NAMES)
            self.scopes[key] = Scope(router, kind, name, prefix, requests, success, latency,
                                     _extras_for(snap, prefix, kind), ring,
                                     prev_requests=requests.value, prev_success=success.value,
                                     prev_count=latency.count, prev_hist=list(latency.counts))
        self._registry_size = len(snap)

    def tick(self) -> None:
        snap = self.registry.snapshot()
        if self._registry_size != len(snap) or self.ticks % REDISCOVER_TICKS == 0:
            self._discover(snap)
        for s in self.scopes.values():
            self._refresh(s, snap)
        self.ticks += 1
        self.times.append(int(time.time() * 1000))
        per_router: dict[str, list[Scope]] = {}
        for s in self.scopes.values():
            self._sample(s)
            if s.kind == "server":
                per_router.setdefault(s.router, []).append(s)
        for label in [r for r in self.routers if r not in per_router]:
            del self.routers[label]
        for label, servers in per_router.items():
            r = self.routers.get(label)
            if r is None:
                first = servers[0]
                r = self.routers[label] = Scope(label, "router", label, "", first.requests, first.success, first.latency,
                                                {}, Ring(("requests", "success", "p50", "p95", "p99", "connections"),
                                                         HISTORY_TOP))
            r.tick_requests = sum(s.tick_requests for s in servers)
            r.tick_success = sum(s.tick_success for s in servers)
            r.tick_delta = merge(s.tick_delta for s in servers)
            r.window.append(r.tick_delta)
            conns = [_value(s.extras.get("connections")) for s in servers]
            self._append(r, sum(c for c in conns if c is not None), max(s.latency.max for s in servers))

    @staticmethod
    def _refresh(s: Scope, snap: dict[str, Any]) -> None:
        """The scope's current metric objects (a Counter kept from an earlier read of a
        view would never change)."""
        p = s.prefix
        requests, success, latency = snap.get(p + "requests"), snap.get(p + "success"), snap.get(p + _LATENCY)
        if isinstance(requests, Counter) and isinstance(success, Counter) and isinstance(latency, Stat):
            s.requests, s.success, s.latency = requests, success, latency
        s.extras = _extras_for(snap, p, s.kind)

    def _sample(self, s: Scope) -> None:
        req, ok = s.requests.value, s.success.value
        s.tick_requests, s.tick_success = max(0, req - s.prev_requests), max(0, ok - s.prev_success)
        s.prev_requests, s.prev_success = req, ok
        stat = s.latency
        if stat.count != s.prev_count and s.prev_hist is not None:
            s.tick_delta = self._hist_delta(s, stat)
            s.prev_count = stat.count
        else:
            s.tick_delta = []
        s.window.append(s.tick_delta)
        conns = _value(s.extras.get("connections")) if s.kind in ("server", "client") else None
        self._append(s, conns, stat.max)

    @staticmethod
    def _hist_delta(s: Scope, stat: Stat) -> SparseDelta:
        """The buckets that grew since the last tick. Only the span of buckets this scope
        has used so far is compared (a service's latencies fill a few dozen of the ~750);
        when the growth found there falls short of the count's, a sample landed outside
        it: the whole histogram is compared and the span widened. ``map``/``compress``
        keep the comparison in C."""
        cur, prev = stat.counts, s.prev_hist
        assert prev is not None
        lo, hi = s.span
        grown = stat.count - s.prev_count
        idx = list(itertools.compress(range(lo, hi), map(operator.ne, cur[lo:hi], prev[lo:hi])))
        delta = [(i, cur[i] - prev[i]) for i in idx]
        if sum(c for _, c in delta) == grown:
            prev[lo:hi] = cur[lo:hi]
            return delta
        idx = list(itertools.compress(_INDEXES, map(operator.ne, cur, prev)))
        delta = [(i, cur[i] - prev[i]) for i in idx]
        if idx:
            s.span = (min(lo, idx[0]) if hi > lo else idx[0], max(hi, idx[-1] + 1))
        s.prev_hist = list(cur)
        return delta

    @staticmethod
    def _append(s: Scope, connections: Optional[float], top: float) -> None:
        p50, p95, p99 = percentiles(s.tick_delta, (0.5, 0.95, 0.99), top)
        s.ring.append(requests=s.tick_requests, success=s.tick_success,
                      p50=_NAN if p50 is None else p50, p95=_NAN if p95 is None else p95,
                      p99=_NAN if p99 is None else p99,
                      connections=_NAN if connections is None else connections)

    # figures -----------------------------------------------------------------------------
    def window_seconds(self, s: Scope) -> float:
        k = min(len(s.window), len(self.times))
        if k <= 0:
            return 0.0
        ts = list(self.times)
        if len(ts) > k:
            return max(1e-3, (ts[-1] - ts[-1 - k]) / 1000.0)
        return self.tick_s * k

    def rates(self, s: Scope) -> dict[str, Any]:
        """Request rate and success rate over the window (cheap: no percentiles)."""
        k = min(len(s.window), s.ring.n)
        req = sum(s.ring.last("requests", k))
        ok = sum(s.ring.last("success", k))
        secs = self.window_seconds(s)
        return {"rps": req / secs if secs else 0.0,
                "successRate": (ok / req) if req else None,
                "failuresPerS": (req - ok) / secs if secs else 0.0}

    def figures(self, s: Scope) -> dict[str, Any]:
        f = self.rates(s)
        p50, p95, p99 = percentiles(merge(s.window), (0.5, 0.95, 0.99), s.latency.max)
        f.update(p50=p50, p95=p95, p99=p99, requests=s.requests.value if s.kind != "router" else None)
        for name, m in s.extras.items():
            v = _value(m)
            if v is not None:
                f[name] = v
        return f

    def series(self, s: Scope, fields: tuple[str, ...] = ("requests", "success", "p99")) -> dict[str, list[Any]]:
        secs = self.tick_s
        out: dict[str, list[Any]] = {}
        for f in fields:
            vals = s.ring.last(f, s.ring.n)
            if f in ("requests", "success"):
                vals = [v / secs for v in vals]
            out["rps" if f == "requests" else f] = [None if math.isnan(v) else round(v, 3) for v in vals]
        return out


# The endpoint -------------------------------------------------------------------------

def _int_param(q: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected an integer, got {raw[:40]!r}\n")
    return max(lo, min(hi, v))


SORTS = ("successRate", "rps", "p99", "name")


def _sort_key(sort: str, sampler: DashboardSampler) -> Callable[[Scope], Any]:
    if sort == "name":
        return lambda s: (s.router, s.name)
    if sort == "rps":
        return lambda s: (-sampler.rates(s)["rps"], s.name)
    if sort == "p99":
        def p99(s: Scope) -> Any:
            v = percentiles(merge(s.window), (0.99,), s.latency.max)[0]
            return (v is None, -(v or 0.0), s.name)
        return p99

    def worst_first(s: Scope) -> Any:
        r = sampler.rates(s)
        sr = r["successRate"]
        # no traffic in the window sorts after every scope that has some
        return (sr is None, sr if sr is not None else 0.0, -r["rps"], s.name)
    return worst_first


def dashboard_routes(registry: MetricsRegistry,
                     client_states: Callable[[], dict[str, dict[str, Any]]],
                     sampler: Optional[DashboardSampler] = None) -> list[tuple[str, str, Any]]:
    """``GET /admin/dashboard.json``; ``client_states()`` → ``{router label: client_state()}``."""
    sampler = sampler or DashboardSampler(registry)

    def table(kind: str, label: Optional[str], text: str, sort: str, offset: int, limit: int,
              states: Optional[dict[str, dict[str, Any]]]) -> dict[str, Any]:
        every = [s for s in sampler.scopes.values() if s.kind == kind]
        chosen = [s for s in every if (label is None or s.router == label) and (not text or text in s.name.lower())]
        chosen.sort(key=_sort_key(sort, sampler))
        items = []
        for s in chosen[offset:offset + limit]:
            item = {"router": s.router, "name": "/" + s.name, "figures": sampler.figures(s),
                    "series": sampler.series(s)}
            if states is not None:
                st = (states.get(s.router) or {}).get("/" + s.name)
                if st is not None:
                    item["state"] = {k: st[k] for k in ("state", "endpoints", "loadBalancer", "failure",
                                                        "authority", "pool", "failureAccrual") if k in st}
            items.append(item)
        return {"total": len(every), "matched": len(chosen), "offset": offset, "limit": limit, "items": items}

    async def handler(request: web.Request) -> web.Response:
        sampler.touch()
        q = request.query
        label = q.get("router") or None
        text = (q.get("q") or "").strip().lower()[:200]
        sort = q.get("sort") or "successRate"
        if sort not in SORTS:
            raise web.HTTPBadRequest(text=f"sort: expected one of {', '.join(SORTS)}, got {sort[:40]!r}\n")
        soffset = _int_param(q, "soffset", 0, 0, 10**9)
        coffset = _int_param(q, "coffset", 0, 0, 10**9)
        slimit = _int_param(q, "slimit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        climit = _int_param(q, "climit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        routers = []
        for r_label, r in sorted(sampler.routers.items()):
            servers = sorted((s for s in sampler.scopes.values() if s.kind == "server" and s.router == r_label),
                             key=lambda s: s.name)
            fig = sampler.figures(r)
            conns = [c for c in (_value(s.extras.get("connections")) for s in servers) if c is not None]
            fig["connections"] = sum(conns)
            fig["requests"] = sum(s.requests.value for s in servers)
            fields = ("requests", "success", "p50", "p95", "p99", "connections")
            routers.append({
                "label": r_label, "figures": fig, "series": sampler.series(r, fields),
                "servers": [{"id": s.name, "figures": sampler.figures(s), "series": sampler.series(s, fields)}
                            for s in servers],
            })
        try:
            states = client_states() if climit else {}
        except Exception:  # the dashboard must render even if a router cannot report
            states = {}
        doc = {
            "tickMs": int(sampler.tick_s * 1000),
            "windowS": WINDOW_TICKS * sampler.tick_s,
            "times": list(sampler.times),
            "routers": routers,
            "services": table("service", label, text, sort, soffset, slimit, None),
            "clients": table("client", label, text, sort, coffset, climit, states),
        }
        resp = json_response(doc)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    return [("GET", "/admin/dashboard.json", handler)]
