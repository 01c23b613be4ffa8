"""Every example config of Linkerd 1.7 (copies in tests/linkerd_examples/, see its README):
router configs must pass ``namerouter --check``, namerd configs namerd's config
validation, with the paths they name pointed at fixtures. Configs that need a feature
still being added elsewhere are strict xfails naming the feature; the thrift/mux
routers must be refused with one clear line."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

import pytest

from namerouter.cli_run import main as namerouter_main

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "linkerd_examples")

#: router configs that need a feature that is not there yet → why (none left)
ROUTER_XFAIL: dict[str, str] = {}

#: thrift / mux routers: refused, one line each
REFUSED = {"thrift.yaml", "thriftmux.yaml"}

NAMERD_XFAIL: dict[str, str] = {}

#: certificate and key files the examples name, all made from one test CA
CERT_FILES = {
    "cert": ["finagle/h2/src/e2e/resources/linkerd-tls-e2e-cert.pem", "namerd/examples/certs/namerd-cert.pem",
             "foo/cert.pem", "foo/clientCert.pem"],
    "key": ["finagle/h2/src/e2e/resources/linkerd-tls-e2e-key.pem", "namerd/examples/certs/namerd-key.pk8",
            "foo/key.pem", "foo/clientKey.pem"],
    "ca": ["finagle/h2/src/e2e/resources/cacert.pem", "namerd/examples/certs/namerd-cacert.pem",
           "foo/cacert.pem", "foo/caCert.pem", "foo/intermediateCa.pem", "foo/ca-chain.pem"],
}


def _files(kind: str) -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, kind, "*.yaml")))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> str:
    """A directory laid out like the Linkerd repository's, for the paths the examples name."""
    root = str(tmp_path_factory.mktemp("linkerd-repo"))
    for d in ("linkerd/examples/io.l5d.fs", "namerd/examples/disco", "logs"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for svc in ("cat", "default", "dog", "thrift"):
        with open(os.path.join(root, "linkerd/examples/io.l5d.fs", svc), "w") as f:
            f.write("127.0.0.1 9990\n")
    with open(os.path.join(root, "namerd/examples/disco/default"), "w") as f:
        f.write("127.0.0.1 9990\n")
    with open(os.path.join(root, "linkerd/examples/example.dtab"), "w") as f:
        f.write("/svc => /#/io.l5d.fs;\n")
    made = _make_certs(os.path.join(root, "ca"))
    for kind, paths in CERT_FILES.items():
        for p in paths:
            os.makedirs(os.path.dirname(os.path.join(root, p)), exist_ok=True)
            shutil.copy(made[kind], os.path.join(root, p))
    return root


def _make_certs(d: str) -> dict[str, str]:
    """A CA and a localhost certificate signed by it (key in PKCS#8, as Linkerd wants)."""
    os.makedirs(d)
    p = {k: os.path.join(d, f"{k}.pem") for k in ("ca", "ca-key", "key", "csr", "cert")}

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca-key"], "-out", p["ca"], "-days", "2",
        "-subj", "/CN=test CA")
    run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p["key"])
    run("req", "-new", "-key", p["key"], "-out", p["csr"], "-subj", "/CN=localhost")
    run("x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey", p["ca-key"], "-CAcreateserial", "-out", p["cert"],
        "-days", "2")
    return {"ca": p["ca"], "key": p["key"], "cert": p["cert"]}


_REPO_PATH = re.compile(r"(?<![\w/.-])(linkerd/examples/|namerd/examples/|finagle/|logs/|/foo/)")


def localized(kind: str, name: str, fixtures: str, out_dir: str) -> str:
    """A copy of the example whose repository-relative paths point into ``fixtures``."""
    with open(os.path.join(EXAMPLES, kind, name), encoding="utf-8") as f:
        text = f.read()
    text = _REPO_PATH.sub(lambda m: os.path.join(fixtures, m.group(1).strip("/")) + "/", text)
    out = os.path.join(out_dir, f"{kind}-{name}")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    return out


def _params(kind: str, xfails: dict[str, str], skip: frozenset = frozenset()) -> list:
    return [
        pytest.param(n, marks=pytest.mark.xfail(reason=xfails[n], strict=True)) if n in xfails else n
        for n in _files(kind) if n not in skip
    ]


def test_every_example_was_copied():
    # 39 router configs and 13 namerd configs in Linkerd 1.7.5.
    assert len(_files("linkerd")) >= 39 and len(_files("namerd")) >= 13
    for name in list(ROUTER_XFAIL) + sorted(REFUSED):
        assert name in _files("linkerd"), name
    for name in NAMERD_XFAIL:
        assert name in _files("namerd"), name


@pytest.mark.parametrize("name", _params("linkerd", ROUTER_XFAIL, frozenset(REFUSED)))
def test_router_example_passes_check(name, fixtures, tmp_path, capsys):
    path = localized("linkerd", name, fixtures, str(tmp_path))
    rc = namerouter_main(["--check", path])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip() == f"{path}: config is valid"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_thrift_and_mux_routers_are_refused_in_one_line(name, fixtures, tmp_path, capsys):
    path = localized("linkerd", name, fixtures, str(tmp_path))
    rc = namerouter_main(["--check", path])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 2 and lines[0].endswith("1 error"), err
    assert "the thrift and mux protocols are not supported" in lines[1] and "routers[0].protocol" in lines[1]


@pytest.mark.parametrize("name", _params("namerd", NAMERD_XFAIL))
def test_namerd_example_passes_check(name, fixtures, tmp_path, capsys):
    from namerd.cli import main as namerd_main

    path = localized("namerd", name, fixtures, str(tmp_path))
    rc = namerd_main(["--check", path])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip() == f"{path}: config is valid"
    # Interfaces we do not serve (thrift, mesh, destination) are warnings, never errors.
    for w in err.splitlines():
        assert "is not provided" in w or "no storage configured" in w, w
