"""What namerd computes from names: bound trees, address sets, resolution, delegation.

The HTTP controller asks this module for *observables* and only renders them, so
the lifetime rules live here: every value below is lazy (``Var.lazy``), runs its
upstream watches only while a request observes it, and holds no per-request state
after the request ends. Bindings themselves are cached by the interpreter (per
(dtab, path), released after an idle TTL), so many streams for one name share one
binding and a scanner's random names are forgotten.
"""
from __future__ import annotations

import functools
import random
from typing import Any, Callable, Optional, Sequence

from namerouter.dtab import Dtab, Path
from namerouter.dtab.tree import NEG, Alt, Empty, Fail, Leaf, NameTree, Neg, Union
from namerouter.naming.addr import ADDR_NEG, ADDR_PENDING, Addr, AddrBound, AddrFailed
from namerouter.naming.bound import BoundName
from namerouter.naming.bound import same_tree_state
from namerouter.naming.reactive import flat_map, map_activity, observe_switching
from namerouter.naming.var import PENDING, Activity, ActivityState, Closable, Failed, LazyVar, Ok, Var

from .storage.base import DtabStore


# JSON shapes (linkerd1-map §2.3) ------------------------------------------------------

def addr_json(addr: Addr) -> dict[str, Any]:
    return addr.to_json()


def bound_tree_json(tree: NameTree[Any], addr_of: Callable[[BoundName], Addr]) -> dict[str, Any]:
    """A bound tree as namerd's ``/bind`` JSON (no ``path``/``dentry`` on nodes)."""
    if isinstance(tree, Leaf):
        b = tree.value
        if isinstance(b, BoundName):
            return {"type": "leaf", "bound": {"addr": addr_json(addr_of(b)), "id": b.id.show(),
                                              "path": b.residual.show()}}
        return {"type": "leaf", "bound": {"addr": {"type": "neg"}, "id": str(b), "path": "/"}}
    if isinstance(tree, Union):
        return {"type": "union", "union": [
            {"weight": float(w.weight), "tree": bound_tree_json(w.tree, addr_of)} for w in tree.weighted
        ]}
    if isinstance(tree, Alt):
        return {"type": "alt", "alt": [bound_tree_json(t, addr_of) for t in tree.trees]}
    if isinstance(tree, Fail):
        return {"type": "fail"}
    if isinstance(tree, Empty):
        return {"type": "empty"}
    return {"type": "neg"}


def _bound_leaves(tree: NameTree[Any]) -> list[BoundName]:
    seen: dict[BoundName, None] = {}
    for v in tree.leaves():
        if isinstance(v, BoundName):
            seen.setdefault(v, None)
    return list(seen)


class _LeafAddrs:
    """Observe the addr Var of every leaf of the current tree (swapped per tree)."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._subs: dict[Path, Closable] = {}
        self.addrs: dict[Path, Addr] = {}
        self._ready = False

    def set_leaves(self, leaves: Sequence[BoundName]) -> None:
        wanted = {b.id: b for b in leaves}
        self._ready = False
        new_subs: dict[Path, Closable] = {}
        for id_, b in wanted.items():
            if id_ in self._subs:
                new_subs[id_] = self._subs.pop(id_)
            else:
                new_subs[id_] = b.addr.observe(functools.partial(self._update, id_))
        for id_, sub in self._subs.items():  # closed after the new ones opened: shared watches survive
            sub.close()
            self.addrs.pop(id_, None)
        self._subs = new_subs
        self._ready = True

    def _update(self, id_: Path, addr: Addr) -> None:
        self.addrs[id_] = addr
        if self._ready:
            self._on_change()

    def close(self) -> None:
        for sub in self._subs.values():
            sub.close()
        self._subs = {}
        self.addrs = {}
        # on_change (the owner's render closure) holds this object: let go of it, so
        # that a closed stream's objects are freed at once, not by the cycle collector
        self._on_change = _nothing


def _nothing() -> None:
    pass


def bound_tree_docs(tree_act: Activity[NameTree[Any]]) -> Var[ActivityState[Any]]:
    """PENDING | Ok(bind JSON doc) | Failed: a doc only once every leaf's addr is known."""

    def start(out: LazyVar[ActivityState[Any]]) -> Closable:
        current: list[Optional[NameTree[Any]]] = [None]

        def render() -> None:
            tree = current[0]
            if tree is None:
                return
            if any(leaves.addrs.get(b.id, ADDR_PENDING) is ADDR_PENDING for b in _bound_leaves(tree)):
                out.update(PENDING)
                return
            out.update(Ok(bound_tree_json(tree, lambda b: leaves.addrs.get(b.id, ADDR_PENDING))))

        leaves = _LeafAddrs(render)

        def on_tree(st: ActivityState[Any]) -> None:
            if isinstance(st, Ok):
                current[0] = st.value
                leaves.set_leaves(_bound_leaves(st.value))
                render()
            else:
                current[0] = None
                leaves.set_leaves(())
                out.update(st)

        sub = tree_act.observe(on_tree)

        def close() -> None:
            sub.close()
            leaves.close()

        return Closable(close)

    return Var.lazy(PENDING, start)


def pick_leaf(tree: NameTree[Any], rng: random.Random) -> NameTree[Any]:
    """Collapse a bound tree to one leaf as a router would (union: weighted random;
    alt: first branch that is not negative)."""
    if isinstance(tree, Union):
        branches = [w for w in tree.weighted if w.weight > 0]
        if not branches:
            return NEG
        total = sum(w.weight for w in branches)
        x = rng.random() * total
        for w in branches:
            x -= w.weight
            if x <= 0:
                return pick_leaf(w.tree, rng)
        return pick_leaf(branches[-1].tree, rng)
    if isinstance(tree, Alt):
        for t in tree.trees:
            picked = pick_leaf(t, rng)
            if not isinstance(picked, Neg):
                return picked
        return NEG
    return tree


def flatten_addr(act: Activity[NameTree[Any]], on_tree: Optional[Callable[[NameTree[Any]], NameTree[Any]]] = None,
                 not_concrete: str = "") -> Var[Addr]:
    """An Activity of a tree that should be one leaf -> that leaf's address set.

    ``on_tree`` may first collapse the tree (resolve); a tree that is still not a leaf
    becomes ``AddrFailed(not_concrete)`` (Linkerd: "... is not a concrete bound id").
    """

    def start(out: LazyVar[Addr]) -> Closable:
        def step(st: ActivityState[Any]) -> Optional[Closable]:
            if isinstance(st, Ok):
                tree = on_tree(st.value) if on_tree else st.value
                if isinstance(tree, Leaf) and isinstance(tree.value, BoundName):
                    return tree.value.addr.observe(out.update)
                if isinstance(tree, Neg):
                    out.update(ADDR_NEG)
                elif isinstance(tree, Empty):
                    out.update(AddrBound())
                elif isinstance(tree, Fail):
                    out.update(AddrFailed("name tree failed"))
                else:
                    out.update(AddrFailed(not_concrete or f"{tree.show()} is not a concrete bound id"))
            elif isinstance(st, Failed):
                out.update(AddrFailed(st.error))
            else:
                out.update(ADDR_PENDING)
            return None

        return observe_switching(act, step)

    return Var.lazy(ADDR_PENDING, start)


class NamerdBinder:
    """Binding with a namespace's stored dtab: ``dtab = stored(ns) ++ request dtab``."""

    def __init__(self, store: DtabStore, interpreter: Any, namers: Sequence[Any], system: Any = None) -> None:
        self.store = store
        self.interpreter = interpreter
        # Longest prefix first so /#/io.l5d.k8s.ns is not taken by /#/io.l5d.k8s.
        self.namers = sorted(namers, key=lambda n: -len(n.prefix))
        self.system = system

    # Dtab of a namespace (absent namespace = empty dtab, as Linkerd's namerd) ----------
    def ns_dtab(self, ns: str) -> Activity[Dtab]:
        return map_activity(self.store.observe(ns), lambda vd: vd.dtab if vd is not None else Dtab())

    def bind(self, ns: str, path: Path, extra: Dtab = Dtab()) -> Activity[NameTree[Any]]:
        """The stored dtab ++ ``extra``; a non-empty ``extra`` comes from a client (the
        ``dtab`` parameter), so the binding gets the interpreter's request budget."""
        if extra.dentries:
            return flat_map(self.ns_dtab(ns), lambda d: self.interpreter.bind(d + extra, path, from_request=True),
                            same_tree_state)
        return flat_map(self.ns_dtab(ns), lambda d: self.interpreter.bind(d, path), same_tree_state)

    def resolve(self, ns: str, path: Path, extra: Dtab = Dtab(), rng: Optional[random.Random] = None) -> Var[Addr]:
        r = rng or random.Random()
        return flatten_addr(self.bind(ns, path, extra), lambda t: pick_leaf(t.simplified(), r))

    def addr(self, id_: Path) -> Var[Addr]:
        """Address set of a concrete bound id, asked of the namer owning its prefix."""
        labels = id_.labels
        if labels and labels[0] == b"%":
            # /%/<transformer prefix>/#/... : the transformer's part is not ours to resolve.
            for i, l in enumerate(labels[1:], start=1):
                if l in (b"#", b"$"):
                    id_ = id_.drop(i)
                    labels = id_.labels
                    break
            else:
                return Var(AddrFailed(f"{id_.show()} is not a concrete bound id"))
        if labels and labels[0] == b"#":
            rest = id_.drop(1)
            for namer in self.namers:
                if rest.startswith(namer.prefix):
                    act = namer.lookup(rest.drop(len(namer.prefix)))
                    return flatten_addr(act, not_concrete=f"{id_.show()} is not a concrete bound id")
            return Var(ADDR_NEG)
        if labels and labels[0] == b"$" and self.system is not None:
            try:
                tree = self.system.lookup(id_)
            except Exception as e:  # unknown system namer
                return Var(AddrFailed(e))
            return flatten_addr(Activity.value(tree), not_concrete=f"{id_.show()} is not a concrete bound id")
        return Var(ADDR_NEG)

    async def delegate(self, ns: Optional[str], path: Path, extra: Dtab = Dtab()) -> dict[str, Any]:
        base = Dtab()
        if ns is not None:
            vd = await self.store.get(ns)
            base = vd.dtab if vd is not None else Dtab()
        tree: dict[str, Any]
        if extra.dentries:
            tree = await self.interpreter.delegate(base + extra, path, from_request=True)
        else:
            tree = await self.interpreter.delegate(base, path)
        return tree

    def bound_names(self) -> list[str]:
        names: set[str] = set()
        for namer in self.namers:
            try:
                ids = namer.enumerate()
            except Exception:  # one broken namer must not hide the others
                ids = None
            for p in ids or ():
                names.add(p.show() if isinstance(p, Path) else str(p))
        return sorted(names)

    def live_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for attr in ("cache_size", "live_count", "binding_count"):
            v = getattr(self.interpreter, attr, None)
            if v is not None:
                out[attr] = v() if callable(v) else v
        return out


def _fold_addrs(addrs: Sequence[Addr]) -> Addr:
    """Linkerd's fold for a set of leaves: any non-pending state beats pending, bound sets
    are merged, and otherwise the first state (neg, failed) stands."""
    out: Addr = ADDR_PENDING
    for a in addrs:
        if out is ADDR_PENDING:
            out = a
        elif a is ADDR_PENDING:
            continue
        elif isinstance(out, AddrBound) and isinstance(a, AddrBound):
            out = AddrBound(out.addrs | a.addrs)
        elif isinstance(a, AddrBound) and not isinstance(out, AddrBound):
            out = a
    return out


def eval_addr(act: Activity[NameTree[Any]]) -> Var[Addr]:
    """Every address a bound tree can route to: the union of the address sets of the
    leaves ``tree.eval()`` selects (alt: first usable branch; union: all). Negative
    tree -> ``ADDR_NEG``; failed binding -> ``AddrFailed``. (Linkerd's destination
    interface computes the same.)"""

    def start(out: LazyVar[Addr]) -> Closable:
        current: list[list[BoundName]] = [[]]

        def render() -> None:
            out.update(_fold_addrs([leaves.addrs.get(b.id, ADDR_PENDING) for b in current[0]]))

        leaves = _LeafAddrs(render)

        def on_tree(st: ActivityState[Any]) -> None:
            if isinstance(st, Ok):
                chosen = st.value.simplified().eval()
                if chosen is None:
                    current[0] = []
                    leaves.set_leaves(())
                    out.update(ADDR_NEG)
                    return
                current[0] = [b for b in chosen if isinstance(b, BoundName)]
                leaves.set_leaves(current[0])
                render()
            else:
                current[0] = []
                leaves.set_leaves(())
                out.update(AddrFailed(st.error) if isinstance(st, Failed) else ADDR_PENDING)

        sub = act.observe(on_tree)

        def close() -> None:
            sub.close()
            leaves.close()

        return Closable(close)

    return Var.lazy(ADDR_PENDING, start)
