"""Data-plane benchmark: namerouter next to a bare Python relay and nginx 1.22, all in one run.

Prints figures; not a timed test. Run it alone on the machine:

    flock /work/.bench.lock .venv/bin/python bench/proxy_bench.py
    (options: --duration 5 --rounds 5 --connections 64 --rate 1000 --paced-seconds 5
     --names 1000 --backends 100 --no-workers --no-tracing --skip-latency --skip-memory)

Set-up, all on 127.0.0.1:

* backend: nginx (1 worker) answering ``return 200 "pong"`` on 100 ports (the first one
  serves the throughput and latency runs);
* targets, each a reverse proxy to that backend:
  - ``relay``: ``bench/bare_relay.py``, a minimal uvloop + httptools relay (no routing,
    no metrics): the yardstick for what Python can do;
  - ``nginx``: nginx 1 worker, ``upstream`` with ``keepalive 64``;
  - ``namerouter``: ``namerouter config.yaml`` (the real command: linker, admin server,
    ``DefaultInterpreter``, dtab ``/svc/pong => /$/inet/127.1/<backend>``, Host
    identification, p2c, metrics, l5d headers: the whole pipeline);
  - ``namerouter x2``: the same with ``--workers 2``;
  - ``zipkin 100%`` / ``zipkin 1%``: ``namerouter`` with an ``io.l5d.zipkin`` telemeter
    sampling every request / one in a hundred, exporting to a collector (nginx answering
    ``POST /api/v2/spans`` with 202).

Figures:

1. throughput and CPU: ``wrk -t1 -c64 -d5s -H 'Host: pong'`` against every target in
   interleaved rounds (1 s warm-up before each run). Per run: requests/s and the proxy's
   CPU (user + system, all its processes, from ``/proc/<pid>/stat`` before and after)
   per request. Per round the ratios namerouter/relay (CPU per request; target <= 2),
   namerouter/relay (requests/s; target >= 0.5), x2/x1 (requests/s; target >= 1.4) and
   zipkin/plain (requests/s; target >= 0.9 at 1 %); printed as median with the spread
   (min-max) of the rounds.
2. latency at a fixed 1,000 req/s: wrk cannot pace and wrk2 is not packaged, so a small
   paced generator in this file (uvloop, 8 keep-alive connections, requests released on
   a fixed schedule) measures p99 direct to the backend, through nginx and through
   namerouter in interleaved 1 s rounds; added p99 = the median-of-rounds p99 minus the
   direct one (target <= 1 ms).
3. memory: each namerouter worker's RSS after routing 1,000 distinct names (``/svc/n0`` ..
   ``/svc/n999``, each a dtab entry to one of the 100 backend ports) (target <= 60 MB).

The machine has 2 cores shared by everything: the load generator, the backend and the
proxy under test compete in the same way for every target, which is why the targets are
ratios against the relay measured in the same round.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.dirname(os.path.abspath(__file__))

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
TICK = os.sysconf("SC_CLK_TCK")


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


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {port}")
            time.sleep(0.02)


# processes ------------------------------------------------------------------------------

def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants (nginx's workers, namerouter's workers)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU of these processes, in seconds."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user / TICK, system / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v) - idle) / TICK, sum(v) / TICK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else float("nan")


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


def start_relay(port: int, backend: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, os.path.join(BENCH, "bare_relay.py"), str(port), str(backend)],
                         stdout=subprocess.PIPE, text=True)
    if "ready" not in (p.stdout.readline() if p.stdout else ""):
        raise RuntimeError("relay did not start")
    return p


def router_config(d: str, port: int, admin: int, dtab: str, workers: int = 1,
                  telemetry: Optional[list[dict]] = None) -> str:
    """A namerouter config.yaml for the benchmark (the whole pipeline on)."""
    cfg: dict = {
        "admin": {"ip": "127.0.0.1", "port": admin},
        "routers": [{"protocol": "http", "label": "outgoing", "dtab": dtab,
                     "servers": [{"ip": "127.0.0.1", "port": port}]}],
    }
    if workers != 1:
        cfg["workers"] = workers
    if telemetry:
        cfg["telemetry"] = telemetry
    path = os.path.join(d, f"config-{port}.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def start_router(port: int, dtab: str, workers: int = 1, python_args: tuple[str, ...] = (),
                 tree: str = ROOT, env: Optional[dict[str, str]] = None,
                 telemetry: Optional[list[dict]] = None) -> subprocess.Popen:
    """``namerouter config`` (``python -m namerouter``, from the checkout ``tree``) listening
    on ``port``; returns once every worker answers (its admin port is ``.admin_port``)."""
    d = tempfile.mkdtemp(prefix="nrbench-router-")
    admin = free_ports(1)[0]
    conf = router_config(d, port, admin, dtab, workers, telemetry)
    p = subprocess.Popen([sys.executable, *python_args, "-m", "namerouter", conf, "--log-level", "warning"],
                         cwd=tree, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 20
    for q in (port, admin):
        while True:
            try:
                with socket.create_connection(("127.0.0.1", q), timeout=0.5):
                    break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    stop(p)
                    raise RuntimeError(f"namerouter (workers: {workers}) did not start")
                time.sleep(0.02)
    while workers > 1 and len(tree_pids(p.pid)) < workers + 1:
        if time.monotonic() > deadline or p.poll() is not None:
            raise RuntimeError(f"namerouter --workers {workers} did not start")
        time.sleep(0.05)
    p.admin_port = admin  # type: ignore[attr-defined]
    return p


def zipkin(collector: int, rate: float) -> list[dict]:
    """An io.l5d.zipkin telemeter at ``rate`` exporting to the bench's collector."""
    return [{"kind": "io.l5d.zipkin", "url": f"http://127.0.0.1:{collector}/api/v2/spans", "sampleRate": rate}]


def admin_metrics(p: subprocess.Popen, prefix: str) -> dict[str, float]:
    """The router's metrics under ``prefix`` (its admin server's /admin/metrics.json)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{p.admin_port}/admin/metrics.json", timeout=5) as r:  # type: ignore[attr-defined]
        flat = json.load(r)
    return {k: v for k, v in flat.items() if k.startswith(prefix)}


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            for pid in tree_pids(p.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            p.wait(5)


# load -----------------------------------------------------------------------------------

def wrk(port: int, duration: int, conns: int, host: str = "pong") -> tuple[int, float]:
    """(requests completed, seconds) of one wrk run; warns on non-2xx answers."""
    args = [WRK, "-t1", f"-c{conns}", f"-d{duration}s", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/pong"]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        print(f"    WARNING: {non2xx.group(1)} non-2xx responses on port {port}")
    if not m:
        return 0, float(duration)
    secs = float(m.group(2)) / (1000.0 if m.group(3) == "ms" else 1.0)
    return int(m.group(1)), secs


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    user_us: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)

    def run(self, duration: int, conns: int) -> None:
        wrk(self.port, 1, conns)  # warm-up: connections, pools, caches
        pids = tree_pids(self.proc.pid)
        u0, s0 = cpu_seconds(pids)
        b0, t0 = machine_busy()
        n, secs = wrk(self.port, duration, conns)
        b1, t1 = machine_busy()
        u1, s1 = cpu_seconds(pids)
        self.busy.append((b1 - b0) / (t1 - t0) if t1 > t0 else float("nan"))
        self.rps.append(n / secs if secs else 0.0)
        self.cpu_us.append((u1 - u0 + s1 - s0) * 1e6 / n if n else float("nan"))
        self.user_us.append((u1 - u0) * 1e6 / n if n else float("nan"))


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})" if xs else "n/a"


# Paced load generator (fixed rate) -----------------------------------------------------

class _PacedConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.buf = b""
        self.waiting: list[float] = []  # send times of requests in flight (FIFO)
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
    """Send ``rate`` req/s for ``seconds`` over ``conns`` keep-alive connections; each
    latency is measured from the moment its bytes were written to its complete response."""
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
        for _ in range(rounds):
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
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved wrk rounds per target")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--paced-seconds", type=float, default=5.0, help="rounds of 1 s per target")
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--backends", type=int, default=100)
    ap.add_argument("--no-workers", action="store_true", help="skip the --workers 2 target")
    ap.add_argument("--pure", action="store_true",
                    help="also measure namerouter x1 and x2 as pure Python (NAMEROUTER_PURE=1): the router-bound case")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="also measure namerouter from another checkout (e.g. /work/main) in the same rounds")
    ap.add_argument("--no-tracing", action="store_true", help="skip the zipkin 100 %% and 1 %% targets")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()

    import uvloop

    (*backend_ports, nginx_port, relay_port, router_port, router2_port, base_port, pure1_port, pure2_port,
     collector_port, zipkin100_port, zipkin1_port) = free_ports(args.backends + 10)
    listens = "\n".join(f"    listen 127.0.0.1:{p};" for p in backend_ports)
    backend_body = (f"server {{\n{listens}\n    location / {{ return 200 \"pong\"; }}\n}}\n"
                    # the span collector: takes every POST, as a Zipkin server would (202)
                    f"server {{\n    listen 127.0.0.1:{collector_port};\n    client_max_body_size 64m;\n"
                    f"    location /api/v2/spans {{ return 202; }}\n}}\n")
    procs: list[subprocess.Popen] = []
    dirs: list[str] = []
    try:
        b, d = start_nginx(backend_body, backend_ports[0])
        procs.append(b)
        dirs.append(d)
        proxy_body = textwrap.dedent(f"""\
            upstream pong {{ server 127.0.0.1:{backend_ports[0]}; keepalive 64; }}
            server {{
                listen 127.0.0.1:{nginx_port};
                location / {{
                    proxy_pass http://pong;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $host;
                }}
            }}
            """)
        n, d = start_nginx(proxy_body, nginx_port)
        procs.append(n)
        dirs.append(d)
        relay = start_relay(relay_port, backend_ports[0])
        procs.append(relay)
        dtab = [f"/svc/pong => /$/inet/127.1/{backend_ports[0]};"]
        dtab += [f"/svc/n{i} => /$/inet/127.1/{backend_ports[i % len(backend_ports)]};" for i in range(args.names)]
        dtab_text = "\n".join(dtab)
        router = start_router(router_port, dtab_text)
        procs.append(router)
        targets = [Target("relay", relay_port, relay), Target("nginx", nginx_port, n),
                   Target("namerouter", router_port, router)]
        if args.baseline:
            base = start_router(base_port, dtab_text, tree=os.path.abspath(args.baseline))
            procs.append(base)
            targets.append(Target("baseline", base_port, base))
        if args.pure:
            pure = {"NAMEROUTER_PURE": "1"}
            p1 = start_router(pure1_port, dtab_text, env=pure)
            p2 = start_router(pure2_port, dtab_text, workers=2, env=pure)
            procs += [p1, p2]
            targets += [Target("pure x1", pure1_port, p1), Target("pure x2", pure2_port, p2)]
        traced: list[tuple[str, subprocess.Popen]] = []
        if not args.no_tracing:
            for label, rate, tport in (("zipkin 100%", 1.0, zipkin100_port), ("zipkin 1%", 0.01, zipkin1_port)):
                tp = start_router(tport, dtab_text, telemetry=zipkin(collector_port, rate))
                procs.append(tp)
                traced.append((label, tp))
                targets.append(Target(label, tport, tp))
        router2: Optional[subprocess.Popen] = None
        if not args.no_workers:
            try:
                router2 = start_router(router2_port, dtab_text, workers=2)
                procs.append(router2)
                targets.append(Target("namerouter x2", router2_port, router2))
            except (RuntimeError, TimeoutError) as e:
                print(f"(namerouter --workers 2 not measured: {e})")

        native = subprocess.run([sys.executable, os.path.join(ROOT, "namerouter", "proxy", "native.py")],
                                capture_output=True, text=True).stdout.strip()
        print(f"namerouter data-plane benchmark ({os.cpu_count()} cores, loopback, python {sys.version.split()[0]}); "
              f"compiled modules: {native}")
        print(f"backend: nginx 1 worker, 'return 200 \"pong\"' on {len(backend_ports)} ports")
        print(f"\n1. throughput and CPU: wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} "
              f"interleaved rounds (1 s warm-up each run); median (min-max) of rounds")
        for _ in range(args.rounds):
            for t in targets:
                t.run(args.duration, args.connections)
        by = {t.name: t for t in targets}
        for t in targets:
            print(f"   {t.name:14s} {med(t.rps):8.0f} req/s ({min(t.rps):.0f}-{max(t.rps):.0f})   "
                  f"CPU {spread(t.cpu_us, '{:.1f}')} us/request, of which user {med(t.user_us):.1f}; "
                  f"machine busy {med(t.busy) * 100:.0f} %")
        rl, nr = by["relay"], by["namerouter"]
        cpu_ratio = [a / b for a, b in zip(nr.cpu_us, rl.cpu_us)]
        rps_ratio = [a / b for a, b in zip(nr.rps, rl.rps)]
        ng = by["nginx"]
        print(f"   namerouter/relay CPU per request: {spread(cpu_ratio)}  (target <= 2)")
        print(f"   namerouter/relay requests/s:      {spread(rps_ratio)}  (target >= 0.5)")
        print(f"   namerouter/nginx requests/s:      {spread([a / b for a, b in zip(nr.rps, ng.rps)])}; "
              f"CPU per request {spread([a / b for a, b in zip(nr.cpu_us, ng.cpu_us)])}")
        if "baseline" in by:
            bl = by["baseline"]
            print(f"   namerouter/baseline CPU per request: {spread([a / b for a, b in zip(nr.cpu_us, bl.cpu_us)])}; "
                  f"baseline/relay: {spread([a / b for a, b in zip(bl.cpu_us, rl.cpu_us)])}")
        if "namerouter x2" in by:
            x2 = by["namerouter x2"]
            print(f"   namerouter x2/x1 requests/s:      {spread([a / b for a, b in zip(x2.rps, nr.rps)])}  "
                  f"(target >= 1.4)")
        for label, tp in traced:
            t = by[label]
            m = admin_metrics(tp, "telemetry/io.l5d.zipkin/")
            print(f"   {label}/plain requests/s:       {spread([a / b for a, b in zip(t.rps, nr.rps)])}; "
                  f"CPU per request {spread([a / b for a, b in zip(t.cpu_us, nr.cpu_us)])}"
                  + ("  (target >= 0.9)" if label == "zipkin 1%" else "")
                  + f"; spans sent {m.get('telemetry/io.l5d.zipkin/spans_sent', 0):.0f}, "
                    f"dropped {m.get('telemetry/io.l5d.zipkin/spans_dropped', 0):.0f}")
        if "pure x2" in by:
            p1, p2 = by["pure x1"], by["pure x2"]
            print(f"   pure Python x2/x1 requests/s:     {spread([a / b for a, b in zip(p2.rps, p1.rps)])}; "
                  f"pure/relay CPU per request {spread([a / b for a, b in zip(p1.cpu_us, rl.cpu_us)])}")

        if not args.skip_latency:
            rounds = max(1, int(args.paced_seconds))
            print(f"\n2. latency at a fixed {args.rate} req/s: {rounds} rounds of 1 s per target, interleaved "
                  f"(direct, nginx, namerouter), paced generator, 8 conns")

            async def lat() -> dict:
                res: dict = {"direct": [], "via nginx": [], "via namerouter": []}
                for _ in range(rounds):
                    for label, port in (("direct", backend_ports[0]), ("via nginx", nginx_port),
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

        if not args.skip_memory:
            print(f"\n3. memory: {args.names} distinct names over {len(backend_ports)} backends")
            for label, proc, port in (("namerouter", router, router_port), ("namerouter x2", router2, router2_port)):
                if proc is None:
                    continue
                workers = [p for p in tree_pids(proc.pid) if p != proc.pid] or [proc.pid]
                before = [rss_mb(p) for p in workers]
                # several connections per round, so with SO_REUSEPORT every worker sees most names
                bad = uvloop.run(route_many(port, args.names, rounds=3))
                after = [rss_mb(p) for p in workers]
                print(f"   {label:14s} RSS per worker before: {', '.join(f'{x:.1f}' for x in before)} MB, "
                      f"after: {', '.join(f'{x:.1f}' for x in after)} MB  (target <= 60 MB); non-200: {bad}")
        return 0
    finally:
        for p in reversed(procs):
            stop(p)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
