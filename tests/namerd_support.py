"""Helpers for namerd tests: a real namerd on free ports and a watch-stream reader."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

import aiohttp

from namerd.server import Namerd


async def start_namerd(store: Any, namers: Any = (), **kw: Any) -> Namerd:
    n = Namerd(store, namers, interfaces=[("127.0.0.1", 0)], admin=("127.0.0.1", 0), **kw)
    await n.start()
    return n


class WatchStream:
    """Reads a namerd watch stream (chunked, one document + newline per change)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, headers: Optional[dict] = None) -> None:
        self.session = session
        self.url = url
        self.headers = headers or {}
        self.resp: Optional[aiohttp.ClientResponse] = None
        self._buf = b""

    async def __aenter__(self) -> "WatchStream":
        self.resp = await self.session.get(self.url, headers=self.headers,
                                           timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.resp is not None:
            self.resp.close()

    async def line(self, timeout: float = 5.0) -> bytes:
        """The next newline-terminated document (without the newline)."""
        assert self.resp is not None

        async def read() -> bytes:
            while b"\n" not in self._buf:
                chunk = await self.resp.content.readany()
                if not chunk:
                    raise EOFError(f"stream ended; pending {self._buf!r}")
                self._buf += chunk
            line, self._buf = self._buf.split(b"\n", 1)
            return line

        return await asyncio.wait_for(read(), timeout)

    async def json(self, timeout: float = 5.0) -> Any:
        return json.loads(await self.line(timeout))

    async def nothing_for(self, seconds: float) -> None:
        """Assert that no document arrives within ``seconds``."""
        try:
            got = await self.line(seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected document {got!r}")
