"""Per-request dtabs: ``l5d-ctx-dtab`` ++ ``l5d-dtab``, parsed once per distinct value.

This is the one place where request headers become a dtab. The limits on what a client
may send live in :mod:`namerouter.dtab.local` (the ``maxLocalDtabKB`` size limit, a
bounded cache of parses and of parse failures); the lookups such a dtab may cause are
bounded by binding it under the interpreter's request budget (``routing.ServiceStage``).
The parsed dtab keys the service stage (``RouteTable.route``), so requests with the same
headers share a stage. A server may restrict which system namers (``/$/inet``, …) a
request dtab names (``check_system_namers``, ``servers[].localDtabSystemNamers``).
"""
from __future__ import annotations

from typing import Optional

from ..dtab.dtab import Dtab
from ..dtab.local import LocalDtabError, LocalDtabs
from ..dtab.system import GLOBAL, REWRITING_NAMERS, STATUS, SYSTEM_LABEL
from .errors import BadDtabHeader

#: System namers a request dtab may name on a server that restricts them: they name no
#: address and build no other name.
HARMLESS_SYSTEM_NAMERS = frozenset(("nil", "fail", STATUS))
#: what a dentry that could build any ``/$/…`` path reaches (``/``, ``/$``, a rewriting namer)
ANY = "*"


def system_reach(dtab: Dtab) -> frozenset[str]:
    """The system namers (``/$/<kind>``) the destinations of ``dtab`` may lead to, with
    :data:`ANY` for a destination that could become any ``/$/…`` path: ``/`` or ``/$``
    (the rest of the name, which the client chooses, follows), a rewriting namer (its
    output is made of labels the client chooses) or Finagle's ``namer.global``."""
    out: set[str] = set()
    for d in dtab.dentries:
        for leaf in d.dst.leaves():
            labels = leaf.labels
            if not labels or (labels[0] == SYSTEM_LABEL and len(labels) == 1):
                out.add(ANY)
            elif labels[0] == SYSTEM_LABEL:
                kind = labels[1].decode("utf-8", "replace")
                out.add(ANY if kind in REWRITING_NAMERS or kind == GLOBAL else kind)
    return frozenset(out)


class RequestDtabs:
    __slots__ = ("_dtabs", "_reach")

    def __init__(self, max_bytes: int) -> None:
        self._dtabs = LocalDtabs(max_bytes)
        #: system_reach per parsed dtab (LocalDtabs hands out one object per distinct
        #: headers, so the dtab's identity keys it; the value keeps the dtab alive)
        self._reach: dict[int, tuple[Dtab, frozenset[str]]] = {}

    def check_system_namers(self, dtab: Dtab) -> None:
        """Refuse (400) a request dtab that names a system namer other than the harmless
        ones — on servers whose ``localDtabSystemNamers`` is false (the default on a
        non-loopback address): ``/$/inet`` from a client is a request to any address
        the router can reach (SSRF)."""
        hit = self._reach.get(id(dtab))
        if hit is None or hit[0] is not dtab:
            if len(self._reach) >= 1024:
                self._reach.clear()
            hit = self._reach[id(dtab)] = (dtab, system_reach(dtab))
        bad = hit[1] - HARMLESS_SYSTEM_NAMERS
        if bad:
            named = ", ".join("/$/" + k if k != ANY else "a prefix or rewriting namer that builds /$/ names"
                              for k in sorted(bad))
            raise BadDtabHeader(
                f"the request dtab may not name system namers on this server ({named}): only "
                f"/$/nil, /$/fail and /$/{STATUS} are allowed (servers[].localDtabSystemNamers)")

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
