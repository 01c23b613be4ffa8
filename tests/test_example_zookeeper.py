"""examples/zookeeper run as a user runs it: its one command, curl through it, Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.examples import curl, free_ports, load_script, port_args
from tests.support.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "zookeeper")
RUN = os.path.join(EXAMPLE, "run.py")


def load_run_module():
    return load_script(RUN, "zk_example_run")


def test_checked_in_configs_are_what_the_runner_uses():
    mod = load_run_module()
    p = mod.DEFAULT_PORTS
    with open(os.path.join(EXAMPLE, "seed.yaml")) as f:
        assert f.read() == mod.seed_config(p)
    for name, peer in (("ping", "pong"), ("pong", "ping")):
        with open(os.path.join(EXAMPLE, f"linkerd-{name}.yaml")) as f:
            assert f.read() == mod.linker_config(name, peer, p)
    # the seed file is issue 4's config as written
    with open(os.path.join(EXAMPLE, "seed.yaml")) as f:
        seed = f.read()
    assert "label: outging" in seed and "port: 4001" in seed and "host: localhost" in seed
    assert "/svc => /#/io.l5d.serversets/discovery;" in seed


def test_every_example_config_is_valid():
    for rel in ("seed.yaml", "linkerd-ping.yaml", "linkerd-pong.yaml",
                "compose/seed.yaml", "compose/linkerd-ping.yaml", "compose/linkerd-pong.yaml"):
        r = subprocess.run([sys.executable, "-m", "namerouter", "--check", os.path.join(EXAMPLE, rel)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 0, (rel, r.stderr)


def test_run_check_mode():
    mod = load_run_module()
    ports = free_ports(mod)
    r = subprocess.run([sys.executable, RUN, "--check", *port_args(ports)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"pong (127.0.0.1:{ports['pong']})   (HTTP 200)" in out
    assert f"ping -> pong (127.0.0.1:{ports['pong']})   [Via: 1.1 linkerd, 1.1 linkerd]   (HTTP 200)" in out
    assert f"pong -> ping (127.0.0.1:{ports['ping']})   [Via: 1.1 linkerd, 1.1 linkerd]   (HTTP 200)" in out
    assert out.rstrip().endswith("stopped")


def test_walkthrough_end_to_end_then_ctrl_c():
    mod = load_run_module()
    ports = free_ports(mod)
    proc = subprocess.Popen([sys.executable, RUN, *port_args(ports)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    extra = None
    pids = {}
    clean = False
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
        assert set(pids) == {"zookeeper", "pong", "ping", "seed-router", "linkerd-ping", "linkerd-pong"}

        # the README's requests, with curl
        assert curl("-H", "Host: pong", f"http://127.0.0.1:{ports['seed']}/").strip() == f"pong (127.0.0.1:{ports['pong']})"
        assert curl("-H", "Host: pong", f"http://127.0.0.1:{ports['ping-out']}/").strip() == \
            f"pong (127.0.0.1:{ports['pong']})"
        assert curl(f"http://127.0.0.1:{ports['ping']}/call").startswith(f"ping -> pong (127.0.0.1:{ports['pong']})")
        assert curl(f"http://127.0.0.1:{ports['pong']}/call").startswith(f"pong -> ping (127.0.0.1:{ports['ping']})")
        err = curl("-H", "Host: nosuch", f"http://127.0.0.1:{ports['seed']}/")
        assert err.startswith("No route to /svc/nosuch") and "namespace=outging" in err
        client_state = curl(f"http://127.0.0.1:{ports['ping-admin']}/client_state.json")
        assert f"/%/io.l5d.port/{ports['pong-in']}/#/io.l5d.serversets/discovery/pong" in client_state
        assert f"127.0.0.1:{ports['pong-in']}" in client_state

        # README step 3: a second pong instance joins, gets traffic, leaves
        p2 = free_port()
        extra = subprocess.Popen(
            [sys.executable, "-m", "namerouter", "announce", "--zk", f"127.0.0.1:{ports['zk']}",
             "--path", "/discovery/pong", "--host", "127.0.0.1", "--port", str(p2), "--",
             sys.executable, os.path.join(EXAMPLE, "service.py"), "pong", str(p2)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for line in extra.stderr:
            if "announced" in line:
                break
        seen = {curl("-H", "Host: pong", f"http://127.0.0.1:{ports['seed']}/").strip() for _ in range(30)}
        assert seen == {f"pong (127.0.0.1:{ports['pong']})", f"pong (127.0.0.1:{p2})"}, seen
        extra.send_signal(signal.SIGTERM)
        assert extra.wait(15) == 0
        seen = {curl("-H", "Host: pong", f"http://127.0.0.1:{ports['seed']}/").strip() for _ in range(10)}
        assert seen == {f"pong (127.0.0.1:{ports['pong']})"}
        state = curl(f"http://127.0.0.1:{ports['seed-admin']}/namer_state/io.l5d.serversets.json")
        assert '"alive": 1' in state

        # Ctrl-C: everything stops, cleanly, and the temporary directory is gone
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert rest.rstrip().endswith("stopped")
        for name, pid in pids.items():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert not os.path.exists(workdir)
        clean = True
    finally:
        runner_alive = proc.poll() is None
        for p in (extra, proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if not clean and runner_alive:
            # The runner was killed before it could stop its children (own process groups).
            for pid in pids.values():
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
