#!/usr/bin/env python3
"""namerd benchmark: watch fan-out latency and dtab GET throughput.

    .venv/bin/python bench/namerd_bench.py [--streams 1000] [--names 100] [--updates 5]
                                           [--wrk-seconds 5] [--wrk-connections 32]

1. Starts a real namerd process (``python -m namerd``, uvloop, io.l5d.inMemory) on
   free loopback ports.
2. Opens ``--streams`` concurrent ``GET /api/1/bind/default?path=/svc/<name>&watch=1``
   streams spread over ``--names`` names, waits for every first document, then PUTs
   a dtab change that re-binds every name, ``--updates`` times. For each update and
   stream it records the time from sending the PUT to receiving that stream's new
   document, and prints p50/p99/max (target: p99 <= 1 s at 1,000 streams).
3. The same for the gRPC mesh interface (``io.l5d.mesh``): ``--streams`` concurrent
   ``Interpreter.StreamBoundTree`` streams (grpclib, spread over ``--mesh-channels``
   HTTP/2 connections as that many routers would), the same updates, p50/p99/max next
   to the HTTP watch figure of step 2 (target: p99 <= 1 s at 1,000 streams).
4. Runs ``wrk`` against ``GET /api/1/dtabs/default`` and prints requests/s
   (target: >= 2,000/s).

Everything runs on 127.0.0.1 and stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]


async def start_namerd(tmp: str) -> tuple[subprocess.Popen, str, int]:
    api, admin, mesh = free_port(), free_port(), free_port()
    cfg = os.path.join(tmp, "namerd.yaml")
    with open(cfg, "w") as f:
        f.write(f"admin:\n  port: {admin}\nstorage:\n  kind: io.l5d.inMemory\n  namespaces:\n"
                f"    default: /svc=>/$/inet/127.0.0.1/1;/svc=>/app\n"
                f"interfaces:\n- kind: io.l5d.httpController\n  port: {api}\n"
                f"- kind: io.l5d.mesh\n  port: {mesh}\n")
    proc = subprocess.Popen([sys.executable, "-m", "namerd", cfg], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{api}"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url + "/api/1/dtabs") as r:
                    if r.status == 200:
                        return proc, url, mesh
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("namerd did not start: " + proc.stderr.read().decode())
            await asyncio.sleep(0.05)


class Stream:
    def __init__(self) -> None:
        self.buf = b""
        self.docs: list[tuple[float, bytes]] = []
        self.event = asyncio.Event()


async def run_stream(session: aiohttp.ClientSession, url: str, st: Stream, ready: asyncio.Event) -> None:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
        async for chunk in r.content.iter_any():
            now = time.perf_counter()
            st.buf += chunk
            while b"\n" in st.buf:
                line, st.buf = st.buf.split(b"\n", 1)
                st.docs.append((now, line))
                st.event.set()


async def fanout(url: str, streams: int, names: int, updates: int, pid: int) -> list[float]:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        sts = [Stream() for _ in range(streams)]
        ready = asyncio.Event()
        tasks = [asyncio.create_task(run_stream(
            session, f"{url}/api/1/bind/default?path=/svc/n{i % names}&watch=1", st, ready))
            for i, st in enumerate(sts)]
        try:
            return await measure(session, url, sts, streams, names, updates, pid)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def http_has_port(doc: bytes, port: int) -> bool:
    return f":{port}".encode() in doc or f'"port":{port}'.encode() in doc or f"/{port}\"".encode() in doc


def mesh_has_port(doc: bytes, port: int) -> bool:
    p = str(port).encode()
    return b"\x0a" + bytes([len(p)]) + p in doc  # the leaf id's last element: /$/inet/127.0.0.1/<port>


async def mesh_fanout(mesh_port: int, url: str, streams: int, names: int, updates: int, pid: int,
                      channels: int) -> list[float]:
    """``streams`` StreamBoundTree streams (grpclib) over ``channels`` HTTP/2 connections."""
    sys.path.insert(0, ROOT)
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from namerouter.mesh import interpreter_pb2 as ipb

    chans = [Channel("127.0.0.1", mesh_port) for _ in range(channels)]
    sts = [Stream() for _ in range(streams)]

    async def run(i: int, st: Stream) -> None:
        req = ipb.BindReq()
        req.root.elems.append(b"default")
        req.name.elems.extend([b"svc", f"n{i % names}".encode()])
        async with chans[i % channels].request("/io.linkerd.mesh.Interpreter/StreamBoundTree",
                                               Cardinality.UNARY_STREAM, ipb.BindReq, ipb.BoundTreeRsp) as stream:
            await stream.send_message(req, end=True)
            async for msg in stream:
                st.docs.append((time.perf_counter(), msg.SerializeToString()))

    tasks = [asyncio.create_task(run(i, st)) for i, st in enumerate(sts)]
    try:
        async with aiohttp.ClientSession() as session:
            return await measure(session, url, sts, streams, names, updates, pid, mesh_has_port,
                                 first_port=1000)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in chans:
            c.close()


async def measure(session: aiohttp.ClientSession, url: str, sts: list, streams: int, names: int,
                  updates: int, pid: int, has_port=http_has_port, first_port: int = 2) -> list[float]:
    """Wait for every stream's first document, then ``updates`` dtab PUTs, each moving
    every name to ``/$/inet/127.0.0.1/<first_port + n>``; latency per stream and update."""
    if True:
        t0 = time.perf_counter()
        while any(not st.docs for st in sts):
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"only {sum(1 for s in sts if s.docs)} of {streams} streams got a first document")
            await asyncio.sleep(0.05)
        print(f"  {streams} streams over {names} names open, first documents after {time.perf_counter() - t0:.2f} s;"
              f" namerd RSS {rss_mb(pid):.0f} MB")
        latencies: list[float] = []
        for u in range(updates):
            await asyncio.sleep(0.3)
            seen = [len(st.docs) for st in sts]
            port = first_port + u
            sent = time.perf_counter()
            async with session.put(f"{url}/api/1/dtabs/default", data=f"/svc=>/$/inet/127.0.0.1/{port};/svc=>/app",
                                   headers={"Content-Type": "application/dtab"}) as r:
                assert r.status == 204, r.status
            deadline = sent + 10
            while any(len(st.docs) <= n for st, n in zip(sts, seen)):
                if time.perf_counter() > deadline:
                    missing = sum(1 for st, n in zip(sts, seen) if len(st.docs) <= n)
                    raise RuntimeError(f"update {u}: {missing} streams got nothing within 10 s")
                await asyncio.sleep(0.005)
            lat = [(st.docs[n][0] - sent) * 1000 for st, n in zip(sts, seen)]
            for st, n in zip(sts, seen):
                assert has_port(st.docs[n][1], port), st.docs[n][1]
            latencies += lat
            print(f"  update {u + 1}: p50 {pct(lat, .5):.0f} ms  p99 {pct(lat, .99):.0f} ms  max {max(lat):.0f} ms")
        return latencies


def run_wrk(url: str, seconds: int, connections: int) -> float:
    if shutil.which("wrk") is None:
        print("  wrk not installed: skipped")
        return 0.0
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"{url}/api/1/dtabs/default"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = re.search(r"99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(m.group(1)) if m else 0.0
    print(f"  wrk -t1 -c{connections} -d{seconds}s: {rps:,.0f} requests/s, p99 {lat.group(1) if lat else '?'}"
          f"{', NON-2xx: ' + errors.group(1) if errors else ''}")
    return rps


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--names", type=int, default=100)
    ap.add_argument("--updates", type=int, default=5)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--mesh-channels", type=int, default=10, help="HTTP/2 connections for the mesh streams")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, mesh_port = await start_namerd(tmp)
        try:
            print(f"namerd {url} (pid {proc.pid})")
            print(f"1. dtab update -> {args.streams} bind watch streams")
            print(f"   namerd RSS at start: {rss_mb(proc.pid):.0f} MB")
            lat = await fanout(url, args.streams, args.names, args.updates, proc.pid)
            p50, p99 = statistics.median(lat), pct(lat, .99)
            print(f"   delivery over {len(lat)} deliveries: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(lat):.0f} ms"
                  f"  [{'OK' if p99 <= 1000 else 'MISSED'} target p99 <= 1000 ms]")
            print(f"2. dtab update -> {args.streams} io.l5d.mesh StreamBoundTree streams "
                  f"({args.mesh_channels} HTTP/2 connections)")
            mlat = await mesh_fanout(mesh_port, url, args.streams, args.names, args.updates, proc.pid,
                                     args.mesh_channels)
            m50, m99 = statistics.median(mlat), pct(mlat, .99)
            print(f"   delivery over {len(mlat)} deliveries: p50 {m50:.0f} ms, p99 {m99:.0f} ms, max {max(mlat):.0f} ms"
                  f"  [{'OK' if m99 <= 1000 else 'MISSED'} target p99 <= 1000 ms]")
            print(f"   same run, HTTP watch: p50 {p50:.0f} ms, p99 {p99:.0f} ms | mesh: p50 {m50:.0f} ms, p99 {m99:.0f} ms")
            print("3. GET /api/1/dtabs/default")
            rps = run_wrk(url, args.wrk_seconds, args.wrk_connections)
            if rps:
                print(f"   {rps:,.0f} requests/s  [{'OK' if rps >= 2000 else 'MISSED'} target >= 2,000/s]")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
