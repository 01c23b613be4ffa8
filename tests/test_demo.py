"""`make demo` (python -m namerouter.demo) runs, routes through the fs namer and exits by
itself when stdin is not a terminal."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_once_and_shows_routed_answers():
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "no_proxy")}
    p = subprocess.run([sys.executable, "-m", "namerouter.demo"], cwd=ROOT, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "Traceback" not in p.stderr
    # the Host-header and http_proxy curls reached the right backends through the fs namer
    assert "Hello from web on port" in out and "you asked for /index.html (routed as /svc/web -> /#/io.l5d.fs/web)" in out
    assert "you asked for /users/42 (routed as /svc/api -> /#/io.l5d.fs/api)" in out
    # the per-request dtab override sent /svc/web to api
    assert "(routed as /svc/web -> /#/io.l5d.fs/api)" in out
    assert "HTTP/1.1 502" in out and "No route to /svc/nope" in out
    # /svc/web was asked twice: by Host and with the dtab override
    assert '"rt/demo/service/svc/web/requests": 2' in out
    assert "$ http_proxy=http://127.0.0.1:" in out and "curl -s http://api/users/42" in out
    assert "Running; press Ctrl-C" not in out  # exited by itself
