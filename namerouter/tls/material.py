"""Reading and checking PEM certificate and key files.

Everything a TLS config names is read here, once per (re)load, with the ``cryptography``
package, so that a bad file gets a reason a person understands ("no PEM certificate in
it", "the key is encrypted", "the key does not match the certificate") instead of
OpenSSL's "PEM lib". The parsed objects are re-serialised to canonical PEM for
``ssl.SSLContext`` (``context.py``), so what OpenSSL loads is exactly what was checked.

Keys: PKCS#8 (``BEGIN PRIVATE KEY``), PKCS#1 (``BEGIN RSA PRIVATE KEY``) and SEC1
(``BEGIN EC PRIVATE KEY``, with or without ``EC PARAMETERS``) are all accepted — more
than Linkerd, which wants PKCS#8. Encrypted keys are refused (no passphrase config).
"""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

# ``cryptography`` is imported where it is used, not here: it costs about 16 MB of RSS,
# which a router without TLS should not pay.

#: Largest certificate/key file read (a CA bundle such as Debian's is ~200 KB).
MAX_FILE_BYTES = 4 * 1024 * 1024


class TlsConfigError(ValueError):
    """A TLS setting or file is wrong. ``config_key`` is the config key at fault
    (``keyPath``, ``clientAuth.certPath``, …, relative to the TLS block) so that the config
    validator reports the full key path; ``str()`` is the reason (``<file>: <reason>``
    for files)."""

    def __init__(self, config_key: str, message: str) -> None:
        super().__init__(message)
        self.config_key = config_key


def read_file(path: str, key: str) -> bytes:
    """The bytes of ``path``; TlsConfigError with a short reason otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise TlsConfigError(key, f"{path}: file not found") from None
    except PermissionError:
        raise TlsConfigError(key, f"{path}: cannot read it: permission denied") from None
    except IsADirectoryError:
        raise TlsConfigError(key, f"{path}: is a directory, expected a PEM file") from None
    except OSError as e:
        raise TlsConfigError(key, f"{path}: cannot read it: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TlsConfigError(key, f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, not a PEM file")
    return data


def parse_certs(data: bytes, path: str, key: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file (at least one)."""
    from cryptography import x509
    if b"-----BEGIN CERTIFICATE-----" not in data:
        what = " (it holds a private key)" if b"PRIVATE KEY-----" in data else ""
        raise TlsConfigError(key, f"{path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it{what}")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TlsConfigError(key, f"{path}: not a valid PEM certificate: {e}") from None


def parse_key(data: bytes, path: str, key: str) -> PrivateKeyTypes:
    """The private key in a PEM file (PKCS#8, PKCS#1 or SEC1)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    if b"PRIVATE KEY-----" not in data:
        what = " (it holds a certificate)" if b"BEGIN CERTIFICATE" in data else ""
        raise TlsConfigError(key, f"{path}: no PEM private key (-----BEGIN PRIVATE KEY-----) in it{what}")
    if b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data:
        raise TlsConfigError(key, f"{path}: the private key is encrypted; give an unencrypted key "
                                f"(e.g. openssl pkey -in {path} -out key.pem)")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise TlsConfigError(key, f"{path}: the private key is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise TlsConfigError(key, f"{path}: not a valid PEM private key: {e}") from None


def _spki(key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(certs: list[x509.Certificate]) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True)
class CertInfo:
    """What the admin page shows about a loaded certificate."""

    subject: str
    issuer: str
    not_after: float
    sha256: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> "CertInfo":
        from cryptography.hazmat.primitives import serialization
        return cls(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                   cert.not_valid_after_utc.timestamp(),
                   hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "issuer": self.issuer, "sha256": self.sha256,
                "notAfter": datetime.datetime.fromtimestamp(self.not_after, datetime.timezone.utc)
                .strftime("%Y-%m-%dT%H:%M:%SZ")}


@dataclass(frozen=True)
class KeyPair:
    """A checked certificate chain and its key, as canonical PEM (chain: leaf first)."""

    chain_pem: bytes
    key_pem: bytes
    leaf: CertInfo


def load_key_pair(cert_path: str, key_path: str, chain_path: Optional[str] = None,
                  prefix: str = "") -> KeyPair:
    """Read and check ``cert_path`` (+ optional intermediates) and ``key_path``.
    ``prefix`` goes before the config key names in errors (``clientAuth.``)."""
    from cryptography.hazmat.primitives import serialization
    certs = parse_certs(read_file(cert_path, prefix + "certPath"), cert_path, prefix + "certPath")
    if chain_path:
        k = prefix + "intermediateCertsPath"
        certs = certs + parse_certs(read_file(chain_path, k), chain_path, k)
    pkey = parse_key(read_file(key_path, prefix + "keyPath"), key_path, prefix + "keyPath")
    if _spki(pkey.public_key()) != _spki(certs[0].public_key()):
        raise TlsConfigError(prefix + "keyPath",
                           f"{key_path}: the private key does not match the certificate in {cert_path}")
    key_pem = pkey.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return KeyPair(_pem(certs), key_pem, CertInfo.of(certs[0]))


def load_ca_certs(files: list[tuple[str, str]]) -> bytes:
    """Canonical PEM of every CA certificate in ``files``: ``(path, config key)`` pairs."""
    out: list[x509.Certificate] = []
    for path, key in files:
        out += parse_certs(read_file(path, key), path, key)
    return _pem(out)


def check_cert_file(path: str) -> None:
    """Field check for a certificate/CA file: it exists and holds a PEM certificate."""
    parse_certs(read_file(path, ""), path, "")


def check_key_file(path: str) -> None:
    """Field check for a key file: it exists and holds an unencrypted private key."""
    parse_key(read_file(path, ""), path, "")


def digest(paths: list[str]) -> bytes:
    """A fingerprint of the files' contents (missing files count as absent), used to
    tell a real change from a watch event that changed nothing we use."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode() + b"\0")
        try:
            with open(p, "rb") as f:
                h.update(hashlib.sha256(f.read(MAX_FILE_BYTES + 1)).digest())
        except OSError as e:
            h.update(f"error {e.errno}".encode())
    return h.digest()
