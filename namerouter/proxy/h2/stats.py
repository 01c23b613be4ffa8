"""Per-stream metrics of h2 routers, with Linkerd's names (its StreamStatsFilter).

Besides the request metrics every router records (``stats.py``: ``requests``,
``success``, ``failures``, ``status/<code>``, ``request_latency_ms``), each server,
service and client scope of an h2 router has::

    request/stream/{stream_duration_ms, stream_success, stream_failures, data_bytes, data_frames}
    response/stream/{stream_duration_ms, stream_success, stream_failures, data_bytes, data_frames}
    stream/{total_latency_ms, stream_success, stream_failures, data_bytes}

(``data_frames`` is ours: DATA frames per stream.) A stream is recorded once, when its
exchange is over, into a :class:`StreamCell` kept in the ``extra`` slot of the same
``stats.Cell`` the lifecycle recorded the request in, so the scopes' views sum it with
the rest and evicted scopes fold it like the rest.

With a gRPC classifier, a response whose ``grpc-status`` is not a success counts under
``failures`` even though its HTTP status is 200 (Linkerd classifies h2 responses with
the router's classifier the same way): the h2 policy (``policy.py``) classifies the
stream by its trailers and the lifecycle records that verdict, as for every router.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Optional

from ...metrics import Counter, Metric, Stat, bucket_of

if TYPE_CHECKING:  # pragma: no cover
    from ..lifecycle import Lifecycle

_now = time.monotonic


class _Hist:
    __slots__ = ("hist", "n", "sum", "min", "max")

    def __init__(self) -> None:
        self.hist: dict[int, int] = {}
        self.n = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, v: float) -> None:
        i = bucket_of(v)
        self.hist[i] = self.hist.get(i, 0) + 1
        self.n += 1
        self.sum += v
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v

    def add_to(self, o: "_Hist") -> None:
        for k, v in self.hist.items():
            o.hist[k] = o.hist.get(k, 0) + v
        o.n += self.n
        o.sum += self.sum
        o.min = min(o.min, self.min)
        o.max = max(o.max, self.max)

    def stat(self, name: str) -> Stat:
        return Stat.of(name, self.hist, self.n, self.sum, self.min, self.max)


class _Part:
    """One direction's (or the whole exchange's) figures."""

    __slots__ = ("ok", "failed", "duration", "data", "frames")

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.duration = _Hist()
        self.data = _Hist()
        self.frames = 0

    def record(self, ok: bool, ms: float, data: int, frames: int) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        self.duration.add(ms)
        self.data.add(data)
        self.frames += frames

    def add_to(self, o: "_Part") -> None:
        o.ok += self.ok
        o.failed += self.failed
        self.duration.add_to(o.duration)
        self.data.add_to(o.data)
        o.frames += self.frames

    def view(self, p: str, duration_name: str, out: dict[str, Metric], frames: bool) -> None:
        for name, v in (("stream_success", self.ok), ("stream_failures", self.failed)):
            c = out[p + name] = Counter(p + name)
            c.value = v
        out[p + duration_name] = self.duration.stat(p + duration_name)
        out[p + "data_bytes"] = self.data.stat(p + "data_bytes")
        if frames:
            c = out[p + "data_frames"] = Counter(p + "data_frames")
            c.value = self.frames


class StreamCell:
    """The streams of one (server, service, client) combination (see the module docstring)."""

    __slots__ = ("req", "resp", "total")

    def __init__(self) -> None:
        self.req = _Part()
        self.resp = _Part()
        self.total = _Part()

    def empty(self) -> "StreamCell":
        return StreamCell()

    def add_to(self, o: "StreamCell") -> None:
        self.req.add_to(o.req)
        self.resp.add_to(o.resp)
        self.total.add_to(o.total)

    def view(self, p: str) -> dict[str, Metric]:
        out: dict[str, Metric] = {}
        self.req.view(p + "request/stream/", "stream_duration_ms", out, True)
        self.resp.view(p + "response/stream/", "stream_duration_ms", out, True)
        self.total.view(p + "stream/", "total_latency_ms", out, False)
        return out


def stream_done(st: Any, lc: "Lifecycle") -> None:
    """Record a finished stream of an h2 server (``st``: its ``H2ServerStream``)."""
    server = lc.server
    if server.scope is None:
        return
    cell = lc.cell()
    ext: Optional[StreamCell] = cell.extra
    if ext is None:
        ext = cell.extra = StreamCell()
    now = _now()
    ok = not st.failed
    t0 = st.t0
    req_end = st.req_done_t or now
    ext.req.record(ok or st.req_done_t > 0.0, (req_end - t0) * 1000.0, st.req_bytes, st.req_frames)
    if st.t_resp:
        ext.resp.record(ok, ((st.resp_done_t or now) - st.t_resp) * 1000.0, st.resp_bytes, st.resp_frames)
    ext.total.record(ok, (now - t0) * 1000.0, st.req_bytes + st.resp_bytes, 0)
