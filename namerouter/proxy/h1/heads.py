"""HTTP/1.1 heads kept as their raw bytes, classified with one scan (pure, no I/O).

The server and client protocols find a head's end (``head_end``), let httptools
validate it, and build an :class:`H1RequestHead` / :class:`H1ResponseHead` from the
bytes. One regular-expression scan finds the few lines the router acts on — ``Host``,
the hop-by-hop fields, ``Via``, ``Content-Length``, ``Expect``, the ``l5d-*`` headers,
``x-forwarded-client-cert`` (only the router writes it), the trace-context fields
(collected into ``trace_headers``) — and records the spans of those that are not
forwarded. Everything else stays bytes: forwarding copies the head with those spans cut
out (``encode.py``), and the full list of fields is parsed only when someone asks for it
(``fields()``: an identifier on an arbitrary header, the access log).

llhttp (httptools) has already accepted the head when these run: lines end in CRLF,
there is no obs-fold, names are tokens, so a line starts exactly after a CRLF. What the
scan rejects (a second Host, a transfer coding other than chunked, a Connection list
naming a field the scan must find) raises :class:`FramingError` with the reason.
"""
from __future__ import annotations

import re
from typing import Optional

from ...tracing.propagation import TRACE_HEADERS
from ..message import Fields, RequestHead, ResponseHead

Span = tuple[int, int]


class FramingError(ValueError):
    """Bytes the router refuses (400 from a client; a broken response from a backend)."""


#: tchar (RFC 9110 §5.6.2), lower case, for the names of ``l5d-*`` fields
_TCHARS = rb"[-!#$%&'*+.^_`|~0-9a-z]"
# The scans run over the lower-cased head (same offsets as the raw one): names match
# case-sensitively; values that keep their case are taken from the raw bytes.
#: the request lines the router acts on: "\r\n" name OWS ":" OWS value (to the CR)
#: (the trace-context fields other than ``l5d-*`` ones: ``b3``, ``x-b3-*``, ``traceparent``,
#: ``tracestate``, are found in the same scan, so a request without them pays nothing more)
_REQ_MARK = re.compile(
    rb"\r\n(host|connection|keep-alive|proxy-connection|proxy-authenticate|proxy-authorization|te|trailer"
    rb"|transfer-encoding|upgrade|via|content-length|expect|x-forwarded-client-cert|l5d-" + _TCHARS + rb"*"
    rb"|b3|x-b3-" + _TCHARS + rb"*|traceparent|tracestate)[ \t]*:[ \t]*([^\r]*)")
#: the response lines the router acts on
_RESP_MARK = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|proxy-authenticate|proxy-authorization|te|trailer"
    rb"|transfer-encoding|upgrade|via|content-length|l5d-" + _TCHARS + rb"*)[ \t]*:[ \t]*([^\r]*)")
#: any header line (for the rare full parse; over the raw head)
_LINE = re.compile(rb"\r\n([-!#$%&'*+.^_`|~0-9A-Za-z]+)[ \t]*:[ \t]*([^\r]*)")

#: hop-by-hop fields (RFC 9110 §7.6.1, plus Proxy-Connection): never forwarded as received
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade"))
#: l5d request headers the router consumes or writes itself on every hop
L5D_REWRITTEN = frozenset((b"l5d-dtab", b"l5d-ctx-dtab", b"l5d-dst-service", b"l5d-dst-client",
                           b"l5d-dst-residual", b"l5d-reqid"))
#: response headers carrying a router's classification (ours replaces one from further down)
L5D_CLASS = frozenset((b"l5d-success-class", b"l5d-retryable"))
#: Connection tokens that name no header field to strip
_PLAIN_TOKENS = frozenset((b"close", b"keep-alive", b"upgrade"))
_OWS = (b" ", b"\t")

#: compiled searches for single fields by name (names come from the config, not from requests)
_NAMED: dict[bytes, "re.Pattern[bytes]"] = {}


def head_end(buf: bytes, start: int = 0) -> int:
    """Index just past the empty line that ends the head starting at ``start``; -1 when
    the head is not complete yet."""
    i = buf.find(b"\r\n\r\n", start)
    return -1 if i < 0 else i + 4


def skip_empty_lines(buf: bytes, start: int) -> int:
    """RFC 9112 §2.2: empty lines before a request line are ignored."""
    while buf.startswith(b"\r\n", start):
        start += 2
    return start


def head_limit_error(buf: bytes, start: int, end: int, max_line: int, max_headers: int) -> Optional[str]:
    """Why the (possibly still incomplete) request head ``buf[start:end]`` is too large, or
    None. Bounds what one head may buffer: maxInitialLineKB for the request line,
    maxHeadersKB for the header lines."""
    le = buf.find(b"\r\n", start, end)
    line = (le if le >= 0 else end) - start
    if line > max_line:
        return f"request line longer than maxInitialLineKB ({max_line // 1024} KB)"
    if le >= 0 and end - le - 2 > max_headers + 2:
        return f"request headers larger than maxHeadersKB ({max_headers // 1024} KB)"
    return None


#: an RFC 9110 token (§5.6.2): what a method may be (§9.1)
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def check_method(method: bytes) -> None:
    """Any token is a method (RFC 9110 §9.1), including ones llhttp does not know."""
    if not _TOKEN.fullmatch(method):
        raise FramingError(f"invalid method {method[:64].decode('latin-1')!r} (a method is an RFC 9110 token)")


def request_line_error(buf: bytes, start: int, end: int) -> Optional[str]:
    """Why the request line of an incomplete head can never become a valid one, or None
    (e.g. an HTTP/0.9 ``GET /``: without this check it would wait for a version that
    never comes). Runs only while a head is incomplete."""
    le = buf.find(b"\n", start, end)
    if le < 0:
        return None
    line = buf[start:le]
    if line.endswith(b"\r"):
        line = line[:-1]
        parts = line.split(b" ")
        if len(parts) == 3 and parts[2].startswith(b"HTTP/"):
            return None
        return _line_error(line)
    if len(line.split(b" ")) == 3:
        return "malformed request line: lines must end with CRLF"
    return _line_error(line)


def _line_error(line: bytes) -> str:
    if len(line.split(b" ")) == 2:  # "GET /": an HTTP/0.9 simple request
        return "HTTP/0.9 request (a request line without an HTTP version) is not supported"
    return "malformed request line"


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def _spans_of(raw: bytes, start: int, names: set[bytes]) -> list[Span]:
    """Spans of every header line whose (lower-case) name is in ``names`` (full parse)."""
    return [(m.start() + 2, m.end() + 2) for m in _LINE.finditer(raw, start) if m.group(1).lower() in names]


def _parse_fields(raw: bytes, start: int, drops: Optional[list[Span]]) -> Fields:
    out: Fields = []
    for m in _LINE.finditer(raw, start):
        if drops is not None:
            s = m.start() + 2
            if any(a == s for a, _ in drops):
                continue
        out.append((m.group(1), m.group(2).rstrip(b" \t")))
    return out


def _raw_value(raw: bytes, m: "re.Match[bytes]", value: bytes) -> bytes:
    """A value as sent (``value`` is its lower-cased form from the scan)."""
    a = m.start(2)
    return raw[a:a + len(value)]


class H1RequestHead(RequestHead):
    """A request head received over HTTP/1.x, kept as bytes (see the module docstring)."""

    #: the head's bytes, request line to the final empty line
    raw: bytes = b""
    #: index of the CRLF ending the request line
    line_end: int = 0
    #: the request target as received (``uri`` differs after an absolute-form rewrite)
    target: bytes = b""
    #: spans of header lines not forwarded (sorted), None when all are
    drops: Optional[list[Span]] = None
    #: span of the Host line (dropped when the Host is rewritten)
    host_span: Optional[Span] = None
    #: spans of incoming l5d-ctx-deadline lines (dropped when the router writes its own)
    deadline_spans: Optional[list[Span]] = None
    #: the common case: HTTP/1.1, origin-form, one Host, nothing to drop — forwarded as
    #: the raw head plus the router's lines
    plain: bool = False
    _fields: Optional[Fields] = None

    def fields(self) -> Fields:
        f = self._fields
        if f is None:
            f = self._fields = _parse_fields(self.raw, self.line_end, self.drops)
            if self.host is not None and self.host_span is None:  # absolute-form authority
                f.insert(0, (b"Host", self.host))
        return f

    def header(self, lname: bytes) -> Optional[bytes]:
        if lname == b"host":
            return self.host
        if self._fields is not None:
            return RequestHead.header(self, lname)
        # one targeted search instead of parsing every line (identifiers, access log)
        rx = _NAMED.get(lname)
        if rx is None:
            if len(_NAMED) > 256:
                _NAMED.clear()
            rx = _NAMED[lname] = re.compile(rb"\r\n" + re.escape(lname) + rb"[ \t]*:[ \t]*([^\r]*)", re.I)
        drops = self.drops
        for m in rx.finditer(self.raw, self.line_end):
            if drops is None or (m.start() + 2, m.end() + 2) not in drops:
                return m.group(1).rstrip(b" \t")
        return None


def parse_request(raw: bytes, clear_context: bool = False) -> H1RequestHead:
    """Classify a complete request head (request line to the empty line, no leading CRLF)."""
    h = H1RequestHead()
    h.raw = raw
    le = raw.find(b"\r\n")
    h.line_end = le
    sp1 = raw.find(b" ", 0, le)
    sp2 = raw.rfind(b" ", 0, le)
    if sp1 <= 0 or sp2 <= sp1 or le - sp2 < 9:
        raise FramingError(_line_error(raw[:le]))
    h.method = raw[:sp1]
    h.target = h.uri = uri = raw[sp1 + 1:sp2]
    version = raw[sp2 + 6:le]
    if version != b"1.1":
        h.version = version.decode("latin-1")
    low = raw.lower()
    drops: Optional[list[Span]] = None
    tokens: Optional[list[bytes]] = None
    plain = True
    for m in _REQ_MARK.finditer(low, le):
        lname, value = m.groups()
        if value[-1:] in _OWS:
            value = value.rstrip(b" \t")
        span = (m.start() + 2, m.end() + 2)
        if lname == b"host":
            if h.host is not None:  # RFC 9112 §3.2: more than one Host is a 400
                raise FramingError("more than one Host header")
            h.host = _raw_value(raw, m, value)
            h.host_span = span
            continue
        plain = False
        if lname == b"content-length":
            try:
                n = int(value)
            except ValueError:
                raise FramingError(f"invalid Content-Length {value.decode('latin-1')!r}") from None
            if h.content_length is not None and h.content_length != n:
                raise FramingError("conflicting Content-Length headers")
            h.content_length = n
            continue
        if lname == b"expect":
            if value == b"100-continue":
                h.expect_continue = True
            continue
        if lname[:4] == b"l5d-":
            if not clear_context:
                if lname == b"l5d-ctx-trace" or lname == b"l5d-sample":
                    trace = (lname, _raw_value(raw, m, value))
                    h.trace_headers = [trace] if h.trace_headers is None else h.trace_headers + [trace]
                elif lname == b"l5d-ctx-deadline":
                    h.deadline = (h.deadline or []) + [value]
                    h.deadline_spans = (h.deadline_spans or []) + [span]
                    continue
                elif lname not in L5D_REWRITTEN:
                    continue  # other l5d-* headers are forwarded
                elif lname == b"l5d-dtab":
                    value = _raw_value(raw, m, value)
                    h.dtab = value if h.dtab is None else h.dtab + b";" + value
                elif lname == b"l5d-ctx-dtab":
                    value = _raw_value(raw, m, value)
                    h.dtab_ctx = value if h.dtab_ctx is None else h.dtab_ctx + b";" + value
        elif lname == b"via":
            value = _raw_value(raw, m, value)
            h.via = value if h.via is None else h.via + b", " + value
        elif lname == b"connection":
            tokens = (tokens or []) + _tokens(value)
        elif lname == b"x-forwarded-client-cert":
            pass  # never forwarded as received: only the router writes it (TLS forwardClientCert)
        elif lname[:1] == b"b" or lname[:1] == b"x" or lname[:5] == b"trace":
            if lname not in TRACE_HEADERS:
                continue  # an x-b3-<something else>: forwarded
            trace = (lname, _raw_value(raw, m, value))
            h.trace_headers = [trace] if h.trace_headers is None else h.trace_headers + [trace]
        elif lname == b"transfer-encoding":
            if any(c != b"chunked" for c in _tokens(value)):
                # Only chunked is relayed; anything else would reach the backend mislabelled.
                raise FramingError(f"unsupported Transfer-Encoding {value.decode('latin-1')!r} (only chunked)")
            h.chunked = True
        elif lname == b"upgrade":
            h.upgrade = _raw_value(raw, m, value)
        # hop-by-hop, Via, consumed l5d-*: not forwarded as received
        if drops is None:
            drops = [span]
        else:
            drops.append(span)
    if plain:  # the common case: nothing but Host to act on
        if version != b"1.1":
            h.keep_alive = False
        elif h.host is not None and uri[:1] == b"/":
            h.plain = True
            return h
    else:
        _connection(h, tokens, drops, raw)
    if uri[:1] != b"/" and uri[:4].lower() == b"http":
        h.drops = _absolute_form(h, h.drops)
    if h.method == b"CONNECT":
        # RFC 9110 §9.3.6: the target is the authority; it names the request, whatever the
        # Host line says. The connection becomes the tunnel (or closes after a refusal).
        h.host = uri
        h.keep_alive = False
    return h


def _connection(h: H1RequestHead, tokens: Optional[list[bytes]], drops: Optional[list[Span]], raw: bytes) -> None:
    """What ``Connection`` means for the request: keep-alive, upgrade, more hop-by-hop fields."""
    if h.chunked and h.content_length is not None:
        raise FramingError("Content-Length with Transfer-Encoding")
    if tokens is None:
        h.upgrade = None  # Upgrade without "Connection: upgrade" is not an upgrade request
        h.keep_alive = h.version != "1.0"
    else:
        if b"upgrade" not in tokens:
            h.upgrade = None
        h.keep_alive = b"close" not in tokens if h.version != "1.0" else b"keep-alive" in tokens
        named = {t for t in tokens if t not in _PLAIN_TOKENS and t not in HOP_BY_HOP}
        if named:  # Connection names other fields: they are hop-by-hop too (full parse)
            drops = sorted(set((drops or []) + _spans_of(raw, h.line_end, named)))
    h.drops = drops


def _absolute_form(h: H1RequestHead, drops: Optional[list[Span]]) -> Optional[list[Span]]:
    """``GET http://pong/pong`` (http_proxy clients): origin-form URI, authority -> Host."""
    u = h.uri
    lower = u[:8].lower()
    if not (lower.startswith(b"http://") or lower.startswith(b"https://")):
        return drops
    rest = u.split(b"://", 1)[1]
    cut = len(rest)
    for sep in (b"/", b"?", b"#"):
        i = rest.find(sep)
        if 0 <= i < cut:
            cut = i
    authority = rest[:cut]
    if b"@" in authority:
        authority = authority.rsplit(b"@", 1)[1]
    path = rest[cut:]
    h.uri = path if path.startswith(b"/") else b"/" + path
    if authority:
        h.host = authority
        if h.host_span is not None:  # the Host line gives way to the authority
            drops = sorted((drops or []) + [h.host_span])
            h.host_span = None
    return drops


class H1ResponseHead(ResponseHead):
    """A response head received from a backend over HTTP/1.x, kept as bytes."""

    raw: bytes = b""
    line_end: int = 0
    version: str = "1.1"
    #: hop-by-hop and Via lines (sorted), None when there are none
    drops: Optional[list[Span]] = None
    #: l5d-success-class / l5d-retryable lines (replaced when this hop classifies)
    class_spans: Optional[list[Span]] = None
    #: the other l5d-* lines (dropped by clearContext)
    l5d_spans: Optional[list[Span]] = None
    _fields: Optional[Fields] = None

    def fields(self) -> Fields:
        f = self._fields
        if f is None:
            f = self._fields = _parse_fields(self.raw, self.line_end, self.drops)
        return f


def parse_response(raw: bytes) -> H1ResponseHead:
    """Classify a complete response head (status line to the empty line)."""
    h = H1ResponseHead()
    h.raw = raw
    le = raw.find(b"\r\n")
    h.line_end = le
    if le < 12 or raw[8:9] != b" ":
        raise FramingError("malformed status line")
    version = raw[5:8]
    if version != b"1.1":
        h.version = version.decode("latin-1")
    try:
        h.status = int(raw[9:12])
    except ValueError:
        raise FramingError("malformed status line") from None
    h.reason = raw[13:le] if le > 13 else b""
    drops: Optional[list[Span]] = None
    tokens: Optional[list[bytes]] = None
    for m in _RESP_MARK.finditer(raw.lower(), le):
        lname, value = m.groups()
        if lname == b"content-length":
            try:
                h.content_length = int(value)
            except ValueError:
                raise FramingError("invalid Content-Length") from None
            continue
        span = (m.start() + 2, m.end() + 2)
        if lname == b"connection":
            if tokens is None and (value == b"keep-alive" or value == b"close"):
                tokens = [value]  # the common values name no other field
            else:
                tokens = (tokens or []) + _tokens(value)
        elif lname[:4] == b"l5d-":
            if lname in L5D_CLASS:
                h.has_class = True
                h.class_spans = (h.class_spans or []) + [span]
                if lname == b"l5d-retryable" and value.strip() == b"true":
                    h.retryable = True
            else:
                h.l5d_spans = (h.l5d_spans or []) + [span]
            continue
        elif lname == b"transfer-encoding":
            if b"chunked" in value:
                h.chunked = True
        elif lname == b"via":
            value = _raw_value(raw, m, value.rstrip(b" \t"))
            h.via = value if h.via is None else h.via + b", " + value
        elif lname == b"upgrade":
            h.upgrade = _raw_value(raw, m, value.rstrip(b" \t"))
        if drops is None:
            drops = [span]
        else:
            drops.append(span)
    if h.chunked:
        h.content_length = None  # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length
    if tokens is not None:
        h.keep_alive = b"close" not in tokens if version != b"1.0" else b"keep-alive" in tokens
        if len(tokens) > 1 or tokens[0] not in _PLAIN_TOKENS:
            named = {t for t in tokens if t not in _PLAIN_TOKENS and t not in HOP_BY_HOP}
            if named:
                drops = sorted(set((drops or []) + _spans_of(raw, le, named)))
    elif version == b"1.0":
        h.keep_alive = False
    h.drops = drops
    return h
