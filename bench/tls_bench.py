"""TLS termination benchmark: namerouter against nginx 1.22, both terminating TLS in front
of the same plaintext backend, in one run on loopback.

Prints figures; not a timed test. Run it alone on the machine:

    flock /work/.bench.lock .venv/bin/python bench/tls_bench.py
    (options: --rounds 5 --duration 5 --connections 64 --close-connections 16 --stime-seconds 3)

Set-up, all on 127.0.0.1, one certificate (ECDSA P-256, from a CA made here) for both:

* backend: nginx (1 worker) answering ``return 200 "pong"`` in plaintext;
* targets, each terminating TLS (TLS 1.2/1.3, their default settings) and proxying to
  the backend in plaintext over keep-alive connections:
  - ``namerouter``: ``namerouter config.yaml`` (the real command) with ``servers[0].tls``
    and the dtab ``/svc/pong => /$/inet/127.1/<backend>``: the whole pipeline;
  - ``nginx``: nginx, 1 worker, ``listen ... ssl``, ``upstream`` with ``keepalive 64``.

Figures, in interleaved rounds (every target once per round, 1 s warm-up before each
keep-alive run), median (min-max) of the rounds:

1. keep-alive requests/s: ``wrk -t1 -c64 -d5s -H 'Host: pong' https://…/pong`` (wrk
   does the TLS handshakes once, then keeps the connections); the target's CPU (user +
   system of all its processes, ``/proc/<pid>/stat``) per request.
2. new TLS connections/s, two ways: ``wrk -t1 -c16 -H 'Connection: close'`` (every
   request on a new connection: a full handshake — wrk keeps no session cache — plus
   one request, 16 at a time), with CPU per connection; and ``openssl s_time -new``
   (full handshakes one after the other, no request).

Target (issue 11): namerouter / nginx >= 0.5 for keep-alive requests/s and for the
handshake rate. Both run one process on a 2-core machine that also runs the load
generator and the backend, which is why only ratios measured in the same round count.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.path.insert(0, ROOT)

from proxy_bench import (WRK, cpu_seconds, free_ports, med, spread, start_nginx, stop,  # noqa: E402
                         tree_pids, wait_port)
from tls_handshake_bench import _s_time as s_time  # noqa: E402


def start_router(port: int, admin: int, backend: int, cert: str, key: str) -> subprocess.Popen:
    d = tempfile.mkdtemp(prefix="nrbench-tls-router-")
    cfg = {
        "admin": {"ip": "127.0.0.1", "port": admin},
        "routers": [{"protocol": "http", "label": "incoming", "dtab": f"/svc/pong => /$/inet/127.1/{backend};",
                     "servers": [{"ip": "127.0.0.1", "port": port, "tls": {"certPath": cert, "keyPath": key}}]}],
    }
    path = os.path.join(d, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.Popen([sys.executable, "-m", "namerouter", path, "--log-level", "warning"], cwd=ROOT,
                         stdout=subprocess.DEVNULL)
    wait_port(admin)
    wait_port(port)
    return p


def wrk_https(port: int, duration: int, conns: int, close: bool = False) -> tuple[int, float, int]:
    """(requests, seconds, errors) of one wrk run over TLS."""
    args = [WRK, "-t1", f"-c{conns}", f"-d{duration}s", "-H", "Host: pong"]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run(args + [f"https://127.0.0.1:{port}/pong"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_err = (int(bad.group(1)) if bad else 0) + (sum(int(x) for x in errs.groups()) if errs else 0)
    if not m:
        return 0, float(duration), n_err
    secs = float(m.group(2)) / (1000.0 if m.group(3) == "ms" else 1.0)
    return int(m.group(1)), secs, n_err


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    cps: list[float] = field(default_factory=list)
    cpu_conn_us: list[float] = field(default_factory=list)
    stime: list[float] = field(default_factory=list)
    errors: int = 0

    def measured(self, run) -> tuple[int, float, float]:
        """(count, seconds, CPU µs per count) of ``run()`` → (count, seconds, errors)."""
        pids = tree_pids(self.proc.pid)
        u0, s0 = cpu_seconds(pids)
        n, secs, errs = run()
        u1, s1 = cpu_seconds(pids)
        self.errors += errs
        return n, secs, ((u1 - u0 + s1 - s0) * 1e6 / n if n else float("nan"))

    def keep_alive(self, duration: int, conns: int) -> None:
        wrk_https(self.port, 1, conns)  # warm-up: handshakes, pools
        n, secs, cpu = self.measured(lambda: wrk_https(self.port, duration, conns))
        self.rps.append(n / secs if secs else 0.0)
        self.cpu_us.append(cpu)

    def handshakes(self, duration: int, conns: int, stime_seconds: int) -> None:
        n, secs, cpu = self.measured(lambda: wrk_https(self.port, duration, conns, close=True))
        self.cps.append(n / secs if secs else 0.0)
        self.cpu_conn_us.append(cpu)
        self.stime.append(s_time(self.port, stime_seconds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--close-connections", type=int, default=16)
    ap.add_argument("--stime-seconds", type=int, default=3)
    args = ap.parse_args()

    from tests.support.tls import Pki

    backend, nginx_port, router_port, admin = free_ports(4)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="nrbench-tls-") as d:
        pki = Pki(d)
        cert = pki.issue("bench", "localhost", "127.0.0.1")
        try:
            b, _ = start_nginx(f'server {{ listen 127.0.0.1:{backend}; location / {{ return 200 "pong"; }} }}\n',
                               backend)
            procs.append(b)
            proxy = textwrap.dedent(f"""\
                upstream pong {{ server 127.0.0.1:{backend}; keepalive 64; }}
                server {{
                    listen 127.0.0.1:{nginx_port} ssl;
                    ssl_certificate {cert.cert};
                    ssl_certificate_key {cert.key};
                    ssl_protocols TLSv1.2 TLSv1.3;
                    location / {{
                        proxy_pass http://pong;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host $host;
                    }}
                }}
                """)
            n, _ = start_nginx(proxy, nginx_port)
            procs.append(n)
            r = start_router(router_port, admin, backend, cert.cert, cert.key)
            procs.append(r)
            targets = [Target("nginx", nginx_port, n), Target("namerouter", router_port, r)]
            native = subprocess.run([sys.executable, os.path.join(ROOT, "namerouter", "proxy", "native.py")],
                                    capture_output=True, text=True).stdout.strip()
            ver = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
            print(f"namerouter TLS benchmark ({os.cpu_count()} cores, loopback, python {sys.version.split()[0]}, "
                  f"{ver}); compiled modules: {native}")
            print(f"certificate: ECDSA P-256; backend: nginx 1 worker, plaintext; {args.rounds} interleaved rounds, "
                  f"median (min-max)")
            t0 = time.monotonic()
            for _ in range(args.rounds):
                for t in targets:
                    t.keep_alive(args.duration, args.connections)
                for t in targets:
                    t.handshakes(args.duration, args.close_connections, args.stime_seconds)
            ng, nr = targets
            print(f"\n1. keep-alive over TLS: wrk -t1 -c{args.connections} -d{args.duration}s https://…/pong")
            for t in targets:
                print(f"   {t.name:11s} {med(t.rps):8.0f} req/s ({min(t.rps):.0f}-{max(t.rps):.0f})   "
                      f"CPU {spread(t.cpu_us, '{:.1f}')} us/request")
            print(f"   namerouter/nginx requests/s: {spread([a / b for a, b in zip(nr.rps, ng.rps)])} "
                  f"(target >= 0.5); CPU per request: {spread([a / b for a, b in zip(nr.cpu_us, ng.cpu_us)])}")
            print(f"\n2. new TLS connections: wrk -t1 -c{args.close_connections} -d{args.duration}s "
                  f"-H 'Connection: close' (handshake + 1 request each)")
            for t in targets:
                print(f"   {t.name:11s} {med(t.cps):8.0f} conn/s ({min(t.cps):.0f}-{max(t.cps):.0f})   "
                      f"CPU {spread(t.cpu_conn_us, '{:.0f}')} us/connection")
            print(f"   namerouter/nginx connections/s: {spread([a / b for a, b in zip(nr.cps, ng.cps)])} "
                  f"(target >= 0.5); CPU per connection: "
                  f"{spread([a / b for a, b in zip(nr.cpu_conn_us, ng.cpu_conn_us)])}")
            print(f"   openssl s_time -new -time {args.stime_seconds} (handshakes one at a time, no request):")
            for t in targets:
                print(f"   {t.name:11s} {med(t.stime):8.0f} handshakes/s ({min(t.stime):.0f}-{max(t.stime):.0f})")
            print(f"   namerouter/nginx handshakes/s: {spread([a / b for a, b in zip(nr.stime, ng.stime)])}")
            for t in targets:
                if t.errors:
                    print(f"   WARNING: {t.name}: {t.errors} errors or non-2xx answers")
            print(f"\n({time.monotonic() - t0:.0f} s)")
        finally:
            for p in procs:
                stop(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
