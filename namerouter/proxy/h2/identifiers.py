"""Identifiers of h2 routers (Linkerd's ``H2IdentifierConfig`` kinds).

- ``io.l5d.header.token`` (default): a header's value as one label; default header
  ``:authority`` (``HeaderTokenIdentifier`` of ``identifiers.py``: an HTTP/2 head
  answers ``header(b":authority")`` with its authority);
- ``io.l5d.header.path``: a path read from a header (default ``:path``, the query left
  out), its first ``segments`` segments, or all when ``segments`` is absent. gRPC's
  ``/package.Service/Method`` gives ``/svc/package.Service/Method``, or
  ``/svc/package.Service`` with ``segments: 1``;
- ``io.l5d.header``: a header's value parsed as a path (default ``l5d-name``);
- ``io.l5d.static``: always ``dstPrefix`` ++ ``path``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ...dtab.path import Path
from ..errors import Unidentified
from ..identifiers import (
    HeaderPathIdentifier, HeaderTokenIdentifier, Identifier, IdentifierList, Result, StaticIdentifier, _read_path,
)
from ..message import RequestHead
from .config import H2_IDENTIFIER_KINDS

_MEMO_MAX = 4096


class HeaderPathSegmentsIdentifier(Identifier):
    """``io.l5d.header.path``: the leading segments of a path carried in a header."""

    kind = "io.l5d.header.path"

    def __init__(self, prefix: Path, header: str = ":path", segments: Optional[int] = None) -> None:
        super().__init__(prefix)
        self.header = header
        self.lname = header.lower().encode("latin-1")
        self.segments = segments
        self._memo: dict[bytes, Path] = {}

    def identify(self, req: RequestHead) -> Result:
        value = req.header(self.lname)
        if not value:
            raise Unidentified(f"{self.header} header is absent or empty")
        name = self._memo.get(value)
        if name is None:
            path = value
            for sep in (b"?", b"#"):
                i = path.find(sep)
                if i >= 0:
                    path = path[:i]
            parts = [p for p in path.split(b"/") if p]
            n = self.segments
            if n is None:
                if not parts:
                    raise Unidentified(f"{self.header} names no path (missing destination path)")
            elif len(parts) < n:
                raise Unidentified(f"path must have at least {n} segment(s): "
                                   f"{path.decode('latin-1')[:200]}")
            else:
                parts = parts[:n]
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            name = self.prefix + Path._trusted(tuple(parts))
            self._memo[value] = name
        return name, None


def build_h2_identifier(configs: Sequence[Any], dst_prefix: str) -> Identifier:
    """Identifier(s) for an h2 router's ``identifier`` config; ValueError names a bad entry."""
    prefix = _read_path(dst_prefix)
    built: list[Identifier] = []
    for i, c in enumerate(configs):
        where = f"identifier[{i}]" if len(configs) > 1 else "identifier"
        if c.kind == "io.l5d.header.token":
            built.append(HeaderTokenIdentifier(prefix, c.header or ":authority"))
        elif c.kind == "io.l5d.header.path":
            built.append(HeaderPathSegmentsIdentifier(prefix, c.header or ":path", c.segments))
        elif c.kind == "io.l5d.header":
            built.append(HeaderPathIdentifier(prefix, c.header or "l5d-name"))
        elif c.kind == "io.l5d.static":
            if not c.path:
                raise ValueError(f"{where}.path: required for io.l5d.static")
            try:
                built.append(StaticIdentifier(prefix, _read_path(c.path)))
            except ValueError as e:
                raise ValueError(f"{where}.path: {e}") from None
        else:
            raise ValueError(f"{where}.kind: unknown h2 identifier {c.kind!r}; known: {', '.join(H2_IDENTIFIER_KINDS)}")
    return built[0] if len(built) == 1 else IdentifierList(built)
