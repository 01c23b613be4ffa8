"""The container image is real: the project's Dockerfile, built by podman on a local Debian
base (no registry needed), runs the router with the seed config and namerd with a namerd
config, and curl requests route through them.

Marked ``container``: the plain ``pytest`` run leaves it out (``addopts`` in
pyproject.toml) because the first run on a machine debootstraps a Debian base (about a
minute, then cached) and every run builds the image; ``make test`` runs it after the
rest (``pytest -m container``). Skipped, with the reason, where podman cannot run.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import pytest

from tests.support.backends import Backend, curl
from tests.support.container import Container, build_image, ensure_base_image, podman, unavailable
from tests.support.ports import free_port

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

#: The seed config of the README's quick start (ports are chosen per run: the test host
#: network is shared).
SEED = """\
admin:
  port: {admin}
  ip: 0.0.0.0
routers:
- protocol: http
  label: outgoing
  dtab: |
    /svc/pong => /$/inet/127.1/{backend};
  servers:
  - port: {router}
    ip: 0.0.0.0
"""

HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    why = unavailable()
    if why:
        pytest.skip(why)
    base = ensure_base_image()
    tag = f"localhost/namerouter-test:{uuid.uuid4().hex[:8]}"
    # pip inside the build trusts the host's CA bundle (networks with a TLS proxy); the
    # files are mounted for the build only, nothing of them lands in the image.
    extra: list[str] = []
    if os.path.exists(HOST_CA):
        conf = tmp_path_factory.mktemp("pip") / "pip.conf"
        conf.write_text("[global]\ncert = /etc/ssl/host-ca.crt\n")
        extra = ["-v", f"{conf}:/etc/pip.conf:ro", "-v", f"{HOST_CA}:/etc/ssl/host-ca.crt:ro"]
    build_image(tag, base, extra)
    yield tag
    podman("rmi", "-f", tag, check=False)


async def _wait_http(url: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        code, out, _ = await curl("-s", "-f", url)
        if code == 0:
            return out
        assert time.monotonic() < deadline, f"{url} did not answer"
        await asyncio.sleep(0.2)


async def test_router_image_routes_with_the_seed_config(image, tmp_path):
    async with Backend("pong") as backend:
        router, admin = free_port(), free_port()
        cfg = tmp_path / "config.yaml"
        cfg.write_text(SEED.format(admin=admin, backend=backend.port, router=router))
        cfg.chmod(0o644)
        c = await Container(image, ["/config.yaml"], {str(cfg): "/config.yaml"}).start()
        try:
            assert await _wait_http(f"http://127.0.0.1:{admin}/admin/ping") == "pong"
            code, out, _ = await curl("-s", "-H", "Host: pong", f"http://127.0.0.1:{router}/pong")
            assert (code, out) == (0, "pong") and len(backend.requests) == 1
            assert backend.requests[0].header("l5d-dst-service") == "/svc/pong"
            code, out, _ = await curl("-s", "-x", f"http://127.0.0.1:{router}", "http://pong/pong")
            assert (code, out) == (0, "pong")
        finally:
            logs = await c.logs()
            status = await c.stop()
        assert status == 0, logs  # SIGTERM (podman stop) drains and exits cleanly


async def test_namerd_image_serves_dtabs_and_a_router_image_follows_it(image, tmp_path):
    async with Backend("pong") as backend:
        api, namerd_admin, router, admin = free_port(), free_port(), free_port(), free_port()
        namerd_cfg = tmp_path / "namerd.yaml"
        namerd_cfg.write_text(f"""\
admin: {{ip: 0.0.0.0, port: {namerd_admin}}}
storage:
  kind: io.l5d.inMemory
  namespaces:
    default: /svc/pong => /$/inet/127.1/{backend.port};
interfaces:
- {{kind: io.l5d.httpController, ip: 0.0.0.0, port: {api}}}
""")
        router_cfg = tmp_path / "config.yaml"
        router_cfg.write_text(f"""\
admin: {{ip: 0.0.0.0, port: {admin}}}
routers:
- protocol: http
  interpreter:
    kind: io.l5d.namerd.http
    experimental: true
    dst: /$/inet/127.0.0.1/{api}
    namespace: default
  servers: [{{port: {router}, ip: 0.0.0.0}}]
""")
        for f in (namerd_cfg, router_cfg):
            f.chmod(0o644)
        nd = await Container(image, ["namerd", "/namerd.yaml"], {str(namerd_cfg): "/namerd.yaml"}).start()
        rt = None
        try:
            assert json.loads(await _wait_http(f"http://127.0.0.1:{api}/api/1/dtabs")) == ["default"]
            rt = await Container(image, ["/config.yaml"], {str(router_cfg): "/config.yaml"}).start()
            await _wait_http(f"http://127.0.0.1:{admin}/admin/ping")
            code, out, _ = await curl("-s", "-H", "Host: pong", f"http://127.0.0.1:{router}/pong")
            assert (code, out) == (0, "pong") and len(backend.requests) == 1
        finally:
            statuses = []
            for c in (rt, nd):
                if c is not None:
                    logs = await c.logs()
                    statuses.append((await c.stop(), logs))
        for status, logs in statuses:
            assert status == 0, logs
