"""Compiled bound trees: what a request picks from (``routing.py`` compiles them once per
bound tree, so a request only calls ``pick()``).

``LeafTarget`` is one bound name (its client stage and the request headers naming it),
``UnionTarget`` a weighted random choice (Finagle's Union), ``AltTarget`` the first
usable branch (Alt), ``ErrorTarget`` a known failure.
"""
from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate
from typing import TYPE_CHECKING, Optional

from ..naming.bound import BoundName
from .errors import RouterError
from .message import HeaderBlock

if TYPE_CHECKING:  # pragma: no cover
    from .routing import ClientStage
    from .stats import Scope


class Target:
    __slots__ = ()

    def pick(self) -> "LeafTarget":
        raise NotImplementedError

    def clients(self) -> list["ClientStage"]:
        return []


class ErrorTarget(Target):
    __slots__ = ("error",)

    def __init__(self, error: RouterError) -> None:
        self.error = error

    def pick(self) -> "LeafTarget":
        raise self.error


class LeafTarget(Target):
    """One bound name: its client and the request headers naming it."""

    __slots__ = ("client", "bound", "block", "dst", "residual", "pair")

    def __init__(self, client: "ClientStage", bound: BoundName, route_block: HeaderBlock,
                 pair: Optional["Scope"] = None) -> None:
        self.client = client
        self.bound = bound
        #: the residual path as text ("" when none): a trace tag of each attempt
        self.residual = bound.residual.show() if bound.residual.labels else ""
        #: this client's metrics for the service that routed here
        #: (``rt/<label>/client/<id>/service/<name>/``), None outside a router
        self.pair = pair
        fields = [(b"l5d-dst-client", client.id_text.encode("latin-1", "replace"))]
        if self.residual:
            fields.append((b"l5d-dst-residual", self.residual.encode("latin-1", "replace")))
        #: l5d-dst-client (+ l5d-dst-residual), built once
        self.block = HeaderBlock(fields)
        #: every l5d-dst-* header a request sent here carries: the service stage's
        #: (l5d-dst-service, l5d-ctx-dtab) and this leaf's
        self.dst = route_block + self.block

    def pick(self) -> "LeafTarget":
        return self

    def clients(self) -> list["ClientStage"]:
        return [self.client]


class UnionTarget(Target):
    """Weighted random choice among branches (Finagle's Union)."""

    __slots__ = ("branches", "cum", "total")

    def __init__(self, branches: list[tuple[float, Target]]) -> None:
        self.branches = [t for w, t in branches if w > 0] or [t for _, t in branches]
        weights = [w for w, _ in branches if w > 0] or [1.0] * len(branches)
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1]

    def pick(self) -> "LeafTarget":
        i = bisect_right(self.cum, random.random() * self.total)
        return self.branches[min(i, len(self.branches) - 1)].pick()

    def clients(self) -> list["ClientStage"]:
        return [c for b in self.branches for c in b.clients()]


class AltTarget(Target):
    """First usable branch (one whose client has addresses), else the first branch."""

    __slots__ = ("branches",)

    def __init__(self, branches: list[Target]) -> None:
        self.branches = branches

    def pick(self) -> "LeafTarget":
        first: Optional[BaseException] = None
        for b in self.branches:
            try:
                leaf = b.pick()
            except RouterError as e:
                first = first or e
                continue
            if leaf.client.usable:
                return leaf
            first = first or leaf  # type: ignore[assignment]
        if isinstance(first, LeafTarget):
            return first
        raise first  # type: ignore[misc]

    def clients(self) -> list["ClientStage"]:
        return [c for b in self.branches for c in b.clients()]
