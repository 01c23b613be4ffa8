"""Free loopback ports and readiness waits shared by every test."""
from __future__ import annotations

import random
import socket
import threading
import time

# Ports are chosen BELOW the kernel's ephemeral range: the kernel hands ephemeral ports to
# every outgoing connection (kazoo, wrk, curl, the router's pools ...), so a port picked
# from that range can be taken between the moment a test picks it and the moment a
# subprocess binds it. Below the range only another listener can take it.
_FALLBACK_RANGE = (32768, 60999)
_handed_out: set[int] = set()
_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return _FALLBACK_RANGE


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never handed out twice
    in this process, and outside the ephemeral range (see above)."""
    lo, _ = _ephemeral_range()
    low, high = 10000, max(10001, lo - 1)
    with _lock:
        for _ in range(200):
            port = random.randint(low, high)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    # Fall back to the kernel's choice (still never twice).
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Block until a TCP connect to host:port succeeds (polls every 20 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
            time.sleep(0.02)
