"""End to end: `python -m namerouter CONFIG` with issue 3's seed config (ports replaced by
free ones), a real backend, curl through http_proxy and with a Host header, the admin
endpoints of the running process, and graceful shutdown by SIGTERM and POST /admin/shutdown."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.backends import Backend
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent

SEED = """admin:
  port: 9990
  ip: 0.0.0.0
routers:
- protocol: http
  label: outging
  dtab: |
    /svc/pong => /$/inet/127.1/8002;
  servers:
  - port: 4001
    ip: 0.0.0.0
"""


def seed_config(tmp_path: Path, backend_port: int) -> tuple[Path, int, int]:
    admin, router = free_port(), free_port()
    text = (SEED.replace("port: 9990", f"port: {admin}")
                .replace("port: 4001", f"port: {router}")
                .replace("127.1/8002", f"127.1/{backend_port}"))
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p, admin, router


async def curl(*args: str, env: Optional[dict] = None, timeout: float = 15) -> tuple[int, str]:
    """curl's exit status and output (``-w`` appends the HTTP status on its own line)."""
    full_env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "no_proxy", "all_proxy")}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-S", "-w", "\n%{http_code}", *args, env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode()


class RouterProcess:
    """`python -m namerouter <config>` as a child process."""

    def __init__(self, config: Path, admin_port: int) -> None:
        self.config = config
        self.admin_port = admin_port
        self.proc: Optional[asyncio.subprocess.Process] = None

    async def start(self) -> "RouterProcess":
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "namerouter", str(self.config), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                err = await self.proc.stderr.read()
                raise AssertionError(f"router exited {self.proc.returncode}: {err.decode()}")
            code, out = await curl(f"http://127.0.0.1:{self.admin_port}/admin/ping", timeout=5)
            if code == 0 and out.startswith("pong"):
                return self
            await asyncio.sleep(0.05)
        raise AssertionError("router did not come up")

    async def wait(self, timeout: float = 15) -> tuple[int, str]:
        assert self.proc is not None
        _, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        return self.proc.returncode, err.decode()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def seed(tmp_path):
    async with Backend("pong") as backend:
        cfg, admin, router = seed_config(tmp_path, backend.port)
        rp = RouterProcess(cfg, admin)
        await rp.start()
        try:
            yield backend, rp, admin, router
        finally:
            await rp.stop()


async def test_seed_config_routes_through_http_proxy_and_host_header(seed):
    backend, rp, admin, router = seed
    code, out = await curl("http://pong/pong", env={"http_proxy": f"http://localhost:{router}"})
    assert code == 0 and out == "pong\n200", out
    assert backend.last.uri == "/pong"  # absolute form rewritten to origin form
    assert backend.last.header("l5d-dst-service") == "/svc/pong"
    code, out = await curl("-H", "Host: pong", f"http://localhost:{router}/pong")
    assert code == 0 and out == "pong\n200", out
    assert len(backend.requests) == 2

    # the running process's admin server
    base = f"http://127.0.0.1:{admin}"
    code, out = await curl(f"{base}/admin/metrics.json")
    metrics = json.loads(out.rsplit("\n", 1)[0])
    assert metrics[f"rt/outging/server/0.0.0.0/{router}/requests"] == 2
    assert metrics["rt/outging/service/svc/pong/requests"] == 2
    assert metrics["rt/outging/service/svc/pong/request_latency_ms.count"] == 2
    code, out = await curl(f"{base}/admin/metrics/prometheus")
    text, status = out.rsplit("\n", 1)
    assert status == "200"
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    reqs = fams["rt:server:requests"].samples[0]
    assert reqs.labels == {"rt": "outging", "server": f"0.0.0.0/{router}"} and reqs.value == 2
    svc = [s for s in fams["rt:service:requests"].samples if s.labels.get("service") == "svc/pong"]
    assert svc and svc[0].value == 2
    code, out = await curl(f"{base}/config.json")
    assert json.loads(out.rsplit("\n", 1)[0])["routers"][0]["label"] == "outging"
    code, out = await curl(f"{base}/client_state.json")
    assert out.endswith("\n200") and "outging" in json.loads(out.rsplit("\n", 1)[0])
    code, out = await curl(f"{base}/admin/shutdown")
    assert out.endswith("\n405")
    code, out = await curl(f"{base}/delegator.json?namespace=nope&path=/svc/pong")
    assert out.endswith("\n404")


async def test_delegator_of_the_running_router(seed):
    backend, rp, admin, router = seed
    code, out = await curl(f"http://127.0.0.1:{admin}/delegator.json?namespace=outging&path=/svc/pong")
    body, status = out.rsplit("\n", 1)
    assert status == "200", body
    doc = json.loads(body)
    assert doc["path"] == "/svc/pong"
    assert f"/$/inet/127.1/{backend.port}" in body
    code, out = await curl(f"http://127.0.0.1:{admin}/delegator.json?namespace=outging&path=nope")
    assert out.endswith("\n400") and out.startswith("Invalid path: ")


async def _inflight_survives(rp: RouterProcess, router: int, stop: Any) -> None:
    """Start a slow request, ask the router to stop, and check the request completes."""
    slow = asyncio.ensure_future(curl("-H", "Host: pong", f"http://127.0.0.1:{router}/slow?ms=800"))
    await asyncio.sleep(0.3)  # the request is in flight at the backend
    t0 = time.monotonic()
    await stop()
    code, out = await slow
    assert code == 0 and out == "slow\n200", out
    status, err = await rp.wait()
    assert status == 0, err
    assert "Traceback" not in err
    assert time.monotonic() - t0 < 5


async def test_sigterm_drains_in_flight_requests(seed):
    backend, rp, admin, router = seed

    async def sigterm() -> None:
        rp.proc.send_signal(signal.SIGTERM)

    await _inflight_survives(rp, router, sigterm)


async def test_admin_shutdown_drains_in_flight_requests(seed):
    backend, rp, admin, router = seed

    async def post_shutdown() -> None:
        code, out = await curl("-X", "POST", "-H", "Content-Type: application/json",
                               f"http://127.0.0.1:{admin}/admin/shutdown")
        assert code == 0 and out.endswith("\n200"), out

    await _inflight_survives(rp, router, post_shutdown)


async def test_port_in_use_is_a_clear_startup_error(tmp_path):
    async with Backend("pong") as backend:
        cfg, admin, router = seed_config(tmp_path, backend.port)
        cfg.write_text(cfg.read_text().replace(f"port: {router}", f"port: {backend.port}")
                       .replace("ip: 0.0.0.0\n", "ip: 127.0.0.1\n"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "namerouter", str(cfg), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        text = err.decode()
        assert proc.returncode == 1, text
        assert f"routers[0] (outging): cannot listen on 127.0.0.1:{backend.port}" in text
        assert "Traceback" not in text
