"""HTTP/2 over TLS through h2 routers, end to end with a CA made here: real linkers from
YAML, curl, openssl s_client and grpcio as clients, grpcio and an ``h2`` server as TLS
backends.

* servers: an h2 router's TLS server advertises ALPN ``h2`` only (it cannot serve
  HTTP/1.1): ``curl --http2`` gets HTTP/2; a client that negotiates nothing gets the
  plaintext codec's answer (HTTP/2 with prior knowledge works, HTTP/1.1 gets the 505
  that says why); ``forwardClientCert`` on the server and on a client block;
* gRPC over TLS on both hops (``ssl_channel_credentials`` → router → grpcio TLS server);
* clients: router → backend HTTP/2 over TLS (ALPN ``h2``, the client's commonName
  checked); a TLS backend that does not choose ``h2`` answered 502 with the reason;
  a failed handshake counted; TLS and plaintext sessions never shared.
"""
from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import grpc
import pytest

from namerouter.tls.peer import PeerCert
from tests.support.backends import curl
from tests.support.h2 import GrpcServer, H2Backend, grpc_stubs, header
from tests.support.ports import free_port
from tests.support.tls import Issued, Pki
from tests.test_proxy_tls import _der, linker, metric, openssl, server_tls

pytestmark = pytest.mark.integration

pb, pb_grpc = grpc_stubs()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> Pki:
    return Pki(str(tmp_path_factory.mktemp("pki")))


def h2_backend_ctx(issued: Issued, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issued.cert, issued.key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def h2_router(label: str, dtab: str, *servers: str, extra: str = "") -> str:
    entries = "".join(f"  - {s}\n" for s in servers)
    return f"routers:\n- protocol: h2\n  label: {label}\n  dtab: {dtab}\n{extra}  servers:\n{entries}"


def echoed(out: str) -> dict[str, Any]:
    """The H2Backend's JSON answer (curl -i: after the head)."""
    return json.loads(out[out.index("{"):])


async def test_curl_http2_over_tls_alpn_h2_only_and_forwarded_client_cert(pki: Pki) -> None:
    cert = pki.issue("h2edge", "localhost")
    caller = pki.issue("caller", "caller.example")
    port, plain, linkerd_style = free_port(), free_port(), free_port()
    tls = server_tls(cert, caCertPath=pki.ca_pem, requireClientAuth=True)
    async with H2Backend("b") as b, linker(h2_router(
            "edge", f"/svc/web => /$/inet/127.1/{b.port}",
            f"{{ip: 127.0.0.1, port: {port}, forwardClientCert: true, tls: {tls}}}",
            f"{{ip: 127.0.0.1, port: {plain}, forwardClientCert: true}}") + h2_router(
            "b", f"/svc/web => /$/inet/127.1/{b.port}", f"{{ip: 127.0.0.1, port: {linkerd_style}, tls: {tls}}}",
            extra="  client: {kind: io.l5d.static, configs: [{prefix: /$/inet/127.1, forwardClientCert: true}]}\n"
    )[len("routers:\n"):]) as lk:
        url = f"https://localhost:{port}/echo"
        me = ("--cacert", pki.ca_pem, "--cert", caller.cert, "--key", caller.key, "-H", "Host: web")
        spoof = ("-H", 'x-forwarded-client-cert: Hash=00;Subject="CN=admin"')
        rc, out, err = await curl("--http2", "-i", "-v", *me, *spoof, url)
        assert rc == 0, err
        assert out.startswith("HTTP/2 200") and "ALPN: server accepted h2" in err, out + err
        sent = echoed(out)["headers"]
        assert ["via", "h2 linkerd"] in sent
        # the router writes the verified certificate, never the caller's own value
        got = [v for n, v in sent if n == "x-forwarded-client-cert"]
        assert got == [PeerCert.from_der(_der(caller)).xfcc()], got
        rc, out, err = await curl("--http2-prior-knowledge", "-i", "-H", "Host: web", *spoof,
                                  f"http://127.0.0.1:{plain}/echo")
        assert rc == 0 and out.startswith("HTTP/2 200"), out + err
        assert [n for n, _ in echoed(out)["headers"] if n == "x-forwarded-client-cert"] == []  # plaintext: none

        # the server offers h2 only: an HTTP/1.1-only client negotiates nothing and gets the
        # h2 router's plaintext answer for HTTP/1.1 (505, saying what to use)
        rc, out, err = await curl("--http1.1", "-i", "-v", *me, url)
        assert rc == 0 and out.startswith("HTTP/1.1 505"), out + err
        assert "ALPN: server did not agree" in err and "speaks HTTP/2" in out, err
        rc, out = await openssl("s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "http/1.1,h2",
                                "-CAfile", pki.ca_pem, "-cert", caller.cert, "-key", caller.key, stdin=b"")
        assert "ALPN protocol: h2" in out, out
        # ... and HTTP/2 with prior knowledge over TLS without ALPN still works
        rc, out, err = await curl("--http2-prior-knowledge", "--no-alpn", "-i", *me, url)
        assert rc == 0 and out.startswith("HTTP/2 200"), out + err
        assert len(b.requests) == 3
        assert metric(lk, f"rt/edge/server/127.0.0.1/{port}/requests") == 3
        # Linkerd's key: the client block of the bound id forwards it
        rc, out, err = await curl("--http2", "-i", *me, *spoof, f"https://localhost:{linkerd_style}/echo")
        assert rc == 0 and out.startswith("HTTP/2 200"), out + err
        assert [v for n, v in echoed(out)["headers"] if n == "x-forwarded-client-cert"] == got
        assert len(b.requests) == 4
        # without a client certificate the handshake fails, counted, and the router goes on
        rc, out, err = await curl("--http2", "--cacert", pki.ca_pem, "-H", "Host: web", url)
        assert rc != 0 and out == "", (rc, out)
        assert metric(lk, f"rt/edge/server/127.0.0.1/{port}/tls/handshake_failures") == 1


async def test_grpc_over_tls_on_both_hops(pki: Pki) -> None:
    """grpcio with ``ssl_channel_credentials`` → router (TLS, ALPN h2) → grpcio TLS server,
    the router's client checking the backend's name (commonName) and offering h2."""
    edge = pki.issue("grpc-edge", "localhost")
    backend = pki.issue("echo-backend", "echo.internal")
    port = free_port()
    async with GrpcServer("secure", tls=(backend.cert, backend.key)) as srv, linker(h2_router(
            "grpc", f"/svc/demo.Echo => /$/inet/127.1/{srv.port}",
            f"{{ip: 127.0.0.1, port: {port}, tls: {server_tls(edge)}}}",
            extra=("  identifier: {kind: io.l5d.header.path, segments: 1}\n"
                   f"  client: {{tls: {{commonName: echo.internal, trustCertsBundle: {pki.ca_pem}}}}}\n"))) as lk:
        ca = open(pki.ca_pem, "rb").read()

        def calls() -> tuple[Any, list[str], str]:
            with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(root_certificates=ca)) as ch:
                stub = pb_grpc.EchoStub(ch)
                reply, c = stub.Say.with_call(pb.Msg(text="over tls"), timeout=10, metadata=(("x-who", "t"),))
                streamed = [m.text for m in stub.Chat(iter([pb.Msg(text=t) for t in "abc"]), timeout=10)]
                return reply, streamed, dict(c.trailing_metadata()).get("x-served-by", "")

        reply, streamed, served_by = await asyncio.to_thread(calls)
        assert reply.text == "secure: over tls from t" and reply.data == b"/svc/demo.Echo"
        assert streamed == ["secure heard a", "secure heard b", "secure heard c"] and served_by == "secure"
        client = f"rt/grpc/client/$/inet/127.1/{srv.port}"
        assert metric(lk, f"{client}/connects") == 1  # one multiplexed session for both calls
        assert metric(lk, f"{client}/success") == 2
        (stage,) = lk.routers[0].core.table.clients.values()
        (sessions,) = stage.connector.sessions.values()
        assert [s.transport.get_extra_info("ssl_object").selected_alpn_protocol() for s in sessions] == ["h2"]


async def test_router_to_backend_h2_over_tls_name_checks_and_refusals(pki: Pki) -> None:
    """h2c from the client, HTTP/2 over TLS to the backends: the commonName is checked,
    a backend that does not choose h2 by ALPN gets a 502 naming the reason, a wrong
    name is a counted handshake failure, and TLS and plaintext clients (or two names)
    have connectors of different keys, so they never share a session."""
    web = pki.issue("h2web", "web.internal")
    async with H2Backend("tls", ssl=h2_backend_ctx(web)) as tb, \
            H2Backend("h1only", ssl=h2_backend_ctx(web, alpn=())) as h1, \
            H2Backend("plain") as pb_:
        port = free_port()
        inet = "/$/inet/127.1"
        async with linker(f"""
routers:
- protocol: h2
  label: out
  dtab: |
    /svc/web => {inet}/{tb.port};
    /svc/noalpn => {inet}/{h1.port};
    /svc/wrongname => /$/inet/localhost/{tb.port};
    /svc/plain => {inet}/{pb_.port};
  client:
    kind: io.l5d.static
    configs:
    - prefix: /$/inet/*
      tls: {{commonName: web.internal, trustCertsBundle: {pki.ca_pem}}}
    - prefix: /$/inet/localhost
      tls: {{commonName: other.internal, trustCertsBundle: {pki.ca_pem}}}
    - prefix: {inet}/{pb_.port}
      tls: {{enabled: false}}
  servers:
  - {{ip: 127.0.0.1, port: {port}}}
""") as lk:
            base = ("--http2-prior-knowledge", "-i")
            for _ in range(2):
                rc, out, err = await curl(*base, "-H", "Host: web", f"http://127.0.0.1:{port}/echo")
                assert rc == 0 and out.startswith("HTTP/2 200") and "x-backend: tls" in out, out + err
            assert len(tb.conns) == 1  # both requests on one session
            rc, out, err = await curl(*base, "-H", "Host: plain", f"http://127.0.0.1:{port}/echo")
            assert rc == 0 and "x-backend: plain" in out, out + err
            assert header(pb_.last, ":scheme") == "http"

            rc, out, err = await curl(*base, "-H", "Host: noalpn", f"http://127.0.0.1:{port}/echo")
            assert out.startswith("HTTP/2 502"), out + err
            assert "did not choose HTTP/2 over TLS (ALPN: none)" in out, out
            assert h1.requests == []

            rc, out, err = await curl(*base, "-H", "Host: wrongname", f"http://127.0.0.1:{port}/echo")
            assert out.startswith("HTTP/2 502") and "name mismatch" in out, out
            assert metric(lk, f"rt/out/client/$/inet/localhost/{tb.port}/tls/handshake_failures") == 1

            stages = lk.routers[0].core.table.clients
            keys = {str(cid): st.connector.key("127.0.0.1", 1) for cid, st in stages.items()}
            assert keys[f"{inet}/{tb.port}"].tls is not None and keys[f"{inet}/{pb_.port}"].tls is None
            assert keys[f"{inet}/{tb.port}"] != keys[f"/$/inet/localhost/{tb.port}"]  # another name, another key
