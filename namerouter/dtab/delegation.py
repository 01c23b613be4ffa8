"""Delegation trees: binding explained step by step (Linkerd's DelegateTree).

This module holds the algorithm once, for offline use (:mod:`.offline`) and for the live
interpreter (``namerouter.naming``), which differ only in how a path that no dentry
matches is looked up by namers, and in how a bound leaf's address is rendered:

* the algorithm is a *generator* (:func:`delegate_gen`) that ``yield``\\ s each path the
  namers must look up and receives the namer's answer (a NameTree whose leaves are
  ``Path`` to bind again, or bound values) — or an exception thrown into it. A driver
  runs it: :func:`run_sync` with a plain callback, :func:`run_async` with a callback
  that may return an awaitable (live namers wait for a non-pending state). The module
  stays pure: no I/O, no asyncio import.
* :func:`to_json` renders the tree as the delegator JSON of Linkerd's admin
  ``/delegator.json`` and namerd's ``/api/1/delegate``, calling ``render_bound(value,
  node_path) -> {"addr": …, "id": …, "path": …}`` for bound leaves.

Semantics (dtab-semantics.md §9, Linkerd's ConfiguredNamersInterpreter.delegate):
all Alt/Union branches are bound (no short-circuit), a branch failure becomes an
``Exception`` node, a loop on the main chain fails the whole call with
``Max recursion level reached.``, and the result is simplified.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any, Callable, Generator, Optional

from .binding import BUDGET, MAX_DEPTH, Budget
from .dtab import Dentry, Dtab, rewrite
from .errors import BindingTooLarge, MaxDepthExceeded
from .path import Path
from .tree import NEG, Alt as NAlt, Empty as NEmpty, Fail as NFail, Leaf as NLeaf, NameTree
from .tree import Neg as NNeg, Union as NUnion

DEPTH_MESSAGE = "Max recursion level reached."

EMPTY_PATH = Path()


# The DelegateTree model --------------------------------------------------------------

class DelegateTree:
    """Base of the delegation-tree variants; every node has ``path`` and ``dentry``."""

    path: Path
    dentry: Dentry

    def with_dentry(self, dentry: Dentry) -> "DelegateTree":
        """The same node, produced by ``dentry`` (every variant is a frozen dataclass)."""
        return replace(self, dentry=dentry)  # type: ignore[type-var]

    def simplified(self) -> "DelegateTree":
        return simplify(self)


@dataclass(frozen=True)
class DException(DelegateTree):
    path: Path
    dentry: Dentry
    error: BaseException

    @property
    def message(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class DEmpty(DelegateTree):
    path: Path
    dentry: Dentry


@dataclass(frozen=True)
class DFail(DelegateTree):
    path: Path
    dentry: Dentry


@dataclass(frozen=True)
class DNeg(DelegateTree):
    path: Path
    dentry: Dentry


@dataclass(frozen=True)
class DDelegate(DelegateTree):
    path: Path
    dentry: Dentry
    tree: DelegateTree


@dataclass(frozen=True)
class DLeaf(DelegateTree):
    """``value`` is a ``Path`` (not bound yet) or a bound value (terminal)."""

    path: Path
    dentry: Dentry
    value: Any


@dataclass(frozen=True)
class DAlt(DelegateTree):
    path: Path
    dentry: Dentry
    trees: tuple[DelegateTree, ...]


@dataclass(frozen=True)
class DUnion(DelegateTree):
    """``trees`` is a tuple of ``(weight, DelegateTree)``."""

    path: Path
    dentry: Dentry
    trees: tuple[tuple[float, DelegateTree], ...]


@dataclass(frozen=True)
class DTransformation(DelegateTree):
    """A transformer (e.g. io.l5d.port) rewrote the bound ``value`` into ``tree``."""

    path: Path
    name: str
    value: Any
    tree: DelegateTree

    @property
    def dentry(self) -> Dentry:  # type: ignore[override]
        return Dentry.nop

    def with_dentry(self, dentry: Dentry) -> "DelegateTree":
        return self  # a transformation is not produced by a dentry




def from_name_tree(path: Path, dentry: Dentry, tree: NameTree[Any]) -> DelegateTree:
    """Linkerd's ``DelegateTree.fromNameTree(path, dentry, tree)``.

    Note the quirk kept from Linkerd: a ``~`` becomes ``Neg`` with the *empty* path.
    """
    if isinstance(tree, NLeaf):
        return DLeaf(path, dentry, tree.value)
    if isinstance(tree, NAlt):
        return DAlt(path, dentry, tuple(from_name_tree(path, dentry, t) for t in tree.trees))
    if isinstance(tree, NUnion):
        return DUnion(
            path, dentry, tuple((w.weight, from_name_tree(path, dentry, w.tree)) for w in tree.weighted)
        )
    if isinstance(tree, NFail):
        return DFail(path, dentry)
    if isinstance(tree, NEmpty):
        return DEmpty(path, dentry)
    if isinstance(tree, NNeg):
        return DNeg(EMPTY_PATH, dentry)
    raise TypeError(f"not a NameTree: {tree!r}")


# The algorithm -------------------------------------------------------------------------

# A delegation generator yields paths for the namers and finally returns a DelegateTree.
DelegateGen = Generator[Path, Any, DelegateTree]

#: The deepest delegation tree shown: a chain of ``MAX_DEPTH`` rewrites is about that
#: many levels; the renderers (simplify, JSON) recurse once per level.
MAX_DELEGATE_DEPTH = 2 * MAX_DEPTH + 50

# Stack frame kinds: a frame waits for the delegation of one child.
_DELEGATE, _ALT, _UNION = 0, 1, 2


def _lookup(dtab: Dtab, dentry: Dentry, path: Path, steps: Budget) -> DelegateGen:
    """One delegation lookup: every matching dentry (last first), else the namers."""
    matches = dtab.matches(path)
    if matches:
        subtrees = []
        for d, residual in matches:
            dst = rewrite(d.dst, residual)
            steps.charge(dst.size)
            subtrees.append(from_name_tree(path, d, dst))
        if len(subtrees) == 1:
            return DDelegate(path, dentry, subtrees[0])
        return DAlt(path, dentry, tuple(subtrees))
    steps.charge(1)
    try:
        tree = yield path  # ask the namers (configured ones, then the system namers)
    except BindingTooLarge:
        raise
    except Exception as e:  # noqa: BLE001 - any namer failure is shown, not raised
        return DException(path, dentry, e.with_traceback(None))
    if tree is NEG:
        return DNeg(path, dentry)
    steps.charge(tree.size)
    return from_name_tree(path, dentry, tree)


def delegate_gen(
    dtab: Dtab, path: Path, max_depth: int = MAX_DEPTH, budget: int = BUDGET
) -> DelegateGen:
    """The delegation of ``path`` through ``dtab`` as a generator (see module doc).

    Iterative (an explicit stack), with the binding budget of :mod:`.binding`: more
    than ``budget`` steps, or a tree deeper than :data:`MAX_DELEGATE_DEPTH`, raise
    BindingTooLarge instead of producing an enormous tree (Linkerd would hang).
    """
    steps = Budget(budget)
    stack: list[list[Any]] = []
    tree: DelegateTree = DLeaf(EMPTY_PATH, Dentry.nop, path)
    depth = 0
    while True:
        if len(stack) > MAX_DELEGATE_DEPTH:
            raise BindingTooLarge(budget, f"a delegation tree nested deeper than {MAX_DELEGATE_DEPTH} levels")
        r: Optional[DelegateTree] = None
        error: Optional[Exception] = None
        if depth > max_depth:
            error = MaxDepthExceeded(max_depth, DEPTH_MESSAGE)
        elif isinstance(tree, DLeaf) and isinstance(tree.value, Path):
            tree = yield from _lookup(dtab, tree.dentry, tree.value, steps)
            depth += 1
            continue
        elif isinstance(tree, DDelegate):
            stack.append([_DELEGATE, tree, depth])
            tree = tree.tree
            continue
        elif isinstance(tree, (DAlt, DUnion)):
            children = tree.trees if isinstance(tree, DAlt) else tuple(t for _, t in tree.trees)
            if not children:
                r = DNeg(tree.path, tree.dentry)
            elif len(children) == 1:
                stack.append([_DELEGATE, tree, depth])
                tree = children[0]
                continue
            else:  # unlike bind, every alternative is explored
                stack.append([_ALT if isinstance(tree, DAlt) else _UNION, tree, depth, children, []])
                tree = children[0]
                continue
        else:
            r = tree  # a bound leaf, Exception, Empty, Fail, Neg, Transformation: final
        # Hand the result (or the error) to the frames waiting for it.
        while stack:
            frame = stack[-1]
            node = frame[1]
            if frame[0] == _DELEGATE:
                stack.pop()
                if error is None:
                    assert r is not None
                    r = DDelegate(node.path, node.dentry, r)
                continue
            done: list[Any] = frame[4]
            if error is not None:  # a failed branch is shown, not raised
                r, error = DException(node.path, node.dentry, error), None
            done.append(r)
            children = frame[3]
            if len(done) < len(children):
                tree, depth = children[len(done)], frame[2]
                break
            stack.pop()
            if frame[0] == _ALT:
                r = DAlt(node.path, node.dentry, tuple(done))
            else:
                r = DUnion(node.path, node.dentry, tuple((w, t) for (w, _), t in zip(node.trees, done)))
        else:
            if error is not None:
                raise error  # a loop on the main chain fails the whole call
            assert r is not None
            return simplify(r)


LookupNamer = Callable[[Path], Any]


def run_sync(gen: DelegateGen, lookup_namer: LookupNamer) -> DelegateTree:
    """Drive a delegation generator with a synchronous namer callback."""
    try:
        request = next(gen)
        while True:
            try:
                answer = lookup_namer(request)
            except Exception as e:  # noqa: BLE001 - handed to the algorithm
                request = gen.throw(e)
            else:
                request = gen.send(answer)
    except StopIteration as stop:
        result: DelegateTree = stop.value
        return result


async def run_async(gen: DelegateGen, lookup_namer: LookupNamer) -> DelegateTree:
    """Drive a delegation generator with a callback that may return an awaitable."""
    try:
        request = next(gen)
        while True:
            try:
                answer = lookup_namer(request)
                if inspect.isawaitable(answer):
                    answer = await answer
            except Exception as e:  # noqa: BLE001
                request = gen.throw(e)
            else:
                request = gen.send(answer)
    except StopIteration as stop:
        result: DelegateTree = stop.value
        return result


# simplify --------------------------------------------------------------------------------

def simplify(tree: DelegateTree) -> DelegateTree:
    """Linkerd's ``DelegateTree.simplified``: collapse no-op Delegates and single-child nodes."""
    if isinstance(tree, DDelegate):
        s = simplify(tree.tree)
        if not isinstance(s, (DNeg, DFail, DEmpty)) and s.path == tree.path:
            return s.with_dentry(tree.dentry)
        return DDelegate(tree.path, tree.dentry, s)
    if isinstance(tree, DAlt):
        if not tree.trees:
            return DNeg(tree.path, tree.dentry)
        if len(tree.trees) == 1:
            return simplify(DDelegate(tree.path, tree.dentry, tree.trees[0]))
        out: list[DelegateTree] = []
        for t in tree.trees:
            s = simplify(t)
            if isinstance(s, DAlt) and s.path == tree.path:
                out.extend(s.trees)
            else:
                out.append(s)
        return DAlt(tree.path, tree.dentry, tuple(out))
    if isinstance(tree, DUnion):
        if not tree.trees:
            return DNeg(tree.path, tree.dentry)
        if len(tree.trees) == 1:
            return simplify(DDelegate(tree.path, tree.dentry, tree.trees[0][1]))
        return DUnion(tree.path, tree.dentry, tuple((w, simplify(t)) for w, t in tree.trees))
    return tree


# find ------------------------------------------------------------------------------------

def find(tree: DelegateTree, predicate: Callable[[Any], bool]) -> Optional[list[tuple[Path, str]]]:
    """The chain of (path, dentry shown) from the root to the first leaf whose value
    satisfies ``predicate`` (Linkerd's ``DelegateTree.find``, used to explain a routing
    decision in error messages); ``Dentry.nop`` shows as ``""``. None if no leaf matches.
    """

    def show(d: Dentry) -> str:
        return "" if d == Dentry.nop else d.show()

    if isinstance(tree, DLeaf):
        return [(tree.path, show(tree.dentry))] if predicate(tree.value) else None
    if isinstance(tree, DTransformation):
        rest = find(tree.tree, predicate)
        if rest is None:
            return None
        if len(rest) == 1:  # the transformed leaf: keep its dentry on the transformation
            return [(tree.path, rest[0][1]), (rest[0][0], tree.name)]
        return [(tree.path, tree.name)] + rest
    if isinstance(tree, DDelegate):
        rest = find(tree.tree, predicate)
        return None if rest is None else [(tree.path, show(tree.dentry))] + rest
    if isinstance(tree, (DAlt, DUnion)):
        children = tree.trees if isinstance(tree, DAlt) else [t for _, t in tree.trees]
        for c in children:
            rest = find(c, predicate)
            if rest is not None:
                return [(tree.path, show(tree.dentry))] + rest
        return None
    return None


# JSON ------------------------------------------------------------------------------------

_FAIL_PREFIX = Path([b"$", b"fail"])

RenderBound = Callable[[Any, Path], dict[str, Any]]


def dentry_json(d: Dentry) -> Optional[dict[str, Any]]:
    """``{"prefix", "dst"}``, or None for a dentry equivalent to ``Dentry.nop``."""
    if d.equiv(Dentry.nop):
        return None
    return {"prefix": d.prefix.show(), "dst": d.dst.show()}


def _node(kind: str, path: str, dentry: Dentry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "path": path}
    dj = dentry_json(dentry)
    if dj is not None:
        out["dentry"] = dj
    return out


def to_json(tree: DelegateTree, render_bound: RenderBound) -> dict[str, Any]:
    """The delegator JSON (fields in Jackson's order, absent optionals omitted)."""
    if isinstance(tree, DNeg):
        return _node("neg", "~" if not tree.path else tree.path.show(), tree.dentry)
    if isinstance(tree, DFail):
        return _node("fail", tree.path.show() if tree.path.startswith(_FAIL_PREFIX) else "!", tree.dentry)
    if isinstance(tree, DEmpty):
        return _node("empty", tree.path.show(), tree.dentry)
    if isinstance(tree, DException):
        out = _node("exception", tree.path.show(), tree.dentry)
        out["message"] = tree.message
        return out
    if isinstance(tree, DDelegate):
        out = _node("delegate", tree.path.show(), tree.dentry)
        out["delegate"] = to_json(tree.tree, render_bound)
        return out
    if isinstance(tree, DLeaf):
        out = _node("leaf", tree.path.show(), tree.dentry)
        out["bound"] = render_bound(tree.value, tree.path)
        return out
    if isinstance(tree, DAlt):
        out = _node("alt", tree.path.show(), tree.dentry)
        out["alt"] = [to_json(t, render_bound) for t in tree.trees]
        return out
    if isinstance(tree, DUnion):
        out = _node("union", tree.path.show(), tree.dentry)
        out["union"] = [{"weight": float(w), "tree": to_json(t, render_bound)} for w, t in tree.trees]
        return out
    if isinstance(tree, DTransformation):
        return {
            "type": "transformation",
            "path": tree.path.show(),
            "name": tree.name,
            "bound": render_bound(tree.value, tree.path),
            "tree": to_json(tree.tree, render_bound),
        }
    raise TypeError(f"not a DelegateTree: {tree!r}")


async def to_json_async(tree: DelegateTree, render_bound: Callable[[Any, Path], Any]) -> dict[str, Any]:
    """:func:`to_json` with a renderer that may be async (live addrs wait for non-pending)."""
    rendered: dict[int, dict[str, Any]] = {}

    async def collect(t: DelegateTree) -> None:
        if isinstance(t, (DLeaf, DTransformation)):
            r = render_bound(t.value, t.path)
            rendered[id(t)] = (await r) if inspect.isawaitable(r) else r
        if isinstance(t, (DDelegate, DTransformation)):
            await collect(t.tree)
        elif isinstance(t, DAlt):
            for c in t.trees:
                await collect(c)
        elif isinstance(t, DUnion):
            for _, c in t.trees:
                await collect(c)

    await collect(tree)
    return _walk_json(tree, rendered)


def _walk_json(tree: DelegateTree, rendered: dict[int, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(tree, DLeaf):
        out = _node("leaf", tree.path.show(), tree.dentry)
        out["bound"] = rendered[id(tree)]
        return out
    if isinstance(tree, DDelegate):
        out = _node("delegate", tree.path.show(), tree.dentry)
        out["delegate"] = _walk_json(tree.tree, rendered)
        return out
    if isinstance(tree, DAlt):
        out = _node("alt", tree.path.show(), tree.dentry)
        out["alt"] = [_walk_json(t, rendered) for t in tree.trees]
        return out
    if isinstance(tree, DUnion):
        out = _node("union", tree.path.show(), tree.dentry)
        out["union"] = [{"weight": float(w), "tree": _walk_json(t, rendered)} for w, t in tree.trees]
        return out
    if isinstance(tree, DTransformation):
        return {
            "type": "transformation",
            "path": tree.path.show(),
            "name": tree.name,
            "bound": rendered[id(tree)],
            "tree": _walk_json(tree.tree, rendered),
        }
    return to_json(tree, lambda v, p: {})  # leaf-less variants


__all__ = [
    "DelegateTree", "DException", "DEmpty", "DFail", "DNeg", "DDelegate", "DLeaf", "DAlt",
    "DUnion", "DTransformation", "from_name_tree", "delegate_gen", "run_sync", "run_async",
    "simplify", "to_json", "to_json_async", "dentry_json", "find", "MAX_DEPTH", "DEPTH_MESSAGE",
]
