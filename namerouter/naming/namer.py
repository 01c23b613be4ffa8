"""The namer interface: every service-discovery backend is one subclass in one module.

A namer is addressed as ``/#/<prefix>/...`` (prefix defaults to ``/<kind>``). The
interpreter strips ``/#/<prefix>`` and calls :meth:`Namer.lookup` with the rest.
The answer is an :class:`Activity` of a NameTree whose leaves are either
:class:`BoundName` (done) or :class:`Path` (bind that path again through the dtab),
so the interpreter re-binds whenever the namer's answer changes.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar, Optional, Sequence

from ..dtab.path import Path
from ..dtab.tree import NameTree
from .bound import BoundName
from .var import Activity


class Namer(abc.ABC):
    #: Linkerd's config kind, e.g. ``io.l5d.fs``.
    kind: ClassVar[str] = ""

    #: The namer's configured ``transformers`` (NameTreeTransformer objects, see
    #: ``namerouter.naming.transform``). The interpreter applies them to this namer's
    #: fully bound answers; build them with ``transform.build_transformers(cfgs, runtime)``.
    transformers: Sequence[Any] = ()

    def __init__(self, prefix: Optional[Path] = None) -> None:
        self.prefix: Path = prefix if prefix is not None else Path.read("/" + self.kind)

    @abc.abstractmethod
    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        """Resolve ``path`` (already stripped of ``/#/<prefix>``).

        Returns an Activity of a tree of BoundName / Path leaves; NEG when the name is
        unknown here. Must be cheap to call repeatedly for the same path (cache the
        Activity per path and release it when nobody observes it).
        """

    async def start(self) -> None:
        """Connect to the backend. Must not block forever if the backend is down."""

    async def close(self) -> None:
        """Stop every watch and release connections."""

    def admin_state(self) -> Any:
        """JSON-able state for ``/namer_state/<prefix>.json``."""
        return {}

    def enumerate(self) -> Optional[list[Path]]:
        """Concrete ids this namer knows without being asked (fs, k8s); None if it can't."""
        return None

    def bound_id(self, rest: Path) -> Path:
        """``/#/<prefix>/<rest>``: the id of a name this namer bound."""
        return Path([b"#"]) + self.prefix + rest


def addr_tree_state(addr: Any, bound: BoundName) -> Any:
    """The lookup state of a name whose answer is one bound address set (Linkerd's usual
    mapping): pending → pending, a failure → failed, a bound set (even empty) → the leaf,
    anything else (neg) → ``~``. ``bound`` carries the address Var itself."""
    from ..dtab.tree import NEG, Leaf
    from .addr import ADDR_PENDING, AddrBound, AddrFailed
    from .var import PENDING, Failed, Ok

    if addr is ADDR_PENDING:
        return PENDING
    if isinstance(addr, AddrFailed):
        return Failed(RuntimeError(addr.cause))
    if isinstance(addr, AddrBound):
        return Ok(Leaf(bound))
    return Ok(NEG)
