"""TLS failures in a few words, for 502 bodies, logs and the admin page; and counting
them as ``<scope>/tls/handshake_failures``.

``describe(exc)`` unwraps what asyncio and aiohttp wrap around an ``ssl`` error and
names the cause: ``unknown CA``, ``name mismatch``, ``certificate expired``, ``no client
certificate``, ``peer does not speak TLS`` …, followed by OpenSSL's detail.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Optional

from ..metrics import MetricsRegistry

log = logging.getLogger("namerouter.tls")

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) → a short reason.
_VERIFY = {
    2: "unknown CA", 18: "unknown CA (self-signed certificate)", 19: "unknown CA (self-signed certificate in chain)",
    20: "unknown CA", 21: "unknown CA", 9: "certificate not yet valid", 10: "certificate expired",
    23: "certificate revoked", 26: "certificate not valid for this purpose", 62: "name mismatch",
    64: "name mismatch (IP address)",
}
# OpenSSL reason strings (ssl.SSLError.reason) → a short reason.
_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": "peer rejected our certificate: unknown CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "peer rejected our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "peer rejected our certificate: expired",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "peer rejected our certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "peer requires a client certificate",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate",
    "WRONG_VERSION_NUMBER": "peer does not speak TLS",
    "HTTP_REQUEST": "peer sent plaintext HTTP to a TLS port",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common",
    "NO_SHARED_CIPHER": "no cipher suite in common",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure (no common cipher or protocol?)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version enabled",
}


def _unwrap(exc: BaseException) -> BaseException:
    """The ssl error inside aiohttp's/asyncio's wrappers, if there is one."""
    for _ in range(8):
        # aiohttp's ClientConnectorCertificateError *is* an ssl.CertificateError but
        # carries the real one in ``certificate_error``: look inside wrappers first.
        inner = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None)
        if not isinstance(inner, BaseException) and not isinstance(exc, ssl.SSLError):
            inner = exc.__cause__ or exc.__context__
        if not isinstance(inner, BaseException) or inner is exc:
            return exc
        exc = inner
    return exc


def is_tls_error(exc: BaseException) -> bool:
    """Whether ``exc`` is (or wraps) a TLS failure rather than a plain connection error."""
    return isinstance(_unwrap(exc), ssl.SSLError)


def describe(exc: BaseException) -> str:
    """A short reason, e.g. ``name mismatch: Hostname mismatch, certificate is not valid
    for 'web'.`` or ``unknown CA: unable to get local issuer certificate``."""
    e = _unwrap(exc)
    if isinstance(e, ssl.SSLCertVerificationError):
        detail = (e.verify_message or str(e)).rstrip(".")
        short = _VERIFY.get(e.verify_code or -1)
        return f"{short}: {detail}" if short else f"certificate verification failed: {detail}"
    if isinstance(e, ssl.SSLError):
        reason = e.reason or ""
        short = _REASONS.get(reason)
        if short:
            return short
        return reason.lower().replace("_", " ") if reason else (str(e) or type(e).__name__)
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "TLS handshake timed out"
    if isinstance(e, ConnectionError):
        return "connection closed during the TLS handshake"
    return str(e) or type(e).__name__


class HandshakeFailures:
    """``<scope>/tls/handshake_failures`` plus the last reason, for one server or client.
    Logs at most one line per ``log_every`` seconds (a scanner must not flood the log)."""

    def __init__(self, metrics: Optional[MetricsRegistry], scope: str, log_every: float = 10.0) -> None:
        self.scope = scope
        registry = metrics if metrics is not None else MetricsRegistry()
        self.counter = registry.counter(f"{scope}/tls/handshake_failures")
        self.last_reason: Optional[str] = None
        self.last_at: Optional[float] = None
        self._log_every = log_every
        self._logged_at = 0.0
        self._unlogged = 0

    @property
    def count(self) -> int:
        return self.counter.value

    def record(self, exc: BaseException, peer: object = None) -> str:
        """Count one failure; returns its short reason."""
        self.counter.incr()
        reason = describe(exc)
        self.last_reason, self.last_at = reason, time.time()
        now = time.monotonic()
        if now - self._logged_at >= self._log_every:
            more = f" (and {self._unlogged} more since the last report)" if self._unlogged else ""
            log.warning("%s: TLS handshake with %s failed: %s%s", self.scope, _peer(peer), reason, more)
            self._logged_at, self._unlogged = now, 0
        else:
            self._unlogged += 1
        return reason

    def state(self) -> dict[str, Any]:
        return {"handshakeFailures": self.count, "lastFailure": self.last_reason, "lastFailureAt": self.last_at}


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else "a peer"
