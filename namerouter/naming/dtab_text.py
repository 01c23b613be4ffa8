"""Dtab texts from clients (API bodies, the admin delegator): size-limited, and parsed
off the event loop when large.

Parsing is linear (lark LALR; about 0.5 s per MB on one core), but half a second on the
event loop would stall every other request of the process. Texts above
:data:`INLINE_BYTES` are parsed on one dedicated worker thread: the loop keeps running
(it shares the interpreter lock with one thread, not with many), and big parses queue
behind each other instead of multiplying.
"""
from __future__ import annotations

import asyncio
import gc
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Final, Optional, TypeVar

from ..dtab.dtab import Dtab

#: Texts up to this size are parsed inline (a few milliseconds at most).
INLINE_BYTES: Final = 16 * 1024
#: Default limit of a dtab text an API accepts (namerd's ``maxDtabKB``: 1 MB).
DEFAULT_MAX_BYTES: Final = 1024 * 1024

T = TypeVar("T")
_executor: Optional[ThreadPoolExecutor] = None


class DtabTooLarge(ValueError):
    """A dtab text over its limit (answer 413 with it)."""

    def __init__(self, size: int, limit: int, key: str) -> None:
        super().__init__(f"the dtab is {size} bytes, over the limit of {limit} bytes ({key}: {limit // 1024})")
        self.size = size
        self.limit = limit


def check_size(size: int, limit: int, key: str) -> None:
    """Raise :class:`DtabTooLarge` when ``size`` is over ``limit`` (``key`` names the
    setting in the message)."""
    if size > limit:
        raise DtabTooLarge(size, limit, key)


async def off_loop(fn: Callable[[str], T], text: str) -> T:
    """``fn(text)``, on the worker thread when ``text`` is large (a parse: see
    :func:`_parse_quietly`)."""
    if len(text) <= INLINE_BYTES:
        return fn(text)
    return await run_off_loop(_parse_quietly, fn, text)


def _parse_quietly(fn: Callable[[str], T], text: str) -> T:
    """Parse with the cyclic garbage collector paused, and index the result.

    A megabyte of dtab is about a million new objects: the collector would run full
    passes over the whole heap meanwhile, holding the interpreter lock for 100 ms at a
    time (the event loop waits). Parsed dtabs have no reference cycles (reference
    counting frees them), so pausing it for the parse loses nothing. The lookup trie is
    built here too, not by the first lookup on the event loop.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        result = fn(text)
        if isinstance(result, Dtab):
            result.build_index()
        return result
    finally:
        if was_enabled:
            gc.enable()


async def run_off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the one dtab worker thread (parsing or rendering a large dtab)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dtab-work")
    return await asyncio.get_running_loop().run_in_executor(_executor, fn, *args)


async def read_dtab(text: str) -> Dtab:
    """:meth:`Dtab.read` off the loop for large texts (raises DtabSyntaxError)."""
    return await off_loop(Dtab.read, text)


__all__ = ["read_dtab", "off_loop", "run_off_loop", "check_size", "DtabTooLarge", "INLINE_BYTES", "DEFAULT_MAX_BYTES"]
