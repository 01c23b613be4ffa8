"""HTTP identifiers: request -> logical name (Linkerd's ``identifier`` kinds).

An identifier returns ``(name, new_uri)``: the logical name (``dstPrefix`` ++ segments)
and, for ``io.l5d.path`` with ``consume``, the URI to forward instead (None = unchanged).
It raises :class:`Unidentified` with the reason when it cannot name the request; a list
of identifiers tries each in order and the first success wins.

Names are cached per distinguishing input (the Host value, the path prefix) in a small
bounded dict, so the common case costs one dict lookup per request.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from ..dtab.path import Path
from .config import IdentifierConfig
from .errors import Unidentified
from .message import RequestHead

Result = tuple[Path, Optional[bytes]]

#: Bound on each identifier's memo; cleared wholesale when full (random Host headers
#: must not grow memory; rebuilding a hot entry costs one Path construction).
_MEMO_MAX = 4096


def _read_path(text: str) -> Path:
    return Path.read(text)


class Identifier:
    kind = ""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix

    def identify(self, req: RequestHead) -> Result:
        raise NotImplementedError


class HeaderTokenIdentifier(Identifier):
    """``io.l5d.header.token``: the raw header value as ONE label (``web:8080`` stays)."""

    kind = "io.l5d.header.token"

    def __init__(self, prefix: Path, header: str = "Host") -> None:
        super().__init__(prefix)
        self.header = header
        self.lname = header.lower().encode("latin-1")
        self._is_host = self.lname == b"host"
        self._memo: dict[bytes, Path] = {}

    def identify(self, req: RequestHead) -> Result:
        value = req.host if self._is_host else req.header(self.lname)
        if not value:
            raise Unidentified(f"{self.header} header is absent or empty")
        name = self._memo.get(value)
        if name is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            name = self.prefix + Path._trusted((value,))
            self._memo[value] = name
        return name, None


class PathIdentifier(Identifier):
    """``io.l5d.path``: the first ``segments`` URL path segments; ``consume`` drops them."""

    kind = "io.l5d.path"

    def __init__(self, prefix: Path, segments: int = 1, consume: bool = False) -> None:
        super().__init__(prefix)
        self.segments = segments
        self.consume = consume

    def identify(self, req: RequestHead) -> Result:
        path = req.path_only()
        parts = [p for p in path.split(b"/") if p]
        if len(parts) < self.segments:
            raise Unidentified(
                f"path {path.decode('latin-1')!s} has fewer than {self.segments} segment(s)"
            )
        name = self.prefix + Path._trusted(tuple(parts[: self.segments]))
        if not self.consume:
            return name, None
        # Drop exactly the consumed segments, keep the rest of the URI (query included).
        uri = req.uri
        pos = 0
        for _ in range(self.segments):
            while pos < len(uri) and uri[pos : pos + 1] == b"/":
                pos += 1
            nxt = len(uri)
            for sep in (b"/", b"?", b"#"):
                j = uri.find(sep, pos)
                if j >= 0:
                    nxt = min(nxt, j)
            pos = nxt
        rest = uri[pos:]
        if not rest.startswith(b"/"):
            rest = b"/" + rest
        return name, rest


class MethodAndHostIdentifier(Identifier):
    """``io.l5d.methodAndHost``: ``/1.1/<METHOD>/<host>[/uri]``; HTTP/1.0 has no host."""

    kind = "io.l5d.methodAndHost"

    def __init__(self, prefix: Path, http_uri_in_dst: bool = False) -> None:
        super().__init__(prefix)
        self.uri_in_dst = http_uri_in_dst

    def identify(self, req: RequestHead) -> Result:
        labels: list[bytes] = [req.version.encode(), req.method]
        if req.version != "1.0":
            if not req.host:
                raise Unidentified("Host header is absent or empty")
            labels.append(req.host.lower())
        if self.uri_in_dst:
            labels += [p for p in req.path_only().split(b"/") if p]
        return self.prefix + Path._trusted(tuple(labels)), None


class HeaderPathIdentifier(Identifier):
    """``io.l5d.header``: the header value parsed as a path (default header ``l5d-name``)."""

    kind = "io.l5d.header"

    def __init__(self, prefix: Path, header: str = "l5d-name") -> None:
        super().__init__(prefix)
        self.header = header
        self.lname = header.lower().encode("latin-1")
        self._memo: dict[bytes, Path] = {}

    def identify(self, req: RequestHead) -> Result:
        value = req.header(self.lname)
        if not value:
            raise Unidentified(f"{self.header} header is absent or empty")
        name = self._memo.get(value)
        if name is None:
            try:
                path = _read_path(value.decode("latin-1"))
            except ValueError as e:
                raise Unidentified(f"{self.header} header is not a path: {e}") from None
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            name = self.prefix + path
            self._memo[value] = name
        return name, None


class StaticIdentifier(Identifier):
    """``io.l5d.static``: always ``dstPrefix`` ++ ``path``."""

    kind = "io.l5d.static"

    def __init__(self, prefix: Path, path: Path) -> None:
        super().__init__(prefix)
        self.name = prefix + path

    def identify(self, req: RequestHead) -> Result:
        return self.name, None


class IdentifierList(Identifier):
    """Try each identifier in order; the first that names the request wins."""

    kind = "list"

    def __init__(self, identifiers: Sequence[Identifier]) -> None:
        super().__init__(identifiers[0].prefix if identifiers else Path())
        self.identifiers = list(identifiers)

    def identify(self, req: RequestHead) -> Result:
        reasons = []
        for ident in self.identifiers:
            try:
                return ident.identify(req)
            except Unidentified as e:
                reasons.append(f"{ident.kind}: {e.message}")
        raise Unidentified("; ".join(reasons))


def build_identifier(configs: Sequence[IdentifierConfig], dst_prefix: str) -> Identifier:
    """Identifier(s) for a router's ``identifier`` config; ValueError names a bad entry."""
    prefix = _read_path(dst_prefix)
    built: list[Identifier] = []
    for i, c in enumerate(configs):
        where = f"identifier[{i}]" if len(configs) > 1 else "identifier"
        kind = c.kind
        if kind == "io.l5d.header.token":
            built.append(HeaderTokenIdentifier(prefix, c.header or "Host"))
        elif kind == "io.l5d.path":
            built.append(PathIdentifier(prefix, c.segments, c.consume))
        elif kind == "io.l5d.methodAndHost":
            built.append(MethodAndHostIdentifier(prefix, c.httpUriInDst))
        elif kind == "io.l5d.header":
            built.append(HeaderPathIdentifier(prefix, c.header or "l5d-name"))
        elif kind == "io.l5d.static":
            if not c.path:
                raise ValueError(f"{where}.path: required for io.l5d.static")
            try:
                built.append(StaticIdentifier(prefix, _read_path(c.path)))
            except ValueError as e:
                raise ValueError(f"{where}.path: {e}") from None
        else:
            from .config import IDENTIFIER_KINDS

            raise ValueError(f"{where}.kind: unknown identifier {kind!r}; known: {', '.join(IDENTIFIER_KINDS)}")
    if len(built) == 1:
        return built[0]
    return IdentifierList(built)


IdentifyFn = Callable[[RequestHead], Result]
