"""``io.l5d.fs``: file-based service discovery (Linkerd's WatchingNamer).

``/#/io.l5d.fs/<file>[/<more>]`` names the file ``<rootDir>/<file>``; directories nest
(``/#/io.l5d.fs/team/web`` is ``<rootDir>/team/web``) and the labels after the file are
the residual. The bound id is ``/#/<prefix>/<labels up to the file>``.

File format, one address per line: ``host port`` or ``host port * weight``; ``#`` starts
a comment; blank lines are ignored. Any malformed line fails the whole service (Linkerd
does the same) with a reason naming the file and the line. A missing file is ``~``
(NEG: the next namer / dtab alternative is tried); an empty file is bound with no
addresses; a file over 500 KB fails. Host names are resolved (``loop.getaddrinfo``) when
the file changes and every ``dns_refresh_s`` (30 s) while observed; a failed periodic
re-resolution keeps the last good addresses.

Watching: only what somebody observes is watched, and nothing is polled. The namer
subscribes the directories its observed names depend on (a file's directory, the
directories a lookup walks through) to one ``watchfiles`` watch (inotify;
:mod:`namerouter.fswatch`, the mechanism TLS rotation uses too); a change in a directory
re-checks the names that depend on it, a lookup that now walks elsewhere moves its
subscription. A change reaches the bound name when the watch reports it (≈100 ms, as
with the 50 ms polling this replaced). With 1,000 observed names an idle router
makes no system call for them (issue 17; before, each file was ``stat``-ed every 50 ms).
If inotify is refused (watch limit), watchfiles polls each directory once a second.
A same-size rewrite inside one mtime tick is still seen (the content is compared while
the mtime is under a second old). Host names are re-resolved every ``dns_refresh_s``
while observed. State is held weakly: a name whose binding was evicted costs nothing.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import stat
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional, Union as TUnion

from ..fswatch import ROUTING_DEBOUNCE_MS, DirectoryWatcher

from ..dtab.path import Path
from ..dtab.tree import NEG, Leaf, NameTree
from ..naming import dns
from ..naming.addr import ADDR_NEG, ADDR_PENDING, WEIGHT_KEY, Addr, AddrBound, AddrFailed, Address
from ..naming.bound import BoundName
from ..naming.namer import Namer
from ..naming.var import Activity, Closable, LazyVar, Ok, Var

log = logging.getLogger(__name__)

KIND = "io.l5d.fs"

#: Linkerd's Watcher.MaxFileSize.
MAX_FILE_BYTES = 500 * 1024


@dataclass
class FsConfig:
    """``namers: [{kind: io.l5d.fs, rootDir: disco}]`` (Linkerd's keys)."""

    rootDir: str = field(metadata={"doc": "directory holding one file per service"})
    prefix: str = field(default="/" + KIND, metadata={"doc": "names are /#/<prefix>/..."})
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


class MalformedAddress(ValueError):
    pass


def parse_addresses(text: str, where: str) -> list[tuple[str, int, Optional[float], int]]:
    """Parse a service file into ``(host, port, weight or None, line)`` tuples.

    Raises :class:`MalformedAddress` naming ``where`` and the line for the first bad line.
    """
    out = []
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        weight: Optional[float] = None
        if len(parts) == 4 and parts[2] == "*":
            try:
                weight = float(parts[3])
            except ValueError:
                weight = math.nan
            if not math.isfinite(weight) or weight < 0:
                raise MalformedAddress(
                    f"{where} line {n}: bad weight {parts[3]!r} in {line!r} (expected a number >= 0)"
                )
        elif len(parts) != 2:
            raise MalformedAddress(
                f"{where} line {n}: malformed address {line!r} (expected 'host port' or 'host port * weight')"
            )
        host, port_s = parts[0], parts[1]
        p = port_s[1:] if port_s.startswith("+") else port_s
        if not (p.isascii() and p.isdigit()) or not 0 < int(p) <= 65535:
            raise MalformedAddress(f"{where} line {n}: bad port {port_s!r} in {line!r} (expected 1-65535)")
        out.append((host, int(p), weight, n))
    return out


def _safe_label(label: bytes) -> bool:
    return label not in (b".", b"..") and b"/" not in label and b"\x00" not in label


class FsNamer(Namer):
    """Binds ``/#/<prefix>/<file>`` to the addresses listed in that file."""

    kind = KIND
    config_class = FsConfig

    def __init__(
        self,
        root_dir: TUnion[str, os.PathLike[str]],
        prefix: Optional[Path] = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        dns_refresh_s: float = 30.0,
    ) -> None:
        super().__init__(prefix if prefix is not None else Path.of(KIND))
        root = os.fspath(root_dir)
        if not os.path.isdir(root):
            raise ValueError(f"{KIND} rootDir {root!r} is not a directory")
        self.root = os.path.abspath(root)
        self._root_b = os.fsencode(self.root)
        self.max_file_bytes = max_file_bytes
        #: Host names written in files are re-resolved this often while observed.
        self.dns_refresh_s = dns_refresh_s
        self._lookups: "weakref.WeakValueDictionary[Path, _LookupVar]" = weakref.WeakValueDictionary()
        self._files: "weakref.WeakValueDictionary[bytes, _FileVar]" = weakref.WeakValueDictionary()
        # Observed items (strong refs while observed), and the directories they depend on.
        self._active: dict[int, TUnion["_LookupVar", "_FileVar"]] = {}
        self._dirs_of: dict[int, frozenset[str]] = {}
        self._by_dir: dict[str, dict[int, TUnion["_LookupVar", "_FileVar"]]] = {}
        self._watcher = DirectoryWatcher(f"{KIND} files in {self.root}", debounce_ms=ROUTING_DEBOUNCE_MS)
        self._sid: Optional[int] = None
        self._watched: frozenset[str] = frozenset()
        #: re-resolves host names while observed files have some
        self._task: Optional[asyncio.Task[None]] = None
        self._closed = False
        #: change notifications handled (tests, admin page)
        self.rechecks = 0

    @classmethod
    def from_config(cls, config: FsConfig, runtime: Any = None) -> "FsNamer":
        from ..naming.transform import build_transformers

        namer = cls(config.rootDir, prefix=Path.read(config.prefix))
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    # Namer API -----------------------------------------------------------------------
    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        if not path.labels or not all(_safe_label(l) for l in path.labels):
            return Activity.value(NEG)
        v = self._lookups.get(path)
        if v is None:
            v = _LookupVar(self, path)
            self._lookups[path] = v
        return Activity(v)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._active.clear()
        self._by_dir.clear()
        self._dirs_of.clear()
        await self._watcher.close()

    def admin_state(self) -> Any:
        files = {}
        for rel, fv in sorted(self._files.items()):
            files[os.fsdecode(rel)] = fv.state()
        return {
            "kind": KIND,
            "prefix": self.prefix.show(),
            "rootDir": self.root,
            "watching": self._watcher.watching,
            "watchedDirectories": sorted(self._watched),
            "observedLookups": sum(1 for v in self._active.values() if isinstance(v, _LookupVar)),
            "files": files,
        }

    def enumerate(self) -> list[Path]:
        """Every service file under rootDir (hidden files and directories skipped)."""
        out = []
        for dirpath, dirnames, filenames in os.walk(self._root_b):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(b"."))
            rel = os.path.relpath(dirpath, self._root_b)
            base = [] if rel == b"." else rel.split(b"/")
            for f in sorted(filenames):
                if not f.startswith(b"."):
                    out.append(self.bound_id(Path(base + [f])))
        return out

    # internals -----------------------------------------------------------------------
    def _file_var(self, rel: tuple[bytes, ...]) -> "_FileVar":
        key = b"/".join(rel)
        fv = self._files.get(key)
        if fv is None:
            fv = _FileVar(self, key)
            self._files[key] = fv
        return fv

    def _fs_path(self, rel: bytes) -> bytes:
        return os.path.join(self._root_b, rel)

    def _watch(self, item: TUnion["_LookupVar", "_FileVar"]) -> None:
        """``item`` is observed: watch the directories it depends on."""
        if self._closed:
            return
        self._active[id(item)] = item
        self._depend(item, item.watch_dirs())
        if isinstance(item, _FileVar) and self._task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a CLI tool): answer once, do not watch
            self._task = loop.create_task(self._refresh_names(), name=f"{KIND} DNS refresh {self.root}")

    def _unwatch(self, item: TUnion["_LookupVar", "_FileVar"]) -> None:
        self._active.pop(id(item), None)
        self._depend(item, frozenset())

    def _depend(self, item: TUnion["_LookupVar", "_FileVar"], dirs: frozenset[str]) -> None:
        """``item`` now depends on ``dirs`` (re-checked when one changes)."""
        key = id(item)
        old = self._dirs_of.get(key, frozenset())
        if old == dirs:
            return
        for d in old - dirs:
            bucket = self._by_dir.get(d)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._by_dir[d]
        for d in dirs - old:
            self._by_dir.setdefault(d, {})[key] = item
        if dirs:
            self._dirs_of[key] = dirs
        else:
            self._dirs_of.pop(key, None)
        self._sync_watch()

    def _sync_watch(self) -> None:
        wanted = frozenset(self._by_dir)
        if wanted == self._watched:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._watched = wanted
        if not wanted:
            if self._sid is not None:
                self._watcher.unsubscribe(self._sid)
                self._sid = None
        elif self._sid is None:
            self._sid = self._watcher.subscribe_dirs(wanted, self._changed)
        else:
            self._watcher.update(self._sid, wanted)

    def _changed(self, paths: Optional[set[str]]) -> None:
        """The watch saw ``paths`` change (None: anything may have): re-check the names that
        depend on their directories."""
        self.rechecks += 1
        if paths is None:
            items = list(self._active.values())
        else:
            hit: dict[int, Any] = {}
            for p in paths:
                for d in (os.path.dirname(p), p):
                    for key, item in (self._by_dir.get(d) or {}).items():
                        if key not in hit and item.concerns(p):
                            hit[key] = item
            items = list(hit.values())
            if any(p in self._watched for p in paths):
                self._watcher.refresh()  # a watched directory was replaced or removed
        for item in items:
            try:
                if isinstance(item, _FileVar):
                    item.check(force=True)
                else:
                    item.check()
                if id(item) in self._active:  # a lookup may walk elsewhere, a symlink point elsewhere
                    self._depend(item, item.watch_dirs())
            except Exception:  # one bad file must not stop watching the others
                log.exception("%s: checking %r failed", KIND, item)

    async def _refresh_names(self) -> None:
        """Re-resolve the host names of observed files every ``dns_refresh_s``."""
        try:
            while not self._closed and any(isinstance(v, _FileVar) for v in self._active.values()):
                await asyncio.sleep(self.dns_refresh_s)
                now = time.monotonic()
                for item in list(self._active.values()):
                    if (isinstance(item, _FileVar) and item._names and item._resolving is None
                            and now - item._resolved_at >= self.dns_refresh_s):
                        item._start_resolve(refresh=True)
        finally:
            if self._task is asyncio.current_task():
                self._task = None


class _LookupVar(LazyVar[Any]):
    """Which file (if any) a path names, kept current while observed."""

    __slots__ = ("namer", "path", "_key", "_dirs", "_walked")

    def __init__(self, namer: FsNamer, path: Path) -> None:
        super().__init__(Ok(NEG))
        self.namer = namer
        self.path = path
        self._key: Any = None
        #: the directories the last check looked into, and the paths it looked at
        self._dirs: frozenset[str] = frozenset()
        self._walked: frozenset[str] = frozenset()

    def watch_dirs(self) -> frozenset[str]:
        return self._dirs

    def concerns(self, changed: str) -> bool:
        """Whether a change of ``changed`` can change which file this path names."""
        return changed in self._walked or changed in self._dirs

    def start(self) -> Closable:
        self.check()
        self.namer._watch(self)
        return Closable(self._stop)

    def _stop(self) -> None:
        self.namer._unwatch(self)

    def check(self) -> None:
        labels = self.path.labels
        base = self.namer._root_b
        key: Any = None
        dirs = [self.namer.root]
        walked = []
        for i in range(1, len(labels) + 1):
            p = os.path.join(base, *labels[:i])
            walked.append(os.fsdecode(p))
            try:
                st = os.stat(p)
            except OSError:
                break
            if stat.S_ISREG(st.st_mode):
                key = i
                break
            if not stat.S_ISDIR(st.st_mode):
                break
            dirs.append(os.fsdecode(p))
        self._dirs = frozenset(dirs)
        self._walked = frozenset(walked)
        if key == self._key:
            return
        self._key = key
        if key is None:
            self.update(Ok(NEG))
            return
        rel = labels[:key]
        fv = self.namer._file_var(rel)
        bound = BoundName(self.namer.bound_id(Path._trusted(rel)), fv, Path._trusted(labels[key:]))
        self.update(Ok(Leaf(bound)))

    def __repr__(self) -> str:
        return f"_LookupVar({self.path.show()})"


class _FileVar(LazyVar[Addr]):
    """The address set in one file, kept current while observed."""

    __slots__ = ("namer", "rel", "_read_sig", "_content", "_resolving", "_linked",
                 "_entries", "_names", "_resolved_at", "reads", "last_change", "error")

    def __init__(self, namer: FsNamer, rel: bytes) -> None:
        super().__init__(ADDR_PENDING)
        self.namer = namer
        self.rel = rel
        self._read_sig: Any = None
        #: the file is (or is reached through) a symlink
        self._linked = False
        self._content: Optional[bytes] = None
        self._resolving: Optional[asyncio.Task[None]] = None
        # Host names in the file are re-resolved every dns_refresh_s while observed.
        self._entries: list[Any] = []
        self._names: set[str] = set()
        self._resolved_at = 0.0
        self.reads = 0
        self.last_change: Optional[float] = None
        self.error: Optional[str] = None

    @property
    def fs_path(self) -> str:
        return os.fsdecode(self.namer._fs_path(self.rel))

    def watch_dirs(self) -> frozenset[str]:
        """The file's directory, and its target's when it is a symlink (a ConfigMap mount)."""
        path = self.fs_path
        own = os.path.dirname(path)
        real = os.path.realpath(path)
        self._linked = real != path
        return frozenset((own, os.path.dirname(real)))

    def concerns(self, changed: str) -> bool:
        """Whether a change of ``changed`` can change this file's content: the file itself,
        its directory (replaced), or anything near a symlinked file (``..data`` swaps)."""
        return self._linked or changed == self.fs_path or changed == os.path.dirname(self.fs_path)

    def start(self) -> Closable:
        self._read_sig = None
        self._content = None
        self.check(force=True)
        self.namer._watch(self)
        return Closable(self._stop)

    def _stop(self) -> None:
        self.namer._unwatch(self)
        task, self._resolving = self._resolving, None
        if task is not None:
            task.cancel()

    def sample(self) -> Addr:
        # Unobserved means unwatched: look at the file now rather than answer stale.
        if not self._observers:
            self.check(force=True)
        return self._value

    def check(self, force: bool = False) -> None:
        """Look at the file (on a change event, at start, when sampled unobserved); the
        watch's gathering of events is what keeps a half-written file from being read."""
        path = self.namer._fs_path(self.rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            sig = None
        except OSError as e:
            self._publish(AddrFailed(f"{self.fs_path}: {e.strerror or e}"))
            return
        else:
            sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if sig is None:
            self._read_sig = None
            self._content = None
            self._publish(ADDR_NEG)
            return
        if sig != self._read_sig:
            self._read(path, sig, st.st_size)
            return
        # Unchanged metadata: still re-read while the mtime is fresh (same-size rewrites
        # inside one mtime tick keep every stat field equal).
        if time.time_ns() - st.st_mtime_ns < 1_000_000_000:
            self._read(path, sig, st.st_size)

    def _read(self, path: bytes, sig: Any, size: int) -> None:
        self._read_sig = sig
        if size > self.namer.max_file_bytes:
            self._content = None
            self._publish(AddrFailed(
                f"{self.fs_path} is {size} bytes, over the {self.namer.max_file_bytes // 1024} KB limit"))
            return
        try:
            with open(path, "rb") as f:
                data = f.read(self.namer.max_file_bytes + 1)
        except FileNotFoundError:
            self._publish(ADDR_NEG)
            return
        except OSError as e:
            self._publish(AddrFailed(f"{self.fs_path}: {e.strerror or e}"))
            return
        if data == self._content:
            return
        self._content = data
        self.reads += 1
        if len(data) > self.namer.max_file_bytes:
            self._publish(AddrFailed(
                f"{self.fs_path} is over the {self.namer.max_file_bytes // 1024} KB limit"))
            return
        try:
            text = data.decode("utf-8")
            entries = parse_addresses(text, self.fs_path)
        except UnicodeDecodeError as e:
            self._publish(AddrFailed(f"{self.fs_path}: not UTF-8 text ({e.reason} at byte {e.start})"))
            return
        except MalformedAddress as e:
            self._publish(AddrFailed(str(e)))
            return
        self._entries = entries
        self._names = {h for h, _, _, _ in entries if dns.ip_literal(h) is None}
        if self._resolving is not None:
            self._resolving.cancel()
            self._resolving = None
        if not self._names:
            self._publish(_to_addr(entries, {}))
            return
        self._start_resolve(refresh=False)

    def _start_resolve(self, refresh: bool) -> None:
        entries, names = self._entries, self._names
        self._resolved_at = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish(self._resolve_blocking(entries, names))
            return
        self._resolving = loop.create_task(self._resolve(entries, names, refresh))

    async def _resolve(self, entries: list[Any], names: set[str], refresh: bool) -> None:
        resolved: dict[str, list[str]] = {}
        try:
            for h in sorted(names):
                try:
                    resolved[h] = await dns.resolve(h)
                except (OSError, dns.UnknownHost) as e:
                    if refresh and isinstance(self._value, AddrBound):
                        # A periodic re-resolution failing keeps the last good addresses.
                        log.warning("%s: re-resolving %s failed (%s); keeping the last addresses",
                                    self.fs_path, h, e)
                        return
                    line = next(n for host, _, _, n in entries if host == h)
                    self._publish(AddrFailed(f"{self.fs_path} line {line}: cannot resolve host {h!r}: {e}"))
                    return
            self._publish(_to_addr(entries, resolved))
        finally:
            if self._resolving is asyncio.current_task():
                self._resolving = None

    def _resolve_blocking(self, entries: list[Any], names: set[str]) -> Addr:
        resolved = {}
        for h in sorted(names):
            try:
                resolved[h] = dns.resolve_blocking(h)
            except (OSError, dns.UnknownHost) as e:
                line = next(n for host, _, _, n in entries if host == h)
                return AddrFailed(f"{self.fs_path} line {line}: cannot resolve host {h!r}: {e}")
        return _to_addr(entries, resolved)

    def _publish(self, addr: Addr) -> None:
        if addr != self._value:
            self.last_change = time.time()
        self.error = addr.cause if isinstance(addr, AddrFailed) else None
        self.update(addr)

    def state(self) -> dict[str, Any]:
        v = self._value
        st: dict[str, Any] = {"path": self.fs_path, "observed": self.observed, "reads": self.reads,
                              "addr": v.to_json()}
        if self.last_change is not None:
            st["lastChange"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_change))
        if self.error:
            st["error"] = self.error
        return st

    def __repr__(self) -> str:
        return f"_FileVar({self.fs_path})"


def _to_addr(entries: list[Any], resolved: dict[str, list[str]]) -> AddrBound:
    addrs = []
    for host, port, weight, _ in entries:
        meta = {WEIGHT_KEY: weight} if weight is not None else None
        for ip in resolved.get(host) or [dns.ip_literal(host) or host]:
            addrs.append(Address(ip, port, meta))
    return AddrBound(addrs)
