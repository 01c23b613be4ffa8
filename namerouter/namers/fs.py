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

Watching: only what somebody observes is watched. An observed file is ``stat``-ed every
``poll_interval`` (50 ms) on the event loop — no thread, no inotify dependency — and
re-read when its (inode, size, mtime, ctime) changed and held still for one tick (so a
half-written file is not published), and also while its mtime is under a second old
(a rewrite of the same size inside one mtime tick would otherwise be missed). A change
therefore reaches the bound name within about two ticks (≈100 ms). Lookups (which file
a path names) are re-checked the same way, so a file that appears later takes over.
Nothing observed → no polling at all. State is held weakly: a name whose binding was
evicted costs nothing here.
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
        poll_interval: float = 0.05,
        max_file_bytes: int = MAX_FILE_BYTES,
        dns_refresh_s: float = 30.0,
    ) -> None:
        super().__init__(prefix if prefix is not None else Path.of(KIND))
        root = os.fspath(root_dir)
        if not os.path.isdir(root):
            raise ValueError(f"{KIND} rootDir {root!r} is not a directory")
        self.root = os.path.abspath(root)
        self._root_b = os.fsencode(self.root)
        self.poll_interval = poll_interval
        self.max_file_bytes = max_file_bytes
        #: Host names written in files are re-resolved this often while observed.
        self.dns_refresh_s = dns_refresh_s
        self._lookups: "weakref.WeakValueDictionary[Path, _LookupVar]" = weakref.WeakValueDictionary()
        self._files: "weakref.WeakValueDictionary[bytes, _FileVar]" = weakref.WeakValueDictionary()
        # Observed items, polled every tick (strong refs while observed).
        self._active: dict[int, TUnion["_LookupVar", "_FileVar"]] = {}
        self._task: Optional[asyncio.Task[None]] = None
        self._closed = False
        self.ticks = 0

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

    def admin_state(self) -> Any:
        files = {}
        for rel, fv in sorted(self._files.items()):
            files[os.fsdecode(rel)] = fv.state()
        return {
            "kind": KIND,
            "prefix": self.prefix.show(),
            "rootDir": self.root,
            "pollIntervalMs": round(self.poll_interval * 1000),
            "watching": self._task is not None and not self._task.done(),
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
        self._active[id(item)] = item
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a CLI tool): answer once, do not watch
            if not self._closed:
                self._task = loop.create_task(self._poll(), name=f"{KIND} poll {self.root}")

    def _unwatch(self, item: TUnion["_LookupVar", "_FileVar"]) -> None:
        self._active.pop(id(item), None)

    async def _poll(self) -> None:
        while self._active and not self._closed:
            await asyncio.sleep(self.poll_interval)
            self._tick()
        self._task = None

    def _tick(self) -> None:
        # A separate frame so the sleeping poll loop holds no reference to any item.
        self.ticks += 1
        for item in list(self._active.values()):
            try:
                item.check()
            except Exception:  # one bad file must not stop watching the others
                log.exception("%s: checking %r failed", KIND, item)


class _LookupVar(LazyVar[Any]):
    """Which file (if any) a path names, kept current while observed."""

    __slots__ = ("namer", "path", "_key")

    def __init__(self, namer: FsNamer, path: Path) -> None:
        super().__init__(Ok(NEG))
        self.namer = namer
        self.path = path
        self._key: Any = None

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
        for i in range(1, len(labels) + 1):
            p = os.path.join(base, *labels[:i])
            try:
                st = os.stat(p)
            except OSError:
                break
            if stat.S_ISREG(st.st_mode):
                key = i
                break
            if not stat.S_ISDIR(st.st_mode):
                break
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

    __slots__ = ("namer", "rel", "_read_sig", "_prev_sig", "_content", "_resolving",
                 "_entries", "_names", "_resolved_at", "reads", "last_change", "error")

    def __init__(self, namer: FsNamer, rel: bytes) -> None:
        super().__init__(ADDR_PENDING)
        self.namer = namer
        self.rel = rel
        self._read_sig: Any = None
        self._prev_sig: Any = None
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

    def start(self) -> Closable:
        self._read_sig = self._prev_sig = None
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
            self._read_sig = self._prev_sig = None
            self._content = None
            self._publish(ADDR_NEG)
            return
        stable = sig == self._prev_sig
        self._prev_sig = sig
        if sig != self._read_sig:
            if force or stable:
                self._read(path, sig, st.st_size)
            return
        # Unchanged metadata: still re-read while the mtime is fresh (same-size rewrites
        # inside one mtime tick keep every stat field equal).
        if time.time_ns() - st.st_mtime_ns < 1_000_000_000:
            self._read(path, sig, st.st_size)
        elif (self._names and self._resolving is None
              and time.monotonic() - self._resolved_at > self.namer.dns_refresh_s):
            self._start_resolve(refresh=True)

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
