"""TLS handshakes in process, with a real CA: the acceptor over any protocol, failures
counted with short reasons on both sides, and certificate rotation without a restart
(new connections get the new certificate, open ones keep working, a broken file is
reported and the old certificate stays).

The servers run on uvloop as in production; clients are blocking ``ssl`` sockets in a
thread, as a peer in another process would be."""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import time
from typing import Optional

import pytest

from namerouter.metrics import MetricsRegistry
from namerouter.tls import ClientTlsConfig, ServerTlsConfig, TlsRegistry, describe
from namerouter.tls.context import client_context
from namerouter.tls.server import TlsServer
from tests.support.tls import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki")))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class TlsEcho:
    """An echo server behind a TlsServer (the way the admin, namerd and the data
    plane terminate TLS)."""

    def __init__(self, registry: TlsRegistry, cfg: ServerTlsConfig, name: str = "test/server") -> None:
        self.registry = registry
        self.source = registry.server(cfg, name, "servers[0].tls")
        self.failures = registry.handshake_failures(name)
        self.server = TlsServer(Echo, self.source, self.failures)

    async def __aenter__(self) -> "TlsEcho":
        await self.server.listen("127.0.0.1", 0)
        self.port = self.server.port
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()


class Conn:
    """A blocking TLS client connection, driven from a thread."""

    def __init__(self, port: int, ctx: ssl.SSLContext, name: Optional[str]) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=name)
        except BaseException:
            raw.close()
            raise
        self.file = self.sock.makefile("rb")

    def echo(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        line = self.file.readline()
        if not line:
            raise ConnectionResetError("closed by the server")
        return line

    @property
    def der(self) -> bytes:
        return self.sock.getpeercert(binary_form=True)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _talk(port: int, ctx: ssl.SSLContext, name: Optional[str]) -> tuple[bytes, bytes]:
    c = Conn(port, ctx, name)
    try:
        return c.echo(b"ping\n"), c.der
    finally:
        c.close()


async def talk(port: int, ctx: ssl.SSLContext, name: Optional[str]) -> tuple[bytes, bytes]:
    """Connect, echo a line, return (echo, server certificate DER)."""
    return await asyncio.to_thread(_talk, port, ctx, name)


def fingerprint(cert_path: str) -> bytes:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(cert_path).read().split("-----END CERTIFICATE-----")[0]
                                                   + "-----END CERTIFICATE-----\n")).digest()


async def wait_until(pred, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_mutual_tls_accepts_good_client_and_refuses_others_with_reasons(pki):
    srv = pki.issue("hs-server", "web", "127.0.0.1")
    good, foreign = pki.issue("hs-client", "router"), pki.issue("hs-foreign", "router", other_ca=True)
    reg = TlsRegistry(MetricsRegistry())
    cfg = ServerTlsConfig(certPath=srv.cert, keyPath=srv.key, caCertPath=pki.ca_pem, requireClientAuth=True)
    async with TlsEcho(reg, cfg) as s:
        cctx, _ = client_context(ClientTlsConfig(commonName="web", trustCertsBundle=pki.ca_pem,
                                                 clientAuth=_auth(good)))
        line, _ = await talk(s.port, cctx, "web")
        assert line == b"ping\n"
        # no client certificate
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await talk(s.port, pki.client_context(), "web")
        await wait_until(lambda: s.failures.count == 1, what="a counted failure")
        assert s.failures.last_reason == "no client certificate"
        # a client certificate from another CA
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await talk(s.port, pki.client_context(foreign), "web")
        await wait_until(lambda: s.failures.count == 2, what="a second counted failure")
        assert s.failures.last_reason.startswith("unknown CA"), s.failures.last_reason
        # plaintext on the TLS port
        def plaintext() -> bytes:
            with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
                raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                return raw.recv(100)

        assert await asyncio.to_thread(plaintext) == b""  # dropped
        await wait_until(lambda: s.failures.count == 3, what="a third counted failure")
        assert s.failures.last_reason == "peer sent plaintext HTTP to a TLS port"
        # the server keeps serving good clients
        assert (await talk(s.port, cctx, "web"))[0] == b"ping\n"
        assert reg.metrics.get("test/server/tls/handshake_failures").value == 3
    await reg.close()


def _auth(issued):
    from namerouter.tls import ClientAuthConfig

    return ClientAuthConfig(certPath=issued.cert, keyPath=issued.key)


@pytest.mark.parametrize("case,reason", [
    ("wrong-name", "name mismatch"),
    ("expired", "certificate expired"),
    ("unknown-ca", "unknown CA"),
])
async def test_client_side_validation_failures_have_short_reasons(pki, case, reason):
    issued = {
        "wrong-name": lambda: pki.issue("v-wrong", "other.example"),
        "expired": lambda: pki.issue("v-expired", "web", expired=True),
        "unknown-ca": lambda: pki.issue("v-foreign", "web", other_ca=True),
    }[case]()
    reg = TlsRegistry()
    async with TlsEcho(reg, ServerTlsConfig(certPath=issued.cert, keyPath=issued.key)) as s:
        cctx, _ = client_context(ClientTlsConfig(commonName="web", trustCertsBundle=pki.ca_pem))
        with pytest.raises(ssl.SSLError) as e:
            await talk(s.port, cctx, "web")
        text = describe(e.value)
        assert text.startswith(reason), text
        if case == "wrong-name":
            assert "'web'" in text
    await reg.close()


async def test_rotation_new_connections_get_new_cert_old_ones_untouched_broken_file_reported(pki, tmp_path):
    d = str(tmp_path / "certs")
    first = pki.issue("rot", "web", directory=d)
    reg = TlsRegistry(MetricsRegistry())
    cfg = ServerTlsConfig(certPath=first.cert, keyPath=first.key)
    cctx, _ = client_context(ClientTlsConfig(commonName="web", trustCertsBundle=pki.ca_pem))
    async with TlsEcho(reg, cfg) as s:
        # an open connection before the rotation
        conn = await asyncio.to_thread(Conn, s.port, cctx, "web")
        old_der = conn.der
        assert hashlib.sha256(old_der).digest() == fingerprint(first.cert)

        second = pki.issue("rot", "web", directory=d)  # same paths, new certificate and key
        new_fp = fingerprint(second.cert)
        assert new_fp != hashlib.sha256(old_der).digest()
        got: list[bytes] = []

        async def new_cert_served() -> bool:
            _, der = await talk(s.port, cctx, "web")
            got.append(hashlib.sha256(der).digest())
            return got[-1] == new_fp

        deadline = time.monotonic() + 10
        while not await new_cert_served():
            assert time.monotonic() < deadline, "the new certificate was not served within 10 s"
            await asyncio.sleep(0.05)
        assert s.source.reloads == 1 and s.source.error is None
        # the connection opened before the rotation still works, with the old certificate
        assert await asyncio.to_thread(conn.echo, b"still here\n") == b"still here\n"
        assert conn.der == old_der
        conn.close()

        # a broken key: reported (log, state, counter), the good certificate stays
        with open(second.key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
        await wait_until(lambda: s.source.error is not None, what="the reload error")
        assert "keyPath" in s.source.error and second.key in s.source.error
        assert reg.metrics.get("test/server/tls/reload_failures").value >= 1
        state = reg.state()["sources"]["test/server"]
        assert state["error"] == s.source.error and state["certificate"]["sha256"] == new_fp.hex()
        _, der = await talk(s.port, cctx, "web")
        assert hashlib.sha256(der).digest() == new_fp

        # fixed: the error clears and the fixed material is used
        third = pki.issue("rot", "web", directory=d)
        await wait_until(lambda: s.source.error is None and s.source.reloads == 2, what="recovery")
        _, der = await talk(s.port, cctx, "web")
        assert hashlib.sha256(der).digest() == fingerprint(third.cert)
    await reg.close()


async def test_client_material_rotates_too(pki, tmp_path):
    """A client certificate (clientAuth) rotated on disk is presented on the next
    connection; the server's view of it proves it."""
    d = str(tmp_path / "client-certs")
    srv = pki.issue("crot-server", "web")
    c1 = pki.issue("crot-client", "router-1", directory=d)
    reg = TlsRegistry()
    seen: list[str] = []

    class WhoAreYou(asyncio.Protocol):
        def connection_made(self, transport):
            cert = transport.get_extra_info("ssl_object").getpeercert()
            seen.append(dict(x[0] for x in cert["subject"])["commonName"])
            transport.write(b"ok\n")

    source = reg.server(ServerTlsConfig(certPath=srv.cert, keyPath=srv.key, caCertPath=pki.ca_pem,
                                        requireClientAuth=True), "s", "s")
    server = TlsServer(WhoAreYou, source)
    await server.listen("127.0.0.1", 0)
    port = server.port
    params = reg.client_params(ClientTlsConfig(commonName="web", trustCertsBundle=pki.ca_pem,
                                               clientAuth=_auth(c1)), {}, "rt/x/client/y", "c")

    def _connect() -> None:
        c = Conn(port, params.context, params.server_hostname)
        c.file.readline()
        c.close()

    async def connect() -> str:
        await asyncio.to_thread(_connect)
        return seen[-1]

    assert await connect() == "router-1"
    pki.issue("crot-client", "router-2", directory=d)
    deadline = time.monotonic() + 10
    while await connect() != "router-2":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    server.close()
    await reg.close()


async def test_watch_sees_kubernetes_style_symlink_swaps(pki, tmp_path):
    """A mounted Secret is updated by swapping the ``..data`` symlink; the file names
    never change. The directory watch still sees it."""
    base = tmp_path / "secret"
    v1 = base / "..v1"
    v1.mkdir(parents=True)
    a = pki.issue("k8s", "web", directory=str(v1))
    os.symlink("..v1", base / "..data")
    os.symlink("..data/k8s.pem", base / "tls.crt")
    os.symlink("..data/k8s-key.pem", base / "tls.key")
    reg = TlsRegistry()
    src = reg.server(ServerTlsConfig(certPath=str(base / "tls.crt"), keyPath=str(base / "tls.key")), "k", "k")
    assert src.cert.sha256 == fingerprint(a.cert).hex()
    v2 = base / "..v2"
    b = pki.issue("k8s", "web", directory=str(v2))
    os.symlink("..v2", base / "..data_tmp")
    os.replace(base / "..data_tmp", base / "..data")
    await wait_until(lambda: src.cert.sha256 == fingerprint(b.cert).hex(), what="the swapped certificate")
    await reg.close()


async def test_silent_clients_hold_at_most_max_pending_handshakes(pki):
    """The attack: connect and never send a ClientHello. At most ``max_pending`` such
    connections are taken at a time (the rest wait in the kernel's backlog), and when
    they give up the listener serves a real client again."""
    c = pki.issue("pending", "localhost")
    reg = TlsRegistry(MetricsRegistry())
    echo = TlsEcho(reg, ServerTlsConfig(certPath=c.cert, keyPath=c.key))
    echo.server.max_pending = 3
    async with echo:
        silent = [socket.create_connection(("127.0.0.1", echo.port)) for _ in range(10)]
        try:
            deadline = time.monotonic() + 5
            while len(echo.server._pending) < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # room to take more, if it would
            assert len(echo.server._pending) == 3
        finally:
            for s in silent:
                s.close()
        conn = await asyncio.to_thread(Conn, echo.port, pki.client_context(), "localhost")
        try:
            assert await asyncio.to_thread(conn.echo, b"still serving\n") == b"still serving\n"
        finally:
            conn.close()
        await reg.close()
