"""TLS config blocks: what loads, what is refused (key path, line, reason, exit status 2),
key formats, protocol and cipher names, and the pieces the data plane will use (settings
key, common-name variables, x-forwarded-client-cert)."""
from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest

from namerouter.config import ConfigError
from namerouter.config.schema import loads_linker
from namerouter.tls import ClientTlsConfig, ServerTlsConfig, TlsRegistry
from namerouter.tls.context import client_context, server_context
from namerouter.tls.peer import PeerCert
from namerouter.tls.protocols import openssl_cipher
from tests.support.tls import Pki

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki")))


def router_yaml(server_tls: str = "", client_tls: str = "", admin_tls: str = "") -> str:
    text = ""
    if admin_tls:
        text += "admin:\n  port: 0\n  tls:\n" + "".join(f"    {line}\n" for line in admin_tls.splitlines())
    text += "routers:\n- protocol: http\n  dtab: /svc => /$/inet/127.1/1\n  servers:\n  - port: 4140\n"
    if server_tls:
        text += "    tls:\n" + "".join(f"      {line}\n" for line in server_tls.splitlines())
    if client_tls:
        text += "  client:\n" + "".join(f"    {line}\n" for line in client_tls.splitlines())
    return text


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        loads_linker(text)
    return [str(i) for i in e.value.errors]


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "namerouter", "--check", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


# -- what loads ------------------------------------------------------------------------

@pytest.mark.parametrize("key_format,rsa", [("pkcs8", False), ("sec1", False), ("pkcs1", True), ("pkcs8", True)])
def test_key_formats_pkcs8_pkcs1_and_ec_all_load(pki, key_format, rsa):
    """Linkerd wants PKCS#8; we take PKCS#1 (RSA) and SEC1 (EC) keys as well."""
    c = pki.issue(f"fmt-{key_format}-{rsa}", "web", key_format=key_format, rsa=rsa)
    head = open(c.key).readline()
    assert {"pkcs8": "BEGIN PRIVATE KEY", "pkcs1": "BEGIN RSA PRIVATE KEY",
            "sec1": "BEGIN EC PRIVATE KEY"}[key_format] in head
    cfg = loads_linker(router_yaml(f"certPath: {c.cert}\nkeyPath: {c.key}")).config
    ctx, leaf = server_context(cfg.routers[0].servers[0].tls)
    assert isinstance(ctx, ssl.SSLContext) and "CN=web" in leaf.subject


def test_full_server_and_client_blocks_load(pki):
    srv, cli = pki.issue("srv-full", "web"), pki.issue("cli-full", "router")
    cfg = loads_linker(router_yaml(
        f"certPath: {srv.cert}\nkeyPath: {srv.key}\nintermediateCertsPath: {pki.ca_pem}\ncaCertPath: {pki.ca_pem}\n"
        "requireClientAuth: true\nprotocols: [TLSv1.2, TLSv1.3]\n"
        "ciphers: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ECDHE-ECDSA-AES256-GCM-SHA384]",
        "kind: io.l5d.static\nconfigs:\n"
        "- prefix: /#/io.l5d.fs/{service}\n  tls:\n    commonName: '{service}.example'\n"
        f"    trustCertsBundle: {pki.ca_pem}\n"
        f"    clientAuth: {{certPath: {cli.cert}, keyPath: {cli.key}}}\n    protocols: [TLSv1.3]\n"
        "- prefix: /#/io.l5d.fs/plain\n  tls: {enabled: false}",
    )).config
    s = cfg.routers[0].servers[0].tls
    assert s.requireClientAuth and s.protocols == ["TLSv1.2", "TLSv1.3"]
    ctx, _ = server_context(s)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    entries = cfg.routers[0].client.configs
    assert entries[0].tls.common_name({"service": "web"}) == "web.example"
    assert entries[1].tls.enabled is False
    cctx, leaf = client_context(entries[0].tls)
    assert cctx.check_hostname and cctx.minimum_version == ssl.TLSVersion.TLSv1_3 and "CN=router" in leaf.subject


def test_settings_key_and_client_params_share_one_context(pki):
    """Clients whose TLS settings are equal share a context; the pool key still tells
    names apart, and plaintext (None) never equals a TLS key."""
    reg = TlsRegistry()
    cfg = ClientTlsConfig(commonName="{service}.svc", trustCertsBundle=pki.ca_pem)
    a = reg.client_params(cfg, {"service": "a"}, "rt/x/client/a", "c")
    b = reg.client_params(cfg, {"service": "b"}, "rt/x/client/b", "c")
    a2 = reg.client_params(ClientTlsConfig(commonName="{service}.svc", trustCertsBundle=pki.ca_pem),
                           {"service": "a"}, "rt/x/client/a2", "c")
    assert a.source is b.source is a2.source
    assert a.server_hostname == "a.svc" and b.server_hostname == "b.svc"
    assert a.key == a2.key != b.key
    hash(a.key)
    assert reg.client_params(ClientTlsConfig(enabled=False), {}, "p", "c") is None
    assert reg.client_params(None, {}, "p", "c") is None


# -- what is refused ---------------------------------------------------------------------

def test_missing_and_wrong_files_are_each_reported_at_their_key(pki, tmp_path):
    srv = pki.issue("srv-bad", "web")
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text(open(srv.cert).read())
    unreadable.chmod(0)
    errs = errors_of(router_yaml(
        f"certPath: {srv.key}\nkeyPath: {tmp_path}/nope.pem\ncaCertPath: {tmp_path}",
        f"tls:\n  commonName: web\n  trustCertsBundle: {srv.key}"))
    assert any(e.startswith("routers[0].servers[0].tls.certPath: ") and "no PEM certificate" in e
               and "(it holds a private key)" in e and "(line 7)" in e for e in errs), errs
    assert any(e.startswith("routers[0].servers[0].tls.keyPath: ") and "file not found" in e for e in errs), errs
    assert any(e.startswith("routers[0].servers[0].tls.caCertPath: ") and "is a directory" in e for e in errs), errs
    assert any(e.startswith("routers[0].client.tls.trustCertsBundle: ") for e in errs), errs
    if os.geteuid() != 0:  # root reads anything
        errs = errors_of(router_yaml(f"certPath: {unreadable}\nkeyPath: {srv.key}"))
        assert any("permission denied" in e for e in errs), errs


def test_key_not_matching_its_certificate(pki):
    a, b = pki.issue("match-a", "a"), pki.issue("match-b", "b")
    errs = errors_of(router_yaml(f"certPath: {a.cert}\nkeyPath: {b.key}"))
    assert errs == [f"routers[0].servers[0].tls.keyPath: {b.key}: the private key does not match the "
                    f"certificate in {a.cert} (line 8)"]
    errs = errors_of(router_yaml(client_tls=f"tls:\n  commonName: x\n  clientAuth:\n    certPath: {a.cert}\n"
                                            f"    keyPath: {b.key}"))
    assert len(errs) == 1 and errs[0].startswith("routers[0].client.tls.clientAuth.keyPath: ") \
        and "does not match" in errs[0]


def test_encrypted_key_is_refused_without_prompting(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    c = pki.issue("enc", "web")
    key = serialization.load_pem_private_key(open(c.key, "rb").read(), None)
    enc = tmp_path / "enc-key.pem"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"secret")))
    errs = errors_of(router_yaml(f"certPath: {c.cert}\nkeyPath: {enc}"))
    assert len(errs) == 1 and "keyPath" in errs[0] and "encrypted" in errs[0]


def test_protocols_ciphers_and_client_rules(pki):
    c = pki.issue("rules", "web")
    errs = errors_of(router_yaml(f"certPath: {c.cert}\nkeyPath: {c.key}\nprotocols: [TLSv1.2, SSLv3]\n"
                                 "ciphers: [TLS_NOPE_WITH_NOTHING]"))
    assert any(e.startswith("routers[0].servers[0].tls.protocols[1]: expected one of TLSv1, TLSv1.1, TLSv1.2, "
                            "TLSv1.3, got 'SSLv3'") for e in errs), errs
    assert any(e.startswith("routers[0].servers[0].tls.ciphers[0]: unknown cipher suite") for e in errs), errs
    errs = errors_of(router_yaml(client_tls=f"tls:\n  disableValidation: true\n  clientAuth: "
                                            f"{{certPath: {c.cert}, keyPath: {c.key}}}"))
    assert errs == ["routers[0].client.tls.disableValidation: disableValidation: true cannot be combined with "
                    "clientAuth (Linkerd refuses this too) (line 8)"]
    errs = errors_of(router_yaml(client_tls=f"tls:\n  commonName: x\n  trustCerts: [{pki.ca_pem}]\n"
                                            f"  trustCertsBundle: {pki.ca_pem}"))
    assert len(errs) == 1 and "both trustCerts and trustCertsBundle" in errs[0]
    errs = errors_of(router_yaml(client_tls=f"tls:\n  trustCertsBundle: {pki.ca_pem}"))
    assert len(errs) == 1 and errs[0].startswith("routers[0].client.tls.commonName: required")
    errs = errors_of(router_yaml(client_tls="kind: io.l5d.static\nconfigs:\n- prefix: /#/io.l5d.fs/{svc}\n"
                                            "  tls: {commonName: '{service}.x'}"))
    assert errs == ["routers[0].client.configs[0].tls.commonName: {service} is not captured by prefix "
                    "/#/io.l5d.fs/{svc} (line 10)"]
    # turned off: nothing else is required
    loads_linker(router_yaml(client_tls="tls: {enabled: false}"))


def test_iana_cipher_names_match_openssls_own_table():
    """Our IANA → OpenSSL translation agrees with `openssl ciphers -stdname`."""
    out = subprocess.run(["openssl", "ciphers", "-stdname", "ECDHE:DHE:RSA"], capture_output=True,
                         text=True, check=True).stdout
    pairs = [line.split()[0::2][:2] for line in out.splitlines() if " - " in line]
    tls12 = [(iana, ossl) for iana, ossl in pairs if not iana.startswith("TLS_AES") and "CHACHA" not in iana[:10]]
    assert len(tls12) > 10
    for iana, ossl in tls12:
        assert openssl_cipher(iana) == ossl
        assert openssl_cipher(ossl) == ossl
    assert openssl_cipher("TLS_AES_128_GCM_SHA256") == "TLS_AES_128_GCM_SHA256"
    # only TLS 1.3 suites listed: TLS 1.3 only
    cfg = ServerTlsConfig.__new__(ServerTlsConfig)  # no files needed for this part
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    from namerouter.tls.protocols import apply_ciphers

    apply_ciphers(ctx, ["TLS_AES_256_GCM_SHA384"])
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    del cfg


def test_check_exit_status_2_and_start_refusal(pki, tmp_path):
    """`--check` reports every problem with key path and line and exits 2; starting the
    same config is refused the same way, before anything listens."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(router_yaml(f"certPath: {tmp_path}/missing.pem\nkeyPath: {tmp_path}/missing-key.pem"))
    r = check(str(bad))
    assert r.returncode == 2
    assert "routers[0].servers[0].tls.certPath:" in r.stderr and "missing.pem: file not found (line 7)" in r.stderr
    assert "routers[0].servers[0].tls.keyPath:" in r.stderr and "(line 8)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "namerouter", str(bad)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)  # starting it: the same refusal
    assert r.returncode == 2 and "missing.pem: file not found (line 7)" in r.stderr


# -- identity ------------------------------------------------------------------------------

def test_xfcc_from_a_real_certificate():
    import datetime
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier("spiffe://cluster.local/ns/web"), x509.DNSName("web.ns.svc")]),
                critical=False)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    p = PeerCert.from_der(der)
    assert p.dns == ("web.ns.svc",) and p.uris == ("spiffe://cluster.local/ns/web",)
    h = hashlib.sha256(der).hexdigest().upper()
    # RFC 4514 (Java's getName()): most specific first, the comma in the O value escaped
    assert p.subject == "O=Acme\\, Inc,CN=web"
    assert p.xfcc() == (f'Hash={h};SAN=spiffe://cluster.local/ns/web;URI=spiffe://cluster.local/ns/web;'
                        f'DNS=web.ns.svc;Subject="O=Acme\\\\, Inc,CN=web"')


def test_namerd_check(pki, tmp_path):
    """`namerd --check`: valid → 0 and "config is valid"; every problem with key path and
    line → 2; nothing is started either way."""
    c, other = pki.issue("nd", "namerd"), pki.issue("nd-other", "x")
    good = tmp_path / "namerd.yaml"
    good.write_text("admin: {port: 9991}\nstorage: {kind: io.l5d.inMemory}\ninterfaces:\n"
                    f"- kind: io.l5d.httpController\n  tls: {{certPath: {c.cert}, keyPath: {c.key}}}\n")
    r = subprocess.run([sys.executable, "-m", "namerd", "--check", str(good)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "config is valid" in r.stdout, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("admin:\n  port: abc\n  tls:\n    certPath: /nope.pem\n    keyPath: /nope-key.pem\n"
                   "storage: {kind: io.l5d.inMemory}\ninterfaces:\n- kind: io.l5d.httpController\n  tls:\n"
                   f"    certPath: {c.cert}\n    keyPath: {other.key}\n    protocols: [TLSv1.4]\n")
    r = subprocess.run([sys.executable, "-m", "namerd", "--check", str(bad)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    for want in ("admin.port: expected an integer 0-65535, got 'abc' (line 2)",
                 "admin.tls.certPath: /nope.pem: file not found (line 4)",
                 "admin.tls.keyPath: /nope-key.pem: file not found (line 5)",
                 "interfaces[0].tls.protocols[0]: expected one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3, got 'TLSv1.4'"):
        assert want in r.stderr, r.stderr


def test_a_router_without_tls_does_not_load_cryptography() -> None:
    """``cryptography`` costs ~16 MB of RSS; it is imported only where TLS material is read."""
    code = ("import sys, namerouter.cli_run, namerouter.linker, namerd.server\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
