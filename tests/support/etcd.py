"""A real etcd v3 server (Debian's etcd-server) on free loopback ports, for tests."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from typing import Optional

from .ports import free_port


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
        self.proc = subprocess.Popen(
            [
                "etcd", "--name", "t", "--data-dir", self.dir,
                "--listen-client-urls", c, "--advertise-client-urls", c,
                "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
                "--initial-cluster", f"t={p}", "--log-level", "warn", "--logger", "zap",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                        if json.loads(r.read()).get("health") == "true":
                            return self
                except (OSError, ValueError):
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(f"etcd on port {self.port} exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd on port {self.port} did not become healthy within {timeout:g}s")
                time.sleep(0.05)
        except BaseException:
            self.stop()  # never leave an etcd behind
            raise

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
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
