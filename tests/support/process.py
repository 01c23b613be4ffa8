"""Starting and stopping the real servers the tests run as child processes (ZooKeeper,
etcd, InfluxDB): one place for "start, wait until it serves, never leave it behind"."""
from __future__ import annotations

import signal
import subprocess
import time
from typing import Callable, Optional, Sequence


def start_and_wait(argv: Sequence[str], ready: Callable[[], bool], what: str, timeout: float) -> subprocess.Popen:
    """Start ``argv`` and return once ``ready()`` is true. If it exits or is not ready
    within ``timeout`` seconds (or the wait is interrupted), it is stopped and the error
    names ``what``."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} was not ready after {timeout:g}s")
            time.sleep(0.05)
    except BaseException:
        stop_process(proc)  # never leave a server behind (a timeout, or pytest-timeout interrupting us)
        raise
    return proc


def stop_process(proc: Optional[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
