"""The verified client certificate of a TLS connection, and ``x-forwarded-client-cert``.

With ``requireClientAuth`` a server knows who connected: ``PeerCert.of(ssl_object)``
gives the certificate's subject (RFC 4514 text, as Java's ``getName()`` writes it), its
URI and DNS subject alternative names and its SHA-256. ``xfcc()`` formats them as the
``x-forwarded-client-cert`` value: Envoy's format as Linkerd 1 writes it
(``ForwardClientCertFilter``): ``Hash=<SHA-256, upper-case hex>``, then ``SAN=<uri>`` for
each URI SAN (Linkerd's key) and ``URI=<uri>`` (Envoy's key, so Envoy-style parsers find
it too), ``DNS=<name>`` for each DNS SAN, and ``Subject="<subject>"``. Values holding
``,;="`` are quoted as Envoy does.

Parse once per connection (the certificate does not change on a connection) and reuse
the string for every request.
"""
from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from typing import Optional


XFCC = "x-forwarded-client-cert"


def _quote(v: str) -> str:
    if any(c in v for c in ',;="'):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return v


@dataclass(frozen=True)
class PeerCert:
    subject: str
    uris: tuple[str, ...]
    dns: tuple[str, ...]
    sha256: str  # lower-case hex

    @classmethod
    def from_der(cls, der: bytes) -> "PeerCert":
        from cryptography import x509  # here, not at import: ~16 MB a router without TLS does not need

        cert = x509.load_der_x509_certificate(der)
        uris: tuple[str, ...] = ()
        dns: tuple[str, ...] = ()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
            dns = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            pass
        return cls(cert.subject.rfc4514_string(), uris, dns, hashlib.sha256(der).hexdigest())

    @classmethod
    def of(cls, ssl_object: Optional[ssl.SSLObject]) -> Optional["PeerCert"]:
        """The verified peer certificate of a connection, or None (no TLS, no client
        certificate asked for or sent)."""
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        return cls.from_der(der) if der else None

    def xfcc(self) -> str:
        parts = [f"Hash={self.sha256.upper()}"]
        for u in self.uris:
            parts += [f"SAN={_quote(u)}", f"URI={_quote(u)}"]
        parts += [f"DNS={_quote(d)}" for d in self.dns]
        if self.subject:
            parts.append('Subject="' + self.subject.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return ";".join(parts)
