"""Live delegation: the delegator JSON (dtab-semantics.md §9) with real namers and addrs.

The algorithm is the dtab layer's, written once in ``namerouter.dtab.delegation``
(a generator that yields each path the namers must look up). This module only supplies
what is live:

* the namer lookup — configured namers in config order (``/#/<prefix>`` must start the
  path; ``~`` falls through to the next), then the system namers; each answer is the
  namer's first non-pending state (a Failed state becomes an ``exception`` node);
  namer-level transformers are applied as in binding;
* the bound-leaf renderer — ``{"addr", "id", "path"}`` with the name's address set once it
  is not pending;
* the interpreter's transformers — each bound leaf is wrapped in a ``transformation``
  node showing the leaf before and after (Linkerd's DelegatingNameTreeTransformer).

Everything shares one deadline (``timeout``, 2 s as Linkerd's admin handler): a namer
or an address still pending then raises :class:`DelegateTimeout` ("Request timed out.",
which the admin/namerd handlers answer with 503). A loop on the main chain raises
``MaxDepthExceeded("Max recursion level reached.")`` as Linkerd fails the request.
Interpreter transformers that replace whole trees (``io.l5d.replace``, ``io.l5d.const``)
cannot be shown as delegations: :class:`DelegationUnsupported` (Linkerd: 501).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..dtab import delegation as dl
from ..dtab.binding import BUDGET
from ..dtab.dtab import Dtab
from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from .addr import ADDR_PENDING, AddrBound
from .bound import BoundName
from .system_namer import STATUS_META_KEY
from .var import Activity, Failed

if TYPE_CHECKING:
    from .interpreter import DefaultInterpreter


class DelegateTimeout(asyncio.TimeoutError):
    def __init__(self) -> None:
        super().__init__("Request timed out.")


class DelegationUnsupported(NotImplementedError):
    pass


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = asyncio.get_running_loop().time() + timeout
        self.expired = False

    def left(self) -> float:
        left = self.end - asyncio.get_running_loop().time()
        if left <= 0:
            self.expired = True
            raise DelegateTimeout()
        return left

    def timed_out(self) -> DelegateTimeout:
        # The algorithm turns namer errors into exception nodes; a timeout must instead
        # fail the whole call, so it is remembered here and raised after the run.
        self.expired = True
        return DelegateTimeout()


async def _settle(act: Activity[NameTree[Any]], deadline: _Deadline) -> NameTree[Any]:
    """A namer's answer once it is not pending; raises its failure."""
    try:
        return await act.wait_ok(deadline.left())
    except asyncio.TimeoutError:
        raise deadline.timed_out() from None


async def delegate(interp: "DefaultInterpreter", dtab: Dtab, path: Path, timeout: float = 2.0,
                   budget: int = BUDGET) -> dict[str, Any]:
    """The delegate JSON of ``path`` under ``dtab`` through ``interp``'s namers."""
    for t in interp.transformers:
        if not t.delegating:
            raise DelegationUnsupported(
                f"Name Interpreter cannot show delegations: transformer {t.name} replaces whole trees")
    deadline = _Deadline(timeout)

    async def lookup_namer(p: Path) -> NameTree[Any]:
        return await _lookup(interp, p, deadline)

    tree = await dl.run_async(dl.delegate_gen(dtab, path, interp.max_depth, budget), lookup_namer)
    if deadline.expired:
        raise DelegateTimeout()
    for t in interp.transformers:
        tree = _transform_delegate(tree, t)

    async def render(value: Any, node_path: Path) -> dict[str, Any]:
        return await _render(value, node_path, deadline)

    return await dl.to_json_async(tree, render)


async def _lookup(interp: "DefaultInterpreter", path: Path, deadline: _Deadline) -> NameTree[Any]:
    for namer, rest in interp.matching_namers(path):
        tree = await _settle(interp.namer_activity(namer, rest), deadline)
        if tree is not NEG:
            return tree
    return interp.system.lookup(path)  # raises UnknownNamer -> an exception node


async def _render(value: Any, node_path: Path, deadline: _Deadline) -> dict[str, Any]:
    if not isinstance(value, BoundName):  # not expected live; show what it is
        show = getattr(value, "show", None)
        return {"addr": {"type": "pending"}, "id": show() if callable(show) else str(value), "path": "/"}
    try:
        addr = await value.addr.wait_for(lambda a: a is not ADDR_PENDING, deadline.left())
    except asyncio.TimeoutError:
        raise DelegateTimeout() from None
    if isinstance(addr, AddrBound) and STATUS_META_KEY in addr.meta and not addr.addrs:
        # As the offline delegator shows Linkerd's status service namer: the node's path as
        # id and the code plus residual as the path.
        return {"addr": {"type": "bound", "addrs": [], "meta": {}}, "id": node_path.show(),
                "path": (value.id.drop(2) + value.residual).show()}
    return {"addr": addr.to_json(), "id": value.id.show(), "path": value.residual.show()}


def _transform_delegate(tree: dl.DelegateTree, t: Any) -> dl.DelegateTree:
    """Wrap every bound leaf in a Transformation node (Linkerd's transformDelegate)."""
    if isinstance(tree, dl.DLeaf) and isinstance(tree.value, BoundName):
        after = t.map_bound(tree.value)
        return dl.DTransformation(tree.path, t.name, tree.value, dl.DLeaf(after.id, tree.dentry, after))
    if isinstance(tree, dl.DTransformation):
        return dl.DTransformation(tree.path, tree.name, tree.value, _transform_delegate(tree.tree, t))
    if isinstance(tree, dl.DDelegate):
        return dl.DDelegate(tree.path, tree.dentry, _transform_delegate(tree.tree, t))
    if isinstance(tree, dl.DAlt):
        return dl.DAlt(tree.path, tree.dentry, tuple(_transform_delegate(c, t) for c in tree.trees))
    if isinstance(tree, dl.DUnion):
        return dl.DUnion(tree.path, tree.dentry, tuple((w, _transform_delegate(c, t)) for w, c in tree.trees))
    return tree

