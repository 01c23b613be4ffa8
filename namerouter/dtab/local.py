"""Request dtabs: ``l5d-ctx-dtab ++ l5d-dtab`` (Finagle's ``Dtab.local``), parsed with
bounds, because every byte of them comes from a client.

* a size limit on the two headers together (the router's ``maxLocalDtabKB``): past it
  the request is refused (400) without parsing;
* answers are cached per distinct header pair — failures too ("negative results"), so
  a client repeating a bad dtab costs one dict lookup per request, not a parse. The
  cache is bounded by entries and by the header bytes it keeps, so hostile dtabs cannot
  grow it (a parsed dtab takes about 25 times its text in memory);
* parse depth is bounded by the parser itself (``MAX_TREE_DEPTH``).

The router binds a name with a local dtab under the interpreter's smaller request
budget (``bind(..., from_request=True)``, see ``namerouter.dtab.binding``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Final, Optional, Union

from .dtab import Dtab
from .errors import DtabSyntaxError

#: Default of the router's ``maxLocalDtabKB`` (the size of Linkerd's whole header
#: block, ``maxHeadersKB``: a default config accepts every request dtab Linkerd would).
DEFAULT_MAX_KB: Final = 8


class LocalDtabError(ValueError):
    """The request's dtab headers are too large or do not parse (answer 400 with it)."""


class LocalDtabs:
    """Parses and caches request dtabs (see the module doc). Not thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_KB * 1024, cache_entries: int = 1024,
                 cache_bytes: int = 64 * 1024) -> None:
        self.max_bytes = max_bytes
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        self._cache: "OrderedDict[tuple[Optional[bytes], Optional[bytes]], Union[Dtab, None, LocalDtabError]]" = \
            OrderedDict()
        self._bytes = 0

    def get(self, ctx: Optional[bytes], user: Optional[bytes]) -> Optional[Dtab]:
        """``l5d-ctx-dtab`` ++ ``l5d-dtab`` (that order: the user's override wins), or
        None when both are absent or empty. Raises :class:`LocalDtabError`."""
        size = len(ctx or b"") + len(user or b"")
        if size > self.max_bytes:
            raise LocalDtabError(
                f"the request dtab (l5d-ctx-dtab and l5d-dtab) is {size} bytes, over the limit of "
                f"{self.max_bytes} bytes (maxLocalDtabKB: {self.max_bytes / 1024:g})")
        key = (ctx, user)
        hit = self._cache.get(key, self)
        if hit is not self:
            self._cache.move_to_end(key)
            if isinstance(hit, LocalDtabError):
                raise hit
            return hit  # type: ignore[return-value]
        try:
            value: Union[Dtab, None, LocalDtabError] = _parse(ctx, user)
        except LocalDtabError as e:
            value = e
        self._remember(key, value, size)
        if isinstance(value, LocalDtabError):
            raise value
        return value

    def _remember(self, key: tuple[Optional[bytes], Optional[bytes]],
                  value: Union[Dtab, None, LocalDtabError], size: int) -> None:
        self._cache[key] = value
        self._bytes += size
        while self._cache and (len(self._cache) > self.cache_entries or self._bytes > self.cache_bytes):
            (c, u), _ = self._cache.popitem(last=False)
            self._bytes -= len(c or b"") + len(u or b"")

    def __len__(self) -> int:
        return len(self._cache)


def _parse(ctx: Optional[bytes], user: Optional[bytes]) -> Optional[Dtab]:
    d: Optional[Dtab] = None
    for header, raw in (("l5d-ctx-dtab", ctx), ("l5d-dtab", user)):
        if raw is None:
            continue
        text = raw.decode("latin-1")
        try:
            part = Dtab.read(text)
        except DtabSyntaxError as e:
            raise LocalDtabError(f"Invalid {header} header {text!r}: {e}") from None
        d = part if d is None else d + part
    if d is not None and len(d) == 0:
        return None
    return d


__all__ = ["LocalDtabs", "LocalDtabError", "DEFAULT_MAX_KB"]
