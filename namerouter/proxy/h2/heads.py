"""HTTP/2 heads: header lists (as the ``h2`` package gives and takes them) to and from
the protocol-neutral heads of ``message.py``. Pure: no I/O.

``h2`` has already checked a received header list (lower-case names, pseudo-headers
first and complete, no connection-specific fields, ``te`` only ``trailers``); one pass
here picks out what the router acts on (``:authority``/``host``, ``via``,
``content-length``, ``content-type``, the ``l5d-*`` headers) and keeps the rest as the
forwardable fields. ``te: trailers`` is end-to-end in HTTP/2 (gRPC needs it) and is
forwarded.

gRPC (``content-type: application/grpc…``) is recognised here so that the router's own
answers to a gRPC request are what gRPC clients expect: HTTP 200 with ``grpc-status``
and ``grpc-message`` in a trailers-only response.
"""
from __future__ import annotations

from typing import Optional

from hpack import NeverIndexedHeaderTuple

from ...tracing.propagation import TRACE_HEADERS
from ..errors import BadRequest, RequestTimeout, RouterError, Unidentified
from ..message import Fields, HeaderBlock, RequestHead, ResponseHead, first_value

#: Linkerd's Via for h2 routers ("h2 linkerd")
VIA = b"h2 linkerd"
#: l5d request headers the router consumes or writes itself on every hop
_L5D_REWRITTEN = frozenset((b"l5d-dtab", b"l5d-ctx-dtab", b"l5d-dst-service", b"l5d-dst-client",
                            b"l5d-dst-residual", b"l5d-reqid"))
_CLASS = frozenset((b"l5d-success-class", b"l5d-retryable"))

# gRPC status codes (grpc/doc/statuscodes.md)
GRPC_OK = 0
GRPC_CANCELLED = 1
GRPC_UNKNOWN = 2
GRPC_INVALID_ARGUMENT = 3
GRPC_DEADLINE_EXCEEDED = 4
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNIMPLEMENTED = 12
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14


class H2RequestHead(RequestHead):
    """A request received on an HTTP/2 stream."""

    version = "2"
    scheme: bytes = b"http"
    #: ``content-type`` starts with ``application/grpc``
    grpc: bool = False
    fwd: Fields

    def fields(self) -> Fields:
        return self.fwd

    def header(self, lname: bytes) -> Optional[bytes]:
        if lname[:1] == b":":  # identifiers may name pseudo-headers (``:authority``, ``:path``)
            if lname == b":authority":
                return self.host
            if lname == b":path":
                return self.uri
            if lname == b":method":
                return self.method
            if lname == b":scheme":
                return self.scheme
            return None
        if lname == b"host":
            return self.host
        return first_value(self.fwd, lname)


def parse_request(headers: Fields, clear_context: bool, end_stream: bool) -> H2RequestHead:
    """The head of a received request; BadRequest says what is wrong with it."""
    head = H2RequestHead()
    fwd: Fields = []
    host: Optional[bytes] = None
    authority: Optional[bytes] = None
    via: Optional[list[bytes]] = None
    path: Optional[bytes] = None
    for name, value in headers:
        if name[0] == 58:  # b":"
            if name == b":method":
                head.method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":scheme":
                head.scheme = value
            else:
                raise BadRequest(f"unsupported pseudo-header {name.decode('latin-1')}")
        elif name == b"host":
            host = value
        elif name == b"via":
            via = [value] if via is None else via + [value]
        elif name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                raise BadRequest(f"content-length is not a number: {value[:40]!r}") from None
            if n < 0 or (head.content_length is not None and head.content_length != n):
                raise BadRequest("conflicting or negative content-length")
            head.content_length = n
            fwd.append((name, value))
        elif name[:4] == b"l5d-":
            if clear_context:
                continue  # clearContext: no l5d-* header from this client is trusted
            if name == b"l5d-dtab":
                head.dtab = value if head.dtab is None else head.dtab + b";" + value
            elif name == b"l5d-ctx-dtab":
                head.dtab_ctx = value if head.dtab_ctx is None else head.dtab_ctx + b";" + value
            elif name == b"l5d-ctx-trace" or name == b"l5d-sample":
                trace = (name, value)  # the tracer writes the context again for the next hop
                head.trace_headers = [trace] if head.trace_headers is None else head.trace_headers + [trace]
            elif name in _L5D_REWRITTEN:
                continue
            else:
                if name == b"l5d-ctx-deadline":
                    head.deadline = [value] if head.deadline is None else head.deadline + [value]
                fwd.append((name, value))
        elif name in TRACE_HEADERS:  # b3, x-b3-*, traceparent, tracestate
            trace = (name, value)
            head.trace_headers = [trace] if head.trace_headers is None else head.trace_headers + [trace]
        elif name == b"x-forwarded-client-cert":
            continue  # never forwarded as received: only the router writes it (TLS forwardClientCert)
        else:
            if name == b"content-type" and value[:16] == b"application/grpc":
                head.grpc = True
            fwd.append((name, value))
    if head.method == b"CONNECT":
        raise BadRequest("CONNECT is not supported by the router")
    if not path:
        raise BadRequest(":path is missing")
    head.uri = path
    head.host = authority if authority is not None else host
    if via is not None:
        head.via = b", ".join(via)
    head.fwd = fwd
    head.chunked = not end_stream and head.content_length is None
    if end_stream:
        head.content_length = head.content_length if head.content_length else None
    return head


def request_headers(head: RequestHead, uri: bytes, authority: Optional[bytes], default_authority: bytes,
                    dst: HeaderBlock, trace_block: bytes, deadline: Optional[bytes],
                    client_cert: Optional[bytes]) -> Fields:
    """The header list to send upstream for ``head`` (an HTTP/2 request).

    ``trace_block`` is the lifecycle's CRLF-terminated trace-context lines (``l5d-ctx-trace``,
    ``l5d-reqid``, B3/W3C); ``client_cert`` the ``x-forwarded-client-cert`` value to add."""
    out: Fields = [
        (b":method", head.method),
        (b":scheme", getattr(head, "scheme", b"http")),
        (b":authority", authority if authority is not None else head.host if head.host else default_authority),
        (b":path", uri),
    ]
    if deadline is None:
        out += head.fields()
    else:
        out += [f for f in head.fields() if f[0] != b"l5d-ctx-deadline"]
        if deadline:
            out.append(NeverIndexedHeaderTuple(b"l5d-ctx-deadline", deadline))
    out.append((b"via", VIA if head.via is None else head.via + b", " + VIA))
    out += dst.fields
    if client_cert is not None:
        out.append((b"x-forwarded-client-cert", client_cert))
    # Values new on every request (span ids) are never put in the HPACK table: they
    # would only push out the entries that repeat.
    for line in trace_block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            out.append(NeverIndexedHeaderTuple(name, value))
    return out


class H2ResponseHead(ResponseHead):
    """A response received on an HTTP/2 stream."""

    #: the HEADERS frame ended the stream (a trailers-only gRPC answer, a 204, ...)
    end_stream: bool = False
    #: ``grpc-status`` carried in the head (trailers-only), else None
    grpc_status: Optional[int] = None
    fwd: Fields

    def fields(self) -> Fields:
        return self.fwd


def parse_response(headers: Fields, end_stream: bool) -> H2ResponseHead:
    """The head of a backend's response; ValueError says what is wrong with it."""
    resp = H2ResponseHead()
    fwd: Fields = []
    for name, value in headers:
        if name == b":status":
            try:
                resp.status = int(value)
            except ValueError:
                raise ValueError(f":status is not a number: {value[:20]!r}") from None
        elif name[0] == 58:
            raise ValueError(f"unexpected pseudo-header {name.decode('latin-1')} in a response")
        elif name == b"via":
            resp.via = value if resp.via is None else resp.via + b", " + value
        else:
            if name == b"content-length":
                try:
                    resp.content_length = int(value)
                except ValueError:
                    raise ValueError("content-length is not a number") from None
            elif name == b"grpc-status":
                resp.grpc_status = grpc_status_of(value)
            elif name in _CLASS:
                resp.has_class = True
                if name == b"l5d-retryable" and value.lower() == b"true":
                    resp.retryable = True
            fwd.append((name, value))
    if not 100 <= resp.status <= 999:
        raise ValueError(f"invalid :status {resp.status}")
    resp.fwd = fwd
    resp.end_stream = end_stream
    return resp


def grpc_status_of(value: Optional[bytes]) -> Optional[int]:
    """A ``grpc-status`` value as a number (None when absent or not a number)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def trailer_grpc_status(trailers: Optional[Fields]) -> Optional[int]:
    if not trailers:
        return None
    return grpc_status_of(first_value(trailers, b"grpc-status"))


def response_headers(resp: ResponseHead, extra: HeaderBlock, clear_l5d: bool,
                     unrewrite: Optional[tuple[bytes, bytes]]) -> Fields:
    """The header list of the response head sent to the client."""
    out: Fields = [(b":status", b"%d" % resp.status)]
    drop_class = bool(extra)
    for f in resp.fields():
        name = f[0]
        if name[:4] == b"l5d-" and (clear_l5d or (drop_class and name in _CLASS)):
            continue
        if unrewrite is not None and name in (b"location", b"refresh"):
            f = (name, f[1].replace(unrewrite[0], unrewrite[1]))
        out.append(f)
    if not clear_l5d:  # clearContext: no l5d-* line reaches the client, ours included
        out += extra.fields
    out.append((b"via", VIA if resp.via is None else resp.via + b", " + VIA))
    return out


# --- router-made answers --------------------------------------------------------------

def grpc_code_for(err: RouterError) -> int:
    """The gRPC status of a router-made failure (see docs/linkerd-compatibility.md)."""
    if isinstance(err, Unidentified):
        return GRPC_UNIMPLEMENTED
    if isinstance(err, BadRequest):
        return GRPC_INTERNAL
    if isinstance(err, RequestTimeout):
        return GRPC_DEADLINE_EXCEEDED
    return GRPC_UNAVAILABLE  # no route, no hosts, connect failure, backend gone, overload


def grpc_message(text: str) -> bytes:
    """``grpc-message``: percent-encoded UTF-8 (the gRPC over HTTP/2 spec)."""
    raw = text.encode("utf-8", "replace")
    return b"".join(bytes((c,)) if 0x20 <= c <= 0x7E and c != 0x25 else b"%%%02X" % c for c in raw)


def grpc_error_headers(code: int, message: str, l5d_err: Optional[bytes], retryable: bool) -> Fields:
    """A trailers-only gRPC answer (HEADERS with END_STREAM). ``l5d_err`` None: a
    clearContext server's answer (``message`` is then a generic text, and no l5d-*)."""
    out: Fields = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"%d" % code),
        (b"grpc-message", grpc_message(message)),
    ]
    if l5d_err is None:
        out.append((b"via", VIA))
        return out
    out.append((b"l5d-err", l5d_err))
    if retryable:
        out.append((b"l5d-retryable", b"true"))
    out.append((b"via", VIA))
    return out


def error_headers(status: int, l5d_err: Optional[bytes], retryable: bool, length: int) -> Fields:
    """A router-made HTTP answer's head (``l5d_err`` None: clearContext, the status only)."""
    if l5d_err is None:
        return [(b":status", b"%d" % status), (b"content-length", b"0"), (b"via", VIA)]
    out: Fields = [(b":status", b"%d" % status), (b"l5d-err", l5d_err)]
    if retryable:
        out.append((b"l5d-retryable", b"true"))
    out += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % length), (b"via", VIA)]
    return out
