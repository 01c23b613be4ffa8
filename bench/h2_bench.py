"""HTTP/2 benchmark: namerouter's h2 router next to nghttpx, and gRPC through the router vs direct.

Prints figures; not a timed test. Run it alone on the machine:

    flock /work/.bench.lock .venv/bin/python bench/h2_bench.py
    (options: --duration 5 --rounds 3 --streams 1,100 --connections 1 --grpc-seconds 5
     --grpc-threads 8 --workers 1)

Set-up, all on 127.0.0.1:

* backend: nghttpd (Debian ``nghttp2-server``, h2c) serving a 4-byte file;
* targets, each a reverse proxy to that backend over h2c:
  - ``nghttpx`` (Debian ``nghttp2-proxy``), one worker, backend ``proto=h2``;
  - ``namerouter``: ``namerouter config.yaml`` with a ``protocol: h2`` router (dtab
    ``/svc => /$/inet/127.0.0.1/<backend>``, ``:authority`` identification, p2c,
    metrics, l5d headers: the whole pipeline);
* gRPC: examples/grpc/server.py (grpcio) and a second h2 router in the same namerouter
  (``io.l5d.header.path``, one segment).

Figures:

1. h2load (Debian ``nghttp2-client``) ``-c <connections> -m <streams>`` for each number
   of concurrent streams per connection, nghttpx and namerouter in interleaved rounds
   (1 s warm-up each): requests/s, mean latency, and the proxy's CPU (user + system,
   from ``/proc/<pid>/stat``) per request. Per round the ratio namerouter/nghttpx
   (requests/s; target >= 0.3), printed as median with the spread of the rounds.
2. gRPC unary calls/s: a grpcio client (``--grpc-threads`` threads of blocking calls) direct
   to the service and through the router, interleaved rounds; the ratio router/direct.

The machine has 2 cores shared by the load generator, the backend and the proxy; the
busy share of the machine during each run is printed to show when the box, not the
proxy, was the limit.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRPC_EXAMPLE = os.path.join(ROOT, "examples", "grpc")
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def children(pid: int) -> list[int]:
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for c in f.read().split():
                out += children(int(c))
    except OSError:
        pass
    return out


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def h2load(url: str, duration: float, connections: int, streams: int) -> dict[str, float]:
    r = subprocess.run(["h2load", "-D", str(int(duration)), "--warm-up-time", "1", "-c", str(connections),
                        "-m", str(streams), url], capture_output=True, text=True, timeout=duration + 60)
    out = r.stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not m or not done:
        raise SystemExit(f"h2load failed:\n{out}\n{r.stderr}")

    def ms(v: str) -> float:
        return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000.0 if v.endswith("us") else float(v[:-1]) * 1000

    return {"rps": float(m.group(1)), "done": float(done.group(1)), "ok": float(done.group(2)),
            "mean_ms": ms(lat.group(3)) if lat else 0.0}


GRPC_CLIENT = r"""
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import grpc
from stubs import load
pb, pb_grpc = load()
target, seconds, threads = sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
count = [0] * threads
def run(i):
    with grpc.insecure_channel(target) as ch:
        stub = pb_grpc.EchoStub(ch)
        stub.Say(pb.Msg(text="warm"), timeout=10)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            stub.Say(pb.Msg(text="x"), timeout=10)
            count[i] += 1
ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
t0 = time.monotonic()
for t in ts: t.start()
for t in ts: t.join()
print(sum(count) / (time.monotonic() - t0))
"""


def grpc_rate(target: str, seconds: float, threads: int) -> float:
    r = subprocess.run([sys.executable, "-c", GRPC_CLIENT, GRPC_EXAMPLE, target, str(seconds), str(threads)],
                       capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise SystemExit(f"grpc client failed: {r.stderr}")
    return float(r.stdout.strip())


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.2f} ({min(xs):,.2f}-{max(xs):,.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", default="1,100", help="concurrent streams per connection, comma-separated")
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--grpc-seconds", type=float, default=5.0)
    ap.add_argument("--grpc-threads", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="namerouter --workers")
    ap.add_argument("--skip-grpc", action="store_true")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",")]

    work = tempfile.mkdtemp(prefix="h2bench-")
    os.makedirs(os.path.join(work, "docs"))
    with open(os.path.join(work, "docs", "pong"), "wb") as f:
        f.write(b"pong")
    backend, nx, rt, grpc_rt, grpc_port, admin = (free_port() for _ in range(6))
    with open(os.path.join(work, "router.yaml"), "w") as f:
        f.write(f"""admin: {{port: {admin}}}
workers: {args.workers}
routers:
- protocol: h2
  dtab: /svc => /$/inet/127.0.0.1/{backend}
  servers:
  - port: {rt}
- protocol: h2
  label: grpc
  identifier: {{kind: io.l5d.header.path, segments: 1}}
  dtab: /svc/demo.Echo => /$/inet/127.0.0.1/{grpc_port}
  servers:
  - port: {grpc_rt}
""")
    procs: dict[str, subprocess.Popen] = {}
    log = open(os.path.join(work, "log"), "w")
    try:
        procs["nghttpd"] = subprocess.Popen(["nghttpd", "--no-tls", "-d", os.path.join(work, "docs"), str(backend)],
                                            stdout=log, stderr=log)
        procs["nghttpx"] = subprocess.Popen(
            ["nghttpx", f"--frontend=127.0.0.1,{nx};no-tls", f"--backend=127.0.0.1,{backend};;proto=h2",
             "--workers=1", "--errorlog-file=/dev/null", f"--conf={os.devnull}"], stdout=log, stderr=log)
        exe = os.path.join(os.path.dirname(sys.executable), "namerouter")
        procs["namerouter"] = subprocess.Popen([exe, os.path.join(work, "router.yaml")], stdout=log, stderr=log)
        procs["grpc"] = subprocess.Popen([sys.executable, "server.py", "--port", str(grpc_port)], cwd=GRPC_EXAMPLE,
                                         stdout=log, stderr=log)
        for p in (backend, nx, rt, grpc_rt, grpc_port):
            wait_port(p)
        urls = {"nghttpx": f"http://127.0.0.1:{nx}/pong", "namerouter": f"http://127.0.0.1:{rt}/pong"}
        for u in urls.values():
            h2load(u, 1, 1, 1)
        print(f"h2load -c {args.connections} -D {args.duration:g}s, {args.rounds} interleaved rounds; "
              f"namerouter --workers {args.workers}")
        for m in streams:
            results: dict[str, list[dict[str, float]]] = {k: [] for k in urls}
            ratios = []
            for _ in range(args.rounds):
                round_rps = {}
                for name, url in urls.items():
                    pids = children(procs[name].pid)
                    c0 = cpu_seconds(pids)
                    b0 = machine_busy()
                    r = h2load(url, args.duration, args.connections, m)
                    b1 = machine_busy()
                    r["cpu_us"] = (cpu_seconds(pids) - c0) / max(1.0, r["done"]) * 1e6
                    r["busy"] = 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
                    results[name].append(r)
                    round_rps[name] = r["rps"]
                ratios.append(round_rps["namerouter"] / round_rps["nghttpx"])
            print(f"\n-m {m} (concurrent streams per connection)")
            for name, rs in results.items():
                print(f"  {name:<11} req/s {med([r['rps'] for r in rs])}  mean latency ms "
                      f"{med([r['mean_ms'] for r in rs])}  CPU us/req {med([r['cpu_us'] for r in rs])}  "
                      f"machine busy % {med([r['busy'] for r in rs])}  failed {sum(r['done'] - r['ok'] for r in rs):.0f}")
            print(f"  namerouter / nghttpx req/s: {med(ratios)}   (target >= 0.3)")
        if not args.skip_grpc:
            direct, routed, gr = [], [], []
            for _ in range(args.rounds):
                d = grpc_rate(f"127.0.0.1:{grpc_port}", args.grpc_seconds, args.grpc_threads)
                r = grpc_rate(f"127.0.0.1:{grpc_rt}", args.grpc_seconds, args.grpc_threads)
                direct.append(d)
                routed.append(r)
                gr.append(r / d)
            print(f"\ngRPC unary calls/s ({args.grpc_threads} client threads, grpcio):")
            print(f"  direct      {med(direct)}")
            print(f"  namerouter  {med(routed)}")
            print(f"  namerouter / direct: {med(gr)}")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


if __name__ == "__main__":
    main()
