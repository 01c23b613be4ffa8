"""``io.l5d.zkLeader``: the address of a ZooKeeper leader group's leader (Linkerd's
ZkLeaderNamer).

::

    namers:
    - kind: io.l5d.zkLeader
      zkAddrs: [{host: 127.0.0.1, port: 2181}]

Name: ``/#/io.l5d.zkLeader/<zk path of the group>[/residual]``. The group's candidates
are ``member_<seq>`` children (Twitter commons leader election); the lowest one leads
and its data is the address (formats: ``namerouter/zk/discovery_formats.py``). When
the leader leaves, the next candidate's address is used at once.

As in Linkerd, a path whose znode does not exist or has no candidate walks up: the
last segment moves into the residual and the parent group is tried
(``/#/io.l5d.zkLeader/svc/leader/api`` is the group ``/svc/leader`` with residual
``/api``). Unlike Linkerd (which decides the walk-up once), the walk-up is reactive,
and ZooKeeper outages keep the last leader — the serversets namer's machinery, which
this namer shares (one session per ensemble, watches only while observed, re-sync on
every reconnect).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..dtab.path import Path
from ..naming.addr import ADDR_NEG, Addr, AddrFailed
from ..zk.discovery_formats import parse_leader_data
from ..zk.serverset_format import MEMBER_PREFIX, Endpoint
from ..zk.serverset_watch import Snapshot
from ..zk.session import DEFAULT_SESSION_TIMEOUT_MS
from .serversets import Selection, ServersetsNamer, ZkAddr, znode_path

KIND = "io.l5d.zkLeader"


@dataclass
class ZkLeaderConfig:
    zkAddrs: list[ZkAddr] = field(metadata={"min_items": 1})
    prefix: str = "/" + KIND
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


class LeaderSelection(Selection):
    """The leader's endpoints: the lowest ``member_*`` child's data."""

    def endpoints(self, snap: Snapshot) -> "list[Endpoint] | Addr":
        candidates = [n for n, _ in snap.members] + [n for n, _ in snap.malformed]
        if not candidates:
            return ADDR_NEG  # no candidate: walk up, as Linkerd
        leader = min(candidates)
        for name, eps in snap.members:
            if name == leader:
                return list(eps)
        reason = dict(snap.malformed).get(leader, "unreadable")
        return AddrFailed(f"leader {self.path}/{leader} has unusable data: {reason}")


class ZkLeaderNamer(ServersetsNamer):
    kind = KIND
    config_class = ZkLeaderConfig
    child_prefix = MEMBER_PREFIX
    parse = staticmethod(parse_leader_data)
    selection_class = LeaderSelection

    def __init__(self, zk_hosts: Any, prefix: Optional[Path] = None,
                 session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS, **kw: Any) -> None:
        super().__init__(zk_hosts, prefix if prefix is not None else Path.of(KIND), session_timeout_ms, **kw)

    @classmethod
    def from_config(cls, config: ZkLeaderConfig, runtime: Any = None) -> "ZkLeaderNamer":  # type: ignore[override]
        from ..naming.transform import build_transformers

        namer = cls([(a.host, a.port) for a in config.zkAddrs], prefix=Path.read(config.prefix))
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    def split(self, labels: list[str]) -> tuple[str, Optional[str], Optional[int]]:
        return znode_path(labels), None, None

    def admin_state(self) -> dict[str, Any]:
        st = super().admin_state()
        st["kind"] = KIND
        st["groups"] = st.pop("serversets")
        return st
