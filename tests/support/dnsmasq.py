"""A real DNS server (Debian's dnsmasq) on a free loopback port, for the SRV namer tests.

dnsmasq answers from its config file only (``--no-resolv --no-hosts``) and is
authoritative for ``.test`` (``--local=/test/``): a name it has no record for is
NXDOMAIN, not REFUSED. ``srv-host`` lines are read only at start, so changing the
records means :meth:`set_records` + :meth:`restart` on the same port (which doubles as
a "DNS server went away" fault).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Optional

import dns.message
import dns.query

from .ports import free_port


def dnsmasq_available() -> bool:
    return shutil.which("dnsmasq") is not None


class DnsmasqServer:
    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="dnsmasq-")
        self.conf = os.path.join(self.dir, "dnsmasq.conf")
        self.proc: Optional[subprocess.Popen] = None
        self.set_records([])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_records(self, srv: list[tuple[str, str, int]], hosts: Optional[dict[str, str]] = None) -> None:
        """``srv``: (name, target, port); ``hosts``: name → IPv4 (A records)."""
        lines = [f"srv-host={name},{target},{port}" for name, target, port in srv]
        lines += [f"host-record={name},{ip}" for name, ip in (hosts or {}).items()]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "DnsmasqServer":
        self.proc = subprocess.Popen(
            ["dnsmasq", "-k", f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
             "--no-resolv", "--no-hosts", "--local=/test/", f"--conf-file={self.conf}", "--pid-file=",
             f"--user={_user()}", "--cache-size=0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        probe = dns.message.make_query("ready.test.", "A")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq on port {self.port} exited with {self.proc.returncode}")
            try:
                dns.query.udp(probe, "127.0.0.1", port=self.port, timeout=0.2)
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"dnsmasq on port {self.port} did not answer after {timeout:g}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
