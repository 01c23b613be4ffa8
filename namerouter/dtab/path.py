"""Paths and prefixes: sequences of byte-string labels, as in Finagle.

A label is a non-empty byte string. Labels made only of label characters print
verbatim; any other label prints every one of its bytes as ``\\xHH`` (lowercase),
which is exactly Finagle's ``Path.showElems`` rule.
"""
from __future__ import annotations

from typing import ClassVar, Iterable, Iterator, Optional, Sequence, Union, overload

#: Characters that may appear unescaped in a label (Finagle's ``Path.isShowable``).
LABEL_CHARS: frozenset[int] = frozenset(
    b"0123456789"
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    b"abcdefghijklmnopqrstuvwxyz"
    b"_:.#$%-"
)


def show_label(label: bytes) -> str:
    """Print one label the way Finagle does (verbatim, or every byte escaped)."""
    if all(b in LABEL_CHARS for b in label):
        return label.decode("ascii")
    return "".join(f"\\x{b:02x}" for b in label)


def _to_label(label: Union[str, bytes]) -> bytes:
    raw = label.encode("utf-8") if isinstance(label, str) else bytes(label)
    if not raw:
        raise ValueError("a path label may not be empty")
    return raw


class Path(Sequence[bytes]):
    """An immutable, hashable sequence of labels. ``Path()`` is the empty path ``/``."""

    __slots__ = ("labels", "_hash")

    labels: tuple[bytes, ...]
    _hash: Optional[int]
    #: the empty path ``/`` (set below the class)
    empty: ClassVar["Path"]

    def __init__(self, labels: Iterable[Union[bytes, str]] = ()) -> None:
        object.__setattr__(self, "labels", tuple(_to_label(l) for l in labels))
        object.__setattr__(self, "_hash", None)

    @classmethod
    def _trusted(cls, labels: tuple[bytes, ...]) -> "Path":
        """Build from labels already known to be non-empty bytes (hot path)."""
        p = object.__new__(cls)
        object.__setattr__(p, "labels", labels)
        object.__setattr__(p, "_hash", None)
        return p

    @classmethod
    def of(cls, *labels: Union[str, bytes]) -> "Path":
        """``Path.of("svc", "web")`` is ``/svc/web`` (str labels are UTF-8 encoded)."""
        return cls(labels)

    @classmethod
    def read(cls, text: str) -> "Path":
        """Parse a path in Finagle syntax; raises DtabSyntaxError."""
        from .parser import parse_path

        return parse_path(text)

    def __setattr__(self, name: str, value: object) -> None:  # immutability
        raise AttributeError("Path is immutable")

    # Sequence protocol -------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.labels)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> "Path": ...

    def __getitem__(self, index: "int | slice") -> "bytes | Path":
        if isinstance(index, slice):
            return Path._trusted(self.labels[index])
        return self.labels[index]

    # Value semantics ----------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and self.labels == other.labels

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(("Path", self.labels))
            object.__setattr__(self, "_hash", h)
        return h

    def __lt__(self, other: "Path") -> bool:
        return self.labels < other.labels

    def __add__(self, other: "Path") -> "Path":
        if not isinstance(other, Path):
            return NotImplemented
        if not other.labels:
            return self
        if not self.labels:
            return other
        return Path._trusted(self.labels + other.labels)

    # Operations ---------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return not self.labels

    def take(self, n: int) -> "Path":
        return Path._trusted(self.labels[:n])

    def drop(self, n: int) -> "Path":
        return Path._trusted(self.labels[n:])

    def startswith(self, other: "Path") -> bool:
        n = len(other.labels)
        return n <= len(self.labels) and self.labels[:n] == other.labels

    def show(self) -> str:
        if not self.labels:
            return "/"
        return "/" + "/".join(show_label(l) for l in self.labels)

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Path({self.show()!r})"

    def text_labels(self) -> list[str]:
        """Labels decoded as UTF-8 (with replacement) for namers that work on text."""
        return [l.decode("utf-8", "replace") for l in self.labels]


Path.empty = Path()


class _Wildcard:
    """The ``*`` prefix element: matches exactly one label of any value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "*"

    def __reduce__(self) -> str:
        return "WILDCARD"


WILDCARD = _Wildcard()

PrefixElem = Union[bytes, _Wildcard]


class Prefix(Sequence[PrefixElem]):
    """Left side of a dentry: labels and ``*`` wildcards. The empty prefix matches all."""

    __slots__ = ("elems", "_hash", "_literal")

    elems: tuple[PrefixElem, ...]
    _hash: Optional[int]
    #: the empty prefix ``/`` (set below the class)
    empty: ClassVar["Prefix"]
    #: the elements when there is no wildcard (matching is then a tuple comparison)
    _literal: Optional[tuple[PrefixElem, ...]]

    def __init__(self, elems: Iterable[Union[PrefixElem, str]] = ()) -> None:
        out: list[PrefixElem] = []
        for e in elems:
            out.append(e if e is WILDCARD else _to_label(e))  # type: ignore[arg-type]
        object.__setattr__(self, "elems", tuple(out))
        object.__setattr__(self, "_hash", None)
        # When there is no wildcard, matching is a plain tuple comparison.
        literal = all(e is not WILDCARD for e in out)
        object.__setattr__(self, "_literal", tuple(out) if literal else None)

    @classmethod
    def _trusted(cls, elems: tuple[PrefixElem, ...]) -> "Prefix":
        """Build from elements already known valid (non-empty bytes or WILDCARD): parser."""
        p = object.__new__(cls)
        object.__setattr__(p, "elems", elems)
        object.__setattr__(p, "_hash", None)
        literal = WILDCARD not in elems
        object.__setattr__(p, "_literal", elems if literal else None)
        return p

    @classmethod
    def read(cls, text: str) -> "Prefix":
        from .parser import parse_prefix

        return parse_prefix(text)

    @classmethod
    def from_path(cls, path: Path) -> "Prefix":
        return cls(path.labels)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Prefix is immutable")

    def __len__(self) -> int:
        return len(self.elems)

    def __iter__(self) -> Iterator[PrefixElem]:
        return iter(self.elems)

    @overload
    def __getitem__(self, index: int) -> PrefixElem: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PrefixElem]: ...

    def __getitem__(self, index: "int | slice") -> "PrefixElem | Sequence[PrefixElem]":
        return self.elems[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prefix) and self.elems == other.elems

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(("Prefix", self.elems))
            object.__setattr__(self, "_hash", h)
        return h

    @property
    def is_empty(self) -> bool:
        return not self.elems

    def matches(self, path: Path) -> bool:
        """True when every element equals (or, for ``*``, stands for) the path's label."""
        n = len(self.elems)
        labels = path.labels
        if n > len(labels):
            return False
        lit = self._literal
        if lit is not None:
            return labels[:n] == lit
        for e, l in zip(self.elems, labels):
            if e is not WILDCARD and e != l:
                return False
        return True

    def show(self) -> str:
        if not self.elems:
            return "/"
        return "/" + "/".join("*" if e is WILDCARD else show_label(e) for e in self.elems)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Prefix({self.show()!r})"


Prefix.empty = Prefix()
