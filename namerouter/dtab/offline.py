"""Offline binding and delegation: check a dtab without touching service discovery.

Used by ``namerouter dtab bind|delegate`` and by CI pipelines before a dtab is pushed to
namerd. The dtab is consulted first for every path; only when a lookup is exactly ``~``
are the namers asked, and offline that means:

* ``/#/<namer>/…`` — a terminal leaf (live binding would ask the namer): its bound id is
  the whole path and its residual ``/`` (:class:`OfflineBound`);
* ``/$/…`` — the system namers' pure rules (:mod:`.system`): inet addresses, ``!``,
  ``$``, the io.buoyant rewrites; an unknown ``/$/x`` raises UnknownNamer;
* anything else — ``~``.

Bound leaves print as their full path (id plus residual). Both functions take an
optional ``lookup_namer(path) -> NameTree[Any]`` to replace that offline policy; the live
interpreter reuses the same algorithms this way (see docs/architecture.md).

Offline addresses in delegate JSON (no DNS, no sockets — this package does no I/O):
an inet leaf whose host is an IP literal (Java's forms, so ``127.1`` is ``127.0.0.1``),
``localhost`` or empty (``/$/inet/<port>``) renders
``{"type":"bound","addrs":[{"ip":…,"port":…,"meta":{}}],"meta":{}}``; any other host
name renders ``{"type":"pending","offline":"host … is not resolved offline"}``; a ``/#/``
leaf renders ``{"type":"pending","offline":"namer /#/… is not consulted offline"}``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import binding, system
from .binding import BUDGET, MAX_DEPTH
from .delegation import DelegateTree, delegate_gen, run_sync, to_json
from .dtab import Dtab
from .path import Path
from .tree import Leaf, NameTree

NAMER_LABEL = b"#"


@dataclass(frozen=True)
class OfflineBound:
    """A ``/#/<namer>/…`` leaf bound offline: id = the whole path, residual = ``/``."""

    id: Path
    residual: Path = field(default_factory=Path)

    def show(self) -> str:
        return (self.id + self.residual).show()

    def __str__(self) -> str:
        return self.show()


LookupNamer = Callable[[Path], NameTree[Any]]


def offline_lookup(path: Path) -> NameTree[Any]:
    """What the namers answer offline for a path no dentry matched (see module doc)."""
    if len(path) >= 2 and path.labels[0] == NAMER_LABEL:
        return Leaf(OfflineBound(path))
    return system.lookup(path)


def _coerce(dtab: Any, path: Any) -> tuple[Dtab, Path]:
    """Accept dtab/path text too (parsed, so bad text raises DtabSyntaxError)."""
    if isinstance(dtab, str):
        dtab = Dtab.read(dtab)
    if isinstance(path, str):
        path = Path.read(path)
    return dtab, path


def bind(
    dtab: Dtab,
    path: Path,
    max_depth: int = MAX_DEPTH,
    lookup_namer: Optional[LookupNamer] = None,
    budget: int = BUDGET,
) -> NameTree[Any]:
    """Bind ``path`` through ``dtab`` (Finagle's Namer.bind; dtab-semantics.md §8) with
    the one binding algorithm of :mod:`.binding`.

    Returns a simplified tree without Alt nodes whose leaves are bound values
    (:class:`~.system.SystemBound`, :class:`OfflineBound`). Raises
    :class:`~.errors.MaxDepthExceeded` when a branch needs more than ``max_depth``
    lookups, :class:`~.errors.UnknownNamer` for an unknown ``/$/x``, whatever the namer
    callback raises, and :class:`~.errors.BindingTooLarge` past ``budget`` steps.
    """
    dtab, path = _coerce(dtab, path)
    return binding.bind_or_raise(dtab, path, lookup_namer or offline_lookup, max_depth, budget)


# delegate ---------------------------------------------------------------------------------

def _ip_literal_v4(host: str) -> Optional[str]:
    """Java's IPv4 literal forms (``a``, ``a.b``, ``a.b.c``, ``a.b.c.d``, decimal)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or any(not p.isascii() or not p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts]
    head, last = nums[:-1], nums[-1]
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return str(ipaddress.IPv4Address(value))


def _ip_literal(host: str) -> Optional[str]:
    """The ``getHostAddress`` of an IP literal host, or None for a host name."""
    v4 = _ip_literal_v4(host)
    if v4 is not None:
        return v4
    if ":" in host:
        try:
            a = ipaddress.IPv6Address(host)
        except ValueError:
            return None
        if a.ipv4_mapped is not None:
            return str(a.ipv4_mapped)
        # Java prints all eight groups, unabbreviated, without leading zeros.
        return ":".join(f"{int(g, 16):x}" for g in a.exploded.split(":"))
    return None


def offline_addr(host: str, port: int) -> dict[str, Any]:
    """The Addr JSON of an inet leaf, offline (see module doc)."""
    ip = "127.0.0.1" if host in ("", "localhost") else _ip_literal(host)
    if ip is None:
        return {"type": "pending", "offline": f"host {host} is not resolved offline"}
    return {"type": "bound", "addrs": [{"ip": ip, "port": port, "meta": {}}], "meta": {}}


def render_offline_bound(value: Any, node_path: Path) -> dict[str, Any]:
    """``{"addr", "id", "path"}`` of a bound leaf in offline delegate JSON."""
    if isinstance(value, system.SystemBound):
        if value.kind == "status":
            # Linkerd's status namer is a ServiceNamer: the bound id is not a Path (so the
            # delegator shows the node's path) and the residual is everything after the
            # namer class; its one address is a service, not an inet address.
            return {
                "addr": {"type": "bound", "addrs": [], "meta": {}},
                "id": node_path.show(),
                "path": (value.id.drop(2) + value.residual).show(),
            }
        return {
            "addr": offline_addr(value.host or "", value.port or 0),
            "id": value.id.show(),
            "path": value.residual.show(),
        }
    if isinstance(value, OfflineBound):
        return {
            "addr": {"type": "pending", "offline": f"namer {value.id.show()} is not consulted offline"},
            "id": value.id.show(),
            "path": value.residual.show(),
        }
    show = getattr(value, "show", None)
    return {"addr": {"type": "pending"}, "id": show() if callable(show) else str(value), "path": "/"}


def delegate_tree(
    dtab: Dtab,
    path: Path,
    lookup_namer: Optional[LookupNamer] = None,
    max_depth: int = MAX_DEPTH,
) -> DelegateTree:
    """The simplified DelegateTree of ``path`` (raises MaxDepthExceeded on a main-chain loop)."""
    dtab, path = _coerce(dtab, path)
    return run_sync(delegate_gen(dtab, path, max_depth), lookup_namer or offline_lookup)


def delegate(
    dtab: Dtab,
    path: Path,
    lookup_namer: Optional[LookupNamer] = None,
    render_bound: Optional[Callable[[Any, Path], dict[str, Any]]] = None,
) -> dict[str, Any]:
    """The delegate-tree JSON (as a dict) of Linkerd's delegator for ``path`` (§9).

    ``lookup_namer(path) -> NameTree[Any]`` replaces the offline namer policy;
    ``render_bound(value, node_path) -> {"addr", "id", "path"}`` the offline addr
    rendering. Raises MaxDepthExceeded("Max recursion level reached.") when the main
    chain loops (Linkerd then fails the request).
    """
    tree = delegate_tree(dtab, path, lookup_namer)
    return to_json(tree, render_bound or render_offline_bound)


__all__ = [
    "bind", "delegate", "delegate_tree", "offline_lookup", "OfflineBound", "offline_addr",
    "render_offline_bound",
]
