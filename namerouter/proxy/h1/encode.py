"""HTTP/1.1 serialisation as pure functions over bytes (no I/O): request and response
heads for forwarding, chunk framing, router-made answers, the Location rewrite.

A head received over HTTP/1.x (``heads.H1RequestHead`` / ``H1ResponseHead``) is
forwarded as its own bytes with the spans of the lines the router drops cut out and
the router's lines appended — no per-field work. A head from another codec is written
from its ``fields()``.
"""
from __future__ import annotations

import re
from typing import Optional

from ..errors import reason
from ..message import RequestHead, ResponseHead
from .heads import H1RequestHead, H1ResponseHead, Span

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
VIA = b"Via: 1.1 linkerd\r\n"
VIA_10 = b"Via: 1.0 linkerd\r\n"
#: the request line's end of a request forwarded as HTTP/1.0 (as Linkerd does, so that the
#: backend uses no HTTP/1.1 feature the client cannot take), asking to keep the pooled
#: connection open; the backend's answer says whether it may be reused
_HTTP10_KEEP = b" HTTP/1.0\r\nConnection: keep-alive\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def _cut(raw: bytes, start: int, end: int, drops: list[Span]) -> list[bytes]:
    """``raw[start:end]`` without the (sorted, non-overlapping) spans in ``drops``."""
    out = []
    pos = start
    for a, b in drops:
        if a > pos:
            out.append(raw[pos:a])
        if b > pos:
            pos = b
    if pos < end:
        out.append(raw[pos:end])
    return out


def _merge(*lists: Optional[list[Span]]) -> list[Span]:
    out: list[Span] = []
    for xs in lists:
        if xs:
            out += xs
    out.sort()
    return out


def request_head(head: RequestHead, uri: bytes, host: Optional[bytes], default_host: bytes,
                 dst: bytes, trace: bytes, deadline: Optional[bytes]) -> list[bytes]:
    """The head to send upstream, as pieces to join (the caller appends buffered body).

    ``host``: the Host to send instead of the client's (RewriteHostHeader), else None;
    ``default_host``: the Host for an HTTP/1.0 request without one (the endpoint);
    ``dst``: the router's l5d-dst-* lines; ``trace``: the trace-context lines of this
    attempt (``l5d-ctx-trace``, ``l5d-reqid``, …, each CRLF-terminated); ``deadline``: an ``l5d-ctx-deadline`` value
    replacing the incoming ones (b"": none), else None (they are forwarded as received).
    """
    if isinstance(head, H1RequestHead):
        raw = head.raw
        if head.plain and uri is head.target and host is None and deadline is None:
            return [raw[:-2], VIA, dst, trace, CRLF]
        le = head.line_end
        if uri is head.target and head.version == "1.1":
            parts = [raw[:le + 2]]
        elif head.version == "1.0" and not head.chunked:
            parts = [head.method, b" ", uri, _HTTP10_KEEP]
        else:
            parts = [head.method, b" ", uri, b" HTTP/1.1\r\n"]
        drops = head.drops
        if (host is not None and head.host_span is not None) or (deadline is not None and head.deadline_spans):
            drops = _merge(drops, [head.host_span] if host is not None and head.host_span else None,
                           head.deadline_spans if deadline is not None else None)
        if drops:
            parts += _cut(raw, le + 2, len(raw) - 2, drops)
        elif len(raw) - 2 > le + 2:
            parts.append(raw[le + 2:-2])
        if host is None and head.host_span is None:
            # absolute-form authority, or HTTP/1.0 without Host: HTTP/1.1 requires one
            parts += (b"Host: ", head.host if head.host is not None else default_host, CRLF)
    else:
        parts = [head.method, b" ", uri, b" HTTP/1.1\r\n", b"Host: ",
                 host if host is not None else head.host if head.host is not None else default_host, CRLF]
        for name, value in head.fields():
            ln = name.lower()
            if ln == b"host" or (ln == b"l5d-ctx-deadline" and deadline is not None):
                continue
            parts += (name, b": ", value, CRLF)
        host = None  # written above
    if host is not None:
        parts += (b"Host: ", host, CRLF)
    if head.via is None:
        parts.append(VIA if head.version != "1.0" else VIA_10)
    else:
        parts += (b"Via: ", head.via, b", ", head.version.encode(), b" linkerd\r\n")
    parts += (dst, trace)
    if deadline:
        parts += (b"l5d-ctx-deadline: ", deadline, CRLF)
    if head.upgrade is not None:
        parts += (b"Upgrade: ", head.upgrade, b"\r\nConnection: Upgrade\r\n")
    parts.append(CHUNKED + CRLF if head.chunked else CRLF)
    return parts


#: Response headers holding absolute URLs that name the Host the backend saw.
_URL_LINE = re.compile(rb"(\r\n(?:location|refresh)[ \t]*:)([^\r]*)", re.IGNORECASE)


def unrewrite_host(block: bytes, authority: bytes, original: bytes) -> bytes:
    """After a Host rewrite, ``Location``/``Refresh`` answers name the rewritten host; point
    them back at the one the client used (as Linkerd's RewriteHostHeader, nginx and Apache do)."""
    return _URL_LINE.sub(lambda m: m.group(1) + m.group(2).replace(authority, original), block)


def response_head(resp: ResponseHead, extra: bytes, framing: bytes, drop_class: bool = False,
                  clear_l5d: bool = False, unrewrite: Optional[tuple[bytes, bytes]] = None,
                  http10: bool = False) -> bytes:
    """The response head for the client: the upstream's head without its hop-by-hop lines,
    plus ``extra`` (the router's classification), ``Via`` and ``framing``
    (Transfer-Encoding / Connection lines); ``http10``: an HTTP/1.0 client, answered as
    HTTP/1.0 (status line and ``Via: 1.0 linkerd``)."""
    if isinstance(resp, H1ResponseHead):
        raw = resp.raw
        drops = resp.drops
        if resp.version == "1.1" and unrewrite is None and resp.class_spans is None and resp.l5d_spans is None:
            # the common case: the raw head with at most a Connection line cut out
            if drops is None:
                parts = [raw[:-2]]
            elif len(drops) == 1:
                a, b = drops[0]
                parts = [raw[:a], raw[b:-2]]
            else:
                parts = _cut(raw, 0, len(raw) - 2, drops)
        else:
            le = resp.line_end
            if resp.class_spans is not None and (drop_class or clear_l5d):
                drops = _merge(drops, resp.class_spans)
            if clear_l5d and resp.l5d_spans is not None:
                drops = _merge(drops, resp.l5d_spans)
            # block starts with the status line's CRLF (so every header line follows a CRLF)
            block = b"".join(_cut(raw, le, len(raw) - 2, drops)) if drops else raw[le:-2]
            if unrewrite is not None:
                block = unrewrite_host(block, *unrewrite)
            status = raw[:le] if resp.version == "1.1" else b"HTTP/1.1 %d %b" % (
                resp.status, resp.reason or reason(resp.status).encode())
            parts = [status, block]
    else:
        lines = [b""]
        for name, value in resp.fields():
            ln = name.lower()
            if ln[:4] == b"l5d-" and (clear_l5d or (drop_class and ln in (b"l5d-success-class", b"l5d-retryable"))):
                continue
            lines += (CRLF, name, b": ", value)
        block = b"".join(lines) + CRLF
        if unrewrite is not None:
            block = unrewrite_host(block, *unrewrite)
        parts = [b"HTTP/1.1 %d %b" % (resp.status, resp.reason or reason(resp.status).encode()), block]
    # parts end with the CRLF of the last line (of the status line when there are no others)
    if http10:
        parts[0] = b"HTTP/1.0" + parts[0][8:]  # every first part starts with the status line
        if resp.via is None:
            parts += (extra, VIA_10, framing, CRLF)
        else:
            parts += (extra, b"Via: ", resp.via, b", 1.0 linkerd\r\n", framing, CRLF)
    elif resp.via is None:
        parts += (extra, VIA, framing, CRLF)
    else:
        parts += (extra, b"Via: ", resp.via, b", 1.1 linkerd\r\n", framing, CRLF)
    return b"".join(parts)


def interim(status: int, reason_phrase: bytes) -> bytes:
    """A 1xx answer relayed to the client (100 Continue, 103 Early Hints)."""
    return b"HTTP/1.1 %d %b\r\n\r\n" % (status, reason_phrase or b"Continue")


def status_only(status: int, close: bool, http10: bool = False) -> bytes:
    """``/$/io.buoyant.http.status/<code>``: an empty answer with that status."""
    if http10:
        return b"HTTP/1.0 %d %b\r\nContent-Length: 0\r\n%b%b\r\n" % (
            status, reason(status).encode(), VIA_10, CLOSE if close else KEEP_ALIVE)
    return b"HTTP/1.1 %d %b\r\nContent-Length: 0\r\n%b%b\r\n" % (
        status, reason(status).encode(), VIA, CLOSE if close else b"")


def connect_established(status: int, reason_phrase: bytes) -> bytes:
    """The 2xx answer to CONNECT: no framing lines (RFC 9110 §9.3.6); the tunnel follows."""
    return b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, reason_phrase or b"Connection established", VIA)


def switching_protocols(resp: ResponseHead, extra: bytes = b"") -> bytes:
    """The 101 answer of an upgrade: the backend's head plus Upgrade/Connection."""
    up = b"Upgrade: " + resp.upgrade + CRLF if resp.upgrade is not None else b""
    return response_head(resp, extra, up + b"Connection: Upgrade\r\n")
