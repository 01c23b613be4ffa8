"""Per-request dtabs: ``l5d-ctx-dtab`` ++ ``l5d-dtab``, parsed once per distinct value.

This is the one place where request headers become a dtab (the hook for limits on what
a client may send: size of ``l5d-dtab``, lookups it may cause). The parsed dtab keys the
service stage (``RouteTable.route``), so requests with the same headers share a stage.
"""
from __future__ import annotations

from typing import Optional

from ..dtab.dtab import Dtab
from .errors import BadDtabHeader

#: Parsed request dtabs kept (cleared wholesale when full: random headers must not grow
#: memory; re-parsing a hot entry costs one parse).
CACHE_MAX = 1024


class RequestDtabs:
    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[Optional[bytes], Optional[bytes]], Optional[Dtab]] = {}

    def local(self, ctx: Optional[bytes], user: Optional[bytes]) -> Optional[Dtab]:
        """``l5d-ctx-dtab`` ++ ``l5d-dtab`` (that order: the user's override wins); None when
        both are absent or empty. BadDtabHeader (400) names the header that does not parse."""
        key = (ctx, user)
        cache = self._cache
        if key in cache:
            return cache[key]
        d: Optional[Dtab] = None
        for header, raw in (("l5d-ctx-dtab", ctx), ("l5d-dtab", user)):
            if raw is None:
                continue
            text = raw.decode("latin-1")
            try:
                p = Dtab.read(text)
            except ValueError as e:
                raise BadDtabHeader(f"Invalid {header} header {text!r}: {e}") from None
            d = p if d is None else d + p
        if d is not None and len(d) == 0:
            d = None
        if len(cache) >= CACHE_MAX:
            cache.clear()
        cache[key] = d
        return d
