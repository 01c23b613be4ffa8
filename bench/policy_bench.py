"""What resilience policy costs on the hot path: throughput of the router without any
``service``/``client`` block vs with a full one (retryableRead5XX + default retry budget,
totalTimeoutMs, requestAttemptTimeoutMs, consecutiveFailures accrual), next to nginx.

    .venv/bin/python bench/policy_bench.py [--duration 3 --rounds 3 --connections 32]

Same set-up as bench/proxy_bench.py (whose helpers it reuses): an nginx backend
answering ``200 "pong"``, an nginx reverse proxy, and two router processes (real
``HttpRouter`` + ``DefaultInterpreter``, uvloop), measured with wrk in interleaved rounds.
The backend never fails, so the policy run measures the bookkeeping (budget deposit,
timers, classification, l5d-success-class), not retries.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

POLICY = {
    "service": {"kind": "io.l5d.global", "totalTimeoutMs": 5000,
                "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}},
    "client": {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 2000,
               "failureAccrual": {"kind": "io.l5d.consecutiveFailures", "failures": 5}},
}

CHILD = r"""
import asyncio, json, sys
sys.path.insert(0, {root!r})
import uvloop
from namerouter.config.validate import validate
from namerouter.proxy import HttpRouter, RouterConfig, ServerConfig
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.metrics import MetricsRegistry

async def main():
    extra = json.loads({extra!r})
    checked = validate(RouterConfig, extra).config  # the router takes validated blocks only
    extra = {{k: getattr(checked, k) for k in extra}}
    cfg = RouterConfig(label="outgoing", dtab={dtab!r}, servers=[ServerConfig(port={port})], **extra)
    router = HttpRouter(cfg, DefaultInterpreter(), MetricsRegistry())
    await router.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stop.set)
    await stop.wait()
    await router.close(1)

uvloop.run(main())
"""


def start_router(port: int, dtab: str, extra: dict) -> subprocess.Popen:
    code = CHILD.format(root=ROOT, dtab=dtab, port=port, extra=json.dumps(extra))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    if "ready" not in (p.stdout.readline() if p.stdout else ""):
        raise RuntimeError("router did not start")
    return p


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_cpu(port: int, pid: int, duration: int, conns: int) -> tuple[float, float]:
    """(req/s, router CPU µs per request): CPU per request does not depend on how much
    of the 2 shared cores the router got, so it compares runs on a busy machine."""
    args = [pb.WRK, "-t1", f"-c{conns}", f"-d{duration}s", "-H", "Host: pong", f"http://127.0.0.1:{port}/pong"]
    subprocess.run(args[:3] + ["-d1s"] + args[4:], capture_output=True)  # warm-up
    c0 = cpu_s(pid)
    out = subprocess.run(args, capture_output=True, text=True).stdout
    c1 = cpu_s(pid)
    import re
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, (c1 - c0) / max(n, 1) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    backend, proxy, plain, policy = pb.free_ports(4)
    procs: list[subprocess.Popen] = []
    try:
        b, _ = pb.start_nginx(f'server {{ listen 127.0.0.1:{backend}; location / {{ return 200 "pong"; }} }}\n',
                              backend)
        procs.append(b)
        n, _ = pb.start_nginx(textwrap.dedent(f"""\
            upstream pong {{ server 127.0.0.1:{backend}; keepalive 64; }}
            server {{
                listen 127.0.0.1:{proxy};
                location / {{ proxy_pass http://pong; proxy_http_version 1.1;
                             proxy_set_header Connection ""; proxy_set_header Host $host; }}
            }}
            """), proxy)
        procs.append(n)
        dtab = f"/svc/pong => /$/inet/127.1/{backend};"
        p_plain = start_router(plain, dtab, {})
        p_policy = start_router(policy, dtab, POLICY)
        procs += [p_plain, p_policy]
        runs: dict[str, list[float]] = {"nginx proxy": [], "router, no policy": [], "router, full policy": []}
        cpu: dict[str, list[float]] = {"router, no policy": [], "router, full policy": []}
        for _ in range(args.rounds):
            pb.wrk(proxy, 1, args.connections)  # warm-up
            count, secs = pb.wrk(proxy, args.duration, args.connections)
            runs["nginx proxy"].append(count / secs)
            for name, port, proc in (("router, no policy", plain, p_plain), ("router, full policy", policy, p_policy)):
                rps, us = wrk_cpu(port, proc.pid, args.duration, args.connections)
                runs[name].append(rps)
                cpu[name].append(us)
        med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
        mcpu = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
        print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds, median")
        for k, v in runs.items():
            extra = f"  router CPU {mcpu[k]:.1f} us/request" if k in mcpu else ""
            print(f"  {k:22s} {med[k]:9.0f} req/s  (rounds: {', '.join(f'{x:.0f}' for x in v)}){extra}")
        print(f"  policy / no policy: throughput {med['router, full policy'] / med['router, no policy']:.2f}, "
              f"CPU per request {mcpu['router, full policy'] / mcpu['router, no policy']:.2f}")
        print(f"  full policy / nginx: {med['router, full policy'] / med['nginx proxy']:.2f}  (target >= 0.5)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
