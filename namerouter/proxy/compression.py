"""``compressionLevel`` of an HTTP/1.1 router: responses gzip-compressed for clients that
accept it, as Finagle's server does (netty's HttpContentCompressor):

- ``-1`` (Linkerd's default, ours only when the key is given): textual content types
  only (``text/*``, JSON, XML, JavaScript, ``+json``/``+xml``), level 6;
  ``1`` … ``9``: every content type at that level; ``0``: never. Without the key
  nothing is compressed (see docs/linkerd-compatibility.md) and nothing runs per request.
- Only when the request's ``Accept-Encoding`` allows ``gzip`` (q > 0), the response has
  a body (not HEAD, 1xx, 204, 304, nor empty) and no ``Content-Encoding`` of its own.
- The compressed body streams: each piece the backend sends leaves compressed at once
  (zlib ``Z_SYNC_FLUSH``), chunked for HTTP/1.1 clients (close-delimited for 1.0), with
  ``Content-Encoding: gzip`` and ``Vary: Accept-Encoding``; ``Content-Length`` is dropped.

:class:`GzipDown` stands between a request's lifecycle and its server connection and
changes only the response head and body; everything else passes through.
"""
from __future__ import annotations

import zlib
from typing import Any, Optional

from .message import ResponseHead, SimpleResponseHead

#: netty's default level for the textual compressor
TEXTUAL_LEVEL = 6
_TEXTUAL = (b"application/json", b"application/javascript", b"application/xml", b"application/xhtml+xml",
            b"application/x-javascript", b"image/svg+xml")


def _textual(ctype: Optional[bytes]) -> bool:
    if not ctype:
        return False
    t = ctype.split(b";", 1)[0].strip().lower()
    return t.startswith(b"text/") or t in _TEXTUAL or t.endswith(b"+json") or t.endswith(b"+xml")


def accepts_gzip(value: Optional[bytes]) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*``, q > 0)."""
    if not value:
        return False
    star: Optional[bool] = None
    for item in value.lower().split(b","):
        coding, _, params = item.strip().partition(b";")
        q = 1.0
        p = params.strip()
        if p.startswith(b"q="):
            try:
                q = float(p[2:])
            except ValueError:
                q = 0.0
        coding = coding.strip()
        if coding in (b"gzip", b"x-gzip"):
            return q > 0
        if coding == b"*":
            star = q > 0
    return bool(star)


class Compression:
    """A router's ``compressionLevel`` (None when the key is absent or 0)."""

    __slots__ = ("level", "textual_only")

    def __init__(self, level: int) -> None:
        self.textual_only = level == -1
        self.level = TEXTUAL_LEVEL if level == -1 else level

    @classmethod
    def of(cls, level: Optional[int]) -> Optional["Compression"]:
        return cls(level) if level is not None and level != 0 else None

    def wants(self, head: Any) -> bool:
        """Whether this request's answer may be compressed (its Accept-Encoding, method)."""
        return head.method != b"HEAD" and head.method != b"CONNECT" and accepts_gzip(head.header(b"accept-encoding"))

    def compressible(self, resp: ResponseHead) -> bool:
        status = resp.status
        if status < 200 or status == 204 or status == 304 or resp.content_length == 0:
            return False
        enc = resp.header(b"content-encoding")
        if enc and enc.strip().lower() != b"identity":
            return False
        return not self.textual_only or _textual(resp.header(b"content-type"))


def _gzip_head(resp: ResponseHead) -> SimpleResponseHead:
    fields = [(n, v) for n, v in resp.fields()
              if n.lower() not in (b"content-length", b"content-encoding", b"transfer-encoding")]
    vary = [i for i, (n, _) in enumerate(fields) if n.lower() == b"vary"]
    if vary:
        n, v = fields[vary[0]]
        if b"accept-encoding" not in v.lower():
            fields[vary[0]] = (n, v + b", Accept-Encoding")
    else:
        fields.append((b"Vary", b"Accept-Encoding"))
    fields.append((b"Content-Encoding", b"gzip"))
    return SimpleResponseHead(resp.status, resp.reason, fields, None, resp.via)


class GzipDown:
    """A lifecycle's view of its server connection that gzips the response (see above)."""

    def __init__(self, conn: Any, compression: Compression) -> None:
        self.conn = conn
        self.compression = compression
        self.z: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def send_response_head(self, lc: Any, resp: ResponseHead, extra: Any, unrewrite: Any) -> None:
        if self.compression.compressible(resp):
            self.z = zlib.compressobj(self.compression.level, zlib.DEFLATED, 31)  # 31: gzip framing
            resp = _gzip_head(resp)
        self.conn.send_response_head(lc, resp, extra, unrewrite)

    def send_body(self, data: bytes) -> None:
        z = self.z
        if z is None:
            self.conn.send_body(data)
            return
        out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        if out:
            self.conn.send_body(out)

    def end_response(self) -> None:
        z = self.z
        if z is not None:
            self.z = None
            self.conn.send_body(z.flush(zlib.Z_FINISH))
        self.conn.end_response()
