"""`namerouter announce` as a user runs it: a real process, a real ZooKeeper, signals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from kazoo.client import KazooClient

from tests.support.ports import free_port
from tests.support.zookeeper import wait_children

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMEROUTER = [sys.executable, "-m", "namerouter"]


@pytest.fixture
def kz(zk_server):
    c = KazooClient(zk_server.hosts, timeout=15)
    c.start(30)
    yield c
    c.stop()
    c.close()


@pytest.fixture
def base():
    return "/c-" + uuid.uuid4().hex[:8]


def start(args, env=None):
    return subprocess.Popen(NAMEROUTER + ["announce"] + args, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})))


def finish(proc, timeout=15):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_announce_until_sigterm(zk_server, kz, base):
    proc = start(["--zk", zk_server.hosts, "--path", f"{base}/pong", "--host", "127.0.0.1", "--port", "8002",
                  "--endpoint", "http=127.0.0.1:8003", "--shard", "2"])
    try:
        [child] = wait_children(kz, f"{base}/pong", lambda c: len(c) == 1)
        assert child.startswith("member_")
        data, stat = kz.get(f"{base}/pong/{child}")
        assert json.loads(data) == {
            "serviceEndpoint": {"host": "127.0.0.1", "port": 8002},
            "additionalEndpoints": {"http": {"host": "127.0.0.1", "port": 8003}},
            "status": "ALIVE",
            "shard": 2,
        }
        assert stat.ephemeralOwner != 0
        proc.send_signal(signal.SIGTERM)
        rc, out, err = finish(proc)
        assert rc == 0, err
        assert "announced 127.0.0.1:8002" in err and "deregistered" in err
        assert kz.get_children(f"{base}/pong") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


SERVICE = textwrap.dedent("""
    import http.server, os, signal, sys
    port, code = int(sys.argv[1]), int(sys.argv[2])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"pong")
            if self.path == "/exit":
                raise SystemExit(code)
        def log_message(self, *a): pass
    def term(sig, frame):
        print("service got signal", sig, flush=True)
        if os.environ.get("CHECK_ZK"):
            from kazoo.client import KazooClient
            kz = KazooClient(os.environ["CHECK_ZK"]); kz.start(10)
            print("members at signal:", len(kz.get_children(os.environ["CHECK_PATH"])), flush=True)
            kz.stop()
        sys.exit(code + 1)
    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, term)
    srv = http.server.HTTPServer(("127.0.0.1", port), H)
    try:
        srv.serve_forever()
    except SystemExit as e:
        sys.exit(e.code)
""")


@pytest.fixture
def service_py(tmp_path):
    f = tmp_path / "service.py"
    f.write_text(SERVICE)
    return str(f)


def test_cmd_registers_once_listening_and_exit_status_propagates(zk_server, kz, base, service_py):
    port = free_port()
    proc = start(["--zk", zk_server.hosts, "--path", f"{base}/svc", "--host", "127.0.0.1", "--port", str(port),
                  "--", sys.executable, service_py, str(port), "3"])
    try:
        [child] = wait_children(kz, f"{base}/svc", lambda c: len(c) == 1)
        # registered only after the service listens: it answers right away
        out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=10)
        assert out.stdout == "pong"
        # the service exits by itself (code 3): the member goes, the status is returned
        subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/exit"], capture_output=True, timeout=10)
        rc, _, err = finish(proc)
        assert rc == 3, err
        assert kz.get_children(f"{base}/svc") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_deregister_then_are_forwarded_to_cmd(zk_server, kz, base, service_py, sig):
    port = free_port()
    proc = start(["--zk", zk_server.hosts, "--path", f"{base}/svc", "--host", "127.0.0.1", "--port", str(port),
                  "--", sys.executable, service_py, str(port), "10"],
                 env={"CHECK_ZK": zk_server.hosts, "CHECK_PATH": f"{base}/svc"})
    try:
        wait_children(kz, f"{base}/svc", lambda c: len(c) == 1)
        proc.send_signal(sig)
        rc, out, err = finish(proc)
        assert f"service got signal {int(sig)}" in out  # CMD saw the signal once ...
        assert out.count("service got signal") == 1
        assert rc == 11, err  # ... and its exit status (10 + 1) is ours
        assert kz.get_children(f"{base}/svc") == []
        # deregistration happened before the signal reached CMD (routers stop first)
        assert "members at signal: 0" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cmd_killed_by_signal_gives_128_plus_n(zk_server, base):
    proc = start(["--zk", zk_server.hosts, "--path", f"{base}/k", "--host", "127.0.0.1", "--port", "1", "--no-wait",
                  "--", sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    rc, _, err = finish(proc)
    assert rc == 128 + signal.SIGKILL, err


def test_missing_command_is_127(zk_server, base):
    proc = start(["--zk", zk_server.hosts, "--path", f"{base}/x", "--host", "127.0.0.1", "--port", "1",
                  "--", "/no/such/command"])
    rc, _, err = finish(proc)
    assert rc == 127 and "cannot run /no/such/command" in err


@pytest.mark.parametrize("args, message", [
    (["--path", "/d/x", "--host", "h", "--port", "1"], "the following arguments are required: --zk"),
    (["--zk", "127.0.0.1:99999", "--path", "/d/x", "--host", "h", "--port", "1"], "port must be 1-65535"),
    (["--zk", "127.0.0.1:2181", "--path", "d/x", "--host", "h", "--port", "1"], "--path 'd/x': must start with /"),
    (["--zk", "127.0.0.1:2181", "--path", "/d/x", "--host", "h", "--port", "0"], "serviceEndpoint: port must be 1-65535"),
    (["--zk", "127.0.0.1:2181", "--path", "/d/x", "--host", "h", "--port", "1", "--endpoint", "http"],
     "--endpoint 'http': expected NAME=HOST:PORT"),
    (["--zk", "127.0.0.1:2181", "--path", "/d/x", "--host", "h", "--port", "1", "--shard", "-2"],
     "shard must be a non-negative integer"),
    (["--zk", "127.0.0.1:2181", "--path", "/d/x", "--host", "h", "--port", "1", "--"], "nothing after --"),
])
def test_bad_arguments_exit_2_with_a_message(args, message):
    proc = start(args)
    rc, _, err = finish(proc)
    assert rc == 2
    assert message in err
    assert "Traceback" not in err


def test_waits_for_zookeeper_then_registers():
    from tests.support.zookeeper import ZooKeeperServer

    port = free_port()
    proc = start(["--zk", f"127.0.0.1:{port}", "--path", "/discovery/late", "--host", "127.0.0.1", "--port", "8002"])
    zk = None
    try:
        time.sleep(0.3)  # nothing listens on the port yet: the process must just keep trying
        assert proc.poll() is None
        zk = ZooKeeperServer(port=port).start()
        kz = KazooClient(zk.hosts, timeout=15)
        kz.start(30)
        try:
            wait_children(kz, "/discovery/late", lambda c: len(c) == 1, 30)
            proc.send_signal(signal.SIGTERM)
            rc, _, err = finish(proc)
            assert rc == 0, err
            assert "waiting for ZooKeeper" in err
            assert kz.get_children("/discovery/late") == []
        finally:
            kz.stop()
            kz.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if zk is not None:
            zk.cleanup()
