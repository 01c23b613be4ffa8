"""A real PKI for TLS tests: CAs and certificates made with ``trustme`` (which uses the
``cryptography`` package), written to PEM files the configs point at.

``Pki(dir)`` has two unrelated CAs (``ca`` and ``other_ca``); ``issue(name, ...)`` writes
``<name>.pem`` and ``<name>-key.pem`` and returns a :class:`Issued` with their paths.
Keys are PKCS#8 unless ``key_format`` says ``pkcs1`` (RSA) / ``sec1`` (EC).
"""
from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass
from typing import Optional

import trustme
from cryptography.hazmat.primitives import serialization


@dataclass
class Issued:
    cert: str
    key: str
    #: the issuing CA's certificate file
    ca: str


class Pki:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = trustme.CA(organization_name="namerouter test CA")
        self.other_ca = trustme.CA(organization_name="some other CA")
        self.ca_pem = self._write("ca.pem", self.ca.cert_pem.bytes())
        self.other_ca_pem = self._write("other-ca.pem", self.other_ca.cert_pem.bytes())

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: a watcher never sees half a file
        return path

    def issue(self, name: str, *identities: str, other_ca: bool = False, common_name: Optional[str] = None,
              expired: bool = False, key_format: str = "pkcs8", rsa: bool = False,
              directory: Optional[str] = None) -> Issued:
        ca = self.other_ca if other_ca else self.ca
        kw = {}
        if expired:
            now = datetime.datetime.now(datetime.timezone.utc)
            kw = {"not_before": now - datetime.timedelta(days=30), "not_after": now - datetime.timedelta(days=1)}
        leaf = ca.issue_cert(*(identities or (name,)), common_name=common_name or (identities or (name,))[0],
                             key_type=trustme.KeyType.RSA if rsa else trustme.KeyType.ECDSA, **kw)
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
        fmt = {"pkcs8": serialization.PrivateFormat.PKCS8,
               "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
               "sec1": serialization.PrivateFormat.TraditionalOpenSSL}[key_format]
        key_pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        old, self.dir = self.dir, directory or self.dir
        os.makedirs(self.dir, exist_ok=True)
        try:
            cert = self._write(f"{name}.pem", b"".join(p.bytes() for p in leaf.cert_chain_pems))
            key_path = self._write(f"{name}-key.pem", key_pem)
        finally:
            self.dir = old
        return Issued(cert, key_path, self.other_ca_pem if other_ca else self.ca_pem)

    def client_context(self, client: Optional[Issued] = None, ca: Optional[str] = None) -> ssl.SSLContext:
        """An ``ssl`` client context trusting ``ca`` (default: our CA), presenting ``client``."""
        ctx = ssl.create_default_context(cafile=ca or self.ca_pem)
        if client is not None:
            ctx.load_cert_chain(client.cert, client.key)
        return ctx
