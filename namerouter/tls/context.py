"""``ssl.SSLContext`` builders for the config blocks of ``config.py``.

Every build re-reads and re-checks the files (``material.py``), so a rotation that
breaks a file fails the build and leaves the previous context in use (``reloading.py``).
The certificate chain and key are handed to OpenSSL through an anonymous in-memory file
(``memfd_create``), so the re-serialised key never touches a disk; where that is not
available a private temporary file is used and removed at once.

``alpn`` sets the ALPN protocol list (``["h2", "http/1.1"]`` for an HTTP/2 router).
The client's server name (SNI and the name checked against the certificate) is not
part of the context: callers pass it per connection (``server_hostname=``).
"""
from __future__ import annotations

import os
import ssl
import tempfile
from typing import Optional, Sequence

from .config import ClientTlsConfig, ServerTlsConfig
from .material import CertInfo, KeyPair, TlsConfigError, load_ca_certs, load_key_pair
from .protocols import apply_ciphers, apply_protocols

Built = tuple[ssl.SSLContext, Optional[CertInfo]]


def _no_password() -> bytes:
    # Never reached (keys are re-serialised unencrypted); without a callback OpenSSL
    # would prompt on the terminal.
    raise TlsConfigError("keyPath", "the private key is encrypted")


def _load_pair(ctx: ssl.SSLContext, pair: KeyPair) -> None:
    data = pair.chain_pem + pair.key_pem
    try:
        fd = os.memfd_create("namerouter-tls", getattr(os, "MFD_CLOEXEC", 0))
        path = f"/proc/self/fd/{fd}"
        tmp = None
    except (AttributeError, OSError):  # not Linux
        fd, tmp = tempfile.mkstemp(prefix="namerouter-tls-")
        path = tmp
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        ctx.load_cert_chain(path, password=_no_password)
    finally:
        os.close(fd)
        if tmp is not None:
            os.unlink(tmp)


def _alpn(ctx: ssl.SSLContext, alpn: Optional[Sequence[str]]) -> None:
    if alpn:
        ctx.set_alpn_protocols(list(alpn))


def server_context(cfg: ServerTlsConfig, alpn: Optional[Sequence[str]] = None) -> Built:
    """The context a server accepts with; TlsConfigError (with the config key) when a
    file is missing or wrong."""
    pair = load_key_pair(cfg.certPath, cfg.keyPath, cfg.intermediateCertsPath)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply_protocols(ctx, cfg.protocols)
    apply_ciphers(ctx, cfg.ciphers, cfg.protocols)
    _load_pair(ctx, pair)
    if cfg.requireClientAuth:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cfg.caCertPath:
            ctx.load_verify_locations(cadata=load_ca_certs([(cfg.caCertPath, "caCertPath")]).decode("ascii"))
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    elif cfg.caCertPath:
        load_ca_certs([(cfg.caCertPath, "caCertPath")])  # still checked (rotation reports it)
    _alpn(ctx, alpn)
    return ctx, pair.leaf


def client_context(cfg: ClientTlsConfig, alpn: Optional[Sequence[str]] = None) -> Built:
    """The context a client connects with (``cfg.enabled`` must be true)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    apply_protocols(ctx, cfg.protocols)
    if cfg.disableValidation:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        files = [(p, f"trustCerts[{i}]") for i, p in enumerate(cfg.trustCerts or ())]
        if cfg.trustCertsBundle:
            files.append((cfg.trustCertsBundle, "trustCertsBundle"))
        if files:
            ctx.load_verify_locations(cadata=load_ca_certs(files).decode("ascii"))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    leaf = None
    if cfg.clientAuth is not None:
        ca = cfg.clientAuth
        pair = load_key_pair(ca.certPath, ca.keyPath, ca.intermediateCertsPath, prefix="clientAuth.")
        _load_pair(ctx, pair)
        leaf = pair.leaf
    _alpn(ctx, alpn)
    return ctx, leaf
