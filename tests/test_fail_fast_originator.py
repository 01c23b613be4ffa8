"""Client ``failFast`` (Finagle's FailFastFactory) and router ``originator`` over real
sockets: an endpoint whose connect fails is passed over without new connects until a
background reconnect succeeds (then it serves again); ``originator: true`` shows as the
``rt/<label>/originator`` gauge at the admin server of a real namerouter process."""
from __future__ import annotations

import asyncio
import json
import sys
import time

from namerouter.namers.fs import FsNamer
from tests.support.backends import Backend, RouterHarness, get, request
from tests.support.ports import free_port


async def wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert pred()


async def test_fail_fast_marks_a_refusing_endpoint_down_until_it_reconnects(tmp_path):
    client = {"kind": "io.l5d.global", "failFast": True, "failureAccrual": {"kind": "none"}}
    dead_port = free_port()
    async with Backend("up") as up:
        (tmp_path / "b").write_text(f"127.0.0.1 {up.port}\n127.0.0.1 {dead_port}\n")
        fs = FsNamer(str(tmp_path))
        async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs], client=client) as h:
            prefix = "rt/outgoing/client/#/io.l5d.fs/b/"
            # every request succeeds (a refused connect is requeued to the live endpoint)
            for _ in range(20):
                assert (await request(h.port, get("/pong", host="b"))).status == 200
            assert h.metric(prefix + "failfast/marked_dead") == 1
            # marked down: no further connects were attempted while it stays down
            assert h.metric(prefix + "failures/connect") == 1
            assert h.metric(prefix + "failfast/unhealthy") == 1
            state = json.dumps(h.router.client_state())
            assert '"failFast": "down"' in state
            # the endpoint comes up: the background reconnect marks it available and it
            # gets traffic again
            async with Backend("back", port=dead_port) as back:
                await wait_for(lambda: h.metric(prefix + "failfast/marked_available") == 1, 15.0)
                assert h.metric(prefix + "failfast/unhealthy") == 0
                for _ in range(40):
                    await request(h.port, get("/pong", host="b"))
                    if back.requests:
                        break
                assert back.requests
        await fs.close()


async def test_fail_fast_with_a_single_endpoint_answers_502_at_once():
    client = {"kind": "io.l5d.global", "failFast": True}
    dead_port = free_port()
    async with RouterHarness(f"/svc/b => /$/inet/127.1/{dead_port};", client=client) as h:
        r = await request(h.port, get("/pong", host="b"))
        assert r.status == 502
        r = await request(h.port, get("/pong", host="b"))
        assert r.status == 502 and "marked down by failFast" in r.body.decode()
        prefix = f"rt/outgoing/client/$/inet/127.1/{dead_port}/"
        assert h.metric(prefix + "failures/connect") == 1


async def test_without_fail_fast_every_request_dials_again():
    client = {"kind": "io.l5d.global", "failureAccrual": {"kind": "none"}}
    dead_port = free_port()
    async with RouterHarness(f"/svc/b => /$/inet/127.1/{dead_port};", client=client) as h:
        for _ in range(3):
            assert (await request(h.port, get("/pong", host="b"))).status == 502
        prefix = f"rt/outgoing/client/$/inet/127.1/{dead_port}/"
        assert h.metric(prefix + "failures/connect") == 3
        assert h.metrics.get(prefix + "failfast/marked_dead") is None


async def test_originator_gauge_at_the_admin_server(tmp_path):
    port, admin = free_port(), free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"admin: {{port: {admin}}}\nrouters:\n- protocol: http\n  label: outgoing\n  originator: true\n"
                   f"  dtab: /svc/x => /$/nil\n  servers:\n  - port: {port}\n"
                   f"- protocol: http\n  label: incoming\n  dtab: /svc/x => /$/nil\n  servers:\n  - port: {free_port()}\n")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "namerouter", str(cfg),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        body = b""
        for _ in range(500):
            try:
                r = await request(admin, get("/admin/metrics.json", host="localhost"))
                body = r.body
                break
            except OSError:
                await asyncio.sleep(0.02)
        metrics = json.loads(body)
        assert metrics["rt/outgoing/originator"] == 1
        assert "rt/incoming/originator" not in metrics
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
