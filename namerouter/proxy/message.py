"""Protocol-neutral request and response heads: what the request lifecycle, the
identifiers, routing and policy read, whatever codec (HTTP/1.1 today, HTTP/2 next)
received the message.

A codec subclasses :class:`RequestHead` / :class:`ResponseHead` and fills the
attributes when it has read a head; ``fields()`` and ``header()`` are the only ways to
see the other header fields, so a codec may keep the head in its wire form and parse
it only when asked (HTTP/1.1 keeps the raw bytes: ``h1/heads.py``).

"Forwardable" fields are the end-to-end ones: hop-by-hop fields (``Connection`` and
the fields it names, ``Keep-Alive``, ``TE``, ``Transfer-Encoding``, ``Upgrade``,
``Proxy-*``), ``Via``, the l5d routing headers the router consumes or rewrites and
``x-forwarded-client-cert`` (only the router writes it) are not among them; they
surface as the attributes below instead.
"""
from __future__ import annotations

from typing import Iterable, Optional

from ..tracing.propagation import TRACE_HEADERS

Fields = list[tuple[bytes, bytes]]


def first_value(fields: Fields, lname: bytes) -> Optional[bytes]:
    """The value of the first field named ``lname`` (lower case), else None."""
    for name, value in fields:
        if name.lower() == lname:
            return value
    return None


class RequestHead:
    """A request head as the lifecycle sees it (attributes set by the codec; the class
    attributes are the defaults, so a codec sets only what a request has)."""

    method: bytes = b"GET"
    #: origin-form request target (``/path?query``); a codec turns absolute-form
    #: (``http://host/path``, sent to proxies) or HTTP/2's ``:path`` into this
    uri: bytes = b"/"
    #: "1.0", "1.1" (HTTP/1) or "2"
    version: str = "1.1"
    #: the authority (``Host`` / ``:authority``), None when absent
    host: Optional[bytes] = None
    #: the client wants the connection kept open after this exchange (HTTP/1)
    keep_alive: bool = True
    #: incoming ``Via`` values joined with ", " (the router appends its own hop)
    via: Optional[bytes] = None
    #: ``l5d-dtab`` / ``l5d-ctx-dtab`` values (several joined with ";"); None when absent
    #: or when the server's clearContext dropped them
    dtab: Optional[bytes] = None
    dtab_ctx: Optional[bytes] = None
    #: ``(lower-case name, value)`` of every trace-context field (``tracing.TRACE_HEADERS``:
    #: ``l5d-ctx-trace``, ``l5d-sample``, B3, W3C) in arrival order, None when there is
    #: none; not among ``fields()`` (the tracer writes the context again for the next hop).
    #: clearContext drops the ``l5d-*`` ones.
    trace_headers: Optional[Fields] = None
    #: incoming ``l5d-ctx-deadline`` values (forwarded as received unless the policy
    #: writes its own combination, see ``Lifecycle.deadline``)
    deadline: Optional[list[bytes]] = None
    #: body framing: a known length, a stream of unknown length (``chunked``), or none
    content_length: Optional[int] = None
    chunked: bool = False
    expect_continue: bool = False
    #: the protocol asked for with ``Upgrade`` (+ ``Connection: upgrade``), else None
    upgrade: Optional[bytes] = None
    #: the request's trailers once received (HTTP/2: ``Lifecycle.request_trailers``)
    trailers: Optional[Fields] = None
    #: the ``x-forwarded-client-cert`` value of the connection's verified client
    #: certificate, set by the codec when the server collects it (TLS + forwardClientCert);
    #: an incoming ``x-forwarded-client-cert`` field is never forwardable
    client_cert: Optional[bytes] = None

    # --- the other header fields ------------------------------------------------------
    def fields(self) -> Fields:
        """Forwardable header fields in arrival order, ``(name as sent, value)``."""
        raise NotImplementedError

    def header(self, lname: bytes) -> Optional[bytes]:
        """First value of a forwardable field by lower-case name (identifiers, access log)."""
        return first_value(self.fields(), lname)

    # --- derived ------------------------------------------------------------------------
    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def path_only(self) -> bytes:
        """The URI's path without query or fragment."""
        u = self.uri
        for sep in (b"?", b"#"):
            i = u.find(sep)
            if i >= 0:
                u = u[:i]
        return u


class SimpleRequestHead(RequestHead):
    """A request head built from parsed fields (tests, and codecs without a wire form to
    keep). Trace-context fields are taken out into ``trace_headers``."""

    def __init__(self, method: bytes = b"GET", uri: bytes = b"/", host: Optional[bytes] = None,
                 version: str = "1.1", fields: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self.method, self.uri, self.host, self.version = method, uri, host, version
        kept: Fields = []
        trace: Optional[Fields] = None
        for name, value in fields:
            lname = name.lower()
            if lname in TRACE_HEADERS:
                if trace is None:
                    trace = []
                trace.append((lname, value))
            else:
                kept.append((name, value))
        self._fields = kept
        self.trace_headers = trace

    def fields(self) -> Fields:
        return self._fields


#: the attributes of :class:`RequestHead` a derived head copies (``derive_request``)
_NEUTRAL = ("method", "uri", "version", "host", "keep_alive", "via", "dtab", "dtab_ctx", "trace_headers",
            "deadline", "content_length", "chunked", "expect_continue", "upgrade", "trailers", "client_cert")


def derive_request(head: RequestHead, replace: bytes, value: Optional[bytes]) -> SimpleRequestHead:
    """A copy of ``head`` whose field ``replace`` (lower case) is dropped and, when ``value``
    is not None, written again with ``value`` (the rare rewrite of an end-to-end field,
    such as ``Max-Forwards`` of a diagnostic TRACE; the copy is written from its fields)."""
    fields = [(n, v) for n, v in head.fields() if n.lower() != replace]
    if value is not None:
        fields.append((replace.title(), value))
    new = SimpleRequestHead(head.method, head.uri, head.host, head.version)
    for attr in _NEUTRAL:
        setattr(new, attr, getattr(head, attr))
    new._fields = fields
    return new


class ResponseHead:
    """A response head from an upstream as the lifecycle sees it (set by the client codec)."""

    status: int = 0
    reason: bytes = b""
    content_length: Optional[int] = None
    chunked: bool = False
    #: incoming ``Via`` values joined with ", "
    via: Optional[bytes] = None
    #: the protocol of a 101 answer
    upgrade: Optional[bytes] = None
    #: the upstream connection may carry another exchange after this one
    keep_alive: bool = True
    #: ``l5d-retryable: true`` from a router further down
    retryable: bool = False
    #: the response carries ``l5d-success-class`` / ``l5d-retryable`` (replaced by ours)
    has_class: bool = False

    def fields(self) -> Fields:
        """Forwardable header fields in arrival order (Content-Length included)."""
        raise NotImplementedError

    def header(self, lname: bytes) -> Optional[bytes]:
        return first_value(self.fields(), lname)


class SimpleResponseHead(ResponseHead):
    """A response head built from fields: router-made answers written like a backend's
    (a diagnostic TRACE's answer with this router's context)."""

    def __init__(self, status: int, reason: bytes, fields: Iterable[tuple[bytes, bytes]],
                 content_length: Optional[int], via: Optional[bytes] = None) -> None:
        self.status, self.reason, self.content_length, self.via = status, reason, content_length, via
        self._fields: Fields = list(fields)

    def fields(self) -> Fields:
        return self._fields


class HeaderBlock:
    """Header fields the router adds, built once (per name, per bound id, per constant) and
    kept both as fields and in HTTP/1.1 wire form, so no request re-encodes them."""

    __slots__ = ("fields", "h1")

    def __init__(self, fields: Iterable[tuple[bytes, bytes]]) -> None:
        self.fields: tuple[tuple[bytes, bytes], ...] = tuple(fields)
        self.h1 = b"".join(b"%b: %b\r\n" % (n, v) for n, v in self.fields)

    def __add__(self, other: "HeaderBlock") -> "HeaderBlock":
        return HeaderBlock(self.fields + other.fields)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def __repr__(self) -> str:
        return f"HeaderBlock({self.fields!r})"


EMPTY_BLOCK = HeaderBlock(())

