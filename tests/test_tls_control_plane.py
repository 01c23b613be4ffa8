"""The control plane over (mutual) TLS, end to end with real processes and real clients:

* namerd (``python -m namerd``) serving its API with ``requireClientAuth`` and its admin
  over TLS: curl and ``openssl s_client`` with a good client certificate get answers;
  without one, or with one from another CA, they are refused; the failures are counted
  and explained on ``/admin/tls.json``;
* a router (``python -m namerouter``) whose ``io.l5d.namerd.http`` interpreter talks to
  that namerd over mutual TLS routes a real request to a real backend, and its admin
  answers over TLS too;
* namerd's server certificate is rotated on disk while the router's watch is open: new
  connections get the new certificate, the router's watch keeps working (a dtab change
  made afterwards reaches it), and a new name (a new connection) binds fine;
* a router that expects the wrong name in namerd's certificate says so ("name mismatch").
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from typing import Optional

import pytest

from namerouter.config.validate import validate
from namerouter.dtab import Dtab, Path
from namerouter.interpreters.namerd_http import NamerdHttpConfig, NamerdHttpInterpreter
from namerouter.metrics import MetricsRegistry
from tests.support.backends import Backend
from tests.support.ports import free_port
from tests.support.tls import Issued, Pki

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def run(*argv: str, stdin: bytes = b"", timeout: float = 20) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def curl(*args: str) -> tuple[int, str, str]:
    return await run("curl", "-sS", "--max-time", "10", *args)


class Proc:
    """A real namerd / namerouter process with its log in the test's temp dir."""

    def __init__(self, module: str, config_text: str, workdir: str, name: str) -> None:
        self.config = os.path.join(workdir, f"{name}.yaml")
        self.log = os.path.join(workdir, f"{name}.log")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.module = module
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Proc":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module, self.config], cwd=ROOT,
                                         stdout=log, stderr=log)
        return self

    def output(self) -> str:
        return open(self.log).read()[-3000:]

    async def wait_ready(self, *curl_args: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited: {self.output()}")
            rc, _, _ = await curl("-f", *curl_args)
            if rc == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.module} not ready: {self.output()}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Mesh:
    """PKI + namerd with mutual TLS; the router is added by the tests that need it."""

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.pki = Pki(os.path.join(workdir, "pki"))
        self.certs = os.path.join(workdir, "namerd-certs")  # the directory that gets rotated
        self.namerd_cert = self.pki.issue("namerd", "namerd", "127.0.0.1", directory=self.certs)
        self.router_cert = self.pki.issue("router", "router")
        self.intruder = self.pki.issue("intruder", "router", other_ca=True)
        self.api_port, self.admin_port = free_port(), free_port()
        self.namerd: Optional[Proc] = None

    @property
    def api(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def client_args(self, cert: Optional[Issued] = None) -> list[str]:
        args = ["--cacert", self.pki.ca_pem]
        if cert is not None:
            args += ["--cert", cert.cert, "--key", cert.key]
        return args

    def namerd_config(self, backend_port: int) -> str:
        c = self.namerd_cert
        return (
            f"admin:\n  port: {self.admin_port}\n  tls:\n    certPath: {c.cert}\n    keyPath: {c.key}\n"
            "storage:\n  kind: io.l5d.inMemory\n  namespaces:\n"
            f"    default: /svc/web => /$/inet/127.0.0.1/{backend_port}; /svc/other => /svc/web\n"
            "interfaces:\n- kind: io.l5d.httpController\n"
            f"  port: {self.api_port}\n  tls:\n    certPath: {c.cert}\n    keyPath: {c.key}\n"
            f"    caCertPath: {self.pki.ca_pem}\n    requireClientAuth: true\n"
        )

    async def start_namerd(self, backend_port: int) -> None:
        self.namerd = Proc("namerd", self.namerd_config(backend_port), self.dir, "namerd").start()
        await self.namerd.wait_ready(*self.client_args(self.router_cert), self.api + "/api/1/dtabs")

    async def admin_json(self, path: str) -> dict:
        rc, out, err = await curl(*self.client_args(), f"https://127.0.0.1:{self.admin_port}{path}")
        assert rc == 0, err
        return json.loads(out)

    def stop(self) -> None:
        if self.namerd is not None:
            self.namerd.stop()


@pytest.fixture
async def mesh(tmp_path):
    m = Mesh(str(tmp_path))
    yield m
    m.stop()


async def test_namerd_mutual_tls_with_curl_and_openssl(mesh):
    await mesh.start_namerd(free_port())
    # a good client certificate
    rc, out, err = await curl(*mesh.client_args(mesh.router_cert), mesh.api + "/api/1/dtabs")
    assert rc == 0 and json.loads(out) == ["default"], err
    # no client certificate, and one from another CA: refused
    rc, out, _ = await curl(*mesh.client_args(), mesh.api + "/api/1/dtabs")
    assert rc != 0 and out == ""
    rc, out, _ = await curl(*mesh.client_args(mesh.intruder), mesh.api + "/api/1/dtabs")
    assert rc != 0 and out == ""
    # a client that does not trust namerd's CA gives up itself
    rc, _, err = await curl("--cert", mesh.router_cert.cert, "--key", mesh.router_cert.key,
                            mesh.api + "/api/1/dtabs")
    assert rc == 60 and "certificate" in err  # curl: peer certificate cannot be authenticated

    # openssl s_client: verified chain, namerd's certificate, an HTTP/1.0 exchange
    rc, out, err = await run(
        "openssl", "s_client", "-connect", f"127.0.0.1:{mesh.api_port}", "-servername", "namerd",
        "-CAfile", mesh.pki.ca_pem, "-cert", mesh.router_cert.cert, "-key", mesh.router_cert.key,
        "-verify_return_error", "-ign_eof",
        stdin=b"GET /api/1/dtabs HTTP/1.0\r\nHost: namerd\r\n\r\n")
    assert "Verify return code: 0 (ok)" in out, out + err
    assert "CN = namerd" in out and '["default"]' in out
    rc, out, err = await run(
        "openssl", "s_client", "-connect", f"127.0.0.1:{mesh.api_port}", "-servername", "namerd",
        "-CAfile", mesh.pki.ca_pem, "-ign_eof", stdin=b"GET /api/1/dtabs HTTP/1.0\r\n\r\n")
    assert '["default"]' not in out  # no client certificate: no answer

    # `namerd dtab` (our namerctl) with curl-style TLS options
    rc, out, err = await run(sys.executable, "-m", "namerd", "dtab", "list", "--namerd", mesh.api,
                             "--cacert", mesh.pki.ca_pem, "--cert", mesh.router_cert.cert,
                             "--key", mesh.router_cert.key)
    assert rc == 0 and out.split() == ["default"], out + err
    rc, out, err = await run(sys.executable, "-m", "namerd", "dtab", "list", "--namerd", mesh.api,
                             "--cacert", mesh.pki.ca_pem)
    assert rc != 0 and "cannot reach namerd" in err

    # the admin server over TLS (no client certificate required there)
    state = await mesh.admin_json("/admin/tls.json")
    iface = next(v for k, v in state["handshakes"].items() if k.startswith("namerd/interface/"))
    assert iface["handshakeFailures"] >= 3
    assert set(state["sources"]) >= {"admin", f"namerd/interface/127.0.0.1/{mesh.api_port}"}
    assert state["sources"]["admin"]["certificate"]["subject"].startswith("CN=namerd")
    metrics = await mesh.admin_json("/admin/metrics.json")
    assert metrics[f"namerd/interface/127.0.0.1/{mesh.api_port}/tls/handshake_failures"] >= 3
    rc, _, _ = await curl(f"http://127.0.0.1:{mesh.admin_port}/admin/ping")
    assert rc != 0  # plaintext to the TLS admin: refused


def _fingerprint_of(host: str, port: int, ctx: ssl.SSLContext) -> str:
    import socket

    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="namerd") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


async def test_router_routes_through_namerd_over_mutual_tls_and_survives_rotation(mesh):
    async with Backend(name="a") as a, Backend(name="b") as b:
        await mesh.start_namerd(a.port)
        router_port, router_admin = free_port(), free_port()
        rc = mesh.router_cert
        router = Proc("namerouter", (
            f"admin:\n  port: {router_admin}\n  tls:\n    certPath: {rc.cert}\n    keyPath: {rc.key}\n"
            "routers:\n- protocol: http\n  label: outgoing\n"
            "  interpreter:\n    kind: io.l5d.namerd.http\n    experimental: true\n"
            f"    dst: /$/inet/127.0.0.1/{mesh.api_port}\n    namespace: default\n"
            "    retry: {baseSeconds: 0.05, maxSeconds: 0.5}\n"
            f"    tls:\n      commonName: namerd\n      trustCertsBundle: {mesh.pki.ca_pem}\n"
            f"      clientAuth:\n        certPath: {rc.cert}\n        keyPath: {rc.key}\n"
            f"  servers:\n  - port: {router_port}\n"
        ), mesh.dir, "router").start()
        try:
            await router.wait_ready("--cacert", mesh.pki.ca_pem, "--resolve", f"router:{router_admin}:127.0.0.1",
                                    f"https://router:{router_admin}/admin/ping")

            async def backend_for(host: str) -> Optional[str]:
                code, out, _ = await curl("-o", "/dev/null", "-D", "-", "-H", f"Host: {host}",
                                          f"http://127.0.0.1:{router_port}/pong")
                for line in out.splitlines():
                    if line.lower().startswith("x-backend:"):
                        return line.split(":", 1)[1].strip()
                return None

            assert await backend_for("web") == "a"

            # rotate namerd's certificate (same files) while the router's watch is open
            ctx = mesh.pki.client_context(mesh.router_cert)
            before = await asyncio.to_thread(_fingerprint_of, "127.0.0.1", mesh.api_port, ctx)
            new = mesh.pki.issue("namerd", "namerd", "127.0.0.1", directory=mesh.certs)
            new_fp = hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(new.cert).read())).hexdigest()
            assert new_fp != before
            deadline = time.monotonic() + 15
            while await asyncio.to_thread(_fingerprint_of, "127.0.0.1", mesh.api_port, ctx) != new_fp:
                assert time.monotonic() < deadline, "namerd did not serve the rotated certificate"
                await asyncio.sleep(0.1)

            # the router's open watch still works: a dtab change made now reaches it
            code, _, err = await curl(*mesh.client_args(mesh.router_cert), "-X", "PUT",
                                      "-H", "Content-Type: application/dtab",
                                      "--data-binary", f"/svc/web => /$/inet/127.0.0.1/{b.port}; /svc/other => /svc/web",
                                      mesh.api + "/api/1/dtabs/default")
            assert code == 0, err
            deadline = time.monotonic() + 15
            while await backend_for("web") != "b":
                assert time.monotonic() < deadline, "the dtab change did not reach the router"
                await asyncio.sleep(0.1)
            # a name the router has not seen: a new stream, on a connection with the new certificate
            assert await backend_for("other") == "b"
            assert router.proc.poll() is None
            ns = await mesh.admin_json("/admin/tls.json")
            assert ns["sources"][f"namerd/interface/127.0.0.1/{mesh.api_port}"]["reloads"] >= 1
        finally:
            router.stop()


async def test_wrong_common_name_is_explained(mesh):
    await mesh.start_namerd(free_port())
    rc = mesh.router_cert
    cfg = validate(NamerdHttpConfig, {
        "kind": "io.l5d.namerd.http", "experimental": True, "dst": f"/$/inet/127.0.0.1/{mesh.api_port}",
        "retry": {"baseSeconds": 0.05, "maxSeconds": 0.2, "probeSeconds": 0.1},
        "tls": {"commonName": "not-namerd", "trustCertsBundle": mesh.pki.ca_pem,
                "clientAuth": {"certPath": rc.cert, "keyPath": rc.key}}}).config
    metrics = MetricsRegistry()
    interp = NamerdHttpInterpreter(cfg, metrics=metrics, scope="rt/x/interpreter/io.l5d.namerd.http")
    try:
        act = interp.bind(Dtab(), Path.read("/svc/web"))
        closer = act.observe(lambda _: None)
        deadline = time.monotonic() + 10
        while not (interp.client.last_error or "").count("name mismatch"):
            assert time.monotonic() < deadline, interp.admin_state()
            await asyncio.sleep(0.05)
        state = interp.admin_state()["namerd"]
        assert "TLS handshake failed (expected name not-namerd): name mismatch" in state["lastError"]
        assert state["tls"]["handshakeFailures"] >= 1
        assert metrics.get("rt/x/interpreter/io.l5d.namerd.http/tls/handshake_failures").value >= 1
        closer.close()
    finally:
        await interp.close()


def _readme_block(marker: str) -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    after = text[text.index(f"<!-- {marker}"):]
    start = after.index("```") + after[after.index("```"):].index("\n") + 1
    return after[start:after.index("```", start)]


async def test_readme_tls_walkthrough(tmp_path):
    """The README's TLS section as a user runs it: its openssl commands make the CA and
    certificates, its namerd and router configs (ports moved to free ones) run, a request
    is routed through namerd's dtab, and namerd refuses a client without a certificate."""
    d = str(tmp_path)
    code, out, err = await run("bash", "-ec", f"cd {d}\n" + _readme_block("tls-pki"))
    assert code == 0, out + err
    async with Backend(name="readme") as backend:
        api, nadmin, radmin, rport = free_port(), free_port(), free_port(), free_port()
        ncfg = (_readme_block("tls-namerd").replace("port: 4180", f"port: {api}")
                .replace("port: 9991", f"port: {nadmin}").replace("127.0.0.1/8080", f"127.0.0.1/{backend.port}"))
        rcfg = (_readme_block("tls-router").replace("port: 9990", f"port: {radmin}")
                .replace("127.0.0.1/4180", f"127.0.0.1/{api}").replace("port: 4140", f"port: {rport}"))
        ncfg = ncfg.replace("certs/", f"{d}/certs/")
        rcfg = rcfg.replace("certs/", f"{d}/certs/")
        namerd = Proc("namerd", ncfg, d, "namerd").start()
        router = Proc("namerouter", rcfg, d, "router").start()
        ca = f"{d}/certs/ca.pem"
        try:
            await namerd.wait_ready("--cacert", ca, "--cert", f"{d}/certs/router.pem", "--key",
                                    f"{d}/certs/router-key.pem", f"https://127.0.0.1:{api}/api/1/dtabs")
            await router.wait_ready("--cacert", ca, f"https://127.0.0.1:{radmin}/admin/ping")
            code, out, err = await curl("-H", "Host: web", "-D", "-", f"http://127.0.0.1:{rport}/pong")
            assert code == 0 and "x-backend: readme" in out.lower(), out + err
            code, out, _ = await curl("--cacert", ca, f"https://127.0.0.1:{api}/api/1/dtabs")
            assert code != 0 and out == ""
            code, out, err = await curl("--cacert", ca, f"https://127.0.0.1:{nadmin}/admin/tls.json")
            assert code == 0 and json.loads(out)["handshakes"], out + err
        finally:
            router.stop()
            namerd.stop()
