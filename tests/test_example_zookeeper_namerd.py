"""examples/zookeeper, namerd variant, run as a user runs it: its one command, curl
through both linkers, re-route the whole mesh with one write to namerd, Ctrl-C."""
from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.support.examples import curl, free_ports, load_script, port_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "zookeeper")
RUN = os.path.join(EXAMPLE, "run_namerd.py")
DTAB_FILE = os.path.join(EXAMPLE, "internal.dtab")

#: Issue 5's namerd seed config, verbatim.
ISSUE5_SEED = """\
admin:
  port: 9991
storage:
  kind: io.l5d.zk
  zkAddrs:
  - host: 127.0.0.1
    port: 2181
  sessionTimeoutMs: 100000000
namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: 127.0.0.1
    port: 2181
interfaces:
- kind: io.l5d.httpController
  port: 4180
  ip: 0.0.0.0
"""


def load_run_module():
    return load_script(RUN, "zk_namerd_example_run")


def curl_status(*args):
    """(HTTP status, headers+body) of a curl call, for the namerd API steps."""
    r = subprocess.run(["curl", "-s", "-S", "-i", "--max-time", "10", *args], capture_output=True, text=True,
                       timeout=20)
    m = re.match(r"HTTP/\S+ (\d+)", r.stdout)
    return (int(m.group(1)) if m else 0), r.stdout


def namerd_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "namerd", "dtab", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=30, input=stdin)


def get_pong(port: int) -> str:
    """One request for Host: pong through a router, without a process per request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/", headers={"Host": "pong"})
        return c.getresponse().read().decode().strip()
    finally:
        c.close()


def seconds_until(routers: list[int], prefix: str, timeout: float = 5.0) -> float:
    """How long until every router (port) answers Host: pong with ``prefix``."""
    start = time.monotonic()
    pending = set(routers)
    while pending:
        pending = {p for p in pending if not curl("-H", "Host: pong", f"http://127.0.0.1:{p}/").startswith(prefix)}
        if time.monotonic() - start > timeout:
            pytest.fail(f"routers on ports {sorted(pending)} still not answering {prefix!r} after {timeout} s")
    return time.monotonic() - start


def test_checked_in_files_are_what_the_runner_uses():
    mod = load_run_module()
    p = mod.DEFAULT_PORTS
    with open(os.path.join(EXAMPLE, "namerd.yaml")) as f:
        text = f.read()
    assert text == ISSUE5_SEED  # issue 5's config as written
    assert text == mod.namerd_config(p)
    for name, peer in (("ping", "pong"), ("pong", "ping")):
        with open(os.path.join(EXAMPLE, f"linkerd-{name}-namerd.yaml")) as f:
            cfg = f.read()
        assert cfg == mod.linker_config(name, peer, p)
        routers = yaml.safe_load(cfg)["routers"]
        # no dtab of their own: every router binds through namerd's namespace `internal`
        for r in routers:
            assert "dtab" not in r
            assert r["interpreter"] | {"transformers": None} == {
                "kind": "io.l5d.namerd.http", "dst": "/$/inet/127.1/4180", "namespace": "internal",
                "transformers": None}
        assert routers[0]["interpreter"]["transformers"] == [{"kind": "io.l5d.port", "port": p[peer + "-in"]}]
        assert routers[1]["interpreter"]["transformers"] == [{"kind": "io.l5d.localhost"}]
    assert mod.DTAB_FILE == DTAB_FILE


def test_every_namerd_example_config_is_valid():
    for rel in ("linkerd-ping-namerd.yaml", "linkerd-pong-namerd.yaml", "compose/linkerd-namerd.yaml"):
        r = subprocess.run([sys.executable, "-m", "namerouter", "--check", os.path.join(EXAMPLE, rel)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 0, (rel, r.stderr)
    from namerd.config import load_namerd
    from namerd.dtabtext import parse_dtab_at

    for rel in ("namerd.yaml", "compose/namerd.yaml"):
        validated = load_namerd(os.path.join(EXAMPLE, rel))
        assert validated.warnings == [], (rel, validated.warnings)
        assert type(validated.config.storage).__module__ == "namerd.storage.zk"
    with open(DTAB_FILE) as f:
        assert parse_dtab_at(f.read(), DTAB_FILE).show() == "/svc=>/#/io.l5d.serversets/discovery"
    with open(os.path.join(EXAMPLE, "docker-compose.namerd.yml")) as f:
        compose = yaml.safe_load(f)
    for svc in compose["services"].values():  # every file a container mounts from here exists
        for arg in (svc.get("command") or []) + (svc.get("entrypoint") or []):
            if isinstance(arg, str) and arg.startswith("/example/"):
                assert os.path.exists(os.path.join(EXAMPLE, arg[len("/example/"):])), arg


def test_run_check_mode():
    mod = load_run_module()
    ports = free_ports(mod)
    r = subprocess.run([sys.executable, RUN, "--check", *port_args(ports)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "namespace internal: created internal" in out
    assert f"pong (127.0.0.1:{ports['pong']})   (HTTP 200)" in out
    assert f"ping -> pong (127.0.0.1:{ports['pong']})   [Via: 1.1 linkerd, 1.1 linkerd]   (HTTP 200)" in out
    assert f"pong -> ping (127.0.0.1:{ports['ping']})   [Via: 1.1 linkerd, 1.1 linkerd]   (HTTP 200)" in out
    assert f"ping -> pong-v2 (127.0.0.1:{ports['pong-v2']})   [Via: 1.1 linkerd, 1.1 linkerd]   (HTTP 200)" in out
    assert len(re.findall(r"outgoing router answers .* (\d+) ms after the PUT", out)) == 4
    assert out.rstrip().endswith("stopped")


def test_namerd_walkthrough_end_to_end_then_ctrl_c():
    mod = load_run_module()
    ports = free_ports(mod)
    proc = subprocess.Popen([sys.executable, RUN, *port_args(ports)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    pids = {}
    clean = False
    namerd = f"http://127.0.0.1:{ports['namerd']}"
    api = f"{namerd}/api/1/dtabs/internal"
    outgoing = [ports["ping-out"], ports["pong-out"]]
    try:
        lines = []
        deadline = time.monotonic() + 90
        for line in proc.stdout:  # read until the runner says it is ready
            lines.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "Press Ctrl-C" in text, text
        workdir = re.search(r"starting in (\S+)", text).group(1)
        for f in os.listdir(workdir):
            if f.endswith(".pid"):
                with open(os.path.join(workdir, f)) as fh:
                    pids[f[:-4]] = int(fh.read())
        assert set(pids) == {"zookeeper", "namerd", "pong", "ping", "pong-v2", "linkerd-ping", "linkerd-pong"}

        # README: the dtab is in namerd, and namerd keeps it in ZooKeeper (znode /dtabs/internal)
        got = namerd_cli("get", "internal", "--namerd", namerd)
        assert got.returncode == 0, got.stderr
        assert "/svc => /#/io.l5d.serversets/discovery;" in got.stdout
        assert re.search(r"^# version: \S+$", got.stdout, re.M)
        from kazoo.client import KazooClient

        zk = KazooClient(hosts=f"127.0.0.1:{ports['zk']}")
        zk.start(timeout=10)
        try:
            data, _ = zk.get("/dtabs/internal")
        finally:
            zk.stop()
            zk.close()
        assert data.decode() == "/svc=>/#/io.l5d.serversets/discovery"

        # README: through both linkers, every binding coming from namerd
        for port in outgoing:
            assert curl("-H", "Host: pong", f"http://127.0.0.1:{port}/").strip() == f"pong (127.0.0.1:{ports['pong']})"
        assert curl(f"http://127.0.0.1:{ports['ping']}/call").startswith(f"ping -> pong (127.0.0.1:{ports['pong']})")
        assert curl(f"http://127.0.0.1:{ports['pong']}/call").startswith(f"pong -> ping (127.0.0.1:{ports['ping']})")
        state = curl(f"http://127.0.0.1:{ports['ping-admin']}/client_state.json")
        assert f"/%/io.l5d.port/{ports['pong-in']}/#/io.l5d.serversets/discovery/pong" in state

        # README: one API call moves pong's traffic to pong-v2; both routers follow within a second
        status, head = curl_status(api)
        assert status == 200
        etag = re.search(r"^ETag: (\S+)\r?$", head, re.M | re.I).group(1)
        shift = "/svc => /#/io.l5d.serversets/discovery; /svc/pong => /#/io.l5d.serversets/discovery/pong-v2;"
        status, _ = curl_status("-X", "PUT", "-H", "Content-Type: application/dtab", "-H", f"If-Match: {etag}",
                                "--data", shift, api)
        assert status == 204
        assert seconds_until(outgoing, "pong-v2 (") < 1.0
        assert curl(f"http://127.0.0.1:{ports['ping']}/call").startswith(
            f"ping -> pong-v2 (127.0.0.1:{ports['pong-v2']})   [Via: 1.1 linkerd, 1.1 linkerd]")
        # a second operator still holding the old version is refused, and nothing changes
        status, body = curl_status("-X", "PUT", "-H", "Content-Type: application/dtab", "-H", f"If-Match: {etag}",
                                   "--data", "/svc => /#/io.l5d.serversets/discovery;", api)
        assert status == 412, body
        assert {get_pong(p) for p in outgoing for _ in range(5)} == {f"pong-v2 (127.0.0.1:{ports['pong-v2']})"}

        # README: roll back with the checked-in file (the CLI sends If-Match); both follow within a second
        r = namerd_cli("update", "internal", DTAB_FILE, "--namerd", namerd)
        assert r.returncode == 0 and r.stdout.strip() == "updated internal", r.stderr
        assert seconds_until(outgoing, "pong (") < 1.0
        assert {get_pong(p) for p in outgoing for _ in range(5)} == {f"pong (127.0.0.1:{ports['pong']})"}

        # README: a canary, 1 in 10 of pong's requests to pong-v2, written with the CLI from stdin
        canary = ("/svc => /#/io.l5d.serversets/discovery;\n"
                  "/svc/pong => 9 * /#/io.l5d.serversets/discovery/pong & 1 * /#/io.l5d.serversets/discovery/pong-v2;\n")
        r = namerd_cli("update", "internal", "-", "--namerd", namerd, stdin=canary)
        assert r.returncode == 0 and r.stdout.strip() == "updated internal", r.stderr
        deadline = time.monotonic() + 5
        while not get_pong(ports["ping-out"]).startswith("pong-v2 ("):  # the canary is live
            assert time.monotonic() < deadline, "no request reached pong-v2 within 5 s of the canary dtab"
        answers = [get_pong(ports["ping-out"]) for _ in range(200)]
        v1 = answers.count(f"pong (127.0.0.1:{ports['pong']})")
        v2 = answers.count(f"pong-v2 (127.0.0.1:{ports['pong-v2']})")
        assert v1 + v2 == 200, set(answers)
        assert 2 <= v2 <= 60, (v1, v2)  # ~20 expected; the chance of falling outside is negligible

        # Ctrl-C: everything stops, cleanly, no process left, and the temporary directory is gone
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert rest.rstrip().endswith("stopped")
        for name, pid in pids.items():
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)  # the process and anything it started (announce's service)
        assert not os.path.exists(workdir)
        clean = True
    finally:
        runner_alive = proc.poll() is None
        if runner_alive:
            proc.kill()
            proc.wait()
        if not clean and runner_alive:
            # The runner was killed before it could stop its children (own process groups).
            for pid in pids.values():
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
