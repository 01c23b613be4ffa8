#!/usr/bin/env python3
"""Hostile-load benchmark (issue 17, items 1, 2 and 4): normal-request latency and the
router's and namerd's memory, with and without each attack running, next to the limits.

    flock /work/.bench.lock .venv/bin/python bench/hostile_bench.py [--hostile 10000] [--ttl 8]

Starts real processes on free loopback ports: a backend (``python -m http.server``),
namerd (``io.l5d.inMemory``, the fs namer) and one router process (``python -m
namerouter``) with two routers: ``direct`` (default interpreter, fs namer,
``maxHeadersKB: 256`` so that 100 KB dtabs get through the header limit) and ``namerd``
(``io.l5d.namerd.http``). Caches use a short idle TTL (``--ttl`` seconds) so that the
"after" memory figures come in seconds instead of 10 minutes.

While every phase runs, normal traffic flows: open-loop GETs to the ``direct`` router
(Host: web) and one-shot ``GET /api/1/bind`` calls to namerd; their p50/p99 are
printed per phase, with both processes' RSS. Phases:

0. baseline: normal traffic only (the reference for everything below);
1. item 1: ``--hostile`` unique 130-branch alternation ``l5d-dtab`` requests to the
   router, then the same through ``io.l5d.namerd.http`` and directly to namerd's
   ``/api/1/bind?dtab=``; then the caches' TTL passes and memory is read again;
2. item 2: unique "doubling chain" request dtabs (20/s), 100 KB ``l5d-dtab`` (5/s),
   0.9 MB ``POST /delegator.json`` (1/s) and doubling chains to namerd's bind API (10/s);
3. item 4: 1 MB dtab PUTs to namerd (1/s) while 20 watch streams never read;
4. item 5: slowloris (``--slowloris`` connections sending their head one byte a second)
   and an idle-connection flood (``--idle`` connections that send nothing), each next to
   the normal traffic's p99, with how many of the hostile connections the router closed
   and when (``serverSession.headerReadTimeoutMs``, default 5 s);
5. item 6: the router's idle CPU with 1,000 names bound through the ``io.l5d.fs`` namer
   (each file watched; issue 17 measured 12–13 % with the old 50 ms polling).

``--items 1,2,4,5,6`` picks the phases (default: all).

Targets (issue 17): router p99 <= 50 ms and namerd API <= 100 ms under each attack;
memory within 10 MB of the start once the TTLs pass; hostile connections closed after
the header-read timeout; idle CPU near zero.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import aiohttp

from namerd_bench import free_port, pct, rss_mb  # noqa: E402 - bench/ is this script's directory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as r:
                    await r.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


# Attack payloads -------------------------------------------------------------------------

def alternation(i: int) -> str:
    branches = " | ".join(f"/#/io.l5d.fs/b{k}" for k in range(130))
    return f"/u/{i} => /x; /svc/web => {branches} | /#/io.l5d.fs/web"


def doubling_chain(i: int, port: int, levels: int = 24) -> str:
    chain = ";".join(f"/x{k} => /x{k + 1} & /x{k + 1}" for k in range(levels))
    return f"/u/{i} => /x; {chain}; /x{levels} => /$/inet/127.0.0.1/{port}; /svc/web => /x0"


def big_dtab(i: int, kb: int) -> str:
    entry = f"/s{i}/%d => /#/io.l5d.fs/b%d;"
    out, n = [], 0
    while n < kb * 1024:
        e = entry % (len(out), len(out))
        out.append(e)
        n += len(e)
    return "".join(out)


# Processes -------------------------------------------------------------------------------

#: A keep-alive HTTP/1.1 backend answering 200 "ok" to anything (its own process).
BACKEND = r"""
import asyncio, sys
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if n:
                await reader.readexactly(n)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
asyncio.run(main())
"""

class Stack:
    def __init__(self, ttl: float) -> None:
        self.tmp = tempfile.mkdtemp(prefix="hostile-bench-")
        self.ttl = ttl
        self.procs: list[subprocess.Popen[bytes]] = []
        self.backend_port, self.namerd_port, self.namerd_admin = free_port(), free_port(), free_port()
        self.direct_port, self.namerd_router_port, self.admin_port = free_port(), free_port(), free_port()
        self.namerd: Optional[subprocess.Popen[bytes]] = None
        self.router: Optional[subprocess.Popen[bytes]] = None

    async def start(self) -> None:
        www = os.path.join(self.tmp, "www")
        disco = os.path.join(self.tmp, "disco")
        os.makedirs(www)
        os.makedirs(disco)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("ok\n")
        with open(os.path.join(disco, "web"), "w") as f:
            f.write(f"127.0.0.1 {self.backend_port}\n")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-c", BACKEND, str(self.backend_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ncfg = os.path.join(self.tmp, "namerd.yaml")
        with open(ncfg, "w") as f:
            f.write(f"admin: {{port: {self.namerd_admin}}}\n"
                    f"storage: {{kind: io.l5d.inMemory, namespaces: {{default: '/svc => /#/io.l5d.fs'}}}}\n"
                    f"namers: [{{kind: io.l5d.fs, rootDir: {disco}}}]\n"
                    f"interfaces: [{{kind: io.l5d.httpController, port: {self.namerd_port}}}]\n")
        # The binding cache's idle TTL has no config key: the bench shortens it here.
        runner = ("import sys, namerd.server as s\n"
                  "f = s.Namerd.from_config.__func__\n"
                  f"s.Namerd.from_config = classmethod(lambda c, v, m=None: "
                  f"(lambda n: (setattr(n, 'binding_idle_ttl', {self.ttl}), n)[1])(f(c, v, m)))\n"
                  f"from namerd.cli import main; sys.exit(main([{ncfg!r}]))\n")
        self.namerd = subprocess.Popen([sys.executable, "-c", runner], cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.namerd)
        rcfg = os.path.join(self.tmp, "router.yaml")
        cache = f"bindingCache: {{idleTtlSecs: {int(self.ttl)}}}"
        with open(rcfg, "w") as f:
            f.write(f"admin: {{port: {self.admin_port}}}\n"
                    f"namers: [{{kind: io.l5d.fs, rootDir: {disco}}}]\n"
                    f"routers:\n"
                    f"- protocol: http\n  label: direct\n  dtab: '/svc => /#/io.l5d.fs'\n"
                    f"  maxHeadersKB: 256\n  {cache}\n  servers: [{{port: {self.direct_port}}}]\n"
                    f"- protocol: http\n  label: namerd\n  {cache}\n"
                    f"  interpreter: {{kind: io.l5d.namerd.http, dst: /$/inet/127.0.0.1/{self.namerd_port},"
                    f" cache: {{bindingCacheInactiveTTLSecs: {self.ttl}, addrCacheInactiveTTLSecs: {self.ttl}}}}}\n"
                    f"  servers: [{{port: {self.namerd_router_port}}}]\n")
        self.router = subprocess.Popen([sys.executable, "-m", "namerouter", rcfg], cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.router)
        await wait_http(f"http://127.0.0.1:{self.backend_port}/")
        await wait_http(f"http://127.0.0.1:{self.namerd_port}/api/1/dtabs")
        await wait_http(f"http://127.0.0.1:{self.admin_port}/admin/ping")

    def rss(self) -> tuple[float, float]:
        assert self.router is not None and self.namerd is not None
        return rss_mb(self.router.pid), rss_mb(self.namerd.pid)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


# Load ------------------------------------------------------------------------------------

class Normal:
    """Open-loop normal traffic: router GETs and namerd one-shot binds, latencies kept."""

    def __init__(self, stack: Stack, router_rate: float = 40, namerd_rate: float = 10) -> None:
        self.stack = stack
        self.rates = (router_rate, namerd_rate)
        self.router_lat: list[float] = []
        self.namerd_lat: list[float] = []
        self.errors = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        self.router_lat, self.namerd_lat, self.errors = [], [], 0

    async def _one(self, s: aiohttp.ClientSession, url: str, headers: dict[str, str], out: list[float]) -> None:
        t0 = time.monotonic()
        try:
            async with s.get(url, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    self.errors += 1
        except aiohttp.ClientError:
            self.errors += 1
        out.append(time.monotonic() - t0)

    async def _paced(self, rate: float, url: str, headers: dict[str, str], which: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            nxt = time.monotonic()
            pending: set[asyncio.Task[None]] = set()
            while not self._stop.is_set():
                out = self.router_lat if which == "router" else self.namerd_lat
                t = asyncio.ensure_future(self._one(s, url, headers, out))
                pending.add(t)
                t.add_done_callback(pending.discard)
                nxt += 1.0 / rate
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            if pending:
                await asyncio.wait(pending)

    def start(self) -> None:
        st = self.stack
        self._tasks = [
            asyncio.ensure_future(self._paced(self.rates[0], f"http://127.0.0.1:{st.direct_port}/",
                                              {"Host": "web"}, "router")),
            asyncio.ensure_future(self._paced(
                self.rates[1], f"http://127.0.0.1:{st.namerd_port}/api/1/bind/default?path=/svc/web", {}, "namerd")),
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def send(s: aiohttp.ClientSession, item: tuple[str, str, dict[str, str], Optional[bytes]],
               statuses: dict[int, int]) -> None:
    """One request; its status counted (0: no answer)."""
    method, url, headers, body = item
    try:
        async with s.request(method, url, headers=headers, data=body) as r:
            await r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
    except (aiohttp.ClientError, asyncio.TimeoutError):
        statuses[0] = statuses.get(0, 0) + 1


async def flood(urls_headers: list[tuple[str, str, dict[str, str], Optional[bytes]]], concurrency: int = 8) -> dict[int, int]:
    """Send every (method, url, headers, body) as fast as ``concurrency`` connections go."""
    statuses: dict[int, int] = {}
    q: asyncio.Queue[tuple[str, str, dict[str, str], Optional[bytes]]] = asyncio.Queue()
    for item in urls_headers:
        q.put_nowait(item)

    async def worker(s: aiohttp.ClientSession) -> None:
        while not q.empty():
            await send(s, q.get_nowait(), statuses)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return statuses


async def paced_attack(rate: float, seconds: float, make: Any) -> dict[int, int]:
    """``make(i) -> (method, url, headers, body)`` sent at ``rate`` per second."""
    statuses: dict[int, int] = {}

    async def one(s: aiohttp.ClientSession, i: int) -> None:
        await send(s, make(i), statuses)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        tasks = []
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            tasks.append(asyncio.ensure_future(one(s, i)))
            i += 1
            await asyncio.sleep(1.0 / rate)
        await asyncio.gather(*tasks)
    return statuses


# Phases ----------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str, str, str]] = []


def row(phase: str, normal: Normal, stack: Stack, limit: str, note: str = "") -> None:
    r_rss, n_rss = stack.rss()
    ROWS.append((
        phase,
        f"{pct(normal.router_lat, .5) * 1000:6.1f} / {pct(normal.router_lat, .99) * 1000:6.1f}",
        f"{pct(normal.namerd_lat, .5) * 1000:6.1f} / {pct(normal.namerd_lat, .99) * 1000:6.1f}",
        f"{r_rss:6.1f} / {n_rss:6.1f}",
        limit + (f"  [{note}]" if note else ""),
    ))
    print(f"  {phase}: router {ROWS[-1][1]} ms, namerd {ROWS[-1][2]} ms, RSS {ROWS[-1][3]} MB "
          f"(normal errors: {normal.errors}) {note}", flush=True)


async def hold_connections(port: int, n: int, trickle: Optional[bytes], seconds: float) -> list[float]:
    """``n`` connections to ``port``; each sends ``trickle`` one byte a second (None: sends
    nothing). Returns, for each connection the router closed within ``seconds``, how long
    it had been open."""
    closed: list[float] = []

    async def one() -> None:
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        try:
            i = 0
            while time.monotonic() - t0 < seconds:
                if trickle is not None and i < len(trickle):
                    writer.write(trickle[i:i + 1])
                    i += 1
                try:
                    data = await asyncio.wait_for(reader.read(4096), 1.0)
                except asyncio.TimeoutError:
                    continue
                if not data or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 503"):
                    closed.append(time.monotonic() - t0)
                    return
        except ConnectionError:
            closed.append(time.monotonic() - t0)
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(n)))
    return closed


async def idle_cpu(stack: Stack, names: int, seconds: float) -> float:
    """CPU % of a router process (its own, with the default 600 s cache TTL, so nothing
    is evicted while measured) idle after ``names`` distinct names were bound through the
    io.l5d.fs namer."""
    disco = os.path.join(stack.tmp, "disco-idle")
    os.makedirs(disco)
    for i in range(names):
        with open(os.path.join(disco, f"n{i}"), "w") as f:
            f.write(f"127.0.0.1 {stack.backend_port}\n")
    port, admin = free_port(), free_port()
    cfg = os.path.join(stack.tmp, "idle-router.yaml")
    with open(cfg, "w") as f:
        f.write(f"admin: {{port: {admin}}}\nnamers: [{{kind: io.l5d.fs, rootDir: {disco}}}]\n"
                f"routers:\n- protocol: http\n  dtab: '/svc => /#/io.l5d.fs'\n  servers: [{{port: {port}}}]\n")
    router = subprocess.Popen([sys.executable, "-m", "namerouter", cfg], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_http(f"http://127.0.0.1:{admin}/admin/ping")
        st = await flood([("GET", f"http://127.0.0.1:{port}/", {"Host": f"n{i}"}, None) for i in range(names)],
                         concurrency=16)
        assert st.get(200) == names, st
        await asyncio.sleep(6.0)  # the requests' connections and timers settle (header timeout 5 s)
        c0, t0 = cpu_s(router.pid), time.monotonic()
        await asyncio.sleep(seconds)
        return (cpu_s(router.pid) - c0) / (time.monotonic() - t0) * 100
    finally:
        router.terminate()
        router.wait(10)


async def after_ttl(stack: Stack, normal: Normal, phase: str, ttl: float) -> None:
    normal.reset()
    await asyncio.sleep(ttl * 2 + 5)  # idle TTL, then the sweeps that follow it
    row(phase, normal, stack, "caches' idle TTL passed; target: within 10 MB of the start")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hostile", type=int, default=10_000, help="hostile requests in item 1 (router)")
    ap.add_argument("--ttl", type=float, default=8.0, help="caches' idle TTL in seconds")
    ap.add_argument("--phase-seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=200.0, help="hostile requests per second in item 1")
    ap.add_argument("--slowloris", type=int, default=200, help="slowloris connections in item 5")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections in item 5")
    ap.add_argument("--items", default="1,2,4,5,6", help="which of the issue's items to run")
    args = ap.parse_args()
    items = {int(x) for x in args.items.split(",") if x}
    stack = Stack(args.ttl)
    await stack.start()
    normal = Normal(stack)
    try:
        # warm both processes, then the reference
        await flood([("GET", f"http://127.0.0.1:{stack.direct_port}/", {"Host": "web"}, None)] * 50)
        await flood([("GET", f"http://127.0.0.1:{stack.namerd_router_port}/", {"Host": "web"}, None)] * 20)
        normal.start()
        await asyncio.sleep(args.phase_seconds)
        row("0 baseline", normal, stack, "reference")
        start_rss = stack.rss()

        if 1 in items:
            await item1(args, stack, normal, start_rss)
        if 2 in items:
            await item2(args, stack, normal)
        if 4 in items:
            await item4(args, stack, normal)
        if 5 in items:
            await item5(args, stack, normal)
        await normal.stop()
        if 6 in items:
            print("item 6: idle CPU with 1,000 names bound through io.l5d.fs ...", flush=True)
            cpu = await idle_cpu(stack, 1000, 10.0)
            ROWS.append(("6 idle, 1,000 names bound (io.l5d.fs)", "", "", "",
                         f"router CPU {cpu:.2f} % of a core over 10 s (directories watched, no polling)"))
            print(f"  router idle CPU {cpu:.2f} %", flush=True)
    finally:
        stack.stop()

    print()
    print(f"{'phase':52} {'router p50/p99 ms':>19} {'namerd p50/p99 ms':>19} {'RSS router/namerd MB':>21}  limits")
    for phase, r, n, rss, lim in ROWS:
        print(f"{phase:52} {r:>19} {n:>19} {rss:>21}  {lim}")
    print("targets: router p99 <= 50 ms, namerd API p99 <= 100 ms under each attack")
    return 0


def _closed_note(closed: list[float], n: int) -> str:
    if not closed:
        return f"0/{n} closed by the router within 12 s"
    return (f"{len(closed)}/{n} closed by the router within 12 s, after "
            f"{pct(closed, .5):.1f}-{max(closed):.1f} s")


async def item5(args: Any, stack: Stack, normal: Normal) -> None:
    head = b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: slowloris\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    print(f"item 5: {args.slowloris} slowloris connections (1 byte/s) ...", flush=True)
    normal.reset()
    closed = await hold_connections(stack.direct_port, args.slowloris, head, 12.0)
    row("5a slowloris (head at 1 byte/s)", normal, stack, "headerReadTimeoutMs 5000 (408 and close)",
        _closed_note(closed, args.slowloris))
    print(f"item 5: {args.idle} idle connections ...", flush=True)
    normal.reset()
    closed = await hold_connections(stack.direct_port, args.idle, None, 12.0)
    row("5b idle-connection flood", normal, stack,
        "first head due within headerReadTimeoutMs; idleTimeMs 60000 between requests; "
        "connections beyond the RLIMIT_NOFILE share get 503", _closed_note(closed, args.idle))


async def item1(args: Any, stack: Stack, normal: Normal, start_rss: tuple[float, float]) -> None:
    rate = args.rate
    print(f"item 1: {args.hostile} unique 130-branch alternation l5d-dtab requests at {rate}/s ...", flush=True)
    normal.reset()
    d = stack.direct_port
    assert stack.router is not None and stack.namerd is not None
    c0 = cpu_s(stack.router.pid)
    st = await paced_attack(rate, args.hostile / rate, lambda i: (
        "GET", f"http://127.0.0.1:{d}/", {"Host": "web", "l5d-dtab": alternation(i)}, None))
    per = (cpu_s(stack.router.pid) - c0) * 1000 / max(1, sum(st.values()))
    row("1a alternation -> router", normal, stack, "no recursion limit reachable; request budget 1,000 steps",
        f"statuses {st}; router CPU {per:.1f} ms per hostile request incl. normal traffic")
    normal.reset()
    n_hostile = max(200, args.hostile // 5)
    c0 = cpu_s(stack.namerd.pid)
    st, st2 = await asyncio.gather(
        paced_attack(rate / 2, n_hostile / rate * 2, lambda i: (
            "GET", f"http://127.0.0.1:{stack.namerd_router_port}/",
            {"Host": "web", "l5d-dtab": alternation(10**6 + i)}, None)),
        paced_attack(rate / 2, n_hostile / rate * 2, lambda i: (
            "GET", f"http://127.0.0.1:{stack.namerd_port}/api/1/bind/default?path=/svc/web&dtab="
            + aiohttp.helpers.quote(alternation(2 * 10**6 + i), safe=""), {}, None)))
    per = (cpu_s(stack.namerd.pid) - c0) * 1000 / max(1, sum(st.values()) + sum(st2.values()))
    row("1b alternation -> io.l5d.namerd.http, /api/1/bind", normal, stack, "same budget in namerd",
        f"router {st}, namerd {st2}; namerd CPU {per:.1f} ms per hostile bind")
    await after_ttl(stack, normal, "1c after item 1", args.ttl)
    r0, n0 = start_rss
    r1, n1 = stack.rss()
    ROWS.append(("   change since baseline", "", "", f"{r1 - r0:+6.1f} / {n1 - n0:+6.1f}", "target: <= +10 MB each"))


async def item2(args: Any, stack: Stack, normal: Normal) -> None:
    d = stack.direct_port
    print("item 2: doubling chains, 100 KB dtabs, 0.9 MB delegator POSTs ...", flush=True)
    bp = stack.backend_port
    secs = args.phase_seconds
    # Payloads made before the phase: the bench shares the machine's two cores.
    chains = [doubling_chain(i, bp) for i in range(int(20 * secs) + 20)]
    bigs = [big_dtab(i, 100) for i in range(int(5 * secs) + 5)]
    posts = [json.dumps({"namespace": "direct", "path": "/svc/web", "dtab": big_dtab(i, 900)}).encode()
             for i in range(int(secs) + 1)]
    nchains = ["/api/1/bind/default?path=/svc/web&dtab=" + aiohttp.helpers.quote(doubling_chain(10**6 + i, bp), safe="")
               for i in range(int(10 * secs) + 10)]
    normal.reset()
    attacks = await asyncio.gather(
        paced_attack(20, secs, lambda i: (
            "GET", f"http://127.0.0.1:{d}/", {"Host": "web", "l5d-dtab": chains[i % len(chains)]}, None)),
        paced_attack(5, secs, lambda i: (
            "GET", f"http://127.0.0.1:{d}/", {"Host": "web", "l5d-dtab": bigs[i % len(bigs)]}, None)),
        paced_attack(1, secs, lambda i: (
            "POST", f"http://127.0.0.1:{stack.admin_port}/delegator.json", {"Content-Type": "application/json"},
            posts[i % len(posts)])),
        paced_attack(10, secs, lambda i: (
            "GET", f"http://127.0.0.1:{stack.namerd_port}{nchains[i % len(nchains)]}", {}, None)),
    )
    row("2 doubling chains + 100 KB dtabs + 0.9 MB delegator", normal, stack,
        "request budget 1,000 steps; maxLocalDtabKB 8; delegator dtab 1 MB, parsed off-loop",
        "statuses " + ", ".join(str(a) for a in attacks))


async def item4(args: Any, stack: Stack, normal: Normal) -> None:
    print("item 4: 1 MB dtab PUTs to namerd with 20 watchers that never read ...", flush=True)
    normal.reset()
    sleepers = []
    for _ in range(20):
        sk = socket.socket()
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sk.connect(("127.0.0.1", stack.namerd_port))
        sk.sendall(b"GET /api/1/dtabs/big?watch=1 HTTP/1.1\r\nHost: namerd\r\nAccept: application/dtab\r\n\r\n")
        sleepers.append(sk)
    puts = [big_dtab(i, 1000).encode() for i in range(int(args.phase_seconds) + 1)]
    normal.reset()
    st = await paced_attack(1, args.phase_seconds, lambda i: (
        "PUT", f"http://127.0.0.1:{stack.namerd_port}/api/1/dtabs/big", {"Content-Type": "application/dtab"},
        puts[i % len(puts)]))
    row("4 1 MB PUTs + 20 stalled watchers", normal, stack,
        "maxDtabKB 1024 (413 beyond), parsed off-loop; one unsent state per watcher; "
        "watchStallTimeoutMs 30000", f"statuses {st}")
    for sk in sleepers:
        sk.close()
    await after_ttl(stack, normal, "4b after item 4", args.ttl)


if __name__ == "__main__":
    random.seed(1)
    sys.exit(asyncio.run(main()))
