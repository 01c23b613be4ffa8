"""The parsed request head as the pipeline sees it.

One ``RequestHead`` per request, filled by the server protocol's parser callbacks.
Headers stay a list of (lower-cased name, value, encoded line) triples in arrival order
so they are forwarded with their original spelling as pre-encoded lines; the few headers the router acts
on are captured into attributes while parsing, so nothing later has to search.
"""
from __future__ import annotations

from typing import Optional


class RequestHead:
    __slots__ = (
        "method", "uri", "version", "headers", "host", "keep_alive",
        "connection_tokens", "via", "dtab_ctx", "dtab", "content_length", "chunked",
        "expect_continue", "upgrade", "trace", "has_l5d",
    )

    def __init__(self) -> None:
        self.method: bytes = b""
        self.uri: bytes = b""
        self.version: str = "1.1"
        #: forwardable headers: (lower-cased name, value, b"Name: value\r\n")
        self.headers: list[tuple[bytes, bytes, bytes]] = []
        self.host: Optional[bytes] = None
        self.keep_alive = True
        #: Header names listed in ``Connection`` (lower-cased): hop-by-hop too.
        self.connection_tokens: Optional[list[bytes]] = None
        self.via: Optional[bytes] = None
        self.dtab_ctx: Optional[bytes] = None
        self.dtab: Optional[bytes] = None
        self.content_length: Optional[int] = None
        self.chunked = False
        self.expect_continue = False
        self.upgrade: Optional[bytes] = None
        self.trace: Optional[bytes] = None
        #: any l5d-* header present (clearContext only scans when this is set)
        self.has_l5d = False

    def header(self, lname: bytes) -> Optional[bytes]:
        """First value of a header by lower-case name (identifiers use this)."""
        for ln, v, _ in self.headers:
            if ln == lname:
                return v
        return None

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
