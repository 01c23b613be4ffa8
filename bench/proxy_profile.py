"""Profile the router under wrk load: syscall counts per request (strace -c) or a Python
profile (cProfile in the router process).

Usage: ``.venv/bin/python bench/proxy_profile.py strace|cprofile|cpu|perf [--duration 3]``
(under ``flock /work/.bench.lock`` on a shared machine). cProfile cannot see inside the
mypyc-compiled modules (nor uvloop's socket writes: its ``flush`` entries are the
kernel's time), so ``cprofile`` runs the router as pure Python (``NAMEROUTER_PURE=1``);
``perf`` shows the compiled code by C symbol (``CPyDef_lifecycle___Lifecycle___start`` ...).

``instr`` needs no network and no quiet machine: it counts the CPU instructions per request
of the data plane's own work (``bench/inmemory_requests.py``: real router objects, in-memory
transports) with valgrind (``apt-get install valgrind``), as the difference of two run
lengths, for repeated (``simple``), varying (``vary``) and browser-like requests. Add
``--pure`` to count the pure-Python data plane.
Starts an nginx backend and the router as bench/proxy_bench.py does, runs wrk against the
router, and prints syscalls per request (strace), the top functions (cprofile), the router's CPU
per request (cpu) or where it goes by library and symbol (perf).
Everything stops by itself.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402


def wrk_count(port: int, duration: int, conns: int) -> int:
    out = subprocess.run([pb.WRK, "-t1", f"-c{conns}", f"-d{duration}s", "-H", "Host: pong",
                          f"http://127.0.0.1:{port}/pong"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)) if m else 0


def cpu_ticks(pid: int) -> tuple[int, int]:  # noqa: D401
    """(utime, stime) of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def instructions(pure: bool) -> int:
    """Instructions per request of the in-memory harness (deterministic under load)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("instr needs valgrind (apt-get install valgrind)")
        return 1
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inmemory_requests.py")
    env = {**os.environ, **({"NAMEROUTER_PURE": "1"} if pure else {})}

    def count(n: int, kind: str) -> int:
        out = subprocess.run([valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                              sys.executable, script, str(n), kind], capture_output=True, text=True, env=env).stderr
        m = re.search(r"I\s+refs:\s+([\d,]+)", out)
        if not m:
            raise RuntimeError(out[-2000:])
        return int(m.group(1).replace(",", ""))

    print(f"data plane: {'pure Python' if pure else 'as built (see namerouter/proxy/native.py)'}")
    for kind in ("simple", "vary", "browser"):
        a, b = count(500, kind), count(2500, kind)
        print(f"  {kind:8s} {(b - a) / 2000:9.0f} instructions/request")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("mode", choices=["strace", "cprofile", "cpu", "perf", "instr"])
    ap.add_argument("--pure", action="store_true", help="instr: count the pure-Python data plane")
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="cpu mode: runs")
    args = ap.parse_args()
    if args.mode == "instr":
        return instructions(args.pure)
    backend_port, router_port = pb.free_ports(2)
    body = f"server {{ listen 127.0.0.1:{backend_port}; location / {{ return 200 \"pong\"; }} }}\n"
    b, d = pb.start_nginx(body, backend_port)
    procs = [b]
    try:
        dtab = f"/svc/pong => /$/inet/127.1/{backend_port};"
        if args.mode == "cprofile":
            prof = os.path.join(tempfile.mkdtemp(prefix="nrprof-"), "router.prof")
            r = pb.start_router(router_port, dtab, python_args=("-m", "cProfile", "-o", prof),
                                env={"NAMEROUTER_PURE": "1"})
        else:
            r = pb.start_router(router_port, dtab)
        procs.append(r)
        pb.wait_port(router_port)
        wrk_count(router_port, 1, args.connections)  # warm-up
        if args.mode == "strace":
            out = os.path.join(tempfile.mkdtemp(prefix="nrstrace-"), "strace.txt")
            st = subprocess.Popen([shutil.which("strace") or "strace", "-c", "-f", "-o", out, "-p", str(r.pid)],
                                  stderr=subprocess.DEVNULL)
            import time
            time.sleep(0.5)
            n = wrk_count(router_port, args.duration, args.connections)
            st.terminate()
            st.wait()
            print(f"{n} requests")
            with open(out) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[3].isdigit() and n:
                        line = line.rstrip() + f"   {int(parts[3]) / n:.3f}/req"
                    print(line.rstrip())
        elif args.mode == "perf":
            # Where the router's CPU goes by shared object / symbol (perf report --sort).
            data = os.path.join(tempfile.mkdtemp(prefix="nrperf-"), "perf.data")
            pf = subprocess.Popen([shutil.which("perf") or "perf", "record", "-q", "-F", "2000", "-o", data,
                                   "-p", str(r.pid)], stderr=subprocess.DEVNULL)
            n = wrk_count(router_port, args.duration, args.connections)
            pf.send_signal(2)
            pf.wait()
            print(f"{n} requests")
            for sort in ("dso", "dso,sym"):
                rep = subprocess.run([shutil.which("perf") or "perf", "report", "-i", data, "--stdio", "--sort", sort],
                                     capture_output=True, text=True).stdout
                lines = [ln for ln in rep.splitlines() if ln.strip() and not ln.startswith("#")]
                print("\n".join(lines[:25 if sort == "dso" else 40]))
        elif args.mode == "cpu":
            # The router's own CPU (user + system) per request, over several runs.
            tick = os.sysconf("SC_CLK_TCK")
            for _ in range(args.rounds):
                before = cpu_ticks(r.pid)
                n = wrk_count(router_port, args.duration, args.connections)
                used = cpu_ticks(r.pid)
                print(f"{n / args.duration:9.0f} req/s  router CPU user {(used[0] - before[0]) / tick * 1e6 / n:5.1f} "
                      f"+ sys {(used[1] - before[1]) / tick * 1e6 / n:5.1f} us/request")
        else:
            n = wrk_count(router_port, args.duration, args.connections)
            print(f"{n} requests")
            pb.stop(r)
            import pstats
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        for dd in [d]:
            shutil.rmtree(dd, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
