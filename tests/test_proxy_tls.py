"""TLS in the data plane, end to end: a real router (the linker, from YAML) with a CA made
here, curl and ``openssl s_client`` as clients, real HTTP(S) backends.

* servers: TLS next to plaintext on one router; curl and s_client (ALPN ``http/1.1``);
  plaintext sent to the TLS port is refused and counted; mutual TLS accepted with a good
  client certificate and refused without one or with one from another CA while the
  router keeps serving; ``x-forwarded-client-cert`` (server key and Linkerd's client key;
  a client's own header is always stripped);
* clients: commonName from the prefix's captures, sent as SNI; ``enabled: false`` under a
  more specific prefix; ``disableValidation``, ``trustCerts``, ``clientAuth``,
  ``protocols``; validation failures (wrong name, expired, unknown CA) answered 502 with
  the bound name, the address and the reason, and counted per client; TLS and plaintext
  connections to one address never share a pool;
* rotation of the server certificate under traffic: no request lost, new connections
  get the new certificate, an open connection keeps the old one, a broken file is
  reported and the last good certificate stays.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

import aiohttp
import pytest

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from namerouter.proxy.transport import Connector, UpstreamKey
from namerouter.tls.peer import PeerCert
from tests.support.backends import Backend, RawClient, curl, get
from tests.support.ports import free_port
from tests.support.tls import Issued, Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(str(tmp_path_factory.mktemp("pki")))


def backend_ctx(issued: Issued, client_ca: Optional[str] = None, tls13_only: bool = False,
                sni: Optional[list] = None) -> ssl.SSLContext:
    """A backend's server context; ``sni`` collects the server names clients sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issued.cert, issued.key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    if tls13_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if sni is not None:
        ctx.sni_callback = lambda obj, name, c: sni.append(name)  # type: ignore[assignment,misc]
    return ctx


@asynccontextmanager
async def linker(yaml_text: str) -> AsyncIterator[Linker]:
    """The real linker (admin server on a free port) from a config text."""
    lk = Linker(loads_linker(f"admin: {{ip: 127.0.0.1, port: {free_port()}}}\n" + yaml_text))
    await lk.start()
    try:
        yield lk
    finally:
        await lk.close(0)


def metric(lk: Linker, name: str):
    m = lk.metrics.get(name)
    return None if m is None else m.value


def web_router(label: str, web: Backend, *servers: str) -> str:
    """A router ``label`` sending ``/svc/web`` to ``web``, with these ``servers`` entries (flow YAML)."""
    entries = "".join(f"  - {s}\n" for s in servers)
    return (f"routers:\n- protocol: http\n  label: {label}\n  dtab: /svc/web => /$/inet/127.1/{web.port}\n"
            f"  servers:\n{entries}")


def server_tls(c: Issued, **extra: object) -> str:
    keys = {"certPath": c.cert, "keyPath": c.key, **extra}
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in keys.items()) + "}"


def _der(issued: Issued) -> bytes:
    """The DER of the leaf (the first certificate of the chain file)."""
    pem = open(issued.cert).read()
    return ssl.PEM_cert_to_DER_cert(pem[:pem.index("-----END CERTIFICATE-----") + 25])


def _sha(issued: Issued) -> str:
    return hashlib.sha256(_der(issued)).hexdigest()


async def openssl(*args: str, stdin: bytes = b"") -> tuple[int, str]:
    p = await asyncio.create_subprocess_exec("openssl", *args, stdin=asyncio.subprocess.PIPE,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(p.communicate(stdin), 20)
    return p.returncode or 0, out.decode("utf-8", "replace")


@asynccontextmanager
async def s_server(issued: Issued, *args: str) -> AsyncIterator[int]:
    """``openssl s_server`` (it answers with proper TLS alerts) on a free port."""
    port = free_port()
    p = await asyncio.create_subprocess_exec("openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                                             issued.cert, "-key", issued.key, "-www", *args,
                                             stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "openssl s_server did not start"
                await asyncio.sleep(0.05)
        yield port
    finally:
        p.terminate()
        await p.wait()


# --- servers --------------------------------------------------------------------------------

async def test_tls_and_plaintext_servers_of_one_router(pki):
    """curl and openssl s_client over TLS, curl over plaintext on the other port; plaintext
    HTTP sent to the TLS port is refused, counted, and the router carries on."""
    cert = pki.issue("edge", "localhost", "127.0.0.1")
    plain, tls = free_port(), free_port()
    web = Backend("web")
    async with web, linker(web_router("edge", web, f"{{ip: 127.0.0.1, port: {plain}}}",
                                      f"{{ip: 127.0.0.1, port: {tls}, tls: {server_tls(cert)}}}")) as lk:
        rc, out, err = await curl("--cacert", pki.ca_pem, "-H", "Host: web", f"https://localhost:{tls}/pong")
        assert (rc, out) == (0, "pong"), err
        rc, out, err = await curl("-H", "Host: web", f"http://127.0.0.1:{plain}/pong")
        assert (rc, out) == (0, "pong"), err
        rc, out = await openssl("s_client", "-connect", f"127.0.0.1:{tls}", "-servername", "localhost",
                                "-CAfile", pki.ca_pem, "-alpn", "h2,http/1.1", "-ign_eof",
                                stdin=b"GET /pong HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        assert "ALPN protocol: http/1.1" in out and "Verify return code: 0 (ok)" in out, out
        assert "HTTP/1.1 200" in out and "pong" in out, out
        # plaintext HTTP to the TLS port: refused and counted, with the reason
        async with RawClient(tls) as c:
            await c.send(get("/pong", host="web"))
            assert await c.closed_by_peer()
        scope = f"rt/edge/server/127.0.0.1/{tls}"
        assert metric(lk, f"{scope}/tls/handshake_failures") == 1
        assert lk.tls.state()["handshakes"][scope]["lastFailure"] == "peer sent plaintext HTTP to a TLS port"
        assert metric(lk, f"rt/edge/server/127.0.0.1/{plain}/tls/handshake_failures") is None
        assert lk.tls.state()["sources"][scope]["certificate"]["subject"].startswith("CN=localhost")
        rc, out, err = await curl("--cacert", pki.ca_pem, "-H", "Host: web", f"https://localhost:{tls}/pong")
        assert (rc, out) == (0, "pong"), err
        assert metric(lk, f"{scope}/requests") == 3


async def test_server_protocols_ciphers_and_enabled_false(pki):
    """``protocols`` and ``ciphers`` narrow what a server accepts (openssl s_client with
    each version); ``enabled: false`` serves plaintext."""
    cert = pki.issue("narrow", "localhost")
    narrow, off = free_port(), free_port()
    tls = server_tls(cert, protocols=["TLSv1.2"], ciphers=["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"])
    web = Backend("web")
    async with web, linker(web_router("n", web, f"{{ip: 127.0.0.1, port: {narrow}, tls: {tls}}}",
                                      f"{{ip: 127.0.0.1, port: {off}, tls: {server_tls(cert, enabled=False)}}}")):
        request = b"GET /pong HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
        rc, out = await openssl("s_client", "-connect", f"127.0.0.1:{narrow}", "-tls1_2", "-ign_eof", stdin=request)
        assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in out and "HTTP/1.1 200" in out, out
        rc, out = await openssl("s_client", "-connect", f"127.0.0.1:{narrow}", "-tls1_3", "-ign_eof", stdin=request)
        assert rc != 0 and "HTTP/1.1 200" not in out, out
        rc, out, err = await curl("-H", "Host: web", f"http://127.0.0.1:{off}/pong")
        assert (rc, out) == (0, "pong"), err


async def test_mutual_tls_good_none_and_foreign_client_certificates(pki):
    cert = pki.issue("mtls", "localhost")
    good = pki.issue("caller", "caller.example")
    foreign = pki.issue("stranger", "caller.example", other_ca=True)
    port = free_port()
    tls = server_tls(cert, caCertPath=pki.ca_pem, requireClientAuth=True)
    web = Backend("web")
    async with web, linker(web_router("in", web, f"{{ip: 127.0.0.1, port: {port}, tls: {tls}}}")) as lk:
        url = f"https://localhost:{port}/pong"
        base = ("--cacert", pki.ca_pem, "-H", "Host: web")
        rc, out, err = await curl(*base, "--cert", good.cert, "--key", good.key, url)
        assert (rc, out) == (0, "pong"), err
        rc, out, err = await curl(*base, url)
        assert rc != 0 and out == "", (rc, out)
        rc, out, err = await curl(*base, "--cert", foreign.cert, "--key", foreign.key, url)
        assert rc != 0 and out == "", (rc, out)
        rc, out = await openssl("s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", pki.ca_pem,
                                "-cert", good.cert, "-key", good.key, "-ign_eof",
                                stdin=b"GET /pong HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        assert "HTTP/1.1 200" in out, out
        # the router kept serving others throughout
        rc, out, err = await curl(*base, "--cert", good.cert, "--key", good.key, url)
        assert (rc, out) == (0, "pong"), err
        scope = f"rt/in/server/127.0.0.1/{port}"
        assert metric(lk, f"{scope}/tls/handshake_failures") == 2
        assert lk.tls.state()["handshakes"][scope]["lastFailure"].startswith("unknown CA")
        assert len(web.requests) == 3


async def test_forwarded_client_cert_and_spoofed_header_stripped(pki):
    """forwardClientCert on a server: the verified client certificate as
    x-forwarded-client-cert; a client's own value never passes, on TLS or plaintext
    servers; Linkerd's client-block key does the same for the clients it matches."""
    cert = pki.issue("xfcc", "localhost")
    caller = pki.issue("svc-a", "svc-a.example", "svc-a.internal")
    mtls, plain, linkerd_style = free_port(), free_port(), free_port()
    expected = PeerCert.from_der(_der(caller)).xfcc()
    tls_block = server_tls(cert, caCertPath=pki.ca_pem, requireClientAuth=True)
    async with Backend("web") as web, linker(f"""
routers:
- protocol: http
  label: a
  dtab: /svc/web => /$/inet/127.1/{web.port}
  servers:
  - {{ip: 127.0.0.1, port: {mtls}, forwardClientCert: true, tls: {tls_block}}}
  - {{ip: 127.0.0.1, port: {plain}, forwardClientCert: true}}
- protocol: http
  label: b
  dtab: /svc/web => /$/inet/127.1/{web.port}
  client: {{kind: io.l5d.static, configs: [{{prefix: /$/inet/127.1, forwardClientCert: true}}]}}
  servers:
  - {{ip: 127.0.0.1, port: {linkerd_style}, tls: {tls_block}}}
"""):
        spoof = ("-H", "x-forwarded-client-cert: Hash=00;Subject=\"CN=admin\"", "-H", "Host: web")
        mine = ("--cacert", pki.ca_pem, "--cert", caller.cert, "--key", caller.key)
        for port in (mtls, linkerd_style):
            rc, out, err = await curl(*mine, *spoof, f"https://localhost:{port}/echo")
            assert rc == 0, err
            got = [v for k, v in json.loads(out)["headers"] if k.lower() == "x-forwarded-client-cert"]
            assert got == [expected], got
            assert "DNS=svc-a.example;DNS=svc-a.internal;Subject=\"CN=svc-a.example" in expected
            # a chunked request body takes the codec's other parsing path: the same header
            rc, out, err = await curl(*mine, *spoof, "-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 100,
                                      f"https://localhost:{port}/echo")
            got = [v for k, v in json.loads(out)["headers"] if k.lower() == "x-forwarded-client-cert"]
            assert got == [expected] and json.loads(out)["body_len"] == 100, out
            assert expected.startswith("Hash=" + _sha(caller).upper())
        rc, out, err = await curl(*spoof, f"http://127.0.0.1:{plain}/echo")
        assert rc == 0, err
        assert not [k for k, _ in json.loads(out)["headers"] if k.lower() == "x-forwarded-client-cert"], out


# --- clients --------------------------------------------------------------------------------

async def test_client_tls_captures_sni_and_enabled_false(pki, tmp_path):
    """commonName "{service}.mesh" from the prefix's capture, sent as SNI and checked;
    ``enabled: false`` under a more specific prefix speaks plaintext."""
    cert = pki.issue("webapi", "web.mesh", "api.mesh")
    sni: list = []
    disco = tmp_path / "disco"
    disco.mkdir()
    async with Backend("tls", ssl=backend_ctx(cert, sni=sni)) as tb, Backend("plain") as pb:
        for svc in ("web", "api"):
            (disco / svc).write_text(f"127.0.0.1 {tb.port}\n")
        (disco / "legacy").write_text(f"127.0.0.1 {pb.port}\n")
        port = free_port()
        async with linker(f"""
namers:
- {{kind: io.l5d.fs, rootDir: {disco}}}
routers:
- protocol: http
  label: out
  dtab: /svc => /#/io.l5d.fs
  client:
    kind: io.l5d.static
    configs:
    - prefix: /#/io.l5d.fs/{{service}}
      tls: {{commonName: "{{service}}.mesh", trustCertsBundle: {pki.ca_pem}}}
    - prefix: /#/io.l5d.fs/legacy
      tls: {{enabled: false}}
  servers:
  - {{ip: 127.0.0.1, port: {port}}}
""") as lk:
            for host, backend in (("web", "tls"), ("api", "tls"), ("legacy", "plain"), ("web", "tls")):
                rc, out, err = await curl("-D", "-", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/pong")
                assert rc == 0 and out.endswith("pong") and f"X-Backend: {backend}" in out, out + err
            assert sni == ["web.mesh", "api.mesh"]  # the second web request reused its connection
            assert tb.connections == 2 and pb.connections == 1
            assert metric(lk, "rt/out/client/#/io.l5d.fs/web/tls/handshake_failures") is None


async def test_client_tls_options(pki):
    """trustCerts (a list), disableValidation, clientAuth and protocols, each against a
    backend that needs it."""
    web = pki.issue("web", "web")
    foreign = pki.issue("foreign", "web", other_ca=True)
    me = pki.issue("router-client", "router.example")
    async with Backend("trust", ssl=backend_ctx(web)) as trust, \
            Backend("novalid", ssl=backend_ctx(foreign)) as novalid, \
            Backend("mtls", ssl=backend_ctx(web, client_ca=pki.ca_pem)) as mtls, \
            Backend("v13", ssl=backend_ctx(web, tls13_only=True)) as v13:
        port = free_port()
        inet = "/$/inet/127.1"
        async with linker(f"""
routers:
- protocol: http
  label: out
  dtab: |
    /svc/trust => {inet}/{trust.port};
    /svc/novalid => {inet}/{novalid.port};
    /svc/mtls => {inet}/{mtls.port};
    /svc/v13 => {inet}/{v13.port};
  client:
    kind: io.l5d.static
    configs:
    - prefix: {inet}/{trust.port}
      tls: {{commonName: web, trustCerts: [{pki.other_ca_pem}, {pki.ca_pem}]}}
    - prefix: {inet}/{novalid.port}
      tls: {{disableValidation: true}}
    - prefix: {inet}/{mtls.port}
      tls: {{commonName: web, trustCertsBundle: {pki.ca_pem}, clientAuth: {{certPath: {me.cert}, keyPath: {me.key}}}}}
    - prefix: {inet}/{v13.port}
      tls: {{commonName: web, trustCertsBundle: {pki.ca_pem}, protocols: [TLSv1.3]}}
    - prefix: /$/inet/localhost
      tls: {{commonName: web, trustCertsBundle: {pki.ca_pem}, protocols: [TLSv1.2]}}
  servers:
  - {{ip: 127.0.0.1, port: {port}}}
"""):
            for host in ("trust", "novalid", "mtls", "v13"):
                rc, out, err = await curl("-D", "-", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/pong")
                assert rc == 0 and out.startswith("HTTP/1.1 200") and f"X-Backend: {host}" in out, out + err
            async with s_server(web, "-tls1_3") as s13:  # a server that sends its alerts
                rc, out, err = await curl("-D", "-", "-H", "Host: v12", "-H", f"l5d-dtab: /svc/v12 => "
                                          f"/$/inet/localhost/{s13}", f"http://127.0.0.1:{port}/pong")
            assert out.startswith("HTTP/1.1 502") and "no TLS version in common" in out, out


@pytest.mark.parametrize("case", ["wrong name", "expired", "unknown CA"])
async def test_validation_failures_are_502_naming_bound_name_address_and_reason(pki, case):
    certs = {"wrong name": pki.issue("elsewhere", "elsewhere"),
             "expired": pki.issue("old", "web", expired=True),
             "unknown CA": pki.issue("stranger-web", "web", other_ca=True)}
    reasons = {"wrong name": "name mismatch", "expired": "certificate expired", "unknown CA": "unknown CA"}
    async with Backend("web", ssl=backend_ctx(certs[case])) as web:
        port = free_port()
        bound = f"/$/inet/127.1/{web.port}"
        async with linker(f"""
routers:
- protocol: http
  label: out
  dtab: /svc/web => {bound}
  client: {{tls: {{commonName: web, trustCertsBundle: {pki.ca_pem}}}}}
  servers:
  - {{ip: 127.0.0.1, port: {port}}}
""") as lk:
            rc, out, err = await curl("-D", "-", "-H", "Host: web", f"http://127.0.0.1:{port}/pong")
            assert rc == 0, err
            head, _, body = out.partition("\r\n\r\n")
            assert head.startswith("HTTP/1.1 502"), out
            assert "l5d-err: TLS+handshake+failed+for+%2Fsvc%2Fweb" in head, head
            first = body.splitlines()[0]
            assert first.startswith("TLS handshake failed for /svc/web: address 127.0.0.1:"), body
            assert f"bound name {bound}" in first and f"127.0.0.1:{web.port}" in first, first
            assert reasons[case] in first and "certificate name expected: web" in first, first
            assert not web.requests
            client = f"rt/out/client/$/inet/127.1/{web.port}"
            assert metric(lk, f"{client}/tls/handshake_failures") == 1
            assert lk.tls.state()["handshakes"][client]["lastFailure"].startswith(reasons[case])


async def test_tls_and_plaintext_to_one_address_never_share_a_connection(pki):
    """Two bound ids for one TLS backend, one with TLS, one (``enabled: false``)
    plaintext: the TLS one keeps working, the plaintext one keeps failing — a shared pool
    would let one use the other's connection."""
    web = pki.issue("web2", "web")
    assert Connector().key("h", 1) != UpstreamKey("h", 1, ("tls",)) and Connector().key("h", 1) == UpstreamKey("h", 1)
    async with Backend("web", ssl=backend_ctx(web)) as b:
        port = free_port()
        async with linker(f"""
routers:
- protocol: http
  label: out
  dtab: |
    /svc/tls => /$/inet/127.1/{b.port};
    /svc/plain => /$/inet/localhost/{b.port};
  client:
    kind: io.l5d.static
    configs:
    - prefix: /$/inet/127.1
      tls: {{commonName: web, trustCertsBundle: {pki.ca_pem}}}
  servers:
  - {{ip: 127.0.0.1, port: {port}}}
"""):
            for _ in range(3):
                rc, out, _ = await curl("-D", "-", "-H", "Host: tls", f"http://127.0.0.1:{port}/pong")
                assert out.startswith("HTTP/1.1 200"), out
                rc, out, _ = await curl("-D", "-", "-H", "Host: plain", f"http://127.0.0.1:{port}/pong")
                assert out.startswith("HTTP/1.1 502"), out
            assert len(b.requests) == 3


# --- rotation -------------------------------------------------------------------------------

async def _peer_sha(port: int, ctx: ssl.SSLContext) -> str:
    _, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
    w.close()
    return hashlib.sha256(der).hexdigest()




async def test_rotation_under_traffic_loses_no_request(pki, tmp_path):
    certs = str(tmp_path / "certs")
    v1 = pki.issue("server", "localhost", directory=certs)
    port = free_port()
    ctx = pki.client_context()
    statuses: list[int] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def keep_alive() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=2)) as s:
            while not stop.is_set():
                async with s.get(f"https://localhost:{port}/pong", headers={"Host": "web"}) as r:
                    await r.read()
                    statuses.append(r.status)

    async def new_connections() -> None:
        while not stop.is_set():
            try:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, force_close=True)) as s:
                    async with s.get(f"https://localhost:{port}/pong", headers={"Host": "web"}) as r:
                        await r.read()
                        statuses.append(r.status)
            except aiohttp.ClientError as e:
                errors.append(repr(e))

    web = Backend("web")
    async with web, linker(web_router("in", web, f"{{ip: 127.0.0.1, port: {port}, tls: {server_tls(v1)}}}")) as lk:
        scope = f"rt/in/server/127.0.0.1/{port}"
        async with RawClient(port, ssl=ctx, server_hostname="localhost") as old:
            await old.send(get("/pong", host="web"))
            assert (await old.read_response()).status == 200
            old_sha = hashlib.sha256(old.writer.get_extra_info("ssl_object").getpeercert(True)).hexdigest()
            assert old_sha == _sha(v1)
            tasks = [asyncio.ensure_future(keep_alive()) for _ in range(3)] + [asyncio.ensure_future(new_connections())]
            while len(statuses) < 50:
                await asyncio.sleep(0.02)
            v2 = pki.issue("server", "localhost", directory=certs)  # cert, then key, replaced on disk
            deadline = time.monotonic() + 15
            while await _peer_sha(port, ctx) != _sha(v2):
                assert time.monotonic() < deadline, lk.tls.state()
                await asyncio.sleep(0.1)
            n = len(statuses)
            while len(statuses) < n + 50:
                await asyncio.sleep(0.02)
            # a broken key: reported, and the last good certificate stays in use
            with open(v2.key, "w") as f:
                f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
            deadline = time.monotonic() + 15
            while not lk.tls.state()["sources"][scope]["error"]:
                assert time.monotonic() < deadline, lk.tls.state()
                await asyncio.sleep(0.1)
            assert "keyPath" in lk.tls.state()["sources"][scope]["error"]
            assert metric(lk, f"{scope}/tls/reload_failures") >= 1
            assert await _peer_sha(port, ctx) == _sha(v2)
            n = len(statuses)
            while len(statuses) < n + 20:
                await asyncio.sleep(0.02)
            stop.set()
            await asyncio.gather(*tasks)
            # the connection opened before the rotation is untouched: same certificate, still serving
            await old.send(get("/pong", host="web"))
            assert (await old.read_response()).status == 200
            assert hashlib.sha256(old.writer.get_extra_info("ssl_object").getpeercert(True)).hexdigest() == old_sha
        assert not errors and statuses and set(statuses) == {200}, (errors[:3], set(statuses))
        assert metric(lk, f"{scope}/tls/reloads") >= 1
        assert metric(lk, f"{scope}/tls/handshake_failures") == 0
