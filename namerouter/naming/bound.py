"""Bound names: what a logical name becomes once a namer has answered."""
from __future__ import annotations

from typing import Any, Optional

from ..dtab.path import Path
from ..dtab.tree import NameTree
from .addr import ADDR_PENDING, Addr
from .var import Ok, Var


class BoundName:
    """A concrete destination: ``id`` (the client's identity, e.g. ``/#/io.l5d.fs/web``),
    its live address set, and the ``residual`` path left over after binding.

    Equality is by (id, residual): two lookups that reach the same serverset share
    one client no matter which Var object carries its addresses.
    """

    __slots__ = ("id", "addr", "residual", "_hash")

    def __init__(self, id: Path, addr: Optional[Var[Addr]] = None, residual: Path = Path()) -> None:
        self.id = id
        self.addr: Var[Addr] = addr if addr is not None else Var(ADDR_PENDING)
        self.residual = residual
        self._hash = hash(("Bound", id, residual))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoundName) and self.id == other.id and self.residual == other.residual

    def __hash__(self) -> int:
        return self._hash

    def show(self) -> str:
        """Finagle prints a bound name as its id only."""
        return self.id.show()

    @property
    def full_path(self) -> Path:
        return self.id + self.residual

    def with_residual(self, residual: Path) -> "BoundName":
        return BoundName(self.id, self.addr, residual)

    def __repr__(self) -> str:
        r = f", residual={self.residual.show()}" if self.residual.labels else ""
        return f"BoundName({self.id.show()}{r})"


def same_tree_state(a: Any, b: Any) -> bool:
    """Equality of Activity states of bound trees that also notices a bound name whose
    address Var was replaced (the ``same`` of every derived Activity of bound trees).

    BoundName equality is by (id, residual) — right for sharing clients, but a tree whose
    leaf now carries a *different* addr Var (a namer that rebuilt its Var) must still be
    published, or observers would keep watching the old Var.
    """
    if a is b:
        return True
    if a != b:
        return False
    if isinstance(a, Ok) and isinstance(a.value, NameTree) and isinstance(b, Ok):
        la, lb = a.value.leaves(), b.value.leaves()
        return all(getattr(x, "addr", None) is getattr(y, "addr", None) for x, y in zip(la, lb))
    return True
