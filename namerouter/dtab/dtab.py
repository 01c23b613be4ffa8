"""Dentries and delegation tables (Finagle's Dentry and Dtab)."""
from __future__ import annotations

from typing import Any, ClassVar, Iterable, Iterator, Optional, Sequence, overload

from .path import WILDCARD, Path, Prefix
from .tree import FAIL, NEG, Alt, NameTree


class Dentry:
    """One rewrite rule: paths starting with ``prefix`` become ``dst`` + the rest."""

    __slots__ = ("prefix", "dst")

    prefix: Prefix
    dst: NameTree[Path]
    #: Finagle's Dentry.nop (set below the class)
    nop: ClassVar["Dentry"]

    def __init__(self, prefix: Prefix, dst: NameTree[Path]) -> None:
        if isinstance(prefix, Path):
            prefix = Prefix.from_path(prefix)
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "dst", dst)

    @classmethod
    def read(cls, text: str) -> "Dentry":
        from .parser import parse_dentry

        return parse_dentry(text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Dentry is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dentry) and self.prefix == other.prefix and self.dst == other.dst

    def __hash__(self) -> int:
        return hash(("Dentry", self.prefix, self.dst))

    def equiv(self, other: "Dentry") -> bool:
        """Finagle's Dentry.equiv: same prefix, destinations equal once simplified."""
        return self.prefix == other.prefix and self.dst.simplified() == other.dst.simplified()

    def show(self) -> str:
        return f"{self.prefix.show()}=>{self.dst.show()}"

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Dentry({self.show()!r})"

    def to_json(self) -> dict[str, str]:
        """The namerd/Linkerd JSON form ``{"prefix": ..., "dst": ...}``."""
        return {"prefix": self.prefix.show(), "dst": self.dst.show()}


#: Finagle's Dentry.nop: the "no rule" dentry shown at the root of a delegation. Its
#: prefix is the single one-byte label "/" (shows as ``/\x2f``), which the concrete
#: syntax cannot produce unescaped, so it never collides with a real entry.
Dentry.nop = Dentry(Prefix([b"/"]), NEG)


def rewrite(dst: NameTree[Path], residual: Path) -> NameTree[Path]:
    """A dentry's destination with ``residual`` appended to every leaf."""
    if not residual.labels:
        return dst
    return dst.map(lambda p: p + residual)


class _Trie:
    """A trie node: the indices of the dentries whose prefix ends here, and the children
    by prefix element (a label, or WILDCARD)."""

    __slots__ = ("ends", "children")

    def __init__(self) -> None:
        self.ends: list[int] = []
        self.children: dict[Any, _Trie] = {}


def _build_trie(dentries: tuple[Dentry, ...]) -> _Trie:
    root = _Trie()
    for i, d in enumerate(dentries):
        node = root
        for e in d.prefix.elems:
            child = node.children.get(e)
            if child is None:
                child = node.children[e] = _Trie()
            node = child
        node.ends.append(i)
    return root


class Dtab(Sequence[Dentry]):
    """An ordered list of dentries. Later dentries take precedence in lookup."""

    __slots__ = ("dentries", "_hash", "_trie", "__weakref__")

    dentries: tuple[Dentry, ...]
    _hash: Optional[int]
    _trie: Optional[_Trie]
    #: ``Dtab.empty`` and Finagle's ``Dtab.fail`` (set below the class)
    empty: ClassVar["Dtab"]
    fail: ClassVar["Dtab"]

    def __init__(self, dentries: Iterable[Dentry] = ()) -> None:
        object.__setattr__(self, "dentries", tuple(dentries))
        object.__setattr__(self, "_hash", None)
        object.__setattr__(self, "_trie", None)

    def matches(self, path: Path) -> list[tuple[Dentry, Path]]:
        """Every dentry whose prefix matches ``path``, last-defined first, each with the
        residual (the labels after its prefix). The one place binding, delegation and
        lint ask "which rules apply here" (dtab-semantics.md §7).

        Uses a trie of the prefixes (built once per Dtab, lazily; a ``*`` element is one
        more branch), so a lookup costs a few dict probes per path label instead of a
        prefix comparison per dentry — the order of the answer is still by position.
        """
        trie = self._trie if self._trie is not None else self.build_index()
        found: list[int] = []
        nodes = [trie]
        for label in path.labels:
            nxt = []
            for node in nodes:
                found.extend(node.ends)
                child = node.children.get(label)
                if child is not None:
                    nxt.append(child)
                child = node.children.get(WILDCARD)
                if child is not None:
                    nxt.append(child)
            nodes = nxt
            if not nxt:
                break
        for node in nodes:
            found.extend(node.ends)
        if not found:
            return []
        if len(found) > 1:
            found.sort(reverse=True)
        ds = self.dentries
        labels = path.labels
        out = []
        for i in found:
            d = ds[i]
            out.append((d, Path._trusted(labels[len(d.prefix.elems):])))
        return out

    def build_index(self) -> _Trie:
        """Build the lookup trie now (it is otherwise built by the first lookup): callers
        with a large dtab build it off the event loop."""
        trie = _build_trie(self.dentries)
        object.__setattr__(self, "_trie", trie)
        return trie

    @classmethod
    def read(cls, text: str) -> "Dtab":
        from .parser import parse_dtab

        return parse_dtab(text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Dtab is immutable")

    def __len__(self) -> int:
        return len(self.dentries)

    def __iter__(self) -> Iterator[Dentry]:
        return iter(self.dentries)

    @overload
    def __getitem__(self, index: int) -> Dentry: ...

    @overload
    def __getitem__(self, index: slice) -> "Dtab": ...

    def __getitem__(self, index: "int | slice") -> "Dentry | Dtab":
        if isinstance(index, slice):
            return Dtab(self.dentries[index])
        return self.dentries[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dtab) and self.dentries == other.dentries

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(("Dtab", self.dentries))
            object.__setattr__(self, "_hash", h)
        return h

    def __add__(self, other: "Dtab | Dentry") -> "Dtab":
        """``d1 + d2`` is Finagle's ``d1 ++ d2``; ``d + dentry`` appends one entry."""
        if isinstance(other, Dentry):
            return Dtab(self.dentries + (other,))
        if isinstance(other, Dtab):
            if not other.dentries:
                return self
            if not self.dentries:
                return other
            return Dtab(self.dentries + other.dentries)
        return NotImplemented

    def concat(self, other: "Dtab") -> "Dtab":
        """Finagle's ``++`` / ``concat``: ``other``'s entries after ours (so they win)."""
        return self + other

    def append(self, dentry: Dentry) -> "Dtab":
        """Finagle's ``+`` / ``append``: one more entry, last (so it wins)."""
        return self + dentry

    def lookup(self, path: Path) -> NameTree[Path]:
        """One rewrite step: every matching dentry, last-defined first.

        0 matches -> ``~``; 1 -> its destination with the residual appended to every
        leaf; n -> an Alt of those, last-defined first. No longest-prefix rule.
        """
        matches = [rewrite(d.dst, residual) for d, residual in self.matches(path)]
        if not matches:
            return NEG
        if len(matches) == 1:
            return matches[0]
        return Alt(*matches)

    def strip_prefix(self, prefix: "Dtab") -> "Dtab":
        """Drop ``prefix``'s entries when they are exactly this dtab's leading entries."""
        if self == prefix:
            return Dtab()
        n = len(prefix.dentries)
        if n == 0 or n > len(self.dentries):
            return self
        if self.dentries[:n] == prefix.dentries:
            return Dtab(self.dentries[n:])
        return self

    def simplified(self) -> "Dtab":
        """Simplify every destination; drop entries whose destination becomes ``~``."""
        out = []
        for d in self.dentries:
            s = d.dst.simplified()
            if s is not NEG:
                out.append(Dentry(d.prefix, s))
        return Dtab(out)

    def show(self) -> str:
        return ";".join(d.show() for d in self.dentries)

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Dtab({self.show()!r})"

    def print(self) -> str:
        """Finagle's multi-line debug form (``Dtab.print``)."""
        lines = [f"Dtab({len(self.dentries)})"]
        lines += [f"\t{d.prefix.show()} => {d.dst.show()}" for d in self.dentries]
        return "\n".join(lines) + "\n"

    def to_json(self) -> list[dict[str, str]]:
        return [d.to_json() for d in self.dentries]


Dtab.empty = Dtab()
#: Finagle's ``Dtab.fail`` (``/=>!``): every name fails.
Dtab.fail = Dtab([Dentry(Prefix(), FAIL)])
