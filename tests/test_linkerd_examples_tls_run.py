"""Linkerd 1.7's TLS example configs running, not just checked: each one (the verbatim copy
in tests/linkerd_examples/linkerd/) starts as ``python -m namerouter`` in a directory laid
out like the Linkerd repository, with its certificate paths pointed at files from a CA
made here, its ports moved to free ones (an admin port added where the example has
none) and the backends it names replaced by real ones on this machine; then curl sends
traffic through it:

* ``tls.yaml``: curl → TLS server (with the intermediate chain) → TLS to the backend
  named ``{service}`` by the client prefix;
* ``mutualTls.yaml``: the server wants a client certificate (curl with one: 200; without:
  refused) and the router presents its own to a backend that requires one;
* ``disable-tls.yaml``: ``/$/inet/{service}`` over TLS (``www.google.com:443`` → a local
  TLS backend at 127.0.0.1, so ``{service}`` is an IP name), ``/$/inet/localhost`` with
  ``enabled: false`` in plaintext;
* ``admin-tls.yaml``: the admin server over TLS;
* ``serversets.yaml``: the ``https`` endpoint of the ZooKeeper serverset ``…/www/example``
  (``example:https``) → TLS with the name ``www.example.com`` built from
  ``{role}.{service}.com``; the router announces itself;
* ``proxy.yaml``: ``Host: localhost:<port>`` → ``/$/io.buoyant.rinet/<port>/localhost``,
  TLS when the port is the one of the ``rinet/443/{hostname}`` prefix (443 → the local TLS
  backend's port), plaintext otherwise.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from typing import Optional

import pytest
from kazoo.client import KazooClient

from namerouter.zk.serverset_format import member_json
from tests.support.backends import Backend, curl
from tests.support.ports import free_port
from tests.support.tls import Issued, Pki

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "linkerd_examples", "linkerd")


def backend_ctx(issued: Issued, client_ca: Optional[str] = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issued.cert, issued.key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


class Repo:
    """A directory laid out like the Linkerd repository, with the certificate files the
    TLS examples name (one CA; server certificates name ``localhost``)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.pki = Pki(os.path.join(root, "pki"))
        self.ca = self.pki.ca_pem
        server = self.pki.issue("server", "localhost", "127.0.0.1")
        client = self.pki.issue("linkerd-client", "linkerd")
        files = {
            "foo/cert.pem": server.cert, "foo/key.pem": server.key,
            "foo/clientCert.pem": client.cert, "foo/clientKey.pem": client.key,
            "finagle/h2/src/e2e/resources/linkerd-tls-e2e-cert.pem": server.cert,
            "finagle/h2/src/e2e/resources/linkerd-tls-e2e-key.pem": server.key,
        }
        for ca in ("foo/caCert.pem", "foo/cacert.pem", "foo/ca-chain.pem", "foo/intermediateCa.pem",
                   "finagle/h2/src/e2e/resources/cacert.pem"):
            files[ca] = self.ca
        for dst, src in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, dst)), exist_ok=True)
            shutil.copy(src, os.path.join(root, dst))
        self.fs = os.path.join(root, "linkerd", "examples", "io.l5d.fs")
        os.makedirs(self.fs, exist_ok=True)

    def config(self, name: str, *replace: tuple[str, str]) -> tuple[str, int]:
        """The example's text with ``/foo/`` under this directory, ``replace`` applied,
        and an admin server on a free port; returns (text, admin port)."""
        with open(os.path.join(EXAMPLES, name)) as f:
            text = f.read()
        text = text.replace("/foo/", os.path.join(self.root, "foo") + "/")
        for a, b in replace:
            assert a in text, (name, a)
            text = text.replace(a, b)
        admin = free_port()
        if re.search(r"^admin:", text, re.M):
            text = re.sub(r"(^admin:\n(?:  .*\n)*?  port: )9990", rf"\g<1>{admin}", text, flags=re.M)
        else:
            text = f"admin:\n  port: {admin}\n" + text
        return text, admin


class Router:
    """``python -m namerouter <config>`` run from the repository directory."""

    def __init__(self, repo: Repo, name: str, text: str, admin: int, admin_scheme: str = "http",
                 system_ca: bool = False) -> None:
        self.path = os.path.join(repo.root, f"run-{name}")
        with open(self.path, "w") as f:
            f.write(text)
        self.log = self.path + ".log"
        self.repo = repo
        self.admin = f"{admin_scheme}://localhost:{admin}"
        self.proc: Optional[subprocess.Popen] = None
        #: the example trusts the system's CAs (no trustCerts): make ours the process's default
        self.env = {**os.environ, "SSL_CERT_FILE": repo.ca} if system_ca else None

    async def __aenter__(self) -> "Router":
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "namerouter", self.path], cwd=self.repo.root,
                                         stdout=log, stderr=log, env=self.env)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"namerouter exited: {open(self.log).read()[-3000:]}")
            rc, _, _ = await curl("-f", "--cacert", self.repo.ca, f"{self.admin}/admin/ping")
            if rc == 0:
                return self
            assert time.monotonic() < deadline, open(self.log).read()[-3000:]
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def metrics(self) -> dict:
        rc, out, err = await curl("--cacert", self.repo.ca, f"{self.admin}/admin/metrics.json")
        assert rc == 0, err
        return json.loads(out)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    return Repo(str(tmp_path_factory.mktemp("linkerd-repo")))


async def routed(*args: str) -> tuple[int, str]:
    """curl with the response head; (status, body)."""
    rc, out, err = await curl("-D", "-", *args)
    assert rc == 0, err
    head, _, body = out.partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_tls_yaml(repo):
    web = repo.pki.issue("web-backend", "web")
    port = free_port()
    async with Backend("web", ssl=backend_ctx(web)) as b:
        with open(os.path.join(repo.fs, "web"), "w") as f:
            f.write(f"127.0.0.1 {b.port}\n")
        text, admin = repo.config("tls.yaml", ("port: 4140", f"port: {port}"))
        async with Router(repo, "tls", text, admin):
            status, body = await routed("--cacert", repo.ca, "-H", "Host: web", f"https://localhost:{port}/pong")
            assert (status, body) == (200, "pong")
            # the chain from intermediateCertsPath is sent after the certificate
            p = await asyncio.create_subprocess_exec("openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                                     "-showcerts", stdin=asyncio.subprocess.DEVNULL,
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out = (await asyncio.wait_for(p.communicate(), 20))[0].decode()
            assert out.count("BEGIN CERTIFICATE") == 2, out  # the leaf, then ca-chain.pem
            assert len(b.requests) == 1


async def test_mutual_tls_yaml(repo):
    foo = repo.pki.issue("foo-backend", "foo")
    caller = repo.pki.issue("caller", "caller")
    port = free_port()
    async with Backend("foo", ssl=backend_ctx(foo, client_ca=repo.ca)) as b:
        with open(os.path.join(repo.fs, "foo"), "w") as f:
            f.write(f"127.0.0.1 {b.port}\n")
        text, admin = repo.config("mutualTls.yaml", ("port: 4140", f"port: {port}"))
        async with Router(repo, "mtls", text, admin) as r:
            url = f"https://localhost:{port}/pong"
            status, body = await routed("--cacert", repo.ca, "--cert", caller.cert, "--key", caller.key,
                                        "-H", "Host: foo", url)
            assert (status, body) == (200, "pong")  # and the router presented clientCert.pem to foo
            rc, out, _ = await curl("--cacert", repo.ca, "-H", "Host: foo", url)
            assert rc != 0 and out == ""
            m = await r.metrics()
            assert m[f"rt/http/server/127.0.0.1/{port}/tls/handshake_failures"] == 1


async def test_disable_tls_yaml(repo):
    ip_cert = repo.pki.issue("ip-backend", "127.0.0.1")
    port = free_port()
    async with Backend("foo", ssl=backend_ctx(ip_cert)) as tb, Backend("bar") as pb:
        text, admin = repo.config("disable-tls.yaml", ("port: 4140", f"port: {port}"),
                                  ("www.google.com/443", f"127.0.0.1/{tb.port}"),
                                  ("localhost/7777", f"localhost/{pb.port}"))
        # "{service}" = 127.0.0.1 is checked against the system's CAs (the example names no
        # trustCerts): the router process gets ours as its default bundle
        async with Router(repo, "disable", text, admin, system_ca=True):
            for host, name in (("foo", "foo"), ("bar", "bar")):
                rc, out, err = await curl("-D", "-", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/pong")
                assert out.startswith("HTTP/1.1 200") and f"X-Backend: {name}" in out, out + err


async def test_admin_tls_yaml(repo):
    port = free_port()
    text, admin = repo.config("admin-tls.yaml", ("port: 4140", f"port: {port}"), ("ip: 0.0.0.0", "ip: 127.0.0.1"))
    from namerouter.proxy.router import HttpRouter

    if getattr(HttpRouter, "traces_requests", False) is not True:
        # recentRequests needs the tracing hooks in the data plane (issue 14); until they
        # are wired a config with it is refused, so run the TLS part without it
        text = re.sub(r"telemetry:\n(- .*\n(  .*\n)*)", "", text)
    async with Router(repo, "admin", text, admin, admin_scheme="https"):
        rc, out, err = await curl("--cacert", repo.ca, f"https://localhost:{admin}/admin/tls.json")
        assert rc == 0, err
        assert "admin" in json.loads(out)["sources"]
        rc, out, _ = await curl(f"http://127.0.0.1:{admin}/admin/ping")
        assert rc != 0  # plaintext is not served on the admin port


async def test_serversets_yaml(repo, zk_server):
    cert = repo.pki.issue("www-example", "www.example.com")
    base = f"discovery-{uuid.uuid4().hex[:6]}/prod"
    port = free_port()
    kz = KazooClient(zk_server.hosts, timeout=15)
    await asyncio.to_thread(kz.start, 30)
    try:
        async with Backend("www", ssl=backend_ctx(cert)) as b:
            # ``example:https``: the serverset /…/www/example, its additional endpoint "https"
            member = member_json("127.0.0.1", free_port(), endpoints={"https": ("127.0.0.1", b.port)})
            await asyncio.to_thread(kz.create, f"/{base}/www/example/member_", member,
                                    ephemeral=True, sequence=True, makepath=True)
            text, admin = repo.config("serversets.yaml", ("port: 2181", f"port: {zk_server.port}"),
                                      ("discovery/prod", base), ("port: 4140", f"port: {port}"),
                                      ("ip: 0.0.0.0", "ip: 127.0.0.1"))
            async with Router(repo, "serversets", text, admin, system_ca=True):
                status, body = await routed("-H", "Host: www", "-H", "l5d-dtab: /svc/www => /host/www.example.com",
                                            f"http://127.0.0.1:{port}/pong")
                assert (status, body) == (200, "pong"), body
                # the router announced its server under pathPrefix + /foobar
                children = await asyncio.to_thread(kz.get_children, f"/{base}/foobar")
                assert children
    finally:
        await asyncio.to_thread(kz.stop)
        kz.close()


async def test_proxy_yaml(repo):
    cert = repo.pki.issue("localhost-backend", "localhost")
    port = free_port()
    async with Backend("tls", ssl=backend_ctx(cert)) as tb, Backend("plain") as pb:
        text, admin = repo.config("proxy.yaml", ("port: 4140", f"port: {port}"),
                                  ("rinet/443/", f"rinet/{tb.port}/"))
        async with Router(repo, "proxy", text, admin, system_ca=True):
            for b in (tb, pb):
                rc, out, err = await curl("-D", "-", "-H", f"Host: localhost:{b.port}", f"http://127.0.0.1:{port}/")
                assert out.startswith("HTTP/1.1 200") and f"X-Backend: {b.name}" in out, out + err
