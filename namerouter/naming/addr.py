"""Addresses and address sets (Finagle's Address and Addr)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

#: Metadata key of an address's load-balancer weight (Linkerd's name).
WEIGHT_KEY = "endpoint_addr_weight"


class Address:
    """One endpoint: host (IP or name), port, and free-form metadata."""

    __slots__ = ("host", "port", "meta", "_hash")

    def __init__(self, host: str, port: int, meta: Optional[Mapping[str, Any]] = None) -> None:
        self.host = host
        self.port = int(port)
        self.meta: dict[str, Any] = dict(meta) if meta else {}
        self._hash = hash((self.host, self.port, tuple(sorted((k, repr(v)) for k, v in self.meta.items()))))

    @property
    def weight(self) -> float:
        w = self.meta.get(WEIGHT_KEY, 1.0)
        try:
            return float(w)
        except (TypeError, ValueError):
            return 1.0

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Address)
            and self.host == other.host
            and self.port == other.port
            and self.meta == other.meta
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        m = f", {self.meta!r}" if self.meta else ""
        return f"Address({self.host!r}, {self.port}{m})"

    def to_json(self) -> dict[str, Any]:
        return {"ip": self.host, "port": self.port, "meta": dict(self.meta)}

    def with_port(self, port: int) -> "Address":
        return Address(self.host, port, self.meta)


class Addr:
    """Base of the four address-set states."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


class AddrBound(Addr):
    """A known set of addresses (possibly empty) plus set-level metadata."""

    __slots__ = ("addrs", "meta")

    def __init__(self, addrs: Iterable[Address] = (), meta: Optional[Mapping[str, Any]] = None) -> None:
        self.addrs: frozenset[Address] = frozenset(addrs)
        self.meta: dict[str, Any] = dict(meta) if meta else {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddrBound) and self.addrs == other.addrs and self.meta == other.meta

    def __hash__(self) -> int:
        return hash(("Bound", self.addrs))

    def __repr__(self) -> str:
        return f"AddrBound({sorted(self.addrs, key=lambda a: (a.host, a.port))!r}, {self.meta!r})"

    def to_json(self) -> dict[str, Any]:
        addrs = sorted(self.addrs, key=lambda a: (a.host, a.port))
        return {"type": "bound", "addrs": [a.to_json() for a in addrs], "meta": dict(self.meta)}


class _AddrConst(Addr):
    __slots__ = ()
    kind = ""

    def __repr__(self) -> str:
        return f"Addr{self.kind.capitalize()}"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind}


class _AddrNeg(_AddrConst):
    __slots__ = ()
    kind = "neg"


class _AddrPending(_AddrConst):
    __slots__ = ()
    kind = "pending"


ADDR_NEG: Addr = _AddrNeg()
ADDR_PENDING: Addr = _AddrPending()


class AddrFailed(Addr):
    __slots__ = ("cause",)

    def __init__(self, cause: str | BaseException) -> None:
        self.cause = str(cause) if not isinstance(cause, str) else cause

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddrFailed) and self.cause == other.cause

    def __hash__(self) -> int:
        return hash(("Failed", self.cause))

    def __repr__(self) -> str:
        return f"AddrFailed({self.cause!r})"

    def to_json(self) -> dict[str, Any]:
        return {"type": "failed", "cause": self.cause}


def addr_from_json(doc: Mapping[str, Any]) -> Addr:
    """Inverse of ``to_json`` (namerd's addr stream format)."""
    kind = doc.get("type")
    if kind == "bound":
        addrs = [Address(a["ip"], int(a["port"]), a.get("meta") or {}) for a in doc.get("addrs", [])]
        return AddrBound(addrs, doc.get("meta") or {})
    if kind == "neg":
        return ADDR_NEG
    if kind == "pending":
        return ADDR_PENDING
    if kind == "failed":
        return AddrFailed(str(doc.get("cause", "")))
    raise ValueError(f"unknown addr type {kind!r}")
