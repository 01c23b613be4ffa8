"""TLS protocol versions and cipher suite names, as Linkerd's configs write them.

``protocols`` are the JVM's names (``TLSv1``, ``TLSv1.1``, ``TLSv1.2``, ``TLSv1.3``).
``ciphers`` may be OpenSSL names (``ECDHE-RSA-AES128-GCM-SHA256``) or the IANA names the
JVM uses (``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``); IANA names are translated with
OpenSSL's own table (``OPENSSL_cipher_name``, reached through the libssl that Python's
``ssl`` module is linked against). TLS 1.3 suites (``TLS_AES_128_GCM_SHA256`` …) cannot be
narrowed through Python's ``ssl`` module; all three are strong and stay enabled. A list
that names only TLS 1.3 suites therefore means "TLS 1.3 only".
"""
from __future__ import annotations

import ctypes
import functools
import ssl
from typing import Callable, Optional

PROTOCOLS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = list(PROTOCOLS)
_NO_FLAGS = {"TLSv1": "OP_NO_TLSv1", "TLSv1.1": "OP_NO_TLSv1_1", "TLSv1.2": "OP_NO_TLSv1_2",
             "TLSv1.3": "OP_NO_TLSv1_3"}

TLS13_SUITES = frozenset(("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                          "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"))


def apply_protocols(ctx: ssl.SSLContext, names: Optional[list[str]]) -> None:
    """Enable exactly the listed versions (a range, minus any gap). TLS 1.0/1.1 need
    OpenSSL's security level 0 on current distributions, so listing them lowers it."""
    if not names:
        return
    idx = sorted(_ORDER.index(n) for n in set(names))
    ctx.minimum_version = PROTOCOLS[_ORDER[idx[0]]]
    ctx.maximum_version = PROTOCOLS[_ORDER[idx[-1]]]
    for i in range(idx[0], idx[-1]):
        if i not in idx:  # a gap: e.g. [TLSv1.1, TLSv1.3]
            ctx.options |= getattr(ssl, _NO_FLAGS[_ORDER[i]])
    if legacy(names):
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")


@functools.lru_cache(maxsize=1)
def _openssl_cipher_name() -> Optional[Callable[[bytes], Optional[bytes]]]:
    try:
        import _ssl

        fn = ctypes.CDLL(_ssl.__file__).OPENSSL_cipher_name
    except (ImportError, OSError, AttributeError):  # pragma: no cover - unusual builds
        return None
    fn.restype = ctypes.c_char_p
    fn.argtypes = [ctypes.c_char_p]
    return fn


def openssl_cipher(name: str) -> str:
    """The OpenSSL name of a cipher suite given by its OpenSSL or IANA name; ValueError
    naming it when OpenSSL does not know it."""
    if name in TLS13_SUITES:
        return name
    if name.startswith(("TLS_", "SSL_")):
        fn = _openssl_cipher_name()
        got = fn(name.encode("ascii", "replace")) if fn is not None else None
        if not got or got == b"(NONE)":
            raise ValueError(f"unknown cipher suite {name!r}")
        name = got.decode("ascii")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.set_ciphers(name + ":@SECLEVEL=0")
    except ssl.SSLError:
        raise ValueError(f"unknown cipher suite {name!r} (see `openssl ciphers -stdname ALL`)") from None
    if not any(c["name"] == name for c in probe.get_ciphers()):
        raise ValueError(f"{name!r} is not one cipher suite (give names, not OpenSSL cipher strings)")
    return name


def check_cipher(name: str) -> None:
    """Config field check for one ``ciphers`` entry."""
    openssl_cipher(name)


def legacy(names: Optional[list[str]]) -> bool:
    """Whether ``protocols`` enables TLS 1.0 or 1.1."""
    return bool(names) and any(n in ("TLSv1", "TLSv1.1") for n in names or ())


def apply_ciphers(ctx: ssl.SSLContext, names: Optional[list[str]], protocols: Optional[list[str]] = None) -> None:
    """Restrict TLS <= 1.2 suites to ``names``; only TLS 1.3 suites listed → TLS 1.3 only."""
    if not names:
        return
    tls12 = [openssl_cipher(n) for n in names if n not in TLS13_SUITES]
    if tls12:
        ctx.set_ciphers(":".join(tls12) + (":@SECLEVEL=0" if legacy(protocols) else ""))
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
