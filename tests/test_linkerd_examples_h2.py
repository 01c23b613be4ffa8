"""Linkerd 1.7's h2spec.yaml (the config Linkerd runs h2spec against) runs here: its
router serves HTTP/2 and routes to the backend its dtab names (ports moved to free ones)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.integration

HERE = os.path.dirname(os.path.abspath(__file__))


def test_h2spec_yaml_router_runs(tmp_path):
    with open(os.path.join(HERE, "linkerd_examples", "linkerd", "h2spec.yaml")) as f:
        text = f.read()
    backend, router, admin = free_port(), free_port(), free_port()
    cfg = tmp_path / "h2spec.yaml"
    cfg.write_text(text.replace("port: 9990", f"port: {admin}").replace("port: 4140", f"port: {router}")
                   .replace("127.1/8080", f"127.1/{backend}"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("from nghttpd\n")
    exe = os.path.join(os.path.dirname(sys.executable), "namerouter")
    check = subprocess.run([exe, "--check", str(cfg)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    procs = [subprocess.Popen(["nghttpd", "--no-tls", "-d", str(docs), str(backend)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL),
             subprocess.Popen([exe, str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    try:
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run(["curl", "-sS", "-i", "--http2-prior-knowledge", f"http://127.0.0.1:{router}/index.html"],
                               capture_output=True, text=True, timeout=30)
            if "from nghttpd" in r.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "HTTP/2 200" in r.stdout and "via: h2 linkerd" in r.stdout and "from nghttpd" in r.stdout, r
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
