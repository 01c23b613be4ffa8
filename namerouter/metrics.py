"""Metrics registry: counters, gauges and latency stats under Linkerd's flat names.

Names are slash-separated scopes as Linkerd writes them, e.g.
``rt/outgoing/service/svc/web/requests``. The admin layer exports the registry as
``/admin/metrics.json`` and Prometheus text; this module only records. Recording is on
the hot path, so a counter is a plain attribute increment and a stat a bucket bump.

A *view* (``add_view``) is a scope whose metrics are computed when they are read: the
data plane records each request once, into one object, and builds the per-scope
counters of a server, a service and a client from those objects at export time.

``dump()`` / ``merge_dumps()`` carry a registry's values between processes (the
workers of ``namerouter --workers N``): counters and gauges add up, stats merge their
buckets, so percentiles of the sum are exact to the bucket.
"""
from __future__ import annotations

import bisect
import math
from bisect import bisect_left
import threading
from typing import Any, Callable, Iterator, Optional, Sequence, Union

Number = Union[int, float]
#: one metric in ``MetricsRegistry.dump()``: ``[kind, ...]`` (JSON, so untyped items)
Dumped = list[Any]


class Counter:
    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def incr(self, n: int = 1) -> None:
        self.value += n


class Gauge:
    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable[[], Number]) -> None:
        self.name = name
        self.fn = fn

    @property
    def value(self) -> Number:
        try:
            return self.fn()
        except Exception:  # a broken gauge must not break the export
            return float("nan")


def _bucket_bounds() -> list[float]:
    """Log-linear bucket upper bounds from 0 to ~1e7 with <=~2% relative error."""
    bounds: list[float] = []
    v = 1.0
    for i in range(0, 50):
        bounds.append(float(i) / 50.0)  # sub-millisecond resolution
    while v < 1e7:
        bounds.append(v)
        v = v * 1.02 if v > 50 else v + (0.25 if v < 10 else 1.0)
    bounds.append(math.inf)
    return bounds


_BOUNDS = _bucket_bounds()
#: The upper bound of each ``Stat.counts`` bucket (read-only): the admin dashboard computes
#: windowed percentiles from the difference of two bucket snapshots.
BUCKET_BOUNDS: tuple[float, ...] = tuple(_BOUNDS)


#: what an empty Stat's ``counts`` reads as (shared)
_NO_COUNTS: tuple[int, ...] = (0,) * len(_BOUNDS)


def bucket_of(value: Number) -> int:
    """The index of the bucket a sample falls in."""
    return bisect.bisect_left(_BOUNDS, value)


class Stat:
    """A distribution (Finagle's Stat): count, sum, min, max and percentiles.

    Fixed-size buckets keep memory bounded no matter how many samples arrive.
    """

    __slots__ = ("name", "_counts", "count", "sum", "min", "max")

    PERCENTILES = (0.5, 0.9, 0.95, 0.99, 0.999, 0.9999)

    def __init__(self, name: str) -> None:
        self.name = name
        #: the buckets (3 KB), made at the first sample: most per-name stats (retries per
        #: request of names that never retry, ...) never get one
        self._counts: Optional[list[int]] = None
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def counts(self) -> Sequence[int]:
        """Samples per bucket (read-only; zeros until the first sample)."""
        c = self._counts
        return _NO_COUNTS if c is None else c

    def _buckets(self) -> list[int]:
        c = self._counts
        if c is None:
            c = self._counts = [0] * len(_BOUNDS)
        return c

    def add(self, value: Number) -> None:
        i = bisect_left(_BOUNDS, value)
        self._buckets()[i] += 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    @classmethod
    def of(cls, name: str, hist: dict[int, int], count: int, total: float, lo: float, hi: float) -> "Stat":
        """A Stat from sparse bucket counts (bucket index -> samples)."""
        st = cls(name)
        if hist:
            buckets = st._buckets()
            for i, c in hist.items():
                buckets[i] += c
        st.count, st.sum, st.min, st.max = count, total, lo, hi
        return st

    def percentile(self, p: float) -> float:
        if self.count == 0:
            return 0.0
        target = p * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target and c:
                b = _BOUNDS[i]
                return min(b, self.max) if b != math.inf else self.max
        return self.max

    def summary(self) -> dict[str, Number]:
        if self.count == 0:
            return {"count": 0, "sum": 0, "avg": 0, "min": 0, "max": 0,
                    "p50": 0, "p90": 0, "p95": 0, "p99": 0, "p9990": 0, "p9999": 0}
        return {
            "count": self.count,
            "sum": self.sum,
            "avg": self.sum / self.count,
            "min": self.min,
            "max": self.max,
            "p50": self.percentile(0.5),
            "p90": self.percentile(0.9),
            "p95": self.percentile(0.95),
            "p99": self.percentile(0.99),
            "p9990": self.percentile(0.999),
            "p9999": self.percentile(0.9999),
        }


Metric = Union[Counter, Gauge, Stat]


def _constant(value: Number) -> Callable[[], Number]:
    return lambda: value


def _range(names: list[str], prefix: str) -> tuple[int, int]:
    """The slice of the sorted ``names`` that start with ``prefix``."""
    return bisect_left(names, prefix), bisect_left(names, prefix + "\U0010ffff")


class MetricsRegistry:
    """All metrics of a process, by flat name. Creating is idempotent."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._views: dict[str, Callable[[], dict[str, Metric]]] = {}
        #: the names of ``_metrics`` and ``_views``, sorted: a scope's names are one range,
        #: so evicting a scope costs its own size, not the registry's (random Host headers
        #: evict scopes all the time)
        self._names: list[str] = []
        self._view_names: list[str] = []
        self._lock = threading.Lock()

    def _add(self, name: str, m: Metric) -> Metric:
        """Register ``m`` unless ``name`` exists (caller holds the lock); the metric under ``name``."""
        old = self._metrics.get(name)
        if old is not None:
            return old
        self._metrics[name] = m
        bisect.insort(self._names, name)
        return m

    def counter(self, name: str) -> Counter:
        m = self._metrics.get(name)
        if m is None:
            with self._lock:
                m = self._add(name, Counter(name))
        assert isinstance(m, Counter), f"{name} is not a counter"
        return m

    def stat(self, name: str) -> Stat:
        m = self._metrics.get(name)
        if m is None:
            with self._lock:
                m = self._add(name, Stat(name))
        assert isinstance(m, Stat), f"{name} is not a stat"
        return m

    def gauge(self, name: str, fn: Callable[[], Number]) -> Gauge:
        g = Gauge(name, fn)
        with self._lock:
            if name not in self._metrics:
                bisect.insort(self._names, name)
            self._metrics[name] = g
        return g

    def remove(self, name: str) -> None:
        with self._lock:
            if self._metrics.pop(name, None) is not None:
                i = bisect_left(self._names, name)
                del self._names[i]

    def add_view(self, prefix: str, fn: Callable[[], dict[str, Metric]]) -> None:
        """Metrics under ``prefix`` (ending in "/") computed by ``fn`` when read: ``fn()``
        returns {full name: metric}."""
        with self._lock:
            if prefix not in self._views:
                bisect.insort(self._view_names, prefix)
            self._views[prefix] = fn

    def remove_prefix(self, prefix: str) -> None:
        """Drop a whole scope (an evicted client or service) so memory stays bounded.
        Metrics under a longer prefix that has a view of its own belong to another live
        scope (``svc/a/b`` under ``svc/a``, a client's per-service scope) and stay."""
        with self._lock:
            vlo, vhi = _range(self._view_names, prefix)
            nested = tuple(k for k in self._view_names[vlo:vhi] if k != prefix)
            lo, hi = _range(self._names, prefix)
            names = self._names[lo:hi]
            if nested:
                keep = [k for k in names if k.startswith(nested)]
                names = [k for k in names if not k.startswith(nested)]
                self._names[lo:hi] = keep
            else:
                del self._names[lo:hi]
            for k in names:
                del self._metrics[k]
            if self._views.pop(prefix, None) is not None:
                del self._view_names[bisect_left(self._view_names, prefix)]

    def snapshot(self) -> dict[str, Metric]:
        """Every metric by name, views computed once (unsorted; see :meth:`items`). A
        view's metrics are new objects on every read: hold names, not these objects."""
        out = dict(self._metrics)
        for fn in list(self._views.values()):
            out.update(fn())
        return out

    def items(self) -> Iterator[tuple[str, Metric]]:
        return iter(sorted(self.snapshot().items()))

    def get(self, name: str) -> Optional[Metric]:
        m = self._metrics.get(name)
        if m is None and self._views:
            i = name.find("/")
            while i >= 0:
                fn = self._views.get(name[:i + 1])
                if fn is not None:
                    v = fn().get(name)
                    if v is not None:
                        return v  # else a view under a longer prefix may have it
                i = name.find("/", i + 1)
        return m

    # -- across processes -------------------------------------------------------------
    def dump(self) -> dict[str, Dumped]:
        """Every metric's current value, JSON-able: ``[kind, ...]`` with kind ``c``
        (counter), ``g`` (gauge) or ``s`` (stat: count, sum, min, max, {bucket: count})."""
        out: dict[str, Dumped] = {}
        for name, m in self.items():
            if isinstance(m, Stat):
                if m.count:
                    hist = {i: c for i, c in enumerate(m.counts) if c}
                    out[name] = ["s", m.count, m.sum, m.min, m.max, hist]
                else:
                    out[name] = ["s", 0, 0.0, 0.0, 0.0, {}]
            else:
                v = m.value
                if isinstance(v, float) and math.isnan(v):
                    continue
                out[name] = ["c" if isinstance(m, Counter) else "g", v]
        return out

    @classmethod
    def merge_dumps(cls, dumps: list[dict[str, Dumped]]) -> "MetricsRegistry":
        """One registry holding the sum of several processes' ``dump()``s."""
        reg = cls()
        acc: dict[str, Dumped] = {}
        for d in dumps:
            for name, v in d.items():
                a = acc.get(name)
                if a is None:
                    acc[name] = [v[0], *v[1:-1], dict(v[-1])] if v[0] == "s" else list(v)
                elif a[0] != v[0]:
                    continue
                elif v[0] == "s":
                    if v[1]:
                        a[3] = v[3] if not a[1] else min(a[3], v[3])
                        a[4] = v[4] if not a[1] else max(a[4], v[4])
                        a[1] += v[1]
                        a[2] += v[2]
                        for i, c in v[5].items():
                            a[5][i] = a[5].get(i, 0) + c
                else:
                    a[1] += v[1]
        for name, a in acc.items():
            if a[0] == "s":
                reg._metrics[name] = Stat.of(name, {int(i): c for i, c in a[5].items()}, a[1], a[2],
                                             a[3] if a[1] else math.inf, a[4] if a[1] else -math.inf)
            elif a[0] == "c":
                c = reg._metrics[name] = Counter(name)
                c.value = a[1]
            else:
                reg._metrics[name] = Gauge(name, _constant(a[1]))
        reg._names = sorted(reg._metrics)
        return reg

    def __len__(self) -> int:
        return len(self._metrics)
