"""Per-request dtabs: ``l5d-ctx-dtab`` ++ ``l5d-dtab``, parsed once per distinct value.

This is the one place where request headers become a dtab. The limits on what a client
may send live in :mod:`namerouter.dtab.local` (the ``maxLocalDtabKB`` size limit, a
bounded cache of parses and of parse failures); the lookups such a dtab may cause are
bounded by binding it under the interpreter's request budget (``routing.ServiceStage``).
The parsed dtab keys the service stage (``RouteTable.route``), so requests with the same
headers share a stage.
"""
from __future__ import annotations

from typing import Optional

from ..dtab.dtab import Dtab
from ..dtab.local import LocalDtabError, LocalDtabs
from .errors import BadDtabHeader


class RequestDtabs:
    __slots__ = ("_dtabs",)

    def __init__(self, max_bytes: int) -> None:
        self._dtabs = LocalDtabs(max_bytes)

    def local(self, ctx: Optional[bytes], user: Optional[bytes]) -> Optional[Dtab]:
        """``l5d-ctx-dtab`` ++ ``l5d-dtab`` (that order: the user's override wins); None when
        both are absent or empty. BadDtabHeader (400) says which limit or header failed."""
        try:
            return self._dtabs.get(ctx, user)
        except LocalDtabError as e:
            raise BadDtabHeader(str(e)) from None

    def __len__(self) -> int:
        """How many distinct header pairs are cached (parses and failures)."""
        return len(self._dtabs)
