"""``io.l5d.zk``: dtabs in ZooKeeper, one znode per namespace (Linkerd's layout).

znode ``<pathPrefix>/<ns>`` holds the dtab text (``Dtab.show``), created persistent
with the configured ACLs; its version is the 4-byte big-endian ``stat.version``,
and updates are ``setData(version=...)`` so ZooKeeper itself does the
compare-and-set across every namerd sharing the ensemble.

kazoo is thread-based: every call here uses kazoo's ``*_async`` API whose result is
handed back to the event loop with ``call_soon_threadsafe``; watch callbacks arrive
on kazoo's thread and are forwarded the same way. The loop never blocks on ZooKeeper.

Watching: one ChildrenWatch on ``pathPrefix`` plus one DataWatch per *existing*
namespace, so the number of ZooKeeper watches is bounded by what is stored, never by
what clients ask for. The watches feed a cache that keeps the last known values
while ZooKeeper is unreachable; kazoo reconnects and its watchers re-read on
reconnect, which re-syncs the cache.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from namerouter.dtab import Dtab
from namerouter.naming.var import PENDING, ActivityState, Failed, Ok, Var

from .base import (
    DtabStoreError,
    Forbidden,
    ListVar,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    NsState,
    Observed,
    ObservedDtabStore,
    StorageUnavailable,
    VersionedDtab,
    VersionMismatch,
    check_namespace,
    decode_counter,
    encode_counter,
)

log = logging.getLogger("namerd.storage.zk")

#: Seconds a write/read may wait for ZooKeeper before answering 503.
OP_TIMEOUT = 5.0


@dataclass
class ZkAddr:
    host: str = "127.0.0.1"
    port: int = field(default=2181, metadata={"min": 1, "max": 65535})


@dataclass
class ZkAuthInfo:
    scheme: str = "digest"
    auth: str = ""


def _check_perms(text: str) -> str:
    bad = sorted(set(text.lower()) - set("crwda"))
    if bad or not text:
        raise ValueError(f"expected letters of 'crwda' (create, read, write, delete, admin), got {text!r}")
    return text


@dataclass
class ZkAcl:
    scheme: str = "world"
    id: str = "anyone"
    perms: str = field(default="crwda", metadata={"check": _check_perms})


@dataclass
class ZkStoreConfig:
    """Linkerd's ``io.l5d.zk`` storage keys."""

    zkAddrs: list[ZkAddr] = field(default_factory=lambda: [ZkAddr()])
    pathPrefix: str = "/dtabs"
    sessionTimeoutMs: int = field(default=10000, metadata={"min": 1})
    authInfo: Optional[ZkAuthInfo] = None
    acls: list[ZkAcl] = field(default_factory=list)


def _perms(text: str) -> int:
    from kazoo.security import Permissions

    bits = {"c": Permissions.CREATE, "r": Permissions.READ, "w": Permissions.WRITE,
            "d": Permissions.DELETE, "a": Permissions.ADMIN}
    out = 0
    for ch in text.lower():
        if ch not in bits:
            raise ValueError(f"unknown ZooKeeper permission {ch!r} in {text!r} (use letters of 'crwda')")
        out |= bits[ch]
    return out


class ZkDtabStore(ObservedDtabStore):
    kind = "io.l5d.zk"
    config_class = ZkStoreConfig

    def __init__(
        self,
        hosts: str,
        path_prefix: str = "/dtabs",
        session_timeout_ms: int = 10000,
        auth: Optional[tuple[str, str]] = None,
        acls: Optional[list[tuple[str, str, str]]] = None,
    ) -> None:
        self.hosts = hosts
        self.prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        # ZooKeeper caps the session at 20 ticks anyway; an enormous value (the seed
        # config's 100000000 ms) would only make kazoo's connect timeout absurd.
        self.session_timeout = min(max(session_timeout_ms, 1), 60_000) / 1000.0
        self.auth = auth
        self.acl_specs = acls or []
        self._client: Any = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._cache: dict[str, NsState] = {}
        self._children: Optional[frozenset[str]] = None
        self._data_watches: dict[str, Any] = {}
        self._observed = Observed(self._initial_state)
        self._list_var: ListVar = Var(PENDING)
        self._state = "NEW"
        self._closed = False
        self._started_children = False

    @classmethod
    def from_config(cls, config: ZkStoreConfig, runtime: Any = None) -> "ZkDtabStore":
        hosts = ",".join(f"{a.host}:{a.port}" for a in config.zkAddrs)
        if not hosts:
            raise ValueError("storage.zkAddrs: at least one {host, port} is required")
        auth = (config.authInfo.scheme, config.authInfo.auth) if config.authInfo else None
        acls = [(a.scheme, a.id, a.perms) for a in config.acls]
        for a in config.acls:
            _perms(a.perms)
        return cls(hosts, config.pathPrefix, config.sessionTimeoutMs, auth, acls)

    # Lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry
        from kazoo.security import ACL, Id

        self._loop = asyncio.get_running_loop()
        acl = [ACL(_perms(p), Id(s, i)) for s, i, p in self.acl_specs] or None
        self._acl = acl
        self._client = KazooClient(
            hosts=self.hosts,
            timeout=self.session_timeout,
            auth_data=[self.auth] if self.auth else None,
            default_acl=acl,
            # Reconnect forever with jittered backoff: a namerd must outlive a ZK outage.
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=5, max_jitter=0.4),
            command_retry=KazooRetry(max_tries=3, delay=0.1, max_delay=1),
        )
        self._client.add_listener(self._on_state)
        event = self._client.start_async()
        connected = await asyncio.to_thread(event.wait, min(10.0, self.session_timeout + 5))
        if not connected or not self._client.connected:
            log.warning("ZooKeeper %s not reachable yet; namerd keeps trying", self.hosts)
            return
        await self._ensure_watching()

    async def _ensure_watching(self) -> None:
        """Create ``pathPrefix`` and start the children watch (once, when connected)."""
        if self._started_children or self._closed:
            return
        self._started_children = True
        from kazoo.exceptions import NoAuthError

        try:
            if self.prefix:
                await self._call(self._client.ensure_path_async(self.prefix, acl=self._acl))
            await asyncio.to_thread(self._start_children_watch)
        except (Forbidden, NoAuthError):
            # Serve anyway: every request then answers 403, which tells the operator
            # more than a namerd that refuses to start.
            self._state = "FORBIDDEN"
            log.error("ZooKeeper denied access to %s (NoAuth): check storage.authInfo / acls",
                      self.prefix or "/")
        except BaseException:
            self._started_children = False
            raise

    def _start_children_watch(self) -> None:
        from kazoo.recipe.watchers import ChildrenWatch

        def on_children(children: list[str]) -> Optional[bool]:
            if self._closed:
                return False
            self._post(self._on_children, frozenset(children))
            return None

        ChildrenWatch(self._client, self.prefix or "/", on_children)

    def _on_state(self, state: str) -> None:
        """kazoo thread: session state changes (LOST/SUSPENDED/CONNECTED)."""
        self._post(self._set_state, str(state))

    def _set_state(self, state: str) -> None:
        self._state = state
        if state == "CONNECTED" and not self._started_children and not self._closed:
            asyncio.ensure_future(self._retry_watching())

    async def _retry_watching(self) -> None:
        try:
            await self._ensure_watching()
        except DtabStoreError as e:
            log.warning("ZooKeeper storage could not start watching %s: %s", self.prefix or "/", e)

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(self._stop_client, client)

    @staticmethod
    def _stop_client(client: Any) -> None:
        try:
            client.stop()
            client.close()
        except Exception:  # closing a client whose server is gone must not raise
            pass

    # Thread bridging -------------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed between the check and the call
                pass

    async def _call(self, async_result: Any, timeout: float = OP_TIMEOUT) -> Any:
        """Await a kazoo IAsyncResult without blocking the loop; map ZK errors."""
        from kazoo import exceptions as kx

        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, exc: Optional[BaseException]) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        def done(ar: Any) -> None:
            try:
                value = ar.get_nowait()
            except BaseException as e:  # delivered to the awaiting coroutine
                self._post(settle, None, e)
            else:
                self._post(settle, value, None)

        async_result.rawlink(done)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise StorageUnavailable(f"ZooKeeper {self.hosts} did not answer within {timeout:g}s "
                                     "(a write may still be applied; re-read before retrying)") from None
        except kx.NoAuthError:
            raise Forbidden(f"ZooKeeper denied access under {self.prefix or '/'} (NoAuth)") from None
        except (kx.ConnectionLoss, kx.SessionExpiredError, kx.ConnectionClosedError,
                kx.OperationTimeoutError) as e:
            raise StorageUnavailable(f"ZooKeeper {self.hosts} unavailable: {type(e).__name__}") from None

    def _path(self, ns: str) -> str:
        return f"{self.prefix}/{ns}"

    def _require_client(self) -> Any:
        """The client, for a write. Fails fast while disconnected: kazoo would queue the
        request and apply it after reconnecting, long after we answered 503."""
        if self._client is None:
            raise StorageUnavailable("ZooKeeper storage is not started")
        if not self._client.connected:
            raise StorageUnavailable(f"ZooKeeper {self.hosts} unavailable (reconnecting); nothing was written")
        return self._client

    # Watch plumbing (loop thread) ---------------------------------------------------
    def _on_children(self, children: frozenset[str]) -> None:
        self._children = children
        self._list_var.update(Ok(tuple(sorted(children))))
        for ns in children:
            if ns not in self._data_watches:
                self._start_data_watch(ns)
        for ns in list(self._cache):
            if ns not in children:
                self._set_ns(ns, Ok(None))
        for ns, var in self._observed.items():
            if ns not in children and var.sample() is PENDING:
                var.update(Ok(None))

    def _start_data_watch(self, ns: str) -> None:
        token = object()
        self._data_watches[ns] = token
        client = self._client

        def on_data(data: Optional[bytes], stat: Any) -> Optional[bool]:
            if self._closed or client is not self._client:
                return False
            if stat is None:  # node deleted: stop; re-started if the node comes back
                self._post(self._data_watch_ended, ns, token)
                return False
            self._post(self._on_data, ns, token, data or b"", stat.version)
            return None

        def run() -> None:
            from kazoo.recipe.watchers import DataWatch

            try:
                DataWatch(client, self._path(ns), on_data)
            except Exception as e:  # ZK went away while starting; retried on next children event
                log.warning("ZooKeeper data watch for %s failed to start: %s", ns, e)
                self._post(self._data_watch_ended, ns, token)

        # DataWatch's constructor reads synchronously: keep it off the loop.
        asyncio.get_running_loop().run_in_executor(None, run)

    def _on_data(self, ns: str, token: object, data: bytes, version: int) -> None:
        if self._data_watches.get(ns) is not token:
            return
        self._set_ns(ns, self._decode(ns, data, version))

    def _data_watch_ended(self, ns: str, token: object) -> None:
        if self._data_watches.get(ns) is token:
            del self._data_watches[ns]
            self._set_ns(ns, Ok(None))
            if self._children is not None and ns in self._children and not self._closed:
                self._start_data_watch(ns)

    def _set_ns(self, ns: str, state: ActivityState[Any]) -> None:
        if state == Ok(None):
            self._cache.pop(ns, None)
        else:
            self._cache[ns] = state
        var = self._observed.peek(ns)
        if var is not None:
            var.update(state)

    def _decode(self, ns: str, data: bytes, version: int) -> NsState:
        from namerd.dtabtext import DtabParseError, parse_dtab_at

        try:
            dtab = parse_dtab_at(data.decode("utf-8"), f"znode {self._path(ns)}")
        except (DtabParseError, UnicodeDecodeError) as e:
            return Failed(DtabStoreError(str(e)))
        return Ok(VersionedDtab(dtab, encode_counter(version, 4)))

    def _initial_state(self, ns: str) -> NsState:
        if ns in self._cache:
            return self._cache[ns]
        if self._children is not None and ns not in self._children:
            return Ok(None)
        return PENDING

    # Reads ------------------------------------------------------------------------
    def _can_read_live(self) -> bool:
        return self._client is not None and self._client.connected

    async def list(self) -> list[str]:
        if not self._can_read_live():
            if self._children is not None:
                return sorted(self._children)  # last known while ZooKeeper is away
            raise StorageUnavailable(f"ZooKeeper {self.hosts} unavailable and no namespaces known yet")
        from kazoo.exceptions import NoNodeError

        try:
            return sorted(await self._call(self._client.get_children_async(self.prefix or "/")))
        except NoNodeError:
            return []

    async def get(self, ns: str) -> Optional[VersionedDtab]:
        check_namespace(ns)
        if not self._can_read_live():
            st = self._cache.get(ns)
            if isinstance(st, Ok):
                cached: Optional[VersionedDtab] = st.value
                return cached
            if self._children is not None and ns not in self._children:
                return None
            raise StorageUnavailable(f"ZooKeeper {self.hosts} unavailable and {ns!r} not cached")
        from kazoo.exceptions import NoNodeError

        try:
            data, stat = await self._call(self._client.get_async(self._path(ns)))
        except NoNodeError:
            return None
        st = self._decode(ns, data or b"", stat.version)
        if isinstance(st, Failed):
            raise st.error
        assert isinstance(st, Ok)  # _decode gives Ok or Failed
        value: Optional[VersionedDtab] = st.value
        return value

    # Writes -----------------------------------------------------------------------
    async def create(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        from kazoo.exceptions import NodeExistsError

        client = self._require_client()
        try:
            await self._call(client.create_async(self._path(ns), dtab.show().encode(),
                                                 acl=self._acl, makepath=True))
        except NodeExistsError:
            raise NamespaceAlreadyExists(ns) from None

    async def update(self, ns: str, dtab: Dtab, version: bytes) -> None:
        check_namespace(ns)
        from kazoo.exceptions import BadVersionError, NoNodeError

        client = self._require_client()
        v = decode_counter(version, 4)
        if v is None:
            # Not a version this store ever handed out: it cannot match.
            if await self.get(ns) is None:
                raise NamespaceNotFound(ns)
            raise VersionMismatch(ns)
        try:
            await self._call(client.set_async(self._path(ns), dtab.show().encode(), version=v))
        except BadVersionError:
            raise VersionMismatch(ns) from None
        except NoNodeError:
            raise NamespaceNotFound(ns) from None

    async def put(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        from kazoo.exceptions import NodeExistsError, NoNodeError

        client = self._require_client()
        data = dtab.show().encode()
        for _ in range(10):  # races with a concurrent create/delete resolve in a round or two
            try:
                await self._call(client.set_async(self._path(ns), data, version=-1))
                return
            except NoNodeError:
                pass
            try:
                await self._call(client.create_async(self._path(ns), data, acl=self._acl, makepath=True))
                return
            except NodeExistsError:
                continue
        raise StorageUnavailable(f"could not upsert {ns!r}: namespace keeps being created and deleted")

    async def delete(self, ns: str) -> None:
        check_namespace(ns)
        from kazoo.exceptions import NoNodeError

        client = self._require_client()
        try:
            await self._call(client.delete_async(self._path(ns)))
        except NoNodeError:
            raise NamespaceNotFound(ns) from None

    # Observation (observe, observe_list, watch_count) comes from ObservedDtabStore.

    def admin_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "zkAddrs": self.hosts,
            "pathPrefix": self.prefix or "/",
            "state": self._state,
            "connected": bool(self._client is not None and self._client.connected),
            "namespaces": sorted(self._children) if self._children is not None else None,
            "dataWatches": len(self._data_watches),
            "observers": self.watch_count(),
        }
