"""Linkerd 1.7's TLS example configs (verbatim copies in tests/linkerd_examples/, see its
README) pass ``namerouter --check`` / ``namerd --check`` once their certificate paths
point at real files: a CA and certificates made here, keys matching their certificates.

One of them also names things another issue adds (the ``io.l5d.namerd``/``io.l5d.mesh``
interpreters, issue 13): until those land, exactly those errors — and no TLS error — are
expected, so this test fails if TLS breaks and tells when the others arrive.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from namerouter import plugins
from tests.support.tls import Pki

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "tests", "linkerd_examples")

#: directory prefixes of the certificate paths in the examples → fixture directories
PREFIXES = ("/foo/", "finagle/h2/src/e2e/resources/", "namerd/examples/certs/")
#: certificate/key file pairs the examples name (cert basename → key basename)
PAIRS = {"cert.pem": "key.pem", "clientCert.pem": "clientKey.pem",
         "linkerd-tls-e2e-cert.pem": "linkerd-tls-e2e-key.pem", "namerd-cert.pem": "namerd-key.pk8"}
CAS = ("caCert.pem", "cacert.pem", "ca-chain.pem", "intermediateCa.pem", "namerd-cacert.pem")


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> str:
    """Every certificate file the examples name, under <root>/<prefix>."""
    root = str(tmp_path_factory.mktemp("examples"))
    pki = Pki(os.path.join(root, "pki"))
    for prefix in PREFIXES:
        d = os.path.join(root, prefix.strip("/"))
        os.makedirs(d, exist_ok=True)
        for cert, key in PAIRS.items():
            issued = pki.issue(cert.split(".")[0], "linkerd-tls-e2e", "namerd", directory=d)
            os.replace(issued.cert, os.path.join(d, cert))
            os.replace(issued.key, os.path.join(d, key))
        for ca in CAS:
            with open(pki.ca_pem) as src, open(os.path.join(d, ca), "w") as dst:
                dst.write(src.read())
    return root


def localized(kind: str, name: str, root: str, tmp_path) -> str:
    with open(os.path.join(EXAMPLES, kind, name)) as f:
        text = f.read()
    for prefix in PREFIXES:
        text = text.replace(prefix, os.path.join(root, prefix.strip("/")) + "/")
    path = tmp_path / f"{kind}-{name}"
    path.write_text(text)
    return str(path)


def check(cli: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", cli, "--check", path], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def pending_errors(name: str) -> list[str]:
    """Errors that belong to other issues while their features are missing."""
    out = []
    if name == "namerd-tls.yaml":
        for i, kind in ((0, "io.l5d.namerd"), (3, "io.l5d.mesh")):
            if kind not in plugins.INTERPRETERS:
                out.append(f"routers[{i}].interpreter.kind: unknown kind '{kind}'")
    return out


@pytest.mark.parametrize("name", ["tls.yaml", "mutualTls.yaml", "disable-tls.yaml", "admin-tls.yaml", "proxy.yaml",
                                  "namerd-tls.yaml", "serversets.yaml"])
def test_linkerd_tls_examples_pass_check(name, fixture_root, tmp_path):
    r = check("namerouter", localized("linkerd", name, fixture_root, tmp_path))
    pending = pending_errors(name)
    if not pending:
        assert r.returncode == 0, r.stderr
        assert "config is valid" in r.stdout
        return
    if r.returncode == 0:  # the other issue landed: nothing pending any more
        pytest.fail(f"{name} passes now: drop it from pending_errors()")
    lines = [ln.strip() for ln in r.stderr.splitlines()[1:] if ln.strip()]
    assert len(lines) == len(pending), r.stderr
    for want in pending:  # and nothing else: no TLS error
        assert any(ln.startswith(want) for ln in lines), r.stderr


def test_namerd_tls_example_passes_namerd_check(fixture_root, tmp_path):
    r = check("namerd", localized("namerd", "tls.yaml", fixture_root, tmp_path))
    assert r.returncode == 0, r.stderr
    assert "config is valid" in r.stdout
    # the thrift and mesh interfaces are issue 13's: accepted with a warning meanwhile
    from namerd.config import UNSUPPORTED_INTERFACES

    for kind in ("io.l5d.thriftNameInterpreter", "io.l5d.mesh"):
        if kind in UNSUPPORTED_INTERFACES:
            assert f"kind {kind} is not provided by namerouter" in r.stderr, r.stderr
