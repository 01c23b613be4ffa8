"""TLS handshake rate of namerouter's TLS listener against asyncio's own.

``TlsServer`` (namerouter/tls/server.py: Python accept loop +
``connect_accepted_socket(ssl=<current context>)``, which gives rotation and failure
counting) versus ``loop.create_server(ssl=ctx)`` (fixed context, failures invisible),
both on uvloop in a child process, driven by Debian's ``openssl s_time -new`` (a full
handshake per connection, one at a time) in interleaved rounds; the median of each is
printed with the ratio.

    flock /work/.bench.lock .venv/bin/python bench/tls_handshake_bench.py [--rounds 3] [--seconds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


class _Quiet(asyncio.Protocol):
    """Answers nothing: s_time closes each connection after its handshake."""


async def _serve(mode: str, cert: str, key: str, port: int) -> None:
    from namerouter.tls import ServerTlsConfig, TlsRegistry
    from namerouter.tls.server import TlsServer

    reg = TlsRegistry()
    src = reg.server(ServerTlsConfig(certPath=cert, keyPath=key), "bench", "bench")
    if mode == "namerouter":
        server = TlsServer(_Quiet, src, reg.handshake_failures("bench"))
        await server.listen("127.0.0.1", port, backlog=1024)
    else:
        await asyncio.get_running_loop().create_server(_Quiet, "127.0.0.1", port, ssl=src.context, backlog=1024)
    await asyncio.Event().wait()


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server on {port} did not start")


def _s_time(port: int, seconds: int) -> float:
    out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
                         capture_output=True, text=True).stdout
    m = re.search(r"(\d+) connections in ([\d.]+)s", out)
    if not m:
        raise RuntimeError(f"openssl s_time: {out[-500:]}")
    return int(m.group(1)) / float(m.group(2))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--cert", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        import uvloop

        uvloop.run(_serve(a.serve, a.cert, a.key, a.port))
        return
    from tests.support.ports import free_port
    from tests.support.tls import Pki

    with tempfile.TemporaryDirectory() as d:
        pki = Pki(d)
        c = pki.issue("bench", "localhost", rsa=False)
        servers = {}
        for mode in ("namerouter", "asyncio"):
            port = free_port()
            servers[mode] = (port, subprocess.Popen([sys.executable, __file__, "--serve", mode, "--cert", c.cert,
                                                     "--key", c.key, "--port", str(port)]))
        try:
            for port, _ in servers.values():
                _wait_port(port)
            rates: dict[str, list[float]] = {m: [] for m in servers}
            for _ in range(a.rounds):
                for mode, (port, _) in servers.items():
                    rates[mode].append(_s_time(port, a.seconds))
            med = {m: statistics.median(v) for m, v in rates.items()}
            for m, v in rates.items():
                print(f"{m:>10}: median {med[m]:.0f} handshakes/s  (rounds: {', '.join(f'{x:.0f}' for x in v)})")
            print(f"ratio TlsServer / create_server(ssl=): {med['namerouter'] / med['asyncio']:.2f}")
        finally:
            for _, proc in servers.values():
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
