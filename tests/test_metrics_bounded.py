"""Bounded metrics: 10,000 random Host headers through a real router leave no metric keys
behind once the binding cache's idle TTL has passed (issue 14: before, they left ~13,500
keys and a 1 MB metrics.json for ever), and at most ``bindingCache.paths`` names' worth
meanwhile."""
from __future__ import annotations

import asyncio
import json
import random
import socket
import time

from namerouter.admin.metrics_export import metrics_flat
from namerouter.proxy.config import BindingCacheConfig
from namerouter.proxy.stats import Cell, Cells
from namerouter.metrics import MetricsRegistry
from tests.support.backends import Backend, RouterHarness, get, request

NAMES = 10_000
PATHS = 200  # bindingCache.paths: stages (and so names with metrics) kept at once


async def _send_all(port: int, hosts: list[str], conns: int = 8) -> dict[int, int]:
    """One request per Host header, over ``conns`` keep-alive connections; returns
    {status: count}."""
    statuses: dict[int, int] = {}

    async def worker(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(k, len(hosts), conns):
                writer.write(f"GET / HTTP/1.1\r\nHost: {hosts[i]}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(worker(k) for k in range(conns)))
    return statuses


async def test_ten_thousand_random_names_leave_no_metrics_after_the_idle_ttl():
    rng = random.Random(14)
    # a port held without listening: connecting to it on any 127/8 address is refused, and
    # nobody else on the machine can listen on it meanwhile
    closed = socket.socket()
    closed.bind(("0.0.0.0", 0))
    port = closed.getsockname()[1]
    try:
        async with Backend("web") as b, RouterHarness(
                # Host <ip>:<port>: a random 127/8 address is a client of its own (refused:
                # 502); a random word binds to nothing (502); Host web is served
                f"/inet => /$/inet; /svc => /$/io.buoyant.hostportPfx/inet; /svc/web => /$/inet/127.1/{b.port}",
                service={"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.http.nonRetryable5XX"},
                         "totalTimeoutMs": 10000},
                bindingCache=BindingCacheConfig(paths=PATHS, idleTtlSecs=1)) as h:
            assert (await request(h.port, get("/", host="web"))).status == 200
            baseline = set(h.metrics.snapshot())
            hosts = [f"127.{rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(1, 255)}:{port}" if i % 2
                     else f"n{rng.getrandbits(48):012x}" for i in range(NAMES)]
            statuses = await _send_all(h.port, hosts)
            assert statuses == {502: NAMES}
            during = h.metrics.snapshot()
            # at most bindingCache.paths names (and their clients) have metrics at a time
            services = [k for k in during if k.startswith("rt/outgoing/service/") and k.endswith("/requests")]
            clients = [k for k in during if k.startswith("rt/outgoing/client/") and k.endswith("/connects")]
            assert len(services) <= PATHS + 1 and 0 < len(clients) <= PATHS + 1
            assert len(during) < 40 * (PATHS + 1), len(during)  # ~30 per name with its client

            # after the idle TTL the sweep evicts every stage: their metrics go with them
            table = h.router.core.table
            deadline = time.monotonic() + 30
            while (table.routes or table.clients) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not table.routes and not table.clients
            left = set(h.metrics.snapshot()) - baseline
            assert {k.rsplit("/", 1)[0] for k in left} <= {f"rt/outgoing/server/127.0.0.1/{h.port}/status"}, left
            assert len(json.dumps(metrics_flat(h.metrics))) < 10_000
            assert not table.cells.cells and not table.policies._svc and not table._pair_scopes
            # what the evicted names counted stays in the server's totals
            assert h.metric(f"rt/outgoing/server/127.0.0.1/{h.port}/requests") == NAMES + 1
            assert h.metric(f"rt/outgoing/server/127.0.0.1/{h.port}/failures") == NAMES
    finally:
        closed.close()


def test_dropping_a_scope_keeps_the_scopes_nested_under_its_name():
    """``/svc/a`` evicted must not take ``/svc/a/b``'s metrics (or a client's per-service
    scope) with it: flat names nest, scopes do not."""
    reg = MetricsRegistry()
    cells = Cells(reg)
    a, ab = cells.scope("rt/r/service/svc/a/"), cells.scope("rt/r/service/svc/a/b/")
    reg.counter("rt/r/service/svc/a/retries/total").value = 3
    reg.counter("rt/r/service/svc/a/b/retries/total").value = 4
    server = cells.scope("rt/r/server/127.0.0.1/4140/")
    cells.cell(server, a, None).record(200, 1.0, False)
    cells.cell(server, ab, None).record(500, 1.0, True)
    a.drop()
    names = set(reg.snapshot())
    assert "rt/r/service/svc/a/requests" not in names and "rt/r/service/svc/a/retries/total" not in names
    assert reg.get("rt/r/service/svc/a/b/requests").value == 1
    assert reg.get("rt/r/service/svc/a/b/retries/total").value == 4
    assert reg.get("rt/r/server/127.0.0.1/4140/failures").value == 1
    assert reg.get("rt/r/server/127.0.0.1/4140/requests").value == 2  # a's request is retired, not lost
    # a request that was in flight when its scope went records into the scopes that remain
    cells.cell(server, a, None).record(200, 1.0, False)
    assert reg.get("rt/r/server/127.0.0.1/4140/requests").value == 3
    assert all(not s.dropped for c in cells.cells.values() for s in c.scopes)
    assert isinstance(next(iter(cells.cells.values())), Cell)
