"""Notice changes to files without polling them: the one file-watching mechanism of the
process (TLS certificates, ``io.l5d.fs`` service files, ``io.l5d.fs`` dtab files).

A :class:`DirectoryWatcher` runs one ``watchfiles`` watch (inotify on Linux, through the
Rust ``notify`` crate; one thread) over the directories its subscribers ask for, not
recursive. A change in such a directory calls the callbacks subscribed to it — with the
changed paths, for subscribers that want them — on the event loop; they re-read what
they care about. Renames and the symlink swaps Kubernetes uses to update a mounted
Secret or ConfigMap (``..data`` is replaced; the file names never change) are changes
in the directory, so they are seen.

A change made after a subscriber looked at its files but before the watch was in place
would be missed, so once a (re)started watch has been quiet for ``SETTLE_MS`` every
subscriber is told "anything may have changed" once. If the OS refuses the watch (e.g.
the inotify watch limit is reached) the same watch runs in watchfiles' polling mode: one
``stat`` of each directory's entries per second — one poll per directory, whatever the
number of files in it.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable, Iterable, Optional

import watchfiles

log = logging.getLogger("namerouter.fswatch")

#: How long a burst of events (a cert and a key written one after the other) is gathered
#: at most before it is reported.
DEBOUNCE_MS = 400
#: The gathering time for files whose changes route traffic (``io.l5d.fs`` namer and dtab
#: file): a change is seen within about this long.
ROUTING_DEBOUNCE_MS = 100
#: Quiet time after an event before the gathered events are reported.
STEP_MS = 50
POLL_DELAY_MS = 1000
#: Quiet time after which a new watch is known to be in place (see module docstring).
SETTLE_MS = 1000

#: a callback: ``callback(paths)``, ``paths`` the changed paths (None: anything may have changed)
PathsCallback = Callable[[Optional[set[str]]], None]


def directories_of(paths: Iterable[str]) -> set[str]:
    """The directories to watch for files ``paths``: each file's own and its target's."""
    out: set[str] = set()
    for p in paths:
        out.add(os.path.dirname(os.path.abspath(p)) or "/")
        out.add(os.path.dirname(os.path.realpath(p)) or "/")
    return {d for d in out if os.path.isdir(d)}


class DirectoryWatcher:
    """Calls the callback of every subscription whose directories saw a change.

    ``what`` names the watched files in log lines; ``debounce_ms`` bounds how long events
    are gathered (a service file wants its change seen quickly, a certificate and its key
    are better reloaded together)."""

    def __init__(self, what: str = "files", debounce_ms: int = DEBOUNCE_MS) -> None:
        self.what = what
        self.debounce_ms = debounce_ms
        self._subs: dict[int, tuple[frozenset[str], Callable[..., object], bool]] = {}
        self._next = 0
        self._task: Optional[asyncio.Task[None]] = None
        self._stop: Optional[asyncio.Event] = None
        self._dirs: frozenset[str] = frozenset()
        self._polling = False
        self.events = 0  # batches seen (tests and the admin pages)

    def subscribe(self, paths: list[str], callback: Callable[[], object]) -> Callable[[], None]:
        """Watch the directories of files ``paths``; ``callback()`` on a change there.
        Returns a function that unsubscribes."""
        sid = self._add(frozenset(directories_of(paths)), callback, False)
        return lambda: self.unsubscribe(sid)

    def subscribe_dirs(self, dirs: Iterable[str], callback: PathsCallback) -> int:
        """Watch directories ``dirs`` (changeable with :meth:`update`); ``callback(paths)``
        with the changed paths. Returns the subscription's id."""
        return self._add(frozenset(dirs), callback, True)

    def update(self, sid: int, dirs: Iterable[str]) -> None:
        """A subscription's directories changed (the watch restarts only if the union did)."""
        sub = self._subs.get(sid)
        if sub is not None:
            self._subs[sid] = (frozenset(dirs), sub[1], sub[2])
            self._restart()  # also when a directory wanted before now exists

    def unsubscribe(self, sid: int) -> None:
        if self._subs.pop(sid, None) is not None:
            self._restart()

    def refresh(self) -> None:
        """Watch again from scratch (a watched directory was replaced: its old watch is gone)."""
        self._dirs = frozenset()
        self._restart()

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    def _add(self, dirs: frozenset[str], callback: Callable[..., object], paths: bool) -> int:
        self._next += 1
        self._subs[self._next] = (dirs, callback, paths)
        self._restart()
        return self._next

    def _wanted(self) -> frozenset[str]:
        return frozenset(d for dirs, _, _ in self._subs.values() for d in dirs if os.path.isdir(d))

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
                        *dirs, watch_filter=None, recursive=False, debounce=self.debounce_ms, step=STEP_MS,
                        stop_event=stop, force_polling=self._polling or None, poll_delay_ms=POLL_DELAY_MS,
                        ignore_permission_denied=True, rust_timeout=SETTLE_MS, yield_on_timeout=True):
                    if changes:
                        self._dispatch({p for _, p in changes})
                    elif not settled:  # the watch is in place: catch what changed before
                        settled = True
                        self._dispatch(None, set(dirs))
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # e.g. "OS file watch limit reached"
                if self._polling:
                    log.error("watching %s in %s failed (%s); changes need a restart", self.what, dirs, e)
                    return
                log.warning("cannot watch %s with inotify (%s); polling their directories instead", self.what, e)
                self._polling = True

    def _dispatch(self, paths: Optional[set[str]], dirs: Optional[set[str]] = None) -> None:
        self.events += 1
        changed_dirs = dirs if dirs is not None else {os.path.dirname(p) for p in paths or ()}
        if paths is not None:
            changed_dirs |= paths  # a watched directory itself created, removed or replaced
        for sub_dirs, callback, wants_paths in list(self._subs.values()):
            if sub_dirs & changed_dirs:
                try:
                    if wants_paths:
                        callback(paths)
                    else:
                        callback()
                except Exception:  # one broken subscriber must not stop the others
                    log.exception("%s change callback failed", self.what)

    async def close(self) -> None:
        task = self._task
        self._subs.clear()
        self._stop_task()
        self._dirs = frozenset()
        if task is not None:
            await asyncio.wait({task}, timeout=5.0)
