"""Name-tree transformers (Linkerd's NameTreeTransformer): post-processing of bound trees.

A transformer rewrites the bound leaves an interpreter (or one namer) produced — e.g.
``io.l5d.port`` sends every address to another port. Transformed bound ids are
prefixed with the transformer's prefix, ``/%/<prefix>`` (``/%/io.l5d.port/4141`` ++
``/#/io.l5d.fs/web``), so a transformed client never shares a client (and its static
client config) with an untransformed one.

Configured on an interpreter they apply to every bound tree, in config order (the
second wraps the first, so its prefix ends up outermost); configured on a namer (the
``transformers`` attribute every :class:`~namerouter.naming.namer.Namer` has) they apply
to that namer's fully bound answers. The plugins are in ``namerouter/transformers/``.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Optional, Sequence, overload

from ..dtab.path import Path
from ..dtab.tree import Alt, Leaf, NameTree, Union, Weighted
from .addr import ADDR_NEG, Addr, AddrBound, Address
from .bound import BoundName
from .reactive import flat_map, map_var
from .var import Activity

#: First label of every transformed id (Linkerd's Paths.TransformerPrefix).
TRANSFORMER_LABEL = b"%"


class NameTreeTransformer:
    """Base class. Subclasses override :meth:`map_bound` (leaf by leaf, shown as a
    ``transformation`` node by delegate) or :meth:`transform` (whole tree)."""

    kind: ClassVar[str] = ""
    #: Leaf-by-leaf transformers can be shown in delegate trees (Linkerd's
    #: DelegatingNameTreeTransformer); whole-tree ones cannot.
    delegating: ClassVar[bool] = True

    def __init__(self, prefix: Path) -> None:
        #: Full id prefix including the leading ``/%``.
        self.prefix = prefix

    def map_bound(self, bound: BoundName) -> Optional[BoundName]:
        """The transformed leaf; None means this transformer is not leaf-by-leaf."""
        return None

    def transform(self, tree: NameTree[BoundName]) -> "Activity[NameTree[BoundName]] | NameTree[BoundName]":
        return tree.map(self._map_leaf)

    def _map_leaf(self, b: BoundName) -> BoundName:
        m = self.map_bound(b)
        return b if m is None else m

    @property
    def name(self) -> str:
        """Shown in delegate ``transformation`` nodes (Linkerd shows the class name)."""
        return type(self).__name__

    def prefixed(self, id: Path) -> Path:
        return self.prefix + id


class AddrMappingTransformer(NameTreeTransformer):
    """Leaf-by-leaf transformers that rewrite the address set of every bound name."""

    def map_addr(self, addr: Addr) -> Addr:
        raise NotImplementedError

    def map_bound(self, bound: BoundName) -> BoundName:
        return BoundName(self.prefixed(bound.id), map_var(bound.addr, self.map_addr), bound.residual)


class FilteringTransformer(AddrMappingTransformer):
    """Keeps only the addresses ``keep`` accepts; nothing left → ``ADDR_NEG`` (Linkerd's
    FilteringNameTreeTransformer), so the proxy reports "no hosts" for that leaf."""

    def keep(self, address: Address) -> bool:
        raise NotImplementedError

    def map_addr(self, addr: Addr) -> Addr:
        if isinstance(addr, AddrBound):
            kept = [a for a in addr.addrs if self.keep(a)]
            if not kept:
                return ADDR_NEG
            return AddrBound(kept, addr.meta)
        return addr


def transformer_prefix(default: str, configured: Optional[str]) -> Path:
    """``/%`` ++ (configured ``prefix`` or the kind's default), as Linkerd builds it."""
    text = configured if configured else default
    return Path([TRANSFORMER_LABEL]) + Path.read(text)


@overload
def apply_transformers(
    result: "Activity[NameTree[BoundName]]", transformers: Sequence[NameTreeTransformer],
) -> "Activity[NameTree[BoundName]]": ...


@overload
def apply_transformers(
    result: "Activity[NameTree[BoundName]] | NameTree[BoundName]", transformers: Sequence[NameTreeTransformer],
) -> "Activity[NameTree[BoundName]] | NameTree[BoundName]": ...


def apply_transformers(
    result: "Activity[NameTree[BoundName]] | NameTree[BoundName]",
    transformers: Sequence[NameTreeTransformer],
) -> "Activity[NameTree[BoundName]] | NameTree[BoundName]":
    """Run ``result`` through ``transformers`` in order. Static stays static when every
    transformer answers with a plain tree."""
    for t in transformers:
        if isinstance(result, Activity):
            result = flat_map(result, t.transform)
        else:
            result = t.transform(result)
    return result


def is_fully_bound(tree: NameTree[Any]) -> bool:
    """True when no leaf is a Path still to be bound (namer transformers apply only then)."""
    return all(isinstance(v, BoundName) for v in tree.leaves())


def replace_leaves(tree: NameTree[Any], replacement: NameTree[Any]) -> NameTree[Any]:
    """Every leaf of ``tree`` becomes ``replacement``; ``~``, ``!``, ``$`` stay."""
    if isinstance(tree, Leaf):
        return replacement
    if isinstance(tree, Alt):
        return Alt(*(replace_leaves(t, replacement) for t in tree.trees))
    if isinstance(tree, Union):
        return Union(*(Weighted(w.weight, replace_leaves(w.tree, replacement)) for w in tree.weighted))
    return tree


def build_transformers(configs: Iterable[Any], runtime: Any) -> list[NameTreeTransformer]:
    """Instantiate validated transformer configs (the dataclasses config/validate.py makes
    of a ``transformers`` list) through the plugin registry; already-built transformers
    pass through. Used by interpreters and namers."""
    from .. import plugins

    out: list[NameTreeTransformer] = []
    for c in configs or ():
        if isinstance(c, NameTreeTransformer):
            out.append(c)
            continue
        out.append(plugins.load_for(plugins.TRANSFORMERS, c).from_config(c, runtime))
    return out


BindFn = Callable[[Path], "Activity[NameTree[BoundName]]"]
