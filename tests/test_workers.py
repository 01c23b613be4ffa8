"""``namerouter --workers N``: real processes sharing one port (SO_REUSEPORT), one admin port
summing their metrics, a killed worker replaced, SIGTERM draining every worker."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import Backend, get, request
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


async def admin_json(port: int, path: str) -> Any:
    r = await request(port, get(path, host="localhost"))
    assert r.status == 200, (path, r.status, r.body[:200])
    return json.loads(r.body)


async def until(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = await pred()
        except (OSError, AssertionError, ValueError, asyncio.IncompleteReadError):
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def listeners(port: int) -> set[int]:
    """PIDs holding a listening TCP socket on 127.0.0.1:port (from /proc)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


@pytest.fixture
async def two_workers(tmp_path):
    async with Backend("pong") as backend:
        admin, port = free_port(), free_port()
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"""admin: {{port: {admin}, shutdownGraceMs: 5000}}
routers:
- protocol: http
  label: out
  dtab: /svc/pong => /$/inet/127.1/{backend.port};
  servers: [{{port: {port}}}]
""")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "namerouter", "--workers", "2", str(cfg), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

        async def ready() -> Any:
            doc = await admin_json(admin, "/admin/workers.json")
            ws = doc["workers"]
            return ws if len(ws) == 2 and all(w["ready"] for w in ws) else None

        try:
            workers = await until(ready, 30, "two ready workers")
            yield proc, backend, admin, port, workers
        finally:
            if proc.returncode is None:  # a failed test: stop the workers, then the master
                try:
                    workers = (await admin_json(admin, "/admin/workers.json"))["workers"]
                except (OSError, AssertionError):
                    pass
                for w in workers:
                    try:
                        os.kill(w["pid"], signal.SIGKILL)
                    except (OSError, TypeError):
                        pass
                proc.kill()
                await proc.wait()


async def test_workers_share_the_port_and_the_admin_port_sums_them(two_workers):
    proc, backend, admin, port, workers = two_workers
    pids = {w["pid"] for w in workers}
    assert listeners(port) == pids  # both workers listen on the one port (SO_REUSEPORT)
    n = 60
    for _ in range(n):  # a new connection each: the kernel spreads them over the workers
        r = await request(port, get("/pong"))
        assert (r.status, r.body) == (200, b"pong")
    metrics = await admin_json(admin, "/admin/metrics.json")
    assert metrics[f"rt/out/server/127.0.0.1/{port}/requests"] == n
    assert metrics["rt/out/service/svc/pong/requests"] == n
    assert metrics["rt/out/service/svc/pong/request_latency_ms.count"] == n
    per_worker = [w["requests"] for w in (await admin_json(admin, "/admin/workers.json"))["workers"]]
    assert sum(per_worker) == n and all(c > 0 for c in per_worker), per_worker
    # Prometheus sums too; the config is the one config; other pages come from a worker
    r = await request(admin, get("/admin/metrics/prometheus", host="localhost"))
    assert f'rt:server:requests{{rt="out", server="127.0.0.1/{port}"}} {n}' in r.body.decode()
    assert (await admin_json(admin, "/config.json"))["routers"][0]["label"] == "out"
    state = await admin_json(admin, "/client_state.json")
    assert f"/$/inet/127.1/{backend.port}" in state["out"]
    r = await request(admin, get("/delegator.json?namespace=out&path=/svc/pong", host="localhost"))
    assert r.status == 200 and f"127.1/{backend.port}" in r.body.decode()


async def test_a_killed_worker_is_replaced(two_workers):
    proc, backend, admin, port, workers = two_workers
    victim = workers[0]
    os.kill(victim["pid"], signal.SIGKILL)

    async def replaced() -> Any:
        w = (await admin_json(admin, "/admin/workers.json"))["workers"][0]
        return w if w["ready"] and w["pid"] != victim["pid"] and w["restarts"] == 1 else None

    new = await until(replaced, 20, "the killed worker to be replaced")
    assert listeners(port) == {new["pid"], workers[1]["pid"]}
    for _ in range(10):
        assert (await request(port, get("/pong"))).status == 200
    assert proc.returncode is None


async def test_sigterm_drains_every_worker(two_workers):
    proc, backend, admin, port, workers = two_workers
    slow = [asyncio.ensure_future(request(port, get("/slow?ms=800"))) for _ in range(6)]
    async def in_flight() -> bool:
        return len(backend.requests) >= 6

    await until(in_flight, 10, "requests in flight")
    proc.send_signal(signal.SIGTERM)
    answers = await asyncio.gather(*slow)
    assert [(r.status, r.body) for r in answers] == [(200, b"slow")] * 6
    status = await asyncio.wait_for(proc.wait(), 15)
    err = (await proc.stderr.read()).decode()
    assert status == 0, err
    assert "Traceback" not in err
    for w in workers:
        assert not os.path.exists(f"/proc/{w['pid']}") or "zombie" in open(f"/proc/{w['pid']}/status").read()
    assert not listeners(port)


def test_workers_value_is_checked(tmp_path):
    import subprocess

    cfg = tmp_path / "config.yaml"
    cfg.write_text("workers: none\nrouters:\n- protocol: http\n  servers: [{port: 4140}]\n")
    p = subprocess.run([sys.executable, "-m", "namerouter", "--check", str(cfg)], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 2
    assert "workers: expected a number of processes (1 or more) or 'auto', got 'none' (line 1)" in p.stderr
    cfg.write_text("workers: auto\nrouters:\n- protocol: http\n  servers: [{port: 4140}]\n")
    p = subprocess.run([sys.executable, "-m", "namerouter", "--check", "--workers", "0", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--workers: expected a number of processes" in p.stderr
