"""The README's router-to-router mesh over mutual TLS, as a user runs it: its openssl
commands make the CA and each host's certificate, and its ``mesh.yaml`` runs as two real
router processes — host A and host B on one machine (ports moved to free ones, host B's
file naming host B's certificate). curl → A's outgoing router (plaintext) → B's incoming
router (mutual TLS, ``{service}.mesh`` checked) → the app (plaintext), which sees A's
certificate in ``x-forwarded-client-cert``. A service B's certificate does not name gets
A's 502 explaining the name mismatch; a client without a certificate is refused by B.
"""
from __future__ import annotations

import asyncio
import json
import os
import time

from tests.support.backends import Backend, curl
from tests.support.ports import free_port
from tests.test_tls_control_plane import Proc, _readme_block, run


def host_config(text: str, host: str, ports: dict[str, int], d: str) -> str:
    """``mesh.yaml`` for one host of the test: its own ports and certificate, its outgoing
    router pointed at the peer's incoming port."""
    text = text.replace("host-a", host).replace("certs/", f"{d}/certs/").replace("rootDir: disco",
                                                                                 f"rootDir: {d}/disco")
    text = text.replace("  - port: 4141\n    ip: 0.0.0.0", f"  - port: {ports[host + '-in']}\n    ip: 127.0.0.1")
    peer = "host-b" if host == "host-a" else "host-a"
    return (text.replace("4141", str(ports[peer + "-in"])).replace("port: 4140", f"port: {ports[host + '-out']}")
            .replace("port: 9990", f"port: {ports[host + '-admin']}"))


async def test_readme_mesh_two_routers_mutual_tls(tmp_path):
    d = str(tmp_path)
    code, out, err = await run("bash", "-ec", f"cd {d}\n" + _readme_block("tls-pki") + _readme_block("tls-mesh-certs"))
    assert code == 0, out + err
    mesh = _readme_block("tls-mesh-yaml")
    ports = {f"{h}-{k}": free_port() for h in ("host-a", "host-b") for k in ("in", "out", "admin")}
    async with Backend(name="web-on-b") as web:
        os.makedirs(f"{d}/disco")
        for svc in ("web", "books"):  # both run on "host B" (this machine); B's certificate names web only
            with open(f"{d}/disco/{svc}", "w") as f:
                f.write(f"127.0.0.1 {web.port}\n")
        a = Proc("namerouter", host_config(mesh, "host-a", ports, d), d, "host-a").start()
        b = Proc("namerouter", host_config(mesh, "host-b", ports, d), d, "host-b").start()
        try:
            for p, name in ((a, "host-a"), (b, "host-b")):
                await p.wait_ready(f"http://127.0.0.1:{ports[name + '-admin']}/admin/ping")
            code, out, err = await curl("-H", "Host: web", f"http://127.0.0.1:{ports['host-a-out']}/echo")
            assert code == 0, out + err
            req = json.loads(out)
            headers = {k.lower(): v for k, v in req["headers"]}
            assert req["backend"] == "web-on-b"
            assert headers["l5d-dst-service"] == "/svc/web"  # B's incoming router routed it by name
            assert "DNS=books.mesh" in headers["x-forwarded-client-cert"]
            assert 'Subject="CN=host-a"' in headers["x-forwarded-client-cert"]
            # books runs on B too, but B's certificate does not name books.mesh
            code, out, err = await curl("-D", "-", "-H", "Host: books", f"http://127.0.0.1:{ports['host-a-out']}/")
            assert out.startswith("HTTP/1.1 502"), out
            body = out.partition("\r\n\r\n")[2]
            assert body.startswith(f"TLS handshake failed for /svc/books: address 127.0.0.1:{ports['host-b-in']} "
                                   f"(bound name /%/io.l5d.port/{ports['host-b-in']}/#/io.l5d.fs/books): "
                                   "name mismatch"), body
            # B refuses a client without a certificate, and keeps serving A
            code, out, err = await curl("--cacert", f"{d}/certs/ca.pem", "--resolve",
                                        f"web.mesh:{ports['host-b-in']}:127.0.0.1", "-H", "Host: web",
                                        f"https://web.mesh:{ports['host-b-in']}/echo")
            assert code != 0 and out == ""
            code, out, err = await curl("-H", "Host: web", f"http://127.0.0.1:{ports['host-a-out']}/echo")
            assert code == 0 and json.loads(out)["backend"] == "web-on-b", out + err
            metrics_b = await _metrics(ports["host-b-admin"])
            assert metrics_b[f"rt/incoming/server/127.0.0.1/{ports['host-b-in']}/tls/handshake_failures"] == 1
            metrics_a = await _metrics(ports["host-a-admin"])
            assert metrics_a[f"rt/outgoing/client/%/io.l5d.port/{ports['host-b-in']}/#/io.l5d.fs/books"
                             "/tls/handshake_failures"] == 1
            assert len(web.requests) == 2
        finally:
            a.stop()
            b.stop()


async def _metrics(admin: int) -> dict:
    deadline = time.monotonic() + 10
    while True:
        code, out, _ = await curl(f"http://127.0.0.1:{admin}/admin/metrics.json")
        if code == 0:
            return json.loads(out)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
