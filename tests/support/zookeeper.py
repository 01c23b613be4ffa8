"""A real ZooKeeper server (Debian's package) on a free loopback port, for tests.

Started as documented in shared/reference/components.md: a cfg file binding 127.0.0.1,
tickTime=200 so sessions expire fast, the AdminServer disabled.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Optional

from .ports import free_port
from .process import start_and_wait, stop_process

ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


def zookeeper_available() -> bool:
    return os.path.exists("/usr/share/java/zookeeper.jar") and shutil.which("java") is not None


def _four_letter(port: int, cmd: bytes, timeout: float = 1.0) -> bytes:
    """Send a four-letter command and read the whole answer (b"" if it fails)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(cmd)
            chunks = []
            while True:
                b = s.recv(4096)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks)
    except OSError:
        return b""


def _serving(port: int) -> bool:
    """True once ZooKeeper accepts sessions. ``ruok`` answers ``imok`` as soon as the
    listener is up, while the server may still be loading its snapshot/log and closing
    every client connection ("not currently serving requests"); a client started then
    backs off exponentially and, on a loaded box, can miss its own connect deadline.
    ``srvr`` reports ``Mode:`` only when the server really serves."""
    return b"Mode:" in _four_letter(port, b"srvr")


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

    def start(self, timeout: float = 60.0) -> "ZooKeeperServer":
        """Start the JVM and return once it serves sessions (generous default timeout:
        a JVM start on a loaded 2-core CI box can take tens of seconds)."""
        self.proc = start_and_wait(
            [
                "java", "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.admin.enableServer=false",
                "-cp", ZK_CLASSPATH,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                os.path.join(self.dir, "zoo.cfg"),
            ],
            lambda: _serving(self.port), f"zookeeper on port {self.port}", timeout,
        )
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_children(kz, path: str, pred, timeout: float = 10.0) -> list:
    """Wait (on ZooKeeper watches, no polling) until pred(children of path) holds.

    Survives the server going away: a call that fails with ConnectionLoss or
    SessionExpiredError (the session of this test client expired while ZooKeeper was
    down; kazoo then opens a new one) waits for kazoo to be connected again and retries.
    """
    import threading

    from kazoo.exceptions import ConnectionLoss, NoNodeError, SessionExpiredError
    from kazoo.protocol.states import KazooState

    deadline = time.monotonic() + timeout
    children: list = []
    while True:
        ev = threading.Event()
        try:
            if kz.exists(path, watch=lambda e: ev.set()):
                try:
                    children = kz.get_children(path, watch=lambda e: ev.set())
                except NoNodeError:  # deleted in between
                    children = []
            else:
                children = []
        except (ConnectionLoss, SessionExpiredError):
            def on_state(state, ev=ev):
                if state == KazooState.CONNECTED:
                    ev.set()
                    return True  # remove this listener
                return False

            kz.add_listener(on_state)
            if kz.state == KazooState.CONNECTED:
                ev.set()
            # ev is set again once connected; until then no answer to judge
            if not ev.wait(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"{path}: ZooKeeper client did not reconnect within {timeout} s")
            continue
        if pred(children):
            return children
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{path}: children {children} did not satisfy the condition")
        ev.wait(left)
