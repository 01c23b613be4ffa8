"""TLS config blocks in Linkerd 1's schema (``linkerd/docs/client_tls.md``, server TLS in
``routers.md``), shared by router servers and clients, the admin server, namerd's
interfaces and the ``io.l5d.namerd.http`` interpreter.

The config layer validates YAML into these dataclasses from their type hints
(``namerouter/config/validate.py``). File fields carry a ``check`` so each missing or
unreadable file is reported at its own key; ``__post_init__`` adds what spans fields (a
key that does not match its certificate, ``disableValidation`` with ``clientAuth``, …) by
raising :class:`TlsConfigError`, whose ``config_key`` the validator appends to the block's
key path. Both run at load time, so ``--check`` catches them too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .material import TlsConfigError, check_cert_file, check_key_file, load_key_pair
from .protocols import PROTOCOLS, check_cipher

_PROTOCOL_META = {"choices": tuple(PROTOCOLS), "doc": "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"}
_VAR = re.compile(r"\{([^{}/]+)\}")


def _tup(v: Optional[list[str]]) -> tuple[str, ...]:
    return tuple(v or ())


@dataclass
class ServerTlsConfig:
    """A server's ``tls`` block: serve TLS with this certificate (and ask clients for one
    when ``requireClientAuth``)."""

    certPath: str = field(metadata={"check": check_cert_file})
    keyPath: str = field(metadata={"check": check_key_file,
                                   "doc": "PKCS#8, PKCS#1 or SEC1 PEM (Linkerd: PKCS#8 only)"})
    intermediateCertsPath: Optional[str] = field(default=None, metadata={"check": check_cert_file})
    #: CA(s) that client certificates must chain to; with ``requireClientAuth`` and no
    #: ``caCertPath`` the system's CAs are used, as Linkerd uses the JVM's.
    caCertPath: Optional[str] = field(default=None, metadata={"check": check_cert_file})
    requireClientAuth: bool = False
    protocols: Optional[list[str]] = field(default=None, metadata=_PROTOCOL_META)
    ciphers: Optional[list[str]] = field(default=None, metadata={"check": check_cipher})
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.enabled:  # the key must match the certificate (field checks ran first)
            load_key_pair(self.certPath, self.keyPath, self.intermediateCertsPath)

    def files(self) -> list[str]:
        return [p for p in (self.certPath, self.keyPath, self.intermediateCertsPath, self.caCertPath) if p]

    def settings_key(self) -> tuple[Any, ...]:
        return ("server", self.certPath, self.keyPath, self.intermediateCertsPath, self.caCertPath,
                self.requireClientAuth, _tup(self.protocols), _tup(self.ciphers))


@dataclass
class ClientAuthConfig:
    """``clientAuth``: the certificate a client presents to servers that ask for one."""

    certPath: str = field(metadata={"check": check_cert_file})
    keyPath: str = field(metadata={"check": check_key_file})
    intermediateCertsPath: Optional[str] = field(default=None, metadata={"check": check_cert_file})

    def __post_init__(self) -> None:
        load_key_pair(self.certPath, self.keyPath, self.intermediateCertsPath)

    def files(self) -> list[str]:
        return [p for p in (self.certPath, self.keyPath, self.intermediateCertsPath) if p]


@dataclass
class ClientTlsConfig:
    """A client's ``tls`` block: connect with TLS, check the server's certificate against
    ``trustCerts``/``trustCertsBundle`` (the system's CAs when neither is given) for the
    name ``commonName`` (also sent as SNI), and present ``clientAuth`` when set.
    ``enabled: false`` turns TLS off (e.g. under a more specific ``io.l5d.static`` prefix)."""

    enabled: bool = True
    disableValidation: bool = False
    #: may use the ``{variables}`` captured by the client prefix (``{service}.linkerd.io``)
    commonName: Optional[str] = None
    #: deprecated in Linkerd in favour of trustCertsBundle; still accepted
    trustCerts: Optional[list[str]] = field(default=None, metadata={"check": check_cert_file})
    trustCertsBundle: Optional[str] = field(default=None, metadata={"check": check_cert_file})
    clientAuth: Optional[ClientAuthConfig] = None
    protocols: Optional[list[str]] = field(default=None, metadata=_PROTOCOL_META)

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if self.disableValidation and self.clientAuth is not None:
            raise TlsConfigError("disableValidation", "disableValidation: true cannot be combined with "
                                                      "clientAuth (Linkerd refuses this too)")
        if self.trustCerts and self.trustCertsBundle:
            raise TlsConfigError("trustCerts", "both trustCerts and trustCertsBundle are set; "
                                               "use only trustCertsBundle")
        if not self.disableValidation and not self.commonName:
            raise TlsConfigError("commonName", "required: the name the server's certificate must carry "
                                               "(or set disableValidation: true)")

    def variables(self) -> set[str]:
        """The ``{variables}`` ``commonName`` uses."""
        return set(_VAR.findall(self.commonName or ""))

    def common_name(self, variables: Mapping[str, str]) -> Optional[str]:
        """``commonName`` with the captured variables substituted (Linkerd's
        ``PathMatcher.substitute``: unknown ``{names}`` are left as they are)."""
        cn = self.commonName
        if cn is None:
            return None
        for k, v in variables.items():
            cn = cn.replace("{" + k + "}", v)
        return cn

    def files(self) -> list[str]:
        if not self.enabled:
            return []
        out = list(self.trustCerts or ())
        if self.trustCertsBundle:
            out.append(self.trustCertsBundle)
        if self.clientAuth is not None:
            out += self.clientAuth.files()
        return out

    def settings_key(self) -> tuple[Any, ...]:
        """Everything but ``commonName`` that decides the SSLContext: clients whose TLS
        blocks share this key share one context (the name is given per connection)."""
        ca = self.clientAuth
        return ("client", self.enabled, self.disableValidation, _tup(self.trustCerts), self.trustCertsBundle,
                (ca.certPath, ca.keyPath, ca.intermediateCertsPath) if ca else None, _tup(self.protocols))


def check_common_name_vars(tls: Optional[ClientTlsConfig], prefix: Optional[str]) -> None:
    """``{variables}`` in ``tls.commonName`` must be captured by the entry's ``prefix``
    (``None`` = a block with no prefix, where there are none to use)."""
    if tls is None or not tls.enabled:
        return
    captured = set()
    for seg in (prefix or "").split("/"):
        captured |= set(_VAR.findall(seg))
    missing = sorted(tls.variables() - captured)
    if missing:
        where = f"prefix {prefix}" if prefix else "this block (it has no prefix)"
        names = ", ".join("{" + m + "}" for m in missing)
        raise TlsConfigError("tls.commonName", f"{names} is not captured by {where}")
