"""examples/grpc runs as its README says: the grpcio service, namerouter with the
example's router.yaml (ports changed), and client.py making every kind of call."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.integration

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "grpc")


def test_the_grpc_example_runs(tmp_path):
    backend, router, admin = free_port(), free_port(), free_port()
    with open(os.path.join(EXAMPLE, "router.yaml")) as f:
        text = f.read()
    assert "50051" in text and "4142" in text and "9990" in text
    cfg = tmp_path / "router.yaml"
    cfg.write_text(text.replace("50051", str(backend)).replace("4142", str(router)).replace("9990", str(admin)))
    exe = os.path.join(os.path.dirname(sys.executable), "namerouter")
    procs = [subprocess.Popen([sys.executable, "server.py", "--port", str(backend), "--unavailable", "1"],
                              cwd=EXAMPLE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
             subprocess.Popen([exe, str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    try:
        assert procs[0].stdout.readline().startswith(b"listening")  # type: ignore[union-attr]

        def client(*args: str) -> str:
            r = subprocess.run([sys.executable, "client.py", "--target", f"127.0.0.1:{router}", *args], cwd=EXAMPLE,
                               capture_output=True, text=True, timeout=60)
            return r.stdout

        deadline = time.monotonic() + 30
        out = client("say", "hello")
        while "status OK" not in out and time.monotonic() < deadline:  # the router is starting
            time.sleep(0.2)
            out = client("say", "hello")
        # the first call met the warming-up backend (UNAVAILABLE) and was retried
        assert out == "echo: hello from client.py\nstatus OK\n"
        assert client("count", "n") == "n 0\nn 1\nn 2\nstatus OK\n"
        assert client("collect", "a,b,c") == "a,b,c\nstatus OK\n"
        assert client("chat", "a,b") == "echo heard a\necho heard b\nstatus OK\n"
        assert client("fail", "gone") == "status NOT_FOUND: gone\n"
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
