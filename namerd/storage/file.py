"""``io.namerouter.file``: a durable single-file store for single-node namerd.

Our own kind name (Linkerd has no such store) so it can never clash with one of
Linkerd's. The file is one JSON document::

    {"format": "io.namerouter.file/1", "counter": 7,
     "namespaces": {"default": {"dtab": "/svc=>/#/io.l5d.fs", "version": 7}}}

Why this shape: versions come from one counter persisted with the data, so an
ETag is never reused, not even across a delete + re-create or a restart; the dtab
is kept as text so an operator can read the file.

Durability: every write goes to a temporary file in the same directory, is fsynced,
renamed over the old file, and the directory is fsynced, so a crash leaves either
the old or the new file, never a torn one. Writers in one process are serialised by
the store's lock; a second process opening the same file is refused (flock on
``<path>.lock``). A file that does not parse is reported and left untouched.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

from namerouter.dtab import Dtab

from .base import DtabStoreError, LocalDtabStore, VersionedDtab, decode_counter, encode_counter

FORMAT = "io.namerouter.file/1"


@dataclass
class FileStoreConfig:
    """``storage: {kind: io.namerouter.file, path: /var/lib/namerd/dtabs.json}``."""

    path: str = "namerd-dtabs.json"


class CorruptStoreFile(DtabStoreError):
    pass


class FileDtabStore(LocalDtabStore):
    kind = "io.namerouter.file"
    config_class = FileStoreConfig

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = os.path.abspath(path)
        self._counter = 0
        self._lock_fd: Optional[int] = None

    @classmethod
    def from_config(cls, config: FileStoreConfig, runtime: Any = None) -> "FileDtabStore":
        return cls(config.path)

    # Lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._open)
        from namerouter.naming.var import Ok

        self._list_var.update(Ok(tuple(sorted(self._data))))

    def _open(self) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise DtabStoreError(
                    f"storage file {self.path} is in use by another namerd process "
                    f"(lock {self.path}.lock is held)"
                ) from None
            raise
        self._lock_fd = fd
        try:
            self._load()
        except BaseException:
            self._release_lock()
            raise

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return  # a new store: the file appears with the first write
        where = f"storage file {self.path}"
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptStoreFile(f"{where} is corrupt (not JSON: {e}); it was left untouched") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CorruptStoreFile(
                f"{where} is not an {FORMAT} file (missing or wrong \"format\"); it was left untouched"
            )
        namespaces = doc.get("namespaces")
        counter = doc.get("counter")
        if not isinstance(namespaces, dict) or not isinstance(counter, int) or counter < 0:
            raise CorruptStoreFile(f"{where} is corrupt (bad \"namespaces\" or \"counter\"); it was left untouched")
        from namerd.dtabtext import DtabParseError, parse_dtab_at

        data: dict[str, VersionedDtab] = {}
        for ns, entry in namespaces.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("dtab"), str) \
                    or not isinstance(entry.get("version"), int):
                raise CorruptStoreFile(f"{where} is corrupt (namespace {ns!r}); it was left untouched")
            try:
                dtab = parse_dtab_at(entry["dtab"], f"{where}: namespace {ns!r}")
            except DtabParseError as e:
                raise CorruptStoreFile(f"{e}; the file was left untouched") from None
            data[ns] = VersionedDtab(dtab, encode_counter(entry["version"]))
            counter = max(counter, entry["version"])
        self._data = data
        self._counter = counter

    async def close(self) -> None:
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    # Versions and persistence ---------------------------------------------------
    def _next_version(self, ns: str) -> bytes:
        return encode_counter(self._counter + 1)

    async def _persist(self, data: dict[str, VersionedDtab]) -> None:
        if self._lock_fd is None:
            raise DtabStoreError(f"storage file {self.path} is not open (store not started)")
        counter = max([self._counter] + [decode_counter(v.version) or 0 for v in data.values()])
        try:
            # Rendering every namespace is 0.1 s per MB of dtabs: not on the event loop.
            await asyncio.to_thread(self._write_data, data, counter)
        except OSError as e:
            raise DtabStoreError(f"cannot write storage file {self.path}: {e}") from None
        self._counter = counter

    def _write_data(self, data: dict[str, VersionedDtab], counter: int) -> None:
        doc = {
            "format": FORMAT,
            "counter": counter,
            "namespaces": {
                ns: {"dtab": vd.dtab.show(), "version": decode_counter(vd.version)}
                for ns, vd in sorted(data.items())
            },
        }
        self._atomic_write((json.dumps(doc, indent=2) + "\n").encode())

    def _atomic_write(self, payload: bytes) -> None:
        directory = os.path.dirname(self.path)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(self.path) + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def admin_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "namespaces": len(self._data),
                "counter": self._counter, "watches": self.watch_count()}
