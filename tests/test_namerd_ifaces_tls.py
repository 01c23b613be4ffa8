"""TLS on namerd's io.l5d.mesh and io.l5d.thriftNameInterpreter interfaces and in the
io.l5d.mesh / io.l5d.namerd interpreters (namerouter/tls): a real namerd process with
certificates from a test CA, mutual TLS on the mesh interface (ALPN h2, as Linkerd's
namerd), server TLS on the thrift one (Linkerd's io.l5d.namerd ``tls`` block has no
client certificate), and a client that trusts the wrong CA told why it cannot connect."""
from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from namerouter import plugins
from namerouter.config.validate import config_class_of, validate
from namerouter.dtab import Dtab, Path
from namerouter.linker import Runtime
from namerouter.metrics import MetricsRegistry
from namerouter.naming import AddrBound, Ok
from tests.support.namerd_proc import NamerdProcess, write_fs
from tests.support.tls import Pki


@pytest.fixture(scope="module")
def tls_namerd(tmp_path_factory):
    work = tmp_path_factory.mktemp("namerd-tls")
    pki = Pki(str(work / "pki"))
    server = pki.issue("namerd", "namerd")
    router = pki.issue("router", "router")
    disco = work / "disco"
    disco.mkdir()
    write_fs(str(disco), "web", ("127.0.0.1", 8081))
    n = NamerdProcess(str(work), str(disco))
    # Re-write the interfaces: mesh with mutual TLS, thrift with server TLS.
    text = open(n.config_path).read()
    text = text.replace(f"- {{kind: io.l5d.mesh, port: {n.mesh}}}\n",
                        f"- kind: io.l5d.mesh\n  port: {n.mesh}\n  tls:\n    certPath: {server.cert}\n"
                        f"    keyPath: {server.key}\n    caCertPath: {pki.ca_pem}\n    requireClientAuth: true\n")
    text = text.replace(f"- {{kind: io.l5d.thriftNameInterpreter, port: {n.thrift}}}\n",
                        f"- kind: io.l5d.thriftNameInterpreter\n  port: {n.thrift}\n  tls:\n"
                        f"    certPath: {server.cert}\n    keyPath: {server.key}\n")
    open(n.config_path, "w").write(text)
    try:
        n.start_sync()
        n.put_dtab_sync("/svc=>/#/io.l5d.fs")
        yield n, pki, router
    finally:
        n.kill_sync()


def interp(kind: str, dst: str, tls: dict, metrics: MetricsRegistry):
    cls = plugins.load(plugins.INTERPRETERS, kind)
    raw = {"kind": kind, "dst": dst, "tls": tls, "retry": {"baseSeconds": 0.2, "maxSeconds": 1}}
    return cls.from_config(validate(config_class_of(cls), raw).config, Runtime(metrics, router_label="r"))


@pytest.mark.parametrize("kind", ["io.l5d.mesh", "io.l5d.namerd"])
async def test_interpreters_bind_over_tls(tls_namerd, kind):
    n, pki, router = tls_namerd
    if kind == "io.l5d.mesh":
        tls = {"commonName": "namerd", "trustCertsBundle": pki.ca_pem,
               "clientAuth": {"certPath": router.cert, "keyPath": router.key}}
    else:
        tls = {"commonName": "namerd", "caCert": pki.ca_pem}
    i = interp(kind, n.dst(kind), tls, MetricsRegistry())
    try:
        st = await i.bind(Dtab(), Path.of("svc", "web")).states.wait_for(lambda s: isinstance(s, Ok), 10)
        addr = await st.value.value.addr.wait_for(lambda a: isinstance(a, AddrBound), 10)
        assert [(a.host, a.port) for a in addr.addrs] == [("127.0.0.1", 8081)]
        assert i.admin_state()["namerd"]["tls"]["serverName"] == "namerd"
    finally:
        await i.close()


@pytest.mark.parametrize("kind", ["io.l5d.mesh", "io.l5d.namerd"])
async def test_a_client_trusting_another_ca_is_told_why(tls_namerd, kind):
    n, pki, router = tls_namerd
    tls = {"commonName": "namerd", "trustCertsBundle": pki.other_ca_pem} if kind == "io.l5d.mesh" \
        else {"commonName": "namerd", "caCert": pki.other_ca_pem}
    metrics = MetricsRegistry()
    i = interp(kind, n.dst(kind), tls, metrics)
    try:
        act = i.bind(Dtab(), Path.of("svc", "web"))
        obs = act.states.observe(lambda s: None)
        for _ in range(200):
            err = i.admin_state()["namerd"]["lastError"] or ""
            if "TLS handshake failed" in err:
                break
            await asyncio.sleep(0.05)
        assert "TLS handshake failed (expected name namerd)" in err, err
        assert metrics.get(f"rt/r/interpreter/{kind}/tls/handshake_failures").value >= 1
        assert act.sample() is not None and not isinstance(act.states.sample(), Ok)
        obs.close()
    finally:
        await i.close()


async def test_mesh_interface_offers_h2_and_requires_a_client_certificate(tls_namerd):
    n, pki, router = tls_namerd

    def handshake(client_cert: bool) -> tuple[str, bytes]:
        """(ALPN protocol, the first bytes namerd sends after the HTTP/2 preface)."""
        ctx = pki.client_context(router if client_cert else None)
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", n.mesh), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="namerd") as s:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                try:
                    data = s.recv(9)
                except (ssl.SSLError, ConnectionError, OSError):
                    data = b""
                return s.selected_alpn_protocol() or "", data

    alpn, data = await asyncio.to_thread(handshake, True)
    assert alpn == "h2" and len(data) == 9 and data[3] == 0x04  # a SETTINGS frame: HTTP/2 served
    try:
        _, data = await asyncio.to_thread(handshake, False)
    except (ssl.SSLError, ConnectionError, OSError):
        data = b""
    assert data == b""  # without a client certificate nothing is served
