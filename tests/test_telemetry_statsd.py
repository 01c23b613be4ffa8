"""``io.l5d.statsd``: Linkerd's example config loads as it is; a real router pushes its
metrics over UDP to a real socket with Linkerd's names and StatsD's wire format —
counters exactly, gauges every interval, latency samples at the sample rate — in
datagrams that fit an MTU."""
from __future__ import annotations

import asyncio
import os
import random
import re
import time
from typing import Optional

import aiohttp
import pytest

from namerouter.config.loader import ConfigError
from namerouter.config.schema import load_linker, loads_linker
from namerouter.metrics import MetricsRegistry
from namerouter.telemetry.statsd import MAX_DATAGRAM, MAX_SAMPLES_PER_STAT, StatsDConfig, StatsDTelemeter, \
    statsd_name
from tests.support.backends import Backend
from tests.support.routing import running_router

EXAMPLES = os.path.join(os.path.dirname(__file__), "linkerd_examples", "linkerd")
LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.]+):(?P<value>-?[0-9.]+)\|(?P<type>c|g|ms)(\|@(?P<rate>[0-9.e-]+))?$")


class Receiver(asyncio.DatagramProtocol):
    """A StatsD-side UDP socket: keeps every datagram and parses its lines."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.changed = asyncio.Event()
        self.transport: Optional[asyncio.DatagramTransport] = None

    @classmethod
    async def open(cls) -> "Receiver":
        r = cls()
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: r, local_addr=("127.0.0.1", 0))
        return r

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        self.datagrams.append(data)
        self.changed.set()

    def lines(self) -> list[dict]:
        out = []
        for d in self.datagrams:
            for line in d.decode().split("\n"):
                m = LINE.match(line)
                assert m, f"not a StatsD line: {line!r}"
                out.append(m.groupdict())
        return out

    def total(self, name: str, kind: str) -> float:
        return sum(float(x["value"]) for x in self.lines() if x["name"] == name and x["type"] == kind)

    def count(self, name: str, kind: str = "ms") -> float:
        """StatsD's count of samples: each line stands for 1/rate."""
        return sum(1 / float(x["rate"] or 1) for x in self.lines() if x["name"] == name and x["type"] == kind)

    async def until(self, pred, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            assert left > 0, f"condition not met; got {[d[:200] for d in self.datagrams[-5:]]}"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def test_linkerd_example_loads_without_warnings():
    v = load_linker(os.path.join(EXAMPLES, "statsd.yaml"))
    assert v.warnings == []
    [cfg] = v.config.telemetry
    assert cfg == StatsDConfig(prefix="linkerd", hostname="127.0.0.1", port=8125, gaugeIntervalMs=10000,
                               sampleRate=1.0)


@pytest.mark.parametrize("block,message", [
    ("{kind: io.l5d.statsd}", "experimental and must be explicitly enabled"),
    ("{kind: io.l5d.statsd, experimental: true, sampleRate: 2}", "sampleRate"),
    ("{kind: io.l5d.statsd, experimental: true, gaugeIntervalMs: 0}", "gaugeIntervalMs"),
    ("{kind: io.l5d.statsd, experimental: true, port: 70000}", "port"),
])
def test_bad_configs_are_refused(block, message):
    with pytest.raises(ConfigError) as e:
        loads_linker(f"routers: [{{protocol: http, dtab: /a=>/b, servers: [{{port: 4140}}]}}]\ntelemetry: [{block}]\n")
    assert message in str(e.value)


def test_names_are_linkerds():
    assert statsd_name("linkerd", "rt/http/client/#/io.l5d.fs/default/path/http/1.1/GET/default/request_latency_ms") \
        == "linkerd.rt.http.client._.io_l5d_fs.default.path.http.1_1.GET.default.request_latency_ms"
    assert statsd_name("", "clnt/zipkin-tracer/service_creation") == "clnt.zipkin_tracer.service_creation"


async def test_a_router_pushes_counters_gauges_and_timers_over_udp():
    recv = await Receiver.open()
    telemetry = f"""telemetry:
- kind: io.l5d.statsd
  experimental: true
  prefix: linkerd
  hostname: 127.0.0.1
  port: {recv.port}
  gaugeIntervalMs: 100
  sampleRate: 1.0
"""
    try:
        async with Backend("web") as web, running_router(f"/svc/web => /$/inet/127.0.0.1/{web.port};",
                                                         telemetry) as (_, _base, port):
            async with aiohttp.ClientSession() as s:
                for _ in range(20):
                    async with s.get(f"http://127.0.0.1:{port}/pong", headers={"Host": "web"}) as r:
                        assert r.status == 200
            svc = "linkerd.rt.outgoing.service.svc.web"
            await recv.until(lambda: recv.total(f"{svc}.requests", "c") == 20
                             and recv.count(f"{svc}.request_latency_ms") == 20)
            assert recv.total(f"{svc}.success", "c") == 20
            assert recv.total(f"{svc}.status.200", "c") == 20
            client = f"linkerd.rt.outgoing.client._.inet.127_0_0_1.{web.port}"
            assert recv.total(f"{client}.requests", "c") == 20
            gauges = {x["name"] for x in recv.lines() if x["type"] == "g"}
            assert f"linkerd.rt.outgoing.server.127_0_0_1.{port}.connections" in gauges
            assert all(len(d) <= MAX_DATAGRAM for d in recv.datagrams)
            # rate 1.0: no "@" on the wire
            assert all(x["rate"] is None for x in recv.lines())
    finally:
        recv.close()


async def test_sample_rate_counts_and_bounds():
    recv = await Receiver.open()
    reg = MetricsRegistry()
    stat = reg.stat("rt/r/service/svc/a/request_latency_ms")
    counter = reg.counter("rt/r/service/svc/a/requests")
    reg.gauge("rt/r/weird", lambda: -3)
    tel = StatsDTelemeter(reg, StatsDConfig(prefix="p", port=recv.port, gaugeIntervalMs=3_600_000, sampleRate=0.5),
                          rng=random.Random(7))
    await tel.start()
    try:
        for i in range(400):
            stat.add(1 + i % 50)
        counter.incr(400)
        tel.flush()
        name = "p.rt.r.service.svc.a.request_latency_ms"
        await recv.until(lambda: recv.total("p.rt.r.service.svc.a.requests", "c") == 400
                         and any(x["name"] == "p.rt.r.weird" for x in recv.lines()))
        lines = [x for x in recv.lines() if x["name"] == name]
        assert all(x["rate"] == "0.5" for x in lines)
        assert 150 <= len(lines) <= 250  # about half the samples, each standing for two
        assert recv.lines().count({"name": "p.rt.r.weird", "value": "0", "type": "g", "rate": None}) == 1
        assert {"name": "p.rt.r.weird", "value": "-3", "type": "g", "rate": None} in recv.lines()

        # a burst: at most MAX_SAMPLES_PER_STAT lines, the rate lowered so counts stay right
        before = len(recv.datagrams)
        for i in range(10_000):
            stat.add(5)
        counter.incr(3)
        tel.flush()
        await recv.until(lambda: recv.total("p.rt.r.service.svc.a.requests", "c") == 403
                         and recv.lines().count({"name": "p.rt.r.weird", "value": "-3", "type": "g", "rate": None}) == 2)
        new = [line for d in recv.datagrams[before:] for line in d.decode().split("\n") if line.startswith(name)]
        assert len(new) <= MAX_SAMPLES_PER_STAT + 1
        rate = float(new[0].rsplit("@", 1)[1])
        assert abs(len(new) / rate - 10_000) < 100

        # nothing new: counters and timers stay quiet, gauges are sent again
        before = len(recv.datagrams)
        tel.flush()
        await recv.until(lambda: len(recv.datagrams) > before)
        quiet = [line for d in recv.datagrams[before:] for line in d.decode().split("\n")]
        assert quiet == ["p.rt.r.weird:0|g", "p.rt.r.weird:-3|g"]
    finally:
        await tel.close()
        recv.close()
