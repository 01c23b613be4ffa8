"""NameTree: the right side of a dentry and the result of binding.

Six variants, as in Finagle: ``Leaf(value)``, ``Alt(trees)`` (ordered fail-over),
``Union(weighted)`` (weighted load-balance set), and the three constants
``FAIL`` (``!``), ``NEG`` (``~``, "no such name here") and ``EMPTY``
(``$``, "exists but has no members").

Leaves hold a :class:`~namerouter.dtab.path.Path` when parsed; binding replaces
them with bound names, so the tree is generic in its leaf value.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Callable, Generic, Iterable, Optional, TypeVar

T = TypeVar("T")
U = TypeVar("U")

DEFAULT_WEIGHT = 1.0

#: The deepest nesting of Alt/Union nodes a tree may have, parsed or bound. Every
#: algorithm that walks a tree recursively (show, simplify, map, hash, the JSON
#: renderers) is safe within it; the parser and the binder refuse deeper trees, so no
#: input can reach Python's recursion limit. Real dtabs nest a handful of levels.
MAX_TREE_DEPTH = 100


def format_weight(weight: float) -> str:
    """Java's ``%.2f``: HALF_UP on the shortest decimal representation of the double.

    Python's own ``%.2f`` rounds the binary value (0.125 -> 0.12); Java gives 0.13.
    """
    w = float(weight)
    if w != w:
        return "NaN"
    if w in (float("inf"), float("-inf")):
        return "Infinity" if w > 0 else "-Infinity"
    with localcontext() as ctx:
        ctx.prec = 400  # enough digits for any finite double quantized to 0.01
        d = Decimal(repr(w)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return format(d, "f")


class NameTree(Generic[T]):
    """Base class of the six variants. Immutable; structural equality.

    ``size`` (nodes, counting a shared subtree once per use) and ``depth`` (Alt/Union
    levels) are known in O(1): Alt and Union compute them from their children when
    built, so the binder can bound the work a tree will cause before anyone walks it.
    """

    __slots__ = ()

    #: nodes in the tree (a leaf or a constant is one node)
    size: int = 1
    #: nesting of Alt/Union nodes (0 for a leaf or a constant)
    depth: int = 0

    # Filled in below so users can write NameTree.Leaf, NameTree.Neg, ...
    Leaf: Any
    Alt: Any
    Union: Any
    Weighted: Any
    Fail: Any
    Neg: Any
    Empty: Any

    @classmethod
    def read(cls, text: str) -> "NameTree[Any]":
        from .parser import parse_tree

        return parse_tree(text)

    # Printing -------------------------------------------------------------------
    def show(self) -> str:
        return _show_top(self)

    def __str__(self) -> str:
        return self.show()

    # Transformations --------------------------------------------------------------
    def map(self, f: Callable[[T], U]) -> "NameTree[U]":
        """Replace every leaf value by ``f(value)``; structure and weights are kept."""
        raise NotImplementedError

    def simplified(self) -> "NameTree[T]":
        """Evaluation-equivalent normal form (Finagle's ``NameTree.simplified``)."""
        raise NotImplementedError

    def eval(self) -> Optional[set[T]]:
        """The set of leaf values, or None when the tree is negative or failed."""
        r = _eval(self)
        return r if isinstance(r, set) else None

    def leaves(self) -> list[T]:
        """Every leaf value, left to right (duplicates kept)."""
        out: list[T] = []
        _collect_leaves(self, out)
        return out


class Leaf(NameTree[T]):
    __slots__ = ("value",)

    value: T

    def __init__(self, value: T) -> None:
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("NameTree is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Leaf) and self.value == other.value

    def __hash__(self) -> int:
        return hash(("Leaf", self.value))

    def __repr__(self) -> str:
        return f"Leaf({self.value!r})"

    def map(self, f: Callable[[T], U]) -> "NameTree[U]":
        return Leaf(f(self.value))

    def simplified(self) -> "NameTree[T]":
        return self


def _measure(trees: Iterable[NameTree[Any]]) -> tuple[int, int]:
    """(size, depth) of a node with these children."""
    size, depth = 1, 0
    for t in trees:
        size += t.size
        if t.depth > depth:
            depth = t.depth
    return size, depth + 1


class Alt(NameTree[T]):
    """Try the trees in order; the first that is not negative wins."""

    __slots__ = ("trees", "size", "depth")

    trees: tuple[NameTree[T], ...]

    def __init__(self, *trees: NameTree[T]) -> None:
        object.__setattr__(self, "trees", trees)
        size, depth = _measure(trees)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "depth", depth)

    @classmethod
    def of(cls, trees: Iterable[NameTree[T]]) -> "Alt[T]":
        return cls(*trees)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("NameTree is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Alt) and self.trees == other.trees

    def __hash__(self) -> int:
        return hash(("Alt", self.trees))

    def __repr__(self) -> str:
        return f"Alt{self.trees!r}"

    def map(self, f: Callable[[T], U]) -> "NameTree[U]":
        return Alt(*(t.map(f) for t in self.trees))

    def simplified(self) -> "NameTree[T]":
        trees = self.trees
        if not trees:
            return NEG
        if len(trees) == 1:
            return trees[0].simplified()
        kept: list[NameTree[T]] = []
        for t in trees:
            s = t.simplified()
            if s is NEG:
                continue
            kept.append(s)
            if s is FAIL:
                break  # a failure ends the fail-over chain; later branches are unreachable
        if not kept:
            return NEG
        if len(kept) == 1:
            return kept[0]
        return Alt(*kept)


class Weighted(Generic[T]):
    """One member of a Union: a tree with its weight (default 1.0)."""

    __slots__ = ("weight", "tree")

    weight: float
    tree: NameTree[T]

    def __init__(self, weight: float, tree: NameTree[T]) -> None:
        object.__setattr__(self, "weight", float(weight))
        object.__setattr__(self, "tree", tree)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Weighted is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Weighted) and self.weight == other.weight and self.tree == other.tree

    def __hash__(self) -> int:
        return hash(("Weighted", self.weight, self.tree))

    def __repr__(self) -> str:
        return f"Weighted({self.weight!r}, {self.tree!r})"

    def map(self, f: Callable[[T], U]) -> "Weighted[U]":
        return Weighted(self.weight, self.tree.map(f))


class Union(NameTree[T]):
    """Weighted load-balance set: every member is used, in proportion to its weight."""

    __slots__ = ("weighted", "size", "depth")

    weighted: tuple[Weighted[T], ...]

    def __init__(self, *weighted: Weighted[T]) -> None:
        object.__setattr__(self, "weighted", weighted)
        size, depth = _measure(w.tree for w in weighted)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "depth", depth)

    @classmethod
    def of(cls, weighted: Iterable[Weighted[T]]) -> "Union[T]":
        return cls(*weighted)

    @classmethod
    def from_trees(cls, *trees: NameTree[T]) -> "Union[T]":
        """A union of trees with the default weight."""
        return cls(*(Weighted(DEFAULT_WEIGHT, t) for t in trees))

    @property
    def trees(self) -> tuple[NameTree[T], ...]:
        return tuple(w.tree for w in self.weighted)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("NameTree is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Union) and self.weighted == other.weighted

    def __hash__(self) -> int:
        return hash(("Union", self.weighted))

    def __repr__(self) -> str:
        return f"Union{self.weighted!r}"

    def map(self, f: Callable[[T], U]) -> "NameTree[U]":
        return Union(*(w.map(f) for w in self.weighted))

    def simplified(self) -> "NameTree[T]":
        ws = self.weighted
        if not ws:
            return NEG
        if len(ws) == 1:
            return ws[0].tree.simplified()
        kept: list[Weighted[T]] = []
        for w in ws:
            s = w.tree.simplified()
            # Since finagle 19.5 a failed member is dropped like a negative one.
            if s is NEG or s is FAIL:
                continue
            kept.append(Weighted(w.weight, s))
        if not kept:
            return NEG
        if len(kept) == 1:
            return kept[0].tree
        return Union(*kept)


class _Constant(NameTree[Any]):
    """Base of the three leaf-less variants; each is a singleton."""

    __slots__ = ()
    symbol = "?"

    def __repr__(self) -> str:
        return type(self).__name__.upper()

    def map(self, f: Callable[[Any], U]) -> "NameTree[U]":
        return self

    def simplified(self) -> "NameTree[Any]":
        return self

    def __reduce__(self) -> str:
        return type(self).__name__.upper()


class Fail(_Constant):
    """``!``: stop here with a failure; an Alt does not fall through it."""

    __slots__ = ()
    symbol = "!"


class Neg(_Constant):
    """``~``: no such name here; an Alt falls through to its next branch."""

    __slots__ = ()
    symbol = "~"


class Empty(_Constant):
    """``$``: the name exists but has no members."""

    __slots__ = ()
    symbol = "$"


FAIL = Fail()
NEG = Neg()
EMPTY = Empty()

NameTree.Leaf = Leaf
NameTree.Alt = Alt
NameTree.Union = Union
NameTree.Weighted = Weighted
NameTree.Fail = FAIL
NameTree.Neg = NEG
NameTree.Empty = EMPTY


# Printing: three precedence levels, exactly as NameTree.show/show1/showSimple in Finagle.
# A 1-member Alt/Union always prints as its member. Empty Alt/Union follow the same
# rules as n-ary ones (``Alt()`` prints ``""`` at the top, ``()`` inside).

def _show_value(value: Any) -> str:
    show = getattr(value, "show", None)
    return show() if callable(show) else str(value)


def _unwrap(t: NameTree[Any]) -> NameTree[Any]:
    """A one-child Alt or Union prints as its child, at every level."""
    while True:
        if isinstance(t, Alt) and len(t.trees) == 1:
            t = t.trees[0]
        elif isinstance(t, Union) and len(t.weighted) == 1:
            t = t.weighted[0].tree
        else:
            return t


def _show_top(t: NameTree[Any]) -> str:
    t = _unwrap(t)
    if isinstance(t, Alt):
        return " | ".join(_show_union_level(c) for c in t.trees)
    return _show_union_level(t)


def _show_union_level(t: NameTree[Any]) -> str:
    t = _unwrap(t)
    if isinstance(t, Alt):
        return "(" + _show_top(t) + ")"
    if isinstance(t, Union):
        parts = []
        for w in t.weighted:
            s = _show_simple(w.tree)
            parts.append(s if w.weight == DEFAULT_WEIGHT else f"{format_weight(w.weight)}*{s}")
        return " & ".join(parts)
    return _show_simple(t)


def _show_simple(t: NameTree[Any]) -> str:
    t = _unwrap(t)
    if isinstance(t, (Alt, Union)):
        return "(" + _show_top(t) + ")"
    if isinstance(t, Leaf):
        return _show_value(t.value)
    if isinstance(t, _Constant):
        return t.symbol
    raise TypeError(f"not a NameTree: {t!r}")


# eval -------------------------------------------------------------------------------

_NEGATIVE = object()
_FAILED = object()


def _eval(t: NameTree[Any]) -> Any:
    """A set of leaf values, or the _NEGATIVE / _FAILED marker."""
    if isinstance(t, Leaf):
        return {t.value}
    if t is EMPTY:
        return set()
    if t is NEG:
        return _NEGATIVE
    if t is FAIL:
        return _FAILED
    if isinstance(t, Alt):
        for c in t.trees:
            r = _eval(c)
            if r is _FAILED:
                return _FAILED
            if r is _NEGATIVE:
                continue
            return r
        return _NEGATIVE
    if isinstance(t, Union):
        acc: Optional[set[Any]] = None
        for w in t.weighted:
            r = _eval(w.tree)
            if isinstance(r, set):
                acc = r if acc is None else (acc | r)
        return _NEGATIVE if acc is None else acc
    raise TypeError(f"not a NameTree: {t!r}")


def _collect_leaves(t: NameTree[Any], out: list[Any]) -> None:
    if isinstance(t, Leaf):
        out.append(t.value)
    elif isinstance(t, Alt):
        for c in t.trees:
            _collect_leaves(c, out)
    elif isinstance(t, Union):
        for w in t.weighted:
            _collect_leaves(w.tree, out)
