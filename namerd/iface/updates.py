"""Observable -> messages: the one loop every streaming interface method runs.

``updates(var, render)`` yields ``render(state)`` for the states ``var`` takes, from its
current one on. ``render`` returns a message, ``None`` to send nothing for that state
(pending), or raises to end the stream with an error. Only the newest state is kept
between two sends, so a client that reads slowly gets fewer, current messages instead
of a growing backlog; two consecutive equal messages are sent once (Linkerd's dedup).
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncGenerator, Callable, Hashable, Optional, TypeVar

from namerouter.naming.var import Var

M = TypeVar("M")


async def updates(var: Var[Any], render: Callable[[Any], Optional[M]],
                  key: Callable[[M], Hashable] = lambda m: m, dedupe: bool = True) -> AsyncGenerator[M, None]:
    wake = asyncio.Event()
    latest: list[Any] = []

    def on_state(st: Any) -> None:
        latest[:] = [st]
        wake.set()

    sub = var.observe(on_state)
    last: Optional[Hashable] = None
    try:
        while True:
            if not latest:
                wake.clear()
                await wake.wait()
                continue
            st = latest.pop()
            msg = render(st)
            if msg is None:
                continue
            if dedupe:
                k = key(msg)
                if k == last:
                    continue
                last = k
            yield msg
    finally:
        sub.close()


async def first(var: Var[Any], render: Callable[[Any], Optional[M]], timeout: float) -> M:
    """The first message ``render`` makes (a unary answer); TimeoutError after ``timeout``."""
    gen = updates(var, render)
    try:
        async with asyncio.timeout(timeout):
            return await gen.__anext__()
    finally:
        await gen.aclose()
