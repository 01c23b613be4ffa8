"""``io.l5d.consul`` storage: dtabs in Consul's KV store (linkerd1-map.md §2.5).

Layout, as Linkerd's ConsulDtabStore: key ``<pathPrefix>/<namespace>`` (default prefix
``/namerd/dtabs``) holds the dtab text. The version of a namespace is the UTF-8 text of
the key's ``ModifyIndex``, so an ETag is e.g. ``base64("42")``.

Writes are Consul check-and-set operations: create = ``PUT ?cas=0`` (fails if the key
exists), update = ``PUT ?cas=<ModifyIndex>`` (fails if anyone wrote since). Watches are
blocking queries (``?index=``) on the key, or on the prefix for the namespace list, and
follow Consul's index rules: a missing ``X-Consul-Index``, an index going backwards or a
failed request restart the query without an index after a jittered backoff, keeping the
last value. They run only while observed.
"""
from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, TypeVar

import aiohttp

from namerouter.consul.client import CONSISTENCY_MODES, ConsulClient, ConsulError, ConsulResponse
from namerouter.consul.kv_watch import follow_key
from namerouter.dtab import Dtab, DtabSyntaxError
from namerouter.naming.var import PENDING, Activity, ActivityState, Failed, Ok, Var, start_stop

from .base import (
    DtabStore,
    DtabStoreError,
    Forbidden,
    ListVar,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    NsState,
    NsVar,
    Observed,
    StorageUnavailable,
    VersionedDtab,
    VersionMismatch,
    check_namespace,
)

R = TypeVar("R")
S = TypeVar("S")


@dataclass
class ConsulStorageConfig:
    """Linkerd's ``io.l5d.consul`` storage keys."""

    host: str = "localhost"
    port: int = field(default=8500, metadata={"min": 1, "max": 65535})
    pathPrefix: str = "/namerd/dtabs"
    token: Optional[str] = None
    datacenter: Optional[str] = None
    readConsistencyMode: Optional[str] = field(default=None, metadata={"choices": CONSISTENCY_MODES})
    writeConsistencyMode: Optional[str] = field(default=None, metadata={"choices": CONSISTENCY_MODES})
    failFast: bool = False
    backoff: Optional[dict[str, Any]] = None
    tls: Optional[dict[str, Any]] = None


class ConsulDtabStore(DtabStore):
    kind = "io.l5d.consul"
    config_class = ConsulStorageConfig

    def __init__(
        self,
        client: ConsulClient,
        path_prefix: str = "/namerd/dtabs",
        datacenter: Optional[str] = None,
        read_consistency: Optional[str] = None,
        write_consistency: Optional[str] = None,
        max_backoff_s: float = 5.0,
        wait: Optional[str] = None,
    ) -> None:
        self.client = client
        self.prefix = path_prefix.strip("/")
        self.datacenter = datacenter
        self.read_consistency = None if read_consistency == "default" else read_consistency
        self.write_consistency = None if write_consistency == "default" else write_consistency
        self.max_backoff_s = max_backoff_s
        #: blocking ``wait`` sent with watches; None = Consul's default (5 min)
        self.wait = wait
        self._observed = Observed(self._initial_state, self._start_watch, self._stop_watch)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._list_var: ListVar = Var.lazy(PENDING, start_stop(self._start_list, self._stop_list))
        self._list_task: Optional[asyncio.Task[None]] = None
        self.errors = 0
        self.last_error: Optional[str] = None

    @classmethod
    def from_config(cls, config: ConsulStorageConfig, runtime: Any = None) -> "ConsulDtabStore":
        ssl_ctx = None
        if config.tls:
            import ssl

            ssl_ctx = ssl.create_default_context(cafile=config.tls.get("trustCertsBundle"))
            if config.tls.get("disableValidation"):
                ssl_ctx.check_hostname = False
                ssl_ctx.verify_mode = ssl.CERT_NONE
        client = ConsulClient(
            config.host, config.port, token=config.token,
            scheme="https" if config.tls else "http", ssl=ssl_ctx,
        )
        backoff_max = 5.0
        if config.backoff and config.backoff.get("maxMs"):
            backoff_max = float(config.backoff["maxMs"]) / 1000.0
        return cls(client, config.pathPrefix, config.datacenter, config.readConsistencyMode,
                   config.writeConsistencyMode, max_backoff_s=backoff_max)

    async def close(self) -> None:
        for t in list(self._tasks.values()):
            t.cancel()
        self._tasks.clear()
        if self._list_task is not None:
            self._list_task.cancel()
            self._list_task = None
        await self.client.close()

    # keys and values -----------------------------------------------------------------------
    def key(self, ns: str) -> str:
        return f"{self.prefix}/{ns}" if self.prefix else ns

    def _decode(self, ns: str, entry: dict[str, Any]) -> VersionedDtab:
        raw = entry.get("Value")
        text = base64.b64decode(raw).decode("utf-8") if raw else ""
        try:
            dtab = Dtab.read(text)
        except DtabSyntaxError as e:
            raise DtabStoreError(f"consul key {self.key(ns)!r} holds an invalid dtab: {e}") from None
        return VersionedDtab(dtab, str(entry["ModifyIndex"]).encode("utf-8"))

    def _value_of(self, ns: str, rsp: ConsulResponse) -> Optional[VersionedDtab]:
        if rsp.status == 404:
            return None
        entries = rsp.json() or []
        return self._decode(ns, entries[0]) if entries else None

    def _names_of(self, rsp: ConsulResponse) -> tuple[str, ...]:
        if rsp.status == 404:
            return ()
        base = self.prefix + "/" if self.prefix else ""
        names = set()
        for e in rsp.json() or []:
            rest = str(e.get("Key", ""))[len(base):]
            if rest and "/" not in rest:  # only direct children are namespaces
                names.add(rest)
        return tuple(sorted(names))

    async def _call(self, coro: Awaitable[R]) -> R:
        """Map transport and auth errors to the storage contract's exceptions."""
        try:
            return await coro
        except ConsulError as e:
            if e.status == 403:
                raise Forbidden(f"consul denied access under {self.prefix!r}: {e.body.strip()}") from None
            raise StorageUnavailable(str(e)) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise StorageUnavailable(
                f"consul {self.client.base} unavailable: {e or type(e).__name__}"
            ) from None

    async def _read(self, ns: str) -> Optional[VersionedDtab]:
        rsp = await self._call(self.client.kv_get(self.key(ns), consistency=self.read_consistency,
                                                  dc=self.datacenter))
        return self._value_of(ns, rsp)

    # DtabStore API -------------------------------------------------------------------------
    async def list(self) -> list[str]:
        rsp = await self._call(self.client.kv_get(self.prefix + "/" if self.prefix else "", recurse=True,
                                                  consistency=self.read_consistency, dc=self.datacenter))
        return list(self._names_of(rsp))

    async def get(self, ns: str) -> Optional[VersionedDtab]:
        check_namespace(ns)
        return await self._read(ns)

    async def create(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        ok = await self._call(self.client.kv_put(self.key(ns), dtab.show().encode("utf-8"), cas=0,
                                                 dc=self.datacenter, consistency=self.write_consistency))
        if not ok:
            raise NamespaceAlreadyExists(ns)

    async def update(self, ns: str, dtab: Dtab, version: bytes) -> None:
        check_namespace(ns)
        try:
            index = int(version.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            index = -1
        if index <= 0:  # not a version this store ever handed out (cas=0 would create)
            if await self._read(ns) is None:
                raise NamespaceNotFound(ns)
            raise VersionMismatch(ns)
        ok = await self._call(self.client.kv_put(self.key(ns), dtab.show().encode("utf-8"), cas=index,
                                                 dc=self.datacenter, consistency=self.write_consistency))
        if not ok:
            if await self._read(ns) is None:
                raise NamespaceNotFound(ns)
            raise VersionMismatch(ns)

    async def put(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        await self._call(self.client.kv_put(self.key(ns), dtab.show().encode("utf-8"),
                                            dc=self.datacenter, consistency=self.write_consistency))

    async def delete(self, ns: str) -> None:
        check_namespace(ns)
        for _ in range(5):
            cur = await self._read(ns)
            if cur is None:
                raise NamespaceNotFound(ns)
            # CAS delete: a concurrent update is not lost silently, we re-read and retry.
            if await self._call(self.client.kv_delete(self.key(ns), cas=int(cur.version), dc=self.datacenter)):
                return
        raise StorageUnavailable(f"could not delete {ns!r}: it keeps changing")

    def observe(self, ns: str) -> Activity[Optional[VersionedDtab]]:
        check_namespace(ns)
        return Activity(self._observed.get(ns))

    def observe_list(self) -> Activity[tuple[str, ...]]:
        return Activity(self._list_var)

    def watch_count(self) -> int:
        return len(self._tasks) + (1 if self._list_task is not None else 0)

    def admin_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "consul": self.client.base,
            "pathPrefix": "/" + self.prefix,
            "watches": sorted(self._tasks),
            "listWatch": self._list_task is not None,
            "errors": self.errors,
            "lastError": self.last_error,
        }

    # watches --------------------------------------------------------------------------------
    def _initial_state(self, ns: str) -> NsState:
        return PENDING

    def _start_watch(self, ns: str, var: NsVar) -> None:
        if ns not in self._tasks:
            self._tasks[ns] = asyncio.get_running_loop().create_task(
                self._blocking_loop(self.key(ns), False, lambda rsp: Ok(self._value_of(ns, rsp)), var.update)
            )

    def _stop_watch(self, ns: str, var: NsVar) -> None:
        t = self._tasks.pop(ns, None)
        if t is not None:
            t.cancel()
        var.update(PENDING)

    def _start_list(self) -> None:
        if self._list_task is None:
            prefix = self.prefix + "/" if self.prefix else ""
            self._list_task = asyncio.get_running_loop().create_task(
                self._blocking_loop(prefix, True, lambda rsp: Ok(self._names_of(rsp)), self._list_var.update)
            )

    def _stop_list(self) -> None:
        t, self._list_task = self._list_task, None
        if t is not None:
            t.cancel()
        self._list_var.update(PENDING)

    async def _blocking_loop(self, key: str, recurse: bool, to_state: Callable[[ConsulResponse], ActivityState[S]],
                             publish: Callable[[ActivityState[S]], None]) -> None:
        """Follow ``key`` (or the prefix) with blocking queries forever; keep the last value."""

        def answer(rsp: ConsulResponse) -> None:
            try:
                publish(to_state(rsp))
            except DtabStoreError as e:
                publish(Failed(e))  # garbage in the key: say so, keep watching for a fix

        def error(e: BaseException) -> None:
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"

        await follow_key(self.client, key, answer, error, recurse=recurse, wait=self.wait,
                         consistency=self.read_consistency, dc=self.datacenter, max_backoff_s=self.max_backoff_s)
