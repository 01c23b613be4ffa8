"""``io.l5d.inMemory``: dtabs held in this process only (tests, demos).

Versions are Linkerd's: an 8-byte big-endian counter per namespace starting at 1,
so a fresh namespace's ETag is ``AAAAAAAAAAE=``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from namerouter.dtab import Dtab
from namerouter.naming.var import Ok

from .base import LocalDtabStore, VersionedDtab, check_namespace, decode_counter, encode_counter


@dataclass
class InMemoryConfig:
    """``storage: {kind: io.l5d.inMemory, namespaces: {name: dtab text}}``."""

    namespaces: dict[str, str] = field(default_factory=dict)


class InMemoryDtabStore(LocalDtabStore):
    kind = "io.l5d.inMemory"
    config_class = InMemoryConfig

    def __init__(self, namespaces: Optional[dict[str, Dtab]] = None) -> None:
        super().__init__()
        for ns, dtab in (namespaces or {}).items():
            check_namespace(ns)
            self._data[ns] = VersionedDtab(dtab, encode_counter(1))
        self._list_var.update(self._list_state())

    def _list_state(self) -> Ok[tuple[str, ...]]:
        return Ok(tuple(sorted(self._data)))

    @classmethod
    def from_config(cls, config: InMemoryConfig, runtime: Any = None) -> "InMemoryDtabStore":
        from namerd.dtabtext import parse_dtab_at

        parsed = {
            ns: parse_dtab_at(text or "", f"storage.namespaces.{ns}")
            for ns, text in (config.namespaces or {}).items()
        }
        return cls(parsed)

    def _next_version(self, ns: str) -> bytes:
        cur = self._data.get(ns)
        n = decode_counter(cur.version) if cur is not None else 0
        return encode_counter((n or 0) + 1)

    def admin_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespaces": len(self._data), "watches": self.watch_count()}
