"""Notice changes to certificate and key files without polling them.

One ``watchfiles`` watch (inotify on Linux, through the Rust ``notify`` crate) per
process covers every directory that holds a TLS file, not recursive. Any change in such
a directory calls the callbacks registered for it; they re-read their files and compare
contents (``material.digest``), so a change to an unrelated file costs one read, and
the symlink swaps Kubernetes uses to update a mounted Secret (``..data`` is replaced; the
file names themselves never change) are seen. Both the directory of each path and that
of the file it resolves to are watched.

A change made after a file was loaded but before the watch was in place would be missed,
so once a (re)started watch has been quiet for ``SETTLE_MS`` every subscriber checks its
files once. If the OS refuses the watch (e.g. the inotify watch limit is reached) the
same watch is run in watchfiles' polling mode: one stat of each directory's entries per
second.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable, Optional

import watchfiles

log = logging.getLogger("namerouter.tls")

#: How long watchfiles gathers a burst of events (a cert and a key written one after the
#: other) before reporting them together.
DEBOUNCE_MS = 400
POLL_DELAY_MS = 1000
#: Quiet time after which a new watch is known to be in place (see module docstring).
SETTLE_MS = 1000


def directories_of(paths: list[str]) -> set[str]:
    """The directories to watch for ``paths``: each file's own and its target's."""
    out: set[str] = set()
    for p in paths:
        out.add(os.path.dirname(os.path.abspath(p)) or "/")
        out.add(os.path.dirname(os.path.realpath(p)) or "/")
    return {d for d in out if os.path.isdir(d)}


class DirectoryWatcher:
    """Calls ``callback()`` of every subscription whose directories saw a change."""

    def __init__(self) -> None:
        self._subs: dict[int, tuple[set[str], Callable[[], object]]] = {}
        self._next = 0
        self._task: Optional[asyncio.Task[None]] = None
        self._stop: Optional[asyncio.Event] = None
        self._dirs: frozenset[str] = frozenset()
        self._polling = False
        self.events = 0  # batches seen (tests and the admin page)

    def subscribe(self, paths: list[str], callback: Callable[[], object]) -> Callable[[], None]:
        """Watch ``paths``' directories; returns a function that unsubscribes."""
        self._next += 1
        sid = self._next
        self._subs[sid] = (directories_of(paths), callback)
        self._restart()

        def unsubscribe() -> None:
            if self._subs.pop(sid, None) is not None:
                self._restart()

        return unsubscribe

    def _wanted(self) -> frozenset[str]:
        return frozenset(d for dirs, _ in self._subs.values() for d in dirs)

    def _restart(self) -> None:
        wanted = self._wanted()
        if wanted == self._dirs and (self._task is not None or not wanted):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by start() once a loop runs
        self._stop_task()
        self._dirs = wanted
        if wanted:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(sorted(wanted), self._stop))

    def start(self) -> None:
        """Start watching (needs a running loop); subscribing in a loop starts it too."""
        self._dirs = frozenset()
        self._restart()

    def _stop_task(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            self._task.cancel()
        self._task = self._stop = None

    async def _run(self, dirs: list[str], stop: asyncio.Event) -> None:
        settled = False
        while not stop.is_set():
            try:
                async for changes in watchfiles.awatch(
                        *dirs, watch_filter=None, recursive=False, debounce=DEBOUNCE_MS, step=50,
                        stop_event=stop, force_polling=self._polling or None, poll_delay_ms=POLL_DELAY_MS,
                        ignore_permission_denied=True, rust_timeout=SETTLE_MS, yield_on_timeout=True):
                    if changes:
                        self._dispatch({os.path.dirname(p) for _, p in changes})
                    elif not settled:  # the watch is in place: catch what changed before
                        settled = True
                        self._dispatch(set(dirs))
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # e.g. "OS file watch limit reached"
                if self._polling:
                    log.error("watching TLS files in %s failed (%s); rotation needs a restart", dirs, e)
                    return
                log.warning("cannot watch TLS files with inotify (%s); polling their directories instead", e)
                self._polling = True

    def _dispatch(self, changed_dirs: set[str]) -> None:
        self.events += 1
        for dirs, callback in list(self._subs.values()):
            if dirs & changed_dirs:
                try:
                    callback()
                except Exception:  # one broken subscriber must not stop the others
                    log.exception("TLS reload callback failed")

    async def close(self) -> None:
        task = self._task
        self._subs.clear()
        self._stop_task()
        self._dirs = frozenset()
        if task is not None:
            await asyncio.wait({task}, timeout=5.0)
