"""Failure injection through the real router with real local backends (loopback only):

- one of three backends killed under 500 req/s: < 0.1 % failed, it is marked dead
  (failure accrual), probed, and rejoins when it comes back;
- a hanging backend: per-attempt and total timeouts fire, 503 with ``l5d-err``, no
  connection is left open on either side;
- POST is never retried by the read classifier; ``retryableAll5XX`` retries it and replays
  its body; chunked or over-the-buffer bodies are never retried;
- retry storms are bounded: with every backend failing, attempts stay within
  ``(1 + percentCanRetry) × requests + minRetriesPerSec × seconds``.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import time


from namerouter.namers.fs import FsNamer
from namerouter.proxy.policy.retries import RetryBudget
from tests.support.backends import RouterHarness, curl, request
from tests.support.load import FlakyBackend, Load, run_load

READ = {"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}}
ALL = {"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.http.retryableAll5XX"}}


async def _until(pred, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _post(path: str, body: bytes, host: str = "web", chunked: bool = False) -> bytes:
    if chunked:
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
    return f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


# --- one of three backends killed ---------------------------------------------------------------

async def test_killed_backend_is_marked_dead_probed_and_rejoins_under_500_rps():
    backends = [await FlakyBackend(f"b{i}").start() for i in range(3)]
    root = tempfile.mkdtemp()
    with open(os.path.join(root, "web"), "w") as f:
        f.write("".join(f"127.0.0.1 {b.port}\n" for b in backends))
    fs = FsNamer(root)
    client = {"kind": "io.l5d.global",
              "failureAccrual": {"kind": "io.l5d.consecutiveFailures", "failures": 5,
                                 "backoff": {"kind": "constant", "ms": 500}}}
    victim = backends[1]
    try:
        async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs], service=READ, client=client) as h:
            acc = "rt/outgoing/client/#/io.l5d.fs/web/failure_accrual/"
            load = Load(h.port, 500, 6.0, timeout=10)
            task = asyncio.get_running_loop().create_task(load.run())
            await asyncio.sleep(1.5)
            await victim.stop()  # crash: listener gone, open connections reset
            await _until(lambda: h.metric(acc + "removals") >= 1, 3.0, "the dead endpoint to be removed")
            assert h.metric(acc + "removed") == 1
            await asyncio.sleep(1.0)  # it stays dead: probes fail
            assert h.metric(acc + "probes") >= 1
            revived = FlakyBackend("b1-again", port=victim.port)
            await revived.start()
            await _until(lambda: h.metric(acc + "revivals") >= 1, 3.0, "the endpoint to be revived")
            rep = await task
            assert h.metric(acc + "removed") == 0
            assert revived.total > 100, revived.requests  # traffic came back to it
            assert rep.failed < rep.sent * 0.001, rep
            assert rep.sent == 3000
            await revived.stop()
    finally:
        for b in backends:
            await b.stop()
        await fs.close()


# --- hanging backend ----------------------------------------------------------------------------

async def test_hanging_backend_attempt_and_total_timeouts_503_and_no_leaks():
    async with FlakyBackend("hang", mode="hang") as b:
        service = {**READ, "totalTimeoutMs": 450}
        client = {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 100}
        async with RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", service=service, client=client) as h:
            t = time.monotonic()
            rc, out, err = await curl("-i", "-H", "Host: web", f"http://127.0.0.1:{h.port}/slow")
            took = time.monotonic() - t
            assert rc == 0, err
            head = out.split("\r\n\r\n", 1)[0].lower()
            assert head.startswith("http/1.1 503")
            assert "l5d-err: " in head and "totaltimeoutms" in head
            assert 0.4 < took < 2.0
            # attempts at 0, 100, 200, 300, 400 ms each timed out and were retried
            attempts = b.total
            assert 4 <= attempts <= 5, b.requests
            cid = f"rt/outgoing/client/$/inet/127.1/{b.port}/"
            assert h.metric(cid + "failures/com.twitter.finagle.IndividualRequestTimeoutException") == attempts - 1
            assert h.metric("rt/outgoing/service/svc/web/failures/com.twitter.finagle.GlobalRequestTimeoutException") == 1
            assert h.metric("rt/outgoing/service/svc/web/retries/total") == attempts - 1
            # every abandoned attempt's connection was closed: nothing left open
            await _until(lambda: not b.conns, 3.0, "backend connections to close")
            await _until(lambda: h.metric(cid + "connections") == 0, 3.0, "router client connections to close")

        # a method the classifier does not retry: one attempt, its own timeout, 503
        client = {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 150}
        async with RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", service=READ, client=client) as h:
            before = b.total
            r = await request(h.port, _post("/x", b"abc"))
            assert r.status == 503
            assert "requestAttemptTimeoutMs" in r.body.decode()
            assert r.header("l5d-err") is not None
            assert b.total - before == 1
            await _until(lambda: not b.conns, 3.0, "backend connections to close")


# --- POST and the classifiers ---------------------------------------------------------------------

async def test_post_is_not_retried_by_read_classifier_but_is_by_retryable_all():
    body = os.urandom(1024)
    async with FlakyBackend("api", fail_first=2) as b:
        async with RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", service=READ) as h:
            r = await request(h.port, _post("/items", body))
            assert r.status == 500 and b.total == 1
            assert r.header("l5d-success-class") == "0.0" and r.header("l5d-retryable") is None
            assert h.metric("rt/outgoing/service/svc/web/retries/total") == 0
            r = await request(h.port, _post("/items", body))  # the second scripted failure
            assert r.status == 500 and b.total == 2
    async with FlakyBackend("api", fail_first=2) as b:
        async with RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", service=ALL) as h:
            r = await request(h.port, _post("/items", body))
            assert r.status == 200 and r.header("l5d-success-class") == "1.0"
            assert b.total == 3 and b.bodies == [1024, 1024, 1024]  # the body was replayed
            assert h.metric("rt/outgoing/service/svc/web/retries/total") == 2
    # chunked or larger than the replay buffer: never retried, even by retryableAll5XX
    async with FlakyBackend("api", fail_first=4) as b:
        async with RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", service=ALL) as h:
            r = await request(h.port, _post("/items", body, chunked=True))
            assert r.status == 500 and b.total == 1
            r = await request(h.port, _post("/items", os.urandom(200 * 1024)))
            assert r.status == 500 and b.total == 2 and b.bodies[-1] == 200 * 1024
            r = await request(h.port, _post("/items", body))  # small, fixed length: retried
            assert r.status == 200 and b.total == 5
            assert h.metric("rt/outgoing/service/svc/web/retries/request_stream_too_long") == 2


# --- retry storms -----------------------------------------------------------------------------------

async def test_retry_storm_is_bounded_by_the_budget():
    budget = RetryBudget()
    rate, seconds = 50, 19.8
    async with FlakyBackend("a", mode="fail") as a, FlakyBackend("b", mode="fail") as b:
        root = tempfile.mkdtemp()
        with open(os.path.join(root, "web"), "w") as f:
            f.write(f"127.0.0.1 {a.port}\n127.0.0.1 {b.port}\n")
        fs = FsNamer(root)
        client = {"kind": "io.l5d.global", "failureAccrual": {"kind": "none"}}
        async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs], service=READ, client=client) as h:
            # Start on a budget slice boundary so the run covers whole ttl windows: the
            # budget counts in 1 s slices of time.monotonic().
            await asyncio.sleep(1.0 - (time.monotonic() % 1.0) + 0.01)
            rep = await run_load(h.port, rate, seconds, timeout=10)
            exhausted = h.metric("rt/outgoing/service/svc/web/retries/budget_exhausted")
            retries = h.metric("rt/outgoing/service/svc/web/retries/total")
        await fs.close()
    n = rep.sent
    attempts = a.total + b.total
    assert rep.statuses[500] == n  # every request failed in the end
    bound = (1 + budget.percent) * n + budget.min_per_sec * 20  # 20 s = two ttl windows
    assert attempts <= bound, (attempts, bound)
    # and the budget was used, not merely unreachable
    assert attempts >= n + budget.min_per_sec * 10 + budget.percent * n * 0.9
    assert exhausted > 0
    assert attempts == n + retries  # the metric counts exactly the extra attempts


# --- requeues -------------------------------------------------------------------------------------

async def test_connect_failures_are_requeued_to_another_endpoint_within_the_requeue_budget():
    from tests.support.ports import free_port
    dead = free_port()  # nothing listens there: every connect is refused
    async with FlakyBackend("live") as live:
        root = tempfile.mkdtemp()
        with open(os.path.join(root, "web"), "w") as f:
            f.write(f"127.0.0.1 {dead}\n127.0.0.1 {live.port}\n")
        fs = FsNamer(root)
        # accrual that never trips, so the dead endpoint keeps being picked
        keep_picking = {"kind": "io.l5d.consecutiveFailures", "failures": 100000}
        cid = "rt/outgoing/client/#/io.l5d.fs/web/"
        client = {"kind": "io.l5d.global", "failureAccrual": keep_picking}
        async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs], client=client) as h:
            codes = [(await request(h.port, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")).status for _ in range(100)]
            assert codes == [200] * 100
            refused = h.metric(cid + "failures/connect")
            assert refused > 10  # p2c kept drawing the dead endpoint ...
            assert h.metric(cid + "retries/requeues") == refused  # ... and each was requeued
            assert live.total == 100
        # an empty requeue budget: the refused connects are answered, 502 + l5d-retryable
        client = {"kind": "io.l5d.global", "failureAccrual": keep_picking,
                  "requeueBudget": {"minRetriesPerSec": 0, "percentCanRetry": 0.0}}
        async with RouterHarness("/svc => /#/io.l5d.fs", namers=[fs], client=client) as h:
            rs = [await request(h.port, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n") for _ in range(60)]
            failed = [r for r in rs if r.status != 200]
            assert failed and all(r.status == 502 and r.header("l5d-retryable") == "true" for r in failed)
            assert h.metric(cid + "retries/requeues") == 0
            assert h.metric(cid + "retries/budget_exhausted") == len(failed)
        await fs.close()
