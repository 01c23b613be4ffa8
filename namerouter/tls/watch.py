"""Notice changes to certificate and key files without polling them.

The process's one file-watching mechanism is :mod:`namerouter.fswatch` (also used by the
``io.l5d.fs`` namer and interpreter); TLS uses it with a longer debounce, so that a
certificate and its key written one after the other are reloaded together. Subscribers
re-read their files and compare contents (``material.digest``), so a change to an
unrelated file in the same directory costs one read. Both the directory of each path and
that of the file it resolves to are watched (Kubernetes Secret mounts swap a symlink).
"""
from __future__ import annotations

from ..fswatch import DEBOUNCE_MS, POLL_DELAY_MS, SETTLE_MS, directories_of
from ..fswatch import DirectoryWatcher as _Watcher

__all__ = ["DirectoryWatcher", "directories_of", "DEBOUNCE_MS", "POLL_DELAY_MS", "SETTLE_MS"]


class DirectoryWatcher(_Watcher):
    """The TLS registry's watcher (one per process)."""

    def __init__(self) -> None:
        super().__init__("TLS files", DEBOUNCE_MS)
