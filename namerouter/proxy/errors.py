"""Router-generated failures and their HTTP responses (Linkerd's ErrorResponder).

Every failure the router produces itself carries its status here: unidentified or
malformed requests 400, a request body over ``maxRequestKB`` (``streamingEnabled: false``)
413, a destination the router never forwards to 403, no route / no hosts /
connect failures / TLS handshake failures / binding timeout 502,
request timeouts and overload 503. The response has ``l5d-err`` (the message,
URL-encoded) and a ``text/plain`` body that explains why, so that "why did my request
not route?" is answerable from the response alone.

A server with ``clearContext: true`` faces untrusted clients: its router-made answers are
the status only (no ``l5d-err``, no ``l5d-retryable``, an empty body), as Linkerd's
ClearMiscServerFilter makes them; the explanation goes to the log instead
(:func:`log_hidden`, rate-limited) and to the admin server's recent requests.
"""
from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import quote_plus

from ..ratelog import RateLimitedLog

#: explanations a clearContext server keeps from its clients: one line per kind per 10 s
_HIDDEN_LOG = RateLimitedLog(logging.getLogger("namerouter.proxy"), 10.0)


class RouterError(Exception):
    """A failure answered by the router itself with ``status``."""

    status = 502
    #: Linkerd's ``l5d-retryable``: true when the request provably never reached a backend.
    retryable = False

    def __init__(self, message: str, status: Optional[int] = None, retryable: Optional[bool] = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if retryable is not None:
            self.retryable = retryable


class BadRequest(RouterError):
    status = 400


class Unidentified(BadRequest):
    """No identifier could name the request."""


class BadDtabHeader(BadRequest):
    pass


class NoRoute(RouterError):
    """The name bound to Neg / Fail: the dtab has no rule for it."""

    status = 502
    retryable = True


class NoHosts(RouterError):
    """The name bound, but the bound name has no addresses (Finagle's NoBrokersAvailable)."""

    status = 502
    retryable = True


class BindingTimeout(RouterError):
    status = 502
    retryable = True


class ConnectFailed(RouterError):
    status = 502
    retryable = True


class TlsFailed(ConnectFailed):
    """The TLS handshake with a backend failed (unknown CA, name mismatch, expired, …):
    the body names the bound name, the address and the reason."""


class BackendFailed(RouterError):
    """The backend closed or broke the connection before a full response head (or, once
    a response is being relayed, before its end: the client's connection is then cut,
    and the request counts as a failure named ``exc_name``)."""

    status = 502
    #: the name the request's failure is counted under (``…/failures/<exc_name>``)
    exc_name = "com.twitter.finagle.ChannelClosedException"

    def __init__(self, message: str, exc_name: Optional[str] = None) -> None:
        super().__init__(message)
        if exc_name is not None:
            self.exc_name = exc_name


class ForbiddenDestination(RouterError):
    """The name bound to an address the router never forwards to (protected.py)."""

    status = 403


class RequestTimeout(RouterError):
    status = 503


class RequestReadTimeout(RouterError):
    """The client stopped sending its request (serverSession, sessions.py)."""

    status = 408


class DeadlineExceeded(RequestTimeout):
    """The request's own ``l5d-ctx-deadline`` passed before a response head came."""


class PayloadTooLarge(RouterError):
    """A request body over ``maxRequestKB`` on a router with ``streamingEnabled: false``."""
    status = 413


class Overloaded(RouterError):
    status = 503
    retryable = True


REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
    417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


def reason(status: int) -> str:
    return REASONS.get(status, "Unknown")


def error_body(message: str, max_body: int) -> bytes:
    """The text/plain body of a router-made answer: the whole explanation."""
    body = message.encode("utf-8", "replace")
    if not body.endswith(b"\n"):
        body += b"\n"
    return body[:max_body] if len(body) > max_body else body


def l5d_err_value(message: str, max_header: int) -> bytes:
    """``l5d-err``: Linkerd URL-encodes the message (ISO-8859-1) and truncates it to the
    header limit. The header carries the first line (the reason); the body has the
    details below it."""
    first = message.split("\n", 1)[0]
    return quote_plus(first, safe="*", encoding="latin-1", errors="replace")[: max(64, max_header - 64)].encode(
        "latin-1", "replace")


def error_response(
    status: int,
    message: str,
    *,
    keep_alive: bool,
    retryable: bool = False,
    max_body: int = 5120 * 1024,
    max_header: int = 8 * 1024,
    head_only: bool = False,
    extra_headers: bytes = b"",
    hide: bool = False,
    http10: bool = False,
) -> bytes:
    """A complete response with ``l5d-err`` and a text/plain body explaining ``message``."""
    body = error_body(message, max_body)
    parts = [
        f"HTTP/1.1 {status} {reason(status)}\r\n".encode("latin-1"),
        b"l5d-err: ", l5d_err_value(message, max_header), b"\r\n",
    ]
    if retryable:
        parts.append(b"l5d-retryable: true\r\n")
    parts += [
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Length: ", str(len(body)).encode(), b"\r\n",
        b"Via: 1.1 linkerd\r\n",
        extra_headers,
        b"" if keep_alive else b"Connection: close\r\n",
        b"\r\n",
    ]
    if not head_only:
        parts.append(body)
    # ``hide`` (a clearContext server): the status only, the explanation to the log;
    # ``http10``: an HTTP/1.0 client is answered in its version
    if hide:
        return _status_only(status, message, keep_alive, extra_headers, http10)
    return _as_http10(b"".join(parts)) if http10 else b"".join(parts)


def _as_http10(response: bytes) -> bytes:
    """A router-made HTTP/1.1 answer as HTTP/1.0: its status line and its own Via line."""
    return b"HTTP/1.0" + response[8:].replace(b"\r\nVia: 1.1 linkerd\r\n", b"\r\nVia: 1.0 linkerd\r\n", 1)


def log_hidden(status: int, message: str) -> None:
    """The explanation of an answer a clearContext server sent as a bare status."""
    first = message.split("\n", 1)[0]
    _HIDDEN_LOG.warn(f"{status} {first[:120]}", "answered %d without explanation (clearContext): %s",
                     status, message)


def _status_only(status: int, message: str, keep_alive: bool, extra_headers: bytes, http10: bool) -> bytes:
    log_hidden(status, message)
    version = "1.0" if http10 else "1.1"
    return b"".join((
        f"HTTP/{version} {status} {reason(status)}\r\n".encode("latin-1"),
        f"Content-Length: 0\r\nVia: {version} linkerd\r\n".encode(),
        extra_headers,
        b"" if keep_alive else b"Connection: close\r\n",
        b"\r\n",
    ))
