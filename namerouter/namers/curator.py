"""``io.l5d.curator``: Apache Curator service discovery in ZooKeeper (Linkerd's
CuratorNamer).

::

    namers:
    - kind: io.l5d.curator
      experimental: true
      zkAddrs: [{host: 127.0.0.1, port: 2181}]
      basePath: /services          # default /

Name: ``/#/io.l5d.curator/<service name>[/residual]``; the instances are the children
of ``<basePath>/<service name>`` as Curator's ``ServiceDiscovery`` registers them
(format: ``namerouter/zk/discovery_formats.py``). Each instance is ``address`` with
``sslPort`` if set, else ``port``; the address set's metadata has ``ssl: true`` when
any instance has an ``sslPort`` (Linkerd's metadata).

A service znode that does not exist is ``~`` (neg) — Linkerd binds it anyway (its
code notes it should be neg); an existing service with no instance is bound with an
empty set. Watches, outages and reconnects behave as the serversets namer's, whose
machinery this namer shares (an instance that Curator removes — its ephemeral node
gone with its session — disappears at once).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Optional

from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from ..naming.addr import Addr, AddrBound
from ..naming.bound import BoundName
from ..naming.namer import addr_tree_state
from ..naming.reactive import HeldActivity
from ..naming.var import Activity
from ..zk.discovery_formats import parse_curator_instance
from ..zk.serverset_format import Endpoint
from ..zk.serverset_watch import Snapshot
from ..zk.session import ZkSession
from .serversets import Selection, ServersetsNamer, ZkAddr, znode_path

KIND = "io.l5d.curator"


@dataclass
class CuratorConfig:
    zkAddrs: list[ZkAddr] = field(metadata={"min_items": 1})
    basePath: str = field(default="/", metadata={"check": lambda v: _check_base(v)})
    prefix: str = "/" + KIND
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


def _check_base(value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"expected a ZooKeeper path starting with '/', got {value!r}")
    znode_path([s for s in value.split("/") if s])


class CuratorSelection(Selection):
    def endpoints(self, snap: Snapshot) -> "list[Endpoint] | Addr":
        eps = [inst.endpoint for _, inst in snap.members]
        return eps or AddrBound((), self.meta(snap))  # the service exists: bound, even if empty

    def meta(self, snap: Snapshot) -> dict[str, Any]:
        return {"ssl": any(inst.ssl for _, inst in snap.members)}




class CuratorNamer(ServersetsNamer):
    kind = KIND
    config_class = CuratorConfig
    child_prefix = ""  # every child is an instance (named by its id)
    parse = staticmethod(parse_curator_instance)
    selection_class = CuratorSelection

    def __init__(self, zk_hosts: Any, base_path: str = "/", prefix: Optional[Path] = None, **kw: Any) -> None:
        super().__init__(zk_hosts, prefix if prefix is not None else Path.of(KIND), **kw)
        self.base_path = base_path

    @classmethod
    def from_config(cls, config: CuratorConfig, runtime: Any = None) -> "CuratorNamer":  # type: ignore[override]
        from ..naming.transform import build_transformers

        namer = cls([(a.host, a.port) for a in config.zkAddrs], config.basePath, Path.read(config.prefix))
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    def service_path(self, service: str) -> str:
        return posixpath.join(self.base_path, znode_path([service])[1:])

    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        if not len(path):
            return Activity.value(NEG)
        try:
            zk_path = self.service_path(path.text_labels()[0])
        except (ValueError, UnicodeDecodeError):
            return Activity.value(NEG)
        if self.session is None:
            self.session = ZkSession.acquire(self.zk_hosts, self.session_timeout_ms)
        sel = self._selection(zk_path, None, None)
        bound = BoundName(self.bound_id(path.take(1)), sel.addr, path.drop(1))
        return HeldActivity(sel, bound, sel.addr, lambda a: addr_tree_state(a, bound))

    def admin_state(self) -> dict[str, Any]:
        st = super().admin_state()
        st["kind"] = KIND
        st["basePath"] = self.base_path
        st["services"] = st.pop("serversets")
        return st
