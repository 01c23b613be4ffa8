"""``io.l5d.serversets``: ZooKeeper serversets (Twitter/Finagle/Aurora style) as a namer.

Name: ``/#/io.l5d.serversets/<zk path segments>[:<endpoint>][#<shard>]`` — the ensemble
comes from ``zkAddrs``, not from the path. A serverset is a znode whose ``member_*``
children each hold one instance as JSON::

    {"serviceEndpoint": {"host": "10.0.4.17", "port": 31000},
     "additionalEndpoints": {"http": {"host": "10.0.4.17", "port": 31001}},
     "status": "ALIVE", "shard": 3}

Only ALIVE members are used; ``:http`` selects ``additionalEndpoints.http``, ``#3`` only
members of shard 3. A serverset that does not exist or has no usable member is negative,
and then the namer walks up: the last segment moves into the residual and the parent
znode is tried — reactively, so a serverset that appears later at the deeper path takes
over again (Linkerd decides this once, on a sample; we keep watching).

Everything is driven by ZooKeeper watches (exists + children on the serverset, data on
each member), never by polling. Failure behaviour (Linkerd issues #847 and #1829): when
ZooKeeper is unreachable, partitioned, or our session expires, every serverset keeps its
last known members; on every reconnect (kazoo forgets its watches on any disconnect)
each watched serverset is re-read and re-watched. Names never synced stay pending and
resolve as soon as ZooKeeper answers. State per serverset is in :meth:`admin_state`.

Layout: the member format is ``namerouter/zk/serverset_format.py``, the watch of one
serverset ``namerouter/zk/serverset_watch.py``; this module selects addresses from it
(``Selection``), builds name trees with the walk-up (``Lookup``) and is the namer.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from ..dtab.path import Path
from ..dtab.tree import NEG, Leaf, NameTree
from ..naming import dns
from ..naming.addr import ADDR_NEG, ADDR_PENDING, Addr, AddrBound, AddrFailed, Address
from ..naming.bound import BoundName
from ..naming.namer import Namer
from ..naming.var import PENDING, Activity, ActivityState, Closable, Failed, Ok, Var, start_stop
from ..zk.serverset_format import MEMBER_PREFIX, Endpoint, MalformedMember, Member, parse_member
from ..zk.serverset_watch import ServersetWatch, Snapshot
from ..zk.session import DEFAULT_SESSION_TIMEOUT_MS, ZkSession, normalize_hosts

log = logging.getLogger("namerouter.namers.serversets")

__all__ = [
    "ServersetsNamer", "ServersetsConfig", "ZkAddr", "parse_segment", "znode_path",
    "Member", "Endpoint", "MalformedMember", "parse_member",
]

KIND = "io.l5d.serversets"
#: How long a serverset watch outlives its last observer, so that a re-bind (which
#: drops and re-takes its observation) does not tear the watch down and re-read it.
DEFAULT_LINGER_S = 2.0


# Configuration --------------------------------------------------------------------

@dataclass
class ZkAddr:
    """One ZooKeeper server (Linkerd's ``zkAddrs`` item)."""

    host: str
    port: int = field(default=2181, metadata={"min": 1, "max": 65535})


@dataclass
class ServersetsConfig:
    """Linkerd's ``io.l5d.serversets`` namer config (keys are Linkerd's)."""

    zkAddrs: list[ZkAddr] = field(metadata={"min_items": 1})
    prefix: str = "/" + KIND
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})
    #: Not in Linkerd's namer config (its ZK client uses 10 s); exposed for tests/ops.
    sessionTimeoutMs: int = field(default=DEFAULT_SESSION_TIMEOUT_MS, metadata={"min": 100})


_SEGMENT = re.compile(r"^([^:#]+)(?::([^:#]+))?(?:#([0-9]+))?$")


def parse_segment(label: str) -> tuple[str, Optional[str], Optional[int]]:
    """``name``, ``name:endpoint``, ``name#shard`` or ``name:endpoint#shard``."""
    m = _SEGMENT.match(label)
    if m is None:
        raise ValueError(
            f"io.l5d.serversets: bad serverset segment {label!r}: expected "
            "name, name:endpoint, name#shard or name:endpoint#shard (shard a non-negative integer)"
        )
    name, endpoint, shard = m.groups()
    return name, endpoint, (int(shard) if shard is not None else None)


def znode_path(labels: list[str]) -> str:
    """The ZooKeeper path for path labels; ValueError for labels ZooKeeper refuses."""
    for label in labels:
        if label in (".", "..") or "/" in label or "\x00" in label:
            raise ValueError(f"io.l5d.serversets: {label!r} is not a valid znode name")
    return "/" + "/".join(labels)


# Address selection --------------------------------------------------------------------------

def _is_ip(host: str) -> bool:
    return dns.ip_literal(host) is not None


#: Member host names are re-resolved this often while observed (Finagle's InetResolver
#: re-polls DNS too), so an instance registered by name follows its DNS changes.
DNS_REFRESH_S = 5.0


class Selection:
    """The live Addr of one (serverset, endpoint, shard): what a BoundName carries.

    Observing ``addr`` holds the serverset's watch; the last observer leaving releases it.
    """

    def __init__(self, namer: "ServersetsNamer", path: str, endpoint: Optional[str], shard: Optional[int]) -> None:
        self.namer = namer
        self.path = path
        self.endpoint = endpoint
        self.shard = shard
        self.addr: Var[Addr] = Var.lazy(ADDR_PENDING, start_stop(self._start, self._stop))
        self._watch: Optional[ServersetWatch] = None
        self._obs: Optional[Closable] = None
        self._gen = 0
        self._dns_task: Optional[asyncio.Task[None]] = None
        self._dns_timer: Optional[asyncio.TimerHandle] = None
        self._meta: dict[str, Any] = {}
        self.dns_errors: dict[str, str] = {}

    def _start(self) -> None:
        self._watch = self.namer._acquire_watch(self.path)
        self._obs = self._watch.snapshot.observe(self._on_snapshot)

    def _stop(self) -> None:
        if self._obs is not None:
            self._obs.close()
            self._obs = None
        self._cancel_dns()
        if self._watch is not None:
            self._watch.release()
            self._watch = None
        self.namer._forget_selection(self)

    def _cancel_dns(self) -> None:
        if self._dns_task is not None:
            self._dns_task.cancel()
            self._dns_task = None
        if self._dns_timer is not None:
            self._dns_timer.cancel()
            self._dns_timer = None

    def endpoints(self, snap: Snapshot) -> "list[Endpoint] | Addr":
        """The endpoints this selection takes from a snapshot of an existing znode, or
        an Addr to publish as is. Serversets: ALIVE members (of the shard), the chosen
        endpoint; none usable → Neg, so lookups walk up."""
        eps: list[Endpoint] = []
        for _, m in snap.members:
            if m.status != "ALIVE":
                continue
            if self.shard is not None and m.shard != self.shard:
                continue
            ep = m.endpoint(self.endpoint)
            if ep is not None:
                eps.append(ep)
        return eps or ADDR_NEG

    def meta(self, snap: Snapshot) -> dict[str, Any]:
        """Set-level metadata of the bound address set (none for serversets)."""
        return {}

    def _on_snapshot(self, snap: Optional[Snapshot]) -> None:
        self._gen += 1
        self._cancel_dns()
        if snap is None:
            self.addr.update(ADDR_PENDING)
            return
        if not snap.exists:
            self.addr.update(ADDR_NEG)
            return
        eps = self.endpoints(snap)
        if isinstance(eps, Addr):
            self.addr.update(eps)
            return
        self._meta = self.meta(snap)
        if all(_is_ip(ep.host) for ep in eps):
            self.dns_errors.clear()
            self.addr.update(AddrBound((Address(dns.ip_literal(ep.host) or ep.host, ep.port) for ep in eps),
                                       self._meta))
            return
        # Host names: resolved in the loop's executor (never blocking the loop); a newer
        # snapshot supersedes an unfinished resolution and its refresh timer.
        self._dns_task = asyncio.get_running_loop().create_task(self._resolve(self._gen, eps))

    async def _resolve(self, gen: int, eps: list[Endpoint]) -> None:
        names = sorted({ep.host for ep in eps if not _is_ip(ep.host)})
        results = await asyncio.gather(*(dns.resolve(h) for h in names), return_exceptions=True)
        if gen != self._gen:
            return
        resolved: dict[str, list[str]] = {}
        errors: dict[str, str] = {}
        for h, res in zip(names, results):
            if isinstance(res, BaseException):
                errors[h] = f"cannot resolve member host {h}: {res}"
                if h not in self.dns_errors:
                    log.warning("serverset %s: %s", self.path, errors[h])
            else:
                resolved[h] = list(res)
        self.dns_errors = errors
        addrs = []
        for ep in eps:
            literal = dns.ip_literal(ep.host)
            for ip in [literal] if literal is not None else resolved.get(ep.host, []):
                addrs.append(Address(ip, ep.port))
        if addrs:
            self.addr.update(AddrBound(addrs, self._meta))
        elif errors:
            self.addr.update(AddrFailed("; ".join(errors.values())))
        else:
            self.addr.update(ADDR_NEG)
        self._dns_task = None
        self._dns_timer = asyncio.get_running_loop().call_later(DNS_REFRESH_S, self._refresh, gen, eps)

    def _refresh(self, gen: int, eps: list[Endpoint]) -> None:
        self._dns_timer = None
        if gen == self._gen and self.addr.observed:
            self._dns_task = asyncio.get_running_loop().create_task(self._resolve(gen, eps))


# Lookups (with the reactive walk-up) -----------------------------------------------------------

class Lookup:
    """The Activity for one (path, residual): a Leaf while the serverset at ``path`` is
    usable, otherwise whatever the parent (last label moved into the residual) gives."""

    def __init__(self, namer: "ServersetsNamer", path: Path, residual: Path) -> None:
        self.namer = namer
        self.path = path
        self.residual = residual
        self.states: Var[ActivityState[NameTree[Any]]] = Var.lazy(PENDING, start_stop(self._start, self._stop))
        self._sel_obs: Optional[Closable] = None
        self._parent_obs: Optional[Closable] = None
        self._selection: Optional[Selection] = None

    def _start(self) -> None:
        try:
            zk_path, endpoint, shard = self.namer.split(self.path.text_labels())
        except ValueError as e:
            self.states.update(Failed(e))
            return
        self._selection = self.namer._selection(zk_path, endpoint, shard)
        self._sel_obs = self._selection.addr.observe(self._on_addr)

    def _stop(self) -> None:
        for obs in (self._sel_obs, self._parent_obs):
            if obs is not None:
                obs.close()
        self._sel_obs = self._parent_obs = None
        self._selection = None
        self.namer._forget_lookup(self)

    def _on_addr(self, addr: Addr) -> None:
        if addr is ADDR_NEG:
            if len(self.path) <= 1:
                self.states.update(Ok(NEG))
            elif self._parent_obs is None:
                parent = self.namer._lookup(self.path[:-1], self.path[-1:] + self.residual)
                self._parent_obs = parent.states.observe(self.states.update)
            return
        if self._parent_obs is not None:
            self._parent_obs.close()
            self._parent_obs = None
        if addr is ADDR_PENDING:
            self.states.update(PENDING)
        elif isinstance(addr, AddrFailed):
            self.states.update(Failed(RuntimeError(addr.cause)))
        else:
            assert self._selection is not None
            bound = BoundName(self.namer.bound_id(self.path), self._selection.addr, self.residual)
            self.states.update(Ok(Leaf(bound)))


# The namer ------------------------------------------------------------------------------------

def _path_of(text: str) -> Path:
    try:
        return Path.read(text)
    except ImportError:  # pragma: no cover - parser not installed
        return Path.of(*[s for s in text.split("/") if s])


class ServersetsNamer(Namer):
    """Binds ``/#/io.l5d.serversets/<zk path>`` to the serverset's live members.

    The ZooKeeper namers of other layouts (``io.l5d.zkLeader``, ``io.l5d.curator``)
    subclass it and set ``child_prefix``/``parse`` (what the znode's children are),
    ``selection_class`` (which addresses they give) and :meth:`split`.
    """

    kind = KIND
    config_class: ClassVar[type] = ServersetsConfig
    child_prefix = MEMBER_PREFIX
    selection_class = Selection

    @staticmethod
    def parse(data: bytes) -> object:
        """A child znode's data -> what ``selection_class`` reads (each layout has its own)."""
        return parse_member(data)

    def split(self, labels: list[str]) -> tuple[str, Optional[str], Optional[int]]:
        """(znode path, endpoint, shard) of a name's labels; ValueError if malformed."""
        name, endpoint, shard = parse_segment(labels[-1])
        return znode_path(labels[:-1] + [name]), endpoint, shard

    def __init__(
        self,
        zk_hosts: Any,
        prefix: Optional[Path] = None,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        super().__init__(prefix if prefix is not None else Path.of(KIND))
        self.zk_hosts = normalize_hosts(zk_hosts)
        self.session_timeout_ms = session_timeout_ms
        self.linger_s = linger_s
        self.session: Optional[ZkSession] = None
        self._watches: dict[str, ServersetWatch] = {}
        self._selections: dict[tuple[str, Optional[str], Optional[int]], Selection] = {}
        self._lookups: dict[tuple[Path, Path], Lookup] = {}
        self._closed = False

    @classmethod
    def from_config(cls, config: ServersetsConfig, runtime: Any = None) -> "ServersetsNamer":
        from ..naming.transform import build_transformers

        namer = cls(
            [(a.host, a.port) for a in config.zkAddrs],
            prefix=_path_of(config.prefix),
            session_timeout_ms=config.sessionTimeoutMs,
        )
        # Applied by the interpreter to this namer's fully bound answers.
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    async def start(self) -> None:
        """Start connecting (never waits for ZooKeeper: lookups stay pending meanwhile)."""
        if self.session is None:
            self.session = ZkSession.acquire(self.zk_hosts, self.session_timeout_ms)

    async def close(self) -> None:
        self._closed = True
        for w in list(self._watches.values()):
            w.stop()
        self._watches.clear()
        if self.session is not None:
            session, self.session = self.session, None
            await session.release()

    # NameTree lookups --------------------------------------------------------------
    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        if not len(path):
            return Activity.value(NEG)
        if self.session is None:
            # Lazily connect when used without an explicit start() (e.g. from a test).
            self.session = ZkSession.acquire(self.zk_hosts, self.session_timeout_ms)
        return Activity(self._lookup(path, Path()).states)

    def _lookup(self, path: Path, residual: Path) -> Lookup:
        key = (path, residual)
        lk = self._lookups.get(key)
        if lk is None:
            lk = self._lookups[key] = Lookup(self, path, residual)
        return lk

    def _forget_lookup(self, lk: Lookup) -> None:
        if self._lookups.get((lk.path, lk.residual)) is lk:
            del self._lookups[(lk.path, lk.residual)]

    def _selection(self, path: str, endpoint: Optional[str], shard: Optional[int]) -> Selection:
        key = (path, endpoint, shard)
        sel = self._selections.get(key)
        if sel is None:
            sel = self._selections[key] = self.selection_class(self, path, endpoint, shard)
        return sel

    def _forget_selection(self, sel: Selection) -> None:
        key = (sel.path, sel.endpoint, sel.shard)
        if self._selections.get(key) is sel:
            del self._selections[key]

    def _acquire_watch(self, path: str) -> ServersetWatch:
        w = self._watches.get(path)
        if w is None:
            assert self.session is not None
            w = self._watches[path] = ServersetWatch(self.session, path, self.linger_s, self._forget_watch,
                                                     child_prefix=self.child_prefix, parse=self.parse)
        w.acquire()
        return w

    def _forget_watch(self, w: ServersetWatch) -> None:
        if self._watches.get(w.path) is w:
            del self._watches[w.path]

    # Admin ---------------------------------------------------------------------------
    def admin_state(self) -> dict[str, Any]:
        """``/namer_state/io.l5d.serversets.json``: the session and every watched serverset."""
        sets = {}
        for path, w in sorted(self._watches.items()):
            st = w.admin_state()
            dns = {}
            for (p, ep, shard), sel in self._selections.items():
                if p == path and sel.dns_errors:
                    dns.update(sel.dns_errors)
            st["errors"] += [{"error": e} for e in dns.values()]
            sets[path] = st
        return {
            "kind": KIND,
            "prefix": self.prefix.show(),
            "zkAddrs": self.zk_hosts,
            "session": self.session.admin_state() if self.session else None,
            "serversets": sets,
        }
