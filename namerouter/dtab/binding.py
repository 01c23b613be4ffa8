"""The binding algorithm, written once (dtab-semantics.md §8).

Offline binding (:mod:`.offline`, ``namerouter dtab bind``), the live interpreters
(``namerouter.naming.interpreter``, namerd) and delegation (:mod:`.delegation`) all
bind with what is here; they differ only in how a path no dentry rewrites is looked up
(``lookup_namer``): offline rules, live namers, or namers that have not answered yet.

:func:`bind` is Finagle's ``Namer.bind``:

* every lookup asks the dtab first (one rewrite, :meth:`Dtab.lookup`); only when the
  answer is exactly ``~`` is ``lookup_namer`` asked;
* more than ``max_depth`` lookups along one branch fail that branch with
  :class:`MaxDepthExceeded`; a failed Union member is dropped if a sibling binds; a
  failure inside an Alt fails the Alt; an Alt stops at ``!``, falls through ``~``;
* a live namer that has not answered yet is :data:`WAITING`: an Alt waits on its
  current branch, a Union binds as soon as one member did.

It is iterative (an explicit stack, not Python recursion) and bounded, because request
dtabs (``l5d-dtab``, namerd's ``?dtab=``) come from clients:

* answers are memoised per (path, depth) — binding a path at a given depth always gives
  the same answer within one pass — so dtabs whose unions repeat names
  (``/x => /x & /x``) stay polynomial instead of exponential;
* **one budget** (``budget``, in steps): every lookup costs the number of nodes of the
  tree it returns (at least one), and the bound tree may not have more nodes than the
  budget nor nest deeper than ``MAX_TREE_DEPTH``. Past that the whole call fails with
  :class:`BindingTooLarge`, which no Union or Alt swallows. Configured dtabs get
  :data:`BUDGET`; bindings that include a client's dtab get the much smaller
  :data:`REQUEST_BUDGET`.

Results are simplified as they are built (children first), so no tree is walked twice.
"""
from __future__ import annotations

from typing import Any, Callable, Final, Union as TUnion

from .dtab import Dtab
from .errors import BindingTooLarge, MaxDepthExceeded
from .path import Path
from .tree import FAIL, MAX_TREE_DEPTH, NEG, Alt, Leaf, NameTree, Union, Weighted

#: Finagle's ``namerMaxDepth``: lookups along one branch.
MAX_DEPTH: Final = 100
#: Steps one binding of a configured dtab may take (see the module doc).
BUDGET: Final = 10_000
#: Steps one binding may take when its dtab includes a client's request dtab
#: (``l5d-dtab``/``l5d-ctx-dtab``, namerd's ``dtab`` parameter): about 5 ms of work.
REQUEST_BUDGET: Final = 1_000


class _Waiting:
    """A live namer has not answered yet (Finagle's ``Activity.Pending``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WAITING"


WAITING: Final = _Waiting()


class Failure:
    """A failed branch, carried as a value so that a Union can drop it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        # No traceback: failures are memoised and cached with their binding, and a
        # traceback would keep every frame of the failing pass alive with them.
        self.error = error.with_traceback(None)

    def __repr__(self) -> str:
        return f"Failure({self.error!r})"


#: What binding a (sub)tree gives: a bound tree, a failure, or "a namer is pending".
Outcome = TUnion[NameTree[Any], Failure, _Waiting]
#: ``lookup_namer(path)``: the namers' answer for a path the dtab left at ``~``. It may
#: also raise (the branch fails with that error).
LookupNamer = Callable[[Path], Outcome]


class Budget:
    """The steps left to one binding or delegation call (see the module doc)."""

    __slots__ = ("limit", "left")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def charge(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise BindingTooLarge(self.limit, f"more than {self.limit} lookup steps")

    def check_tree(self, tree: NameTree[Any]) -> None:
        """Refuse a result tree larger or deeper than the limits."""
        if tree.size > self.limit:
            raise BindingTooLarge(self.limit, f"a bound tree of more than {self.limit} nodes")
        if tree.depth > MAX_TREE_DEPTH:
            raise BindingTooLarge(self.limit, f"a bound tree nested deeper than {MAX_TREE_DEPTH} levels")


# Stack frame kinds (a frame is a small list: [kind, ...]).
_PATH, _ALT, _UNION = 0, 1, 2


def lookup(dtab: Dtab, path: Path, lookup_namer: LookupNamer) -> Outcome:
    """One lookup step: the dtab first; the namers only when its answer is exactly ``~``
    (two ``~`` matches give ``Alt(~, ~)``, which is not asked about: Finagle's rule)."""
    tree = dtab.lookup(path)
    if tree is NEG:
        return lookup_namer(path)
    return tree


def bind(
    dtab: Dtab,
    path: Path,
    lookup_namer: LookupNamer,
    max_depth: int = MAX_DEPTH,
    budget: int = BUDGET,
) -> Outcome:
    """Bind ``path`` through ``dtab``: a simplified tree without Alt nodes whose leaves
    are bound values, a :class:`Failure`, or :data:`WAITING`. Raises
    :class:`BindingTooLarge` past the budget (see the module doc)."""
    steps = Budget(budget)
    memo: dict[tuple[Path, int], Outcome] = {}
    stack: list[list[Any]] = []
    tree: NameTree[Any] = Leaf(path)
    depth = 0
    while True:
        # Evaluate `tree` at `depth`: either a result `r`, or a frame that waits for
        # the first child (then loop with that child).
        r: Outcome
        if depth > max_depth:
            r = Failure(MaxDepthExceeded(max_depth))
        elif isinstance(tree, Leaf):
            v = tree.value
            if not isinstance(v, Path):
                r = tree  # already bound
            else:
                key = (v, depth)
                hit = memo.get(key)
                if hit is not None:
                    r = hit
                else:
                    try:
                        looked = lookup(dtab, v, lookup_namer)
                    except BindingTooLarge:
                        raise
                    except Exception as e:  # noqa: BLE001 - a namer failure fails this branch
                        looked = Failure(e)
                    if isinstance(looked, NameTree):
                        steps.charge(looked.size)
                        stack.append([_PATH, key])
                        tree, depth = looked, depth + 1
                        continue
                    steps.charge(1)
                    r = memo[key] = looked
        elif isinstance(tree, Alt):
            trees = tree.trees
            if len(trees) == 1:
                tree = trees[0]
                continue
            if trees:
                stack.append([_ALT, trees, 0, depth])
                tree = trees[0]
                continue
            r = NEG
        elif isinstance(tree, Union):
            ws = tree.weighted
            if len(ws) == 1:
                tree = ws[0].tree
                continue
            if ws:
                stack.append([_UNION, ws, 0, depth, []])
                tree = ws[0].tree
                continue
            r = NEG
        else:
            r = tree  # ~ ! $
        # Hand `r` to the frames waiting for it.
        while stack:
            frame = stack[-1]
            kind = frame[0]
            if kind == _PATH:
                memo[frame[1]] = r
                stack.pop()
            elif kind == _ALT:
                if r is NEG and frame[2] + 1 < len(frame[1]):
                    frame[2] += 1
                    tree, depth = frame[1][frame[2]], frame[3]
                    break
                stack.pop()  # `!`, a failure, waiting, or an answer: the Alt's result
            else:
                frame[4].append(r)
                if frame[2] + 1 < len(frame[1]):
                    frame[2] += 1
                    tree, depth = frame[1][frame[2]].tree, frame[3]
                    break
                stack.pop()
                r = _union(frame[1], frame[4], steps)
        else:
            return r


def _union(members: tuple[Weighted[Any], ...], results: list[Outcome], steps: Budget) -> Outcome:
    """Finagle's union binding: the members that bound (weights kept), simplified; with
    none, the first failure, else waiting. Members are already simplified, so dropping
    ``~``/``!`` members is all simplification has left to do."""
    bound = [(w.weight, r) for w, r in zip(members, results) if isinstance(r, NameTree)]
    if not bound:
        for r in results:
            if isinstance(r, Failure):
                return r
        return WAITING
    if len(bound) == 1:
        return bound[0][1]  # a one-member union is that member, even `~` or `!`
    kept = [Weighted(weight, t) for weight, t in bound if t is not NEG and t is not FAIL]
    if not kept:
        return NEG
    if len(kept) == 1:
        return kept[0].tree
    u = Union(*kept)
    steps.check_tree(u)
    return u


def bind_or_raise(dtab: Dtab, path: Path, lookup_namer: LookupNamer, max_depth: int = MAX_DEPTH,
                  budget: int = BUDGET) -> NameTree[Any]:
    """:func:`bind` for callers without pending namers: a failure is raised."""
    r = bind(dtab, path, lookup_namer, max_depth, budget)
    if isinstance(r, Failure):
        raise r.error
    if isinstance(r, _Waiting):
        raise RuntimeError(f"binding {path.show()} is waiting for a namer")
    return r


__all__ = [
    "bind", "bind_or_raise", "lookup", "Budget", "Failure", "WAITING", "Outcome", "LookupNamer",
    "MAX_DEPTH", "BUDGET", "REQUEST_BUDGET",
]
