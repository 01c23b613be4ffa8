"""The dtab storage interface every namerd backend implements.

A store maps namespace names (``default``, ``staging`` ...) to a :class:`Dtab` plus an
opaque *version* (``bytes``) chosen by the backend: the HTTP API shows it as the
``ETag`` (base64, unquoted) and takes it back in ``If-Match``. Formats, as Linkerd:

=================  ===========================================================
io.l5d.inMemory    8-byte big-endian counter, 1 for a new namespace
io.namerouter.file 8-byte big-endian counter, global to the file (never reused)
io.l5d.zk          4-byte big-endian znode ``stat.version``
io.l5d.etcd        UTF-8 text of the key's ``mod_revision``
io.l5d.consul      UTF-8 text of ``ModifyIndex``
=================  ===========================================================

Contract for implementers (other engineers add backends against this):

* ``list()``, ``get()``, ``create()``, ``update()``, ``put()``, ``delete()`` are
  coroutines that never block the event loop (bridge blocking clients to threads).
* Every write is a compare-and-set on the backend's own version, so two writers
  can never silently overwrite each other: ``create`` fails with
  :class:`NamespaceAlreadyExists`, ``update`` with :class:`VersionMismatch` or
  :class:`NamespaceNotFound`, ``delete`` with :class:`NamespaceNotFound`. ``put``
  is an upsert (Linkerd's PUT without ``If-Match``).
* Dtabs arrive already parsed (the API layer rejects malformed text before any
  store is touched); stores persist ``dtab.show()``.
* Access denied -> :class:`Forbidden` (HTTP 403). Backend down ->
  :class:`StorageUnavailable` (HTTP 503).
* ``observe(ns)`` returns an :class:`Activity` of ``VersionedDtab | None``
  (``None`` = namespace absent) that delivers the current value and then every
  change; ``observe_list()`` an Activity of the sorted tuple of names. They are
  lazy: a backend watch runs only while someone observes, and the per-namespace
  state is forgotten once nobody holds it (bounded state, Linkerd #1766). When the
  backend goes away the last known value stays (it is not turned into a failure)
  while the store reconnects and re-reads.

Subclasses implement the ``_do_*`` hooks or override the public methods, and use
:class:`Observed` for the watch bookkeeping.
"""
from __future__ import annotations

import abc
import re
import weakref
from typing import Any, Callable, ClassVar, NamedTuple, Optional

from namerouter.dtab import Dtab
from namerouter.naming.var import PENDING, Activity, ActivityState, Closable, Ok, Var


class VersionedDtab(NamedTuple):
    """A stored dtab and its opaque version (unpacks as ``dtab, version``)."""

    dtab: Dtab
    version: bytes


class DtabStoreError(Exception):
    """Base of every storage error; ``str()`` is meant for the operator."""


class NamespaceAlreadyExists(DtabStoreError):
    def __init__(self, ns: str) -> None:
        super().__init__(f"dtab namespace {ns!r} already exists")
        self.ns = ns


class NamespaceNotFound(DtabStoreError):
    def __init__(self, ns: str) -> None:
        super().__init__(f"dtab namespace {ns!r} does not exist")
        self.ns = ns


class VersionMismatch(DtabStoreError):
    def __init__(self, ns: str) -> None:
        super().__init__(f"dtab namespace {ns!r} was changed by someone else (version mismatch)")
        self.ns = ns


class Forbidden(DtabStoreError):
    """The backend denied access (ZooKeeper NoAuth, Consul 403 ...)."""


class StorageUnavailable(DtabStoreError):
    """The backend cannot be reached right now; the caller may retry."""


class InvalidNamespace(DtabStoreError):
    """A namespace name that no backend can store safely."""


_NS_RE = re.compile(r"^[A-Za-z0-9_.:@+=-]+$")


def check_namespace(ns: str) -> str:
    """Reject names that would escape a key prefix or make an odd znode/key.

    Linkerd accepts anything in memory but ZooKeeper/etcd/Consul would turn ``a/b``
    into a nested key; one rule for every backend keeps data portable between them.
    """
    if not ns or ns in (".", "..") or not _NS_RE.match(ns):
        raise InvalidNamespace(
            f"invalid namespace {ns!r}: use letters, digits and _ . : @ + = - (no '/')"
        )
    return ns


#: a namespace's state, as ``DtabStore.observe(ns)`` gives it (``Ok(None)``: no such namespace)
NsState = ActivityState[Optional[VersionedDtab]]
NsVar = Var[NsState]
#: what ``DtabStore.observe_list()`` is made of: the sorted namespace names
ListVar = Var[ActivityState[tuple[str, ...]]]


class Observed:
    """Lazily created observable values per key, with backend watch hooks.

    ``get(key)`` returns the key's Var (creating it with ``initial(key)``). The first
    observer calls ``start(key, var)``; the last one leaving calls ``stop(key, var)``.
    Vars are held weakly: one that nobody observes or references is forgotten, so
    namespaces that were only asked about once do not accumulate.
    """

    def __init__(
        self,
        initial: Callable[[str], NsState],
        start: Optional[Callable[[str, NsVar], None]] = None,
        stop: Optional[Callable[[str, NsVar], None]] = None,
    ) -> None:
        self._initial = initial
        self._start = start
        self._stop = stop
        self._vars: "weakref.WeakValueDictionary[str, NsVar]" = weakref.WeakValueDictionary()

    def get(self, key: str) -> NsVar:
        var = self._vars.get(key)
        if var is None:
            # The start function gets the Var as its argument (no reference to it is
            # kept while unobserved), so a Var nobody holds is freed at once.
            var = Var.lazy(self._initial(key), lambda v: self._run(key, v))
            self._vars[key] = var
        return var

    def _run(self, key: str, var: NsVar) -> Closable:
        if self._start is not None:
            self._start(key, var)
        stop = self._stop
        return Closable(None if stop is None else (lambda: stop(key, var)))

    def peek(self, key: str) -> Optional[NsVar]:
        """The key's Var if one is alive (to push a new value), else None."""
        return self._vars.get(key)

    def items(self) -> list[tuple[str, NsVar]]:
        return list(self._vars.items())

    def __len__(self) -> int:
        return len(self._vars)

    @property
    def observed_count(self) -> int:
        return sum(1 for v in list(self._vars.values()) if v.observed)


class DtabStore(abc.ABC):
    """Abstract dtab store; see the module docstring for the contract."""

    #: The config ``kind`` (Linkerd's name where Linkerd has the backend).
    kind: ClassVar[str] = ""

    async def start(self) -> None:
        """Connect / load. Raise DtabStoreError with a clear message on bad setup."""

    async def close(self) -> None:
        """Stop every watch and release connections."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Sorted namespace names."""

    @abc.abstractmethod
    async def get(self, ns: str) -> Optional[VersionedDtab]:
        """The namespace's dtab and version, or None if it does not exist."""

    @abc.abstractmethod
    async def create(self, ns: str, dtab: Dtab) -> None:
        """Create; NamespaceAlreadyExists if present."""

    @abc.abstractmethod
    async def update(self, ns: str, dtab: Dtab, version: bytes) -> None:
        """Replace only if the stored version is ``version``."""

    @abc.abstractmethod
    async def put(self, ns: str, dtab: Dtab) -> None:
        """Create or replace unconditionally."""

    @abc.abstractmethod
    async def delete(self, ns: str) -> None:
        """Remove; NamespaceNotFound if absent."""

    @abc.abstractmethod
    def observe(self, ns: str) -> Activity[Optional[VersionedDtab]]:
        """Current value then every change (None = namespace absent)."""

    @abc.abstractmethod
    def observe_list(self) -> Activity[tuple[str, ...]]:
        """Sorted namespace names, then every change of the set."""

    def admin_state(self) -> dict[str, Any]:
        """JSON-able state for the admin server."""
        return {"kind": self.kind}

    def watch_count(self) -> int:
        """Live per-namespace observations (exported as a gauge)."""
        return 0


class ObservedDtabStore(DtabStore):
    """A store that serves observations from its own Vars.

    Subclasses set ``self._observed`` (an :class:`Observed` of per-namespace Vars) and
    ``self._list_var`` (the sorted names) in ``__init__`` and push every change into
    them; observing is then the same for all of them.
    """

    _observed: Observed
    _list_var: ListVar

    def observe(self, ns: str) -> Activity[Optional[VersionedDtab]]:
        return Activity(self._observed.get(ns))

    def observe_list(self) -> Activity[tuple[str, ...]]:
        return Activity(self._list_var)

    def watch_count(self) -> int:
        return self._observed.observed_count


class LocalDtabStore(ObservedDtabStore):
    """Shared logic of stores whose data lives in this process (memory, file).

    Writes are serialised by one asyncio lock, so the compare-and-set of a version
    is atomic; observers are notified synchronously after each successful write.
    """

    def __init__(self) -> None:
        import asyncio

        self._data: dict[str, VersionedDtab] = {}
        self._lock = asyncio.Lock()
        self._observed = Observed(self._initial_state)
        self._list_var: ListVar = Var(Ok(()))

    def _initial_state(self, ns: str) -> NsState:
        return Ok(self._data.get(ns))

    # Subclasses decide versions and persistence ----------------------------------
    @abc.abstractmethod
    def _next_version(self, ns: str) -> bytes:
        """Version for the next write of ``ns``."""

    async def _persist(self, data: dict[str, VersionedDtab]) -> None:
        """Make ``data`` durable before it becomes visible (file store)."""

    async def _commit(self, data: dict[str, VersionedDtab], changed: str) -> None:
        await self._persist(data)
        self._data = data
        var = self._observed.peek(changed)
        if var is not None:
            var.update(Ok(data.get(changed)))
        self._list_var.update(Ok(tuple(sorted(data))))

    async def list(self) -> list[str]:
        return sorted(self._data)

    async def get(self, ns: str) -> Optional[VersionedDtab]:
        return self._data.get(ns)

    async def create(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        async with self._lock:
            if ns in self._data:
                raise NamespaceAlreadyExists(ns)
            data = dict(self._data)
            data[ns] = VersionedDtab(dtab, self._next_version(ns))
            await self._commit(data, ns)

    async def update(self, ns: str, dtab: Dtab, version: bytes) -> None:
        check_namespace(ns)
        async with self._lock:
            cur = self._data.get(ns)
            if cur is None:
                raise NamespaceNotFound(ns)
            if cur.version != version:
                raise VersionMismatch(ns)
            data = dict(self._data)
            data[ns] = VersionedDtab(dtab, self._next_version(ns))
            await self._commit(data, ns)

    async def put(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        async with self._lock:
            data = dict(self._data)
            data[ns] = VersionedDtab(dtab, self._next_version(ns))
            await self._commit(data, ns)

    async def delete(self, ns: str) -> None:
        async with self._lock:
            if ns not in self._data:
                raise NamespaceNotFound(ns)
            data = dict(self._data)
            del data[ns]
            await self._commit(data, ns)


def encode_counter(n: int, width: int = 8) -> bytes:
    """Big-endian fixed-width version bytes (Linkerd's in-memory/ZK formats)."""
    return n.to_bytes(width, "big", signed=width == 4)


def decode_counter(version: bytes, width: int = 8) -> Optional[int]:
    if len(version) != width:
        return None
    return int.from_bytes(version, "big", signed=width == 4)


__all__ = [
    "VersionedDtab", "DtabStore", "ObservedDtabStore", "LocalDtabStore", "Observed", "DtabStoreError",
    "NamespaceAlreadyExists", "NamespaceNotFound", "VersionMismatch", "Forbidden",
    "StorageUnavailable", "InvalidNamespace", "check_namespace", "encode_counter",
    "decode_counter", "PENDING",
]
