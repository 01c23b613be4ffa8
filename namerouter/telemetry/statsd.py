"""``io.l5d.statsd`` (experimental in Linkerd, and here): push metrics to a StatsD server
over UDP, with Linkerd's keys ``prefix`` (``linkerd``), ``hostname`` (``127.0.0.1``),
``port`` (8125), ``gaugeIntervalMs`` (10000) and ``sampleRate`` (0.01).

Names are Linkerd's: the metric's scopes joined with ``.`` after every character other
than ``A-Z a-z 0-9`` became ``_`` (``rt/outgoing/service/svc/web/requests`` →
``linkerd.rt.outgoing.service.svc.web.requests``).

How it differs from Linkerd, and why: Linkerd sent every counter increment and every
latency sample as its own datagram at the moment it happened, sampled at ``sampleRate``
(so at the default 1 % most failures were never counted), and pushed gauges every
``gaugeIntervalMs``. Here nothing happens on the request path: every
``gaugeIntervalMs`` one flush sends

* each counter's increase since the last flush, exactly (``name:<n>|c``, no sampling);
* each gauge's value (``name:<v>|g``);
* for each stat, the latency samples recorded since the last flush, taken from the
  stat's histogram (a sample is its bucket's upper bound, within 2 %), each kept with
  probability ``sampleRate`` and sent as ``name:<ms>|ms|@<sampleRate>`` — at most
  ``MAX_SAMPLES_PER_STAT`` per stat and flush (the rate on the wire is lowered to
  match, so StatsD's counts stay right);

batched into datagrams of at most ``MAX_DATAGRAM`` bytes (newline-separated metrics, as
StatsD accepts). A send that fails (no route, server down) is dropped, as UDP would.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, cast

from ..metrics import BUCKET_BOUNDS, Counter, Gauge, MetricsRegistry, Stat

log = logging.getLogger("namerouter.statsd")

#: bytes per datagram: fits an Ethernet MTU with room for IP/UDP headers (StatsD's advice)
MAX_DATAGRAM = 1432
MAX_SAMPLES_PER_STAT = 1000
_NAME_BAD = re.compile(r"[^/A-Za-z0-9]")


@dataclass
class StatsDConfig:
    """``telemetry: [{kind: io.l5d.statsd, experimental: true, prefix, hostname, port,
    gaugeIntervalMs, sampleRate}]``."""

    prefix: str = "linkerd"
    hostname: str = "127.0.0.1"
    port: int = field(default=8125, metadata={"min": 1, "max": 65535})
    gaugeIntervalMs: int = field(default=10000, metadata={"min": 10})
    sampleRate: float = field(default=0.01, metadata={"min": 0.0, "max": 1.0})


def statsd_name(prefix: str, name: str) -> str:
    """Linkerd's mkName, with the client's ``prefix.`` in front."""
    s = _NAME_BAD.sub("_", name).replace("//", "/").replace("/", ".")
    return f"{prefix}.{s}" if prefix else s


def _fmt(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")


class StatsDTelemeter:
    config_class = StatsDConfig
    #: Linkerd requires ``experimental: true`` for this kind (the validator checks it)
    experimental = True

    def __init__(self, registry: MetricsRegistry, config: StatsDConfig,
                 rng: Optional[random.Random] = None) -> None:
        self.registry = registry
        self.config = config
        self.rng = rng or random.Random()
        self.admin_routes: list[Any] = []
        self._counters: dict[str, int] = {}
        self._stats: dict[str, tuple[int, list[int]]] = {}
        self._transport: Optional[asyncio.DatagramTransport] = None
        self._task: Optional[asyncio.Task[None]] = None
        self.sent_datagrams = 0
        self.send_errors = 0

    @classmethod
    def from_config(cls, config: StatsDConfig, runtime: Any) -> "StatsDTelemeter":
        return cls(runtime.metrics, config)

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        c = self.config
        # Resolved once, like Linkerd's client: an unknown host fails the start, loudly.
        infos = await loop.getaddrinfo(c.hostname, c.port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        self._transport, _ = await loop.create_datagram_endpoint(
            # typeshed's remote_addr leaves out the 4-tuple of an IPv6 sockaddr, which asyncio takes
            lambda: _Protocol(self), family=family, remote_addr=cast(tuple[str, int], addr))
        self._snapshot()  # counts before start are not pushed as one huge first delta
        self._task = loop.create_task(self._run())
        log.info("io.l5d.statsd: sending to %s:%d as %s every %d ms", c.hostname, c.port, c.prefix,
                 c.gaugeIntervalMs)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.gaugeIntervalMs / 1000.0)
            try:
                self.flush()
            except Exception:  # a broken flush must not end the pushes
                log.exception("io.l5d.statsd: flush failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._transport is not None:
            self.flush()  # the last interval's counts
            self._transport.close()
            self._transport = None

    # flushing -----------------------------------------------------------------------------
    def _snapshot(self) -> None:
        for name, m in self.registry.items():
            if isinstance(m, Counter):
                self._counters[name] = m.value
            elif isinstance(m, Stat):
                self._stats[name] = (m.count, list(m.counts))

    def lines(self) -> Iterator[str]:
        """The metric lines of one flush (and advance the snapshots)."""
        prefix = self.config.prefix
        counters: dict[str, int] = {}
        stats: dict[str, tuple[int, list[int]]] = {}
        for name, m in self.registry.items():
            if isinstance(m, Counter):
                v = m.value
                counters[name] = v
                before = self._counters.get(name, 0)
                delta = v - before if v >= before else v  # a recreated counter starts over
                if delta:
                    yield f"{statsd_name(prefix, name)}:{delta}|c"
            elif isinstance(m, Gauge):
                g = m.value
                if isinstance(g, float) and (math.isnan(g) or math.isinf(g)):
                    continue
                sname = statsd_name(prefix, name)
                if g < 0:  # "-5|g" would be a decrement: set to 0 first
                    yield f"{sname}:0|g"
                yield f"{sname}:{_fmt(g)}|g"
            elif isinstance(m, Stat):
                old = self._stats.get(name)
                stats[name] = old if old is not None and old[0] == m.count else (m.count, list(m.counts))
                yield from self._samples(statsd_name(prefix, name), m, old)
        self._counters = counters
        self._stats = stats

    def _samples(self, sname: str, stat: Stat, before: Optional[tuple[int, list[int]]]) -> Iterator[str]:
        count_before, counts_before = before if before is not None else (0, [])
        if stat.count == count_before:
            return
        if len(counts_before) != len(stat.counts) or stat.count < count_before:
            counts_before = [0] * len(stat.counts)  # new or recreated stat
        rate = self.config.sampleRate
        picked: list[tuple[float, int]] = []
        total = 0
        for i, (c, p) in enumerate(zip(stat.counts, counts_before)):
            if c == p:
                continue
            expected = (c - p) * rate
            n = int(expected + self.rng.random())  # randomized rounding: unbiased
            if n:
                bound = BUCKET_BOUNDS[i]
                value = stat.max if math.isinf(bound) else min(bound, stat.max)
                picked.append((value, n))
                total += n
        if not total:
            return
        if total > MAX_SAMPLES_PER_STAT:
            scale = MAX_SAMPLES_PER_STAT / total
            rate *= scale
            picked = [(v, int(n * scale + self.rng.random())) for v, n in picked]
        suffix = "" if rate >= 1.0 else f"|@{rate:.6g}"
        for value, n in picked:
            line = f"{sname}:{_fmt(value)}|ms{suffix}"
            for _ in range(n):
                yield line

    def flush(self) -> int:
        """Send one flush; returns the number of datagrams."""
        if self._transport is None:
            return 0
        sent = 0
        buf: list[str] = []
        size = 0
        for line in self.lines():
            n = len(line.encode("utf-8"))
            if buf and size + 1 + n > MAX_DATAGRAM:
                self._send("\n".join(buf))
                sent += 1
                buf, size = [], 0
            buf.append(line)
            size += n + (1 if len(buf) > 1 else 0)
        if buf:
            self._send("\n".join(buf))
            sent += 1
        return sent

    def _send(self, payload: str) -> None:
        assert self._transport is not None
        try:
            self._transport.sendto(payload.encode("utf-8"))
            self.sent_datagrams += 1
        except OSError:
            self.send_errors += 1


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: StatsDTelemeter) -> None:
        self.owner = owner

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: StatsD is down
        self.owner.send_errors += 1
