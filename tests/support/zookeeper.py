"""A real ZooKeeper server (Debian's package) on a free loopback port, for tests.

Started as documented in shared/reference/components.md: a cfg file binding 127.0.0.1,
tickTime=200 so sessions expire fast, the AdminServer disabled.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional

from .ports import free_port

ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


def zookeeper_available() -> bool:
    return os.path.exists("/usr/share/java/zookeeper.jar") and shutil.which("java") is not None


def _ruok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"ruok")
            return s.recv(4) == b"imok"
    except OSError:
        return False


class ZooKeeperServer:
    """Start/stop/restart a standalone ZooKeeper; data survives restarts."""

    def __init__(self, port: Optional[int] = None, tick_ms: int = 200) -> None:
        self.port = port or free_port()
        self.tick_ms = tick_ms
        self.dir = tempfile.mkdtemp(prefix="zk-")
        self.proc: Optional[subprocess.Popen] = None
        with open(os.path.join(self.dir, "zoo.cfg"), "w") as f:
            f.write(
                f"tickTime={tick_ms}\n"
                f"dataDir={self.dir}\n"
                f"clientPort={self.port}\n"
                "clientPortAddress=127.0.0.1\n"
                "maxClientCnxns=0\n"
                "admin.enableServer=false\n"
                "4lw.commands.whitelist=ruok,stat,srvr,mntr,envi,cons\n"
            )

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "ZooKeeperServer":
        self.proc = subprocess.Popen(
            [
                "java", "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.admin.enableServer=false",
                "-cp", ZK_CLASSPATH,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                os.path.join(self.dir, "zoo.cfg"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _ruok(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"zookeeper exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("zookeeper did not answer ruok")
            time.sleep(0.02)
        return self

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
