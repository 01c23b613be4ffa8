"""Tracing overhead per request, measured on the calls the data plane will make.

Prints figures; not a timed test. Run with ``flock /work/.bench.lock .venv/bin/python
bench/tracing_bench.py`` (options: ``--requests 20000 --rounds 5``).

Each case runs the per-request tracing work of one proxied request — ``begin`` (from
no trace headers or from B3 headers), ``routed``, ``attempt`` (the outgoing header block),
``attempt_done``, ``finish`` — ``--requests`` times on the event loop, and reports the CPU
time per request (``time.process_time``: every thread of the process, so the export
thread's encoding counts too). The reference in the same run is what the data plane does
for tracing today (the ``l5d-reqid`` value from ``getrandbits``). Cases:

* ``today``: the reference;
* ``none``: tracing with no telemeter (ids + header block, never a span);
* ``none+b3``: the same from a request carrying B3 headers;
* ``zipkin 1%`` / ``zipkin 100%``: an ``io.l5d.zipkin`` telemeter exporting to a local
  collector (an aiohttp app in this process's loop answering 202); the 100% case includes
  encoding and sending every span;
* ``zipkin 0% + sampled=0``: a telemeter configured, requests carrying a "no" decision.

Rounds are interleaved (every case once per round) and the median per case is printed,
with its ratio to ``none``. The figures are CPU microseconds added to each request: to
compare with a request's whole cost, ``bench/proxy_bench.py`` gives the router's
requests/s on this machine (1 / rps ≈ CPU seconds per request on one core).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from random import getrandbits

from aiohttp import web

from namerouter.tracing.tracer import NO_TELEMETERS, Tracer
from namerouter.tracing.zipkin import ZipkinTelemeter

B3 = [(b"x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"), (b"x-b3-spanid", b"a2fb4a1d1a96d312"),
      (b"x-b3-sampled", b"1")]
B3_NO = [(b"x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"), (b"x-b3-spanid", b"a2fb4a1d1a96d312"),
         (b"x-b3-sampled", b"0")]
REMOTE, LOCAL = ("127.0.0.1", 50000), ("127.0.0.1", 4140)


def today(n: int) -> None:
    for _ in range(n):
        b"%016x" % getrandbits(64)


def hooks(router, n: int, headers=None) -> None:
    for _ in range(n):
        t = router.begin(headers, remote=REMOTE, local=LOCAL, method=b"GET", uri=b"/pong", host=b"pong")
        if t.recording:
            t.routed("/svc/pong")
        t.attempt("/$/inet/127.1/8080", "/", "127.0.0.1", 8080)
        if t.recording:
            t.attempt_done(200)
            t.finish(200)


async def collector() -> tuple[web.AppRunner, str]:
    async def spans(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/api/v2/spans", spans)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/api/v2/spans"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runner, url = await collector()
    tracers = {}
    for name, rate in (("zipkin 1%", 0.01), ("zipkin 100%", 1.0), ("zipkin 0% + sampled=0", 0.0)):
        tr = Tracer([ZipkinTelemeter(url, rate, max_queue=100_000, max_batch=1000, delay_s=0.05)])
        await tr.start()
        tracers[name] = tr
    none = NO_TELEMETERS.router("bench")
    cases = {
        "today": lambda n: today(n),
        "none": lambda n: hooks(none, n),
        "none+b3": lambda n: hooks(none, n, B3),
        "zipkin 1%": lambda n: hooks(tracers["zipkin 1%"].router("bench"), n),
        "zipkin 100%": lambda n: hooks(tracers["zipkin 100%"].router("bench"), n),
        "zipkin 0% + sampled=0": lambda n: hooks(tracers["zipkin 0% + sampled=0"].router("bench"), n, B3_NO),
    }
    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            tr = tracers.get(name)
            t0 = time.process_time()
            fn(args.requests)
            if tr is not None:  # the export of this round's spans is part of its cost
                q = tr.telemeters[0].queue
                while len(q):
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.06)  # the last batch's POST
            results[name].append((time.process_time() - t0) / args.requests * 1e6)
    base = statistics.median(results["none"])
    print(f"tracing CPU per request, median of {args.rounds} interleaved rounds of {args.requests} requests")
    for name, xs in results.items():
        med = statistics.median(xs)
        print(f"  {name:<24} {med:7.2f} µs   ({med / base:4.2f} × none)")
    for tr in tracers.values():
        q = tr.telemeters[0].queue
        print(f"  [{tr.telemeters[0].sampler.rate:g}] sent {q.sent.value} dropped {q.dropped.value} "
              f"errors {q.errors.value}")
        await tr.close()
    await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
