"""A real etcd v3 server (Debian's etcd-server) on free loopback ports, for tests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from typing import Optional

from .ports import free_port
from .process import start_and_wait, stop_process


def etcd_available() -> bool:
    return shutil.which("etcd") is not None


class EtcdServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.peer_port = free_port()
        # tmpfs when available: etcd 3.4 always fsyncs.
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.mkdtemp(prefix="etcd-", dir=base)
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "EtcdServer":
        c, p = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer_port}"
        self.proc = start_and_wait(
            [
                "etcd", "--name", "t", "--data-dir", self.dir,
                "--listen-client-urls", c, "--advertise-client-urls", c,
                "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
                "--initial-cluster", f"t={p}", "--log-level", "warn", "--logger", "zap",
            ],
            self._healthy, f"etcd on port {self.port}", timeout,
        )
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
