"""Data-plane benchmark: namerouter vs nginx 1.22 as reverse proxies to the same backend.

Prints figures; not a timed test. Run with ``.venv/bin/python bench/proxy_bench.py``
(options: ``--duration 5 --connections 32 --rate 1000 --paced-seconds 5 --names 1000
--backends 100``).

Set-up, all on 127.0.0.1, in one run:

* backend: an nginx process (1 worker) whose server block answers ``return 200 "pong"``
  on 100 ports (the first one serves the throughput and latency runs);
* nginx reverse proxy (1 worker, ``upstream`` with ``keepalive 64``) to the backend;
* namerouter: one Python process running the real ``HttpRouter`` + ``DefaultInterpreter``,
  dtab ``/svc/pong => /$/inet/127.1/<backend>``, Host identification, p2c, metrics and
  the l5d headers on (the whole pipeline); uvloop.

Figures:

1. throughput: ``wrk -t1 -c32 -d5s -H 'Host: pong'`` against the backend, nginx and the
   router, in 3 interleaved rounds (1 s warm-up before each run, same parameters), and
   the median ratio router/nginx of the rounds (target >= 0.5);
2. latency at a fixed 1,000 req/s: wrk cannot pace and wrk2 is not packaged, so a small
   paced generator in this file (uvloop, 8 keep-alive connections, requests released on
   a fixed schedule, each latency measured from its write to its complete response)
   measures p50/p99 direct to the backend, through nginx and through the router, in
   interleaved 1 s rounds so that load from other processes hits all three alike; the
   added p99 is the router's median-of-rounds p99 minus the direct one (target <= 1 ms);
3. memory: the router's RSS after routing 1,000 distinct names (``/svc/n0`` ..
   ``/svc/n999``, each a dtab entry to one of the 100 backend ports) (target <= 60 MB).

The machine has 2 cores shared by everything: the load generator, the backend and the
proxy under test compete in the same way for nginx and for namerouter.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free ports (sockets held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {port}")
            time.sleep(0.02)


def nginx_conf(d: str, body: str) -> str:
    return textwrap.dedent(f"""\
        daemon off;
        worker_processes 1;
        pid {d}/nginx.pid;
        error_log {d}/error.log warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
            fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
            keepalive_requests 1000000;
        {textwrap.indent(body, '    ')}
        }}
        """)


def start_nginx(body: str, wait_for: int) -> tuple[subprocess.Popen, str]:
    d = tempfile.mkdtemp(prefix="nrbench-nginx-")
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(d, body))
    subprocess.run([NGINX, "-t", "-q", "-c", conf, "-p", d], check=True)
    p = subprocess.Popen([NGINX, "-c", conf, "-p", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(wait_for)
    return p, d


ROUTER_CHILD = r"""
import asyncio, os, sys
sys.path.insert(0, {root!r})
import uvloop
from namerouter.proxy import HttpRouter, RouterConfig, ServerConfig
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.metrics import MetricsRegistry

async def main():
    dtab = open({dtab_file!r}).read()
    cfg = RouterConfig(label="outgoing", dtab=dtab, servers=[ServerConfig(port={port})])
    metrics = MetricsRegistry()
    router = HttpRouter(cfg, DefaultInterpreter(), metrics)
    await router.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stop.set)
    await stop.wait()
    await router.close(1)

uvloop.run(main())
"""


def start_router(port: int, dtab: str) -> subprocess.Popen:
    d = tempfile.mkdtemp(prefix="nrbench-router-")
    dtab_file = os.path.join(d, "dtab")
    with open(dtab_file, "w") as f:
        f.write(dtab)
    code = ROUTER_CHILD.format(root=ROOT, dtab_file=dtab_file, port=port)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # type: ignore[union-attr]
    if "ready" not in line:
        raise RuntimeError("router did not start")
    return p


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else float("nan")


def wrk(port: int, duration: int, conns: int, host: str = "pong") -> float:
    args = [WRK, "-t1", f"-c{conns}", f"-d{duration}s", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/pong"]
    subprocess.run(args[:3] + ["-d1s"] + args[4:], capture_output=True)  # warm-up
    out = subprocess.run(args, capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        print(f"    WARNING: {non2xx.group(1)} non-2xx responses on port {port}")
    return float(m.group(1)) if m else 0.0


# Paced load generator (fixed rate, latency from the scheduled send time) ----------------

class _PacedConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.buf = b""
        self.waiting: list[float] = []  # scheduled times of requests in flight (FIFO)
        self.samples: list[float] = []
        self.errors = 0

    def connection_made(self, t):  # type: ignore[override]
        self.transport = t
        t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        now = time.perf_counter()
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i]
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            n = int(m.group(1)) if m else 0
            if len(self.buf) < i + 4 + n:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.errors += 1
            self.buf = self.buf[i + 4 + n:]
            t0 = self.waiting.pop(0)
            self.samples.append(now - t0)


async def paced(port: int, rate: int, seconds: float, conns: int = 8, host: str = "pong") -> tuple[list[float], int]:
    """Send ``rate`` req/s for ``seconds`` over ``conns`` keep-alive connections.

    Requests are released on a fixed schedule (those due are sent together when the
    timer wakes up late, so the offered rate holds); each latency is measured from the
    moment its bytes were written to the moment its response was complete.
    """
    loop = asyncio.get_running_loop()
    protos: list[_PacedConn] = []
    for _ in range(conns):
        _, p = await loop.create_connection(_PacedConn, "127.0.0.1", port)
        protos.append(p)
    req = f"GET /pong HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for p in protos:  # warm-up: every connection (and the proxy's pool) used once
        p.waiting.append(time.perf_counter())
        p.transport.write(req)  # type: ignore[union-attr]
    await asyncio.sleep(0.2)
    for p in protos:
        p.samples.clear()
    interval = 1.0 / rate
    total = int(rate * seconds)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) / interval) + 1)
        while sent < due:
            p = min(protos, key=lambda p: len(p.waiting))  # least busy connection, like a pool
            p.waiting.append(time.perf_counter())
            p.transport.write(req)  # type: ignore[union-attr]
            sent += 1
        await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
    await asyncio.sleep(0.3)
    samples = [s for p in protos for s in p.samples]
    errors = sum(p.errors for p in protos)
    for p in protos:
        p.transport.close()  # type: ignore[union-attr]
    return samples, errors


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(q * len(s)))] * 1000.0


async def route_many(port: int, names: int, rounds: int = 2, conns: int = 16) -> int:
    """Send requests for /svc/n0../svc/n<names-1> through the router; returns non-200s."""
    bad = 0

    async def worker(k: int) -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for r in range(rounds):
            for i in range(k, names, conns):
                writer.write(f"GET /pong HTTP/1.1\r\nHost: n{i}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(m.group(1)) if m else 0)
                if not head.startswith(b"HTTP/1.1 200"):
                    bad += 1
        writer.close()

    await asyncio.gather(*(worker(k) for k in range(conns)))
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds per target")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--paced-seconds", type=float, default=5.0, help="rounds of 1 s per target")
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--backends", type=int, default=100)
    args = ap.parse_args()

    import uvloop

    *backend_ports, proxy_port, router_port = free_ports(args.backends + 2)
    listens = "\n".join(f"    listen 127.0.0.1:{p};" for p in backend_ports)
    backend_body = f"server {{\n{listens}\n    location / {{ return 200 \"pong\"; }}\n}}\n"
    procs: list[subprocess.Popen] = []
    dirs: list[str] = []
    try:
        b, d = start_nginx(backend_body, backend_ports[0])
        procs.append(b)
        dirs.append(d)
        proxy_body = textwrap.dedent(f"""\
            upstream pong {{ server 127.0.0.1:{backend_ports[0]}; keepalive 64; }}
            server {{
                listen 127.0.0.1:{proxy_port};
                location / {{
                    proxy_pass http://pong;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $host;
                }}
            }}
            """)
        n, d = start_nginx(proxy_body, proxy_port)
        procs.append(n)
        dirs.append(d)
        dtab = [f"/svc/pong => /$/inet/127.1/{backend_ports[0]};"]
        dtab += [f"/svc/n{i} => /$/inet/127.1/{backend_ports[i % len(backend_ports)]};" for i in range(args.names)]
        router = start_router(router_port, "\n".join(dtab))
        procs.append(router)
        wait_port(router_port)

        print(f"namerouter data-plane benchmark ({os.cpu_count()} cores, loopback)")
        print(f"backend: nginx 1 worker, 'return 200 \"pong\"' on {len(backend_ports)} ports")
        print(f"router RSS at start: {rss_mb(router.pid):.1f} MB")
        print(f"\n1. throughput, wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds "
              f"(1 s warm-up each run); median per target")
        runs: dict[str, list[float]] = {"backend direct": [], "nginx proxy": [], "namerouter": []}
        ratios = []
        for _ in range(args.rounds):
            runs["backend direct"].append(wrk(backend_ports[0], args.duration, args.connections))
            ng = wrk(proxy_port, args.duration, args.connections)
            nr = wrk(router_port, args.duration, args.connections)
            runs["nginx proxy"].append(ng)
            runs["namerouter"].append(nr)
            ratios.append(nr / ng if ng else float("nan"))
        med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
        for k, v in runs.items():
            print(f"   {k:18s} {med[k]:10.0f} req/s   (rounds: {', '.join(f'{x:.0f}' for x in v)})")
        ratio = sorted(ratios)[len(ratios) // 2]
        print(f"   ratio namerouter/nginx: {ratio:.2f} median of rounds "
              f"({', '.join(f'{r:.2f}' for r in ratios)})  (target >= 0.5)")

        rounds = max(1, int(args.paced_seconds))
        print(f"\n2. latency at a fixed {args.rate} req/s: {rounds} rounds of 1 s per target, interleaved "
              f"(direct, nginx, namerouter), paced generator, 8 conns")

        async def lat() -> dict:
            res: dict = {"direct": [], "via nginx": [], "via namerouter": []}
            for _ in range(rounds):
                for label, port in (("direct", backend_ports[0]), ("via nginx", proxy_port),
                                    ("via namerouter", router_port)):
                    res[label].append(await paced(port, args.rate, 1.0))
            return res

        res = uvloop.run(lat())
        p99s = {}
        for label, runs in res.items():
            pooled = [x for s, _ in runs for x in s]
            errs = sum(e for _, e in runs)
            per_round = sorted(pct(s, .99) for s, _ in runs)
            p99s[label] = per_round[len(per_round) // 2]
            print(f"   {label:15s} n={len(pooled):5d} err={errs}  p50={pct(pooled, .5):6.3f} ms  "
                  f"p99 pooled={pct(pooled, .99):6.3f} ms  p99 median of rounds={p99s[label]:6.3f} ms")
        print(f"   added p99 (median of rounds): nginx {p99s['via nginx'] - p99s['direct']:+.3f} ms, "
              f"namerouter {p99s['via namerouter'] - p99s['direct']:+.3f} ms  (target <= 1 ms)")

        print(f"\n3. memory: {args.names} distinct names over {len(backend_ports)} backends")
        before = rss_mb(router.pid)
        bad = uvloop.run(route_many(router_port, args.names))
        after = rss_mb(router.pid)
        print(f"   router RSS before: {before:.1f} MB, after: {after:.1f} MB  (target <= 60 MB); non-200: {bad}")
        return 0
    finally:
        for p in reversed(procs):
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(5)
            except Exception:
                p.kill()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
