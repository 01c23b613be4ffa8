"""Linkerd's ``httpAccessLog``: one line per request, Apache common-log style.

    <Host> <client ip> - - [21/Nov/2026:05:52:01 +0000] "GET /pong HTTP/1.1" 200 4 "-" "curl/7.88.1"

Lines go to a buffered file and are flushed once a second (and on close) so that the
data plane never waits on disk; nothing at all is done per request when the key is
absent. ``httpAccessLogAppend: false`` truncates the file at start.
"""
from __future__ import annotations

import asyncio
import time
from typing import IO, Optional

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _quote(v: Optional[bytes]) -> str:
    if not v:
        return "-"
    return v.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')


class AccessLog:
    def __init__(self, path: str, append: bool = True) -> None:
        self.path = path
        try:
            self._f: Optional[IO[str]] = open(path, "a" if append else "w", buffering=64 * 1024, encoding="utf-8")
        except OSError as e:
            raise ValueError(f"httpAccessLog: cannot open {path!r}: {e.strerror}") from None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._stamp_sec = -1
        self._stamp = ""

    def _now(self) -> str:
        sec = int(time.time())
        if sec != self._stamp_sec:
            t = time.gmtime(sec)
            self._stamp = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
            self._stamp_sec = sec
        return self._stamp

    def log(self, host: Optional[bytes], remote: str, method: bytes, uri: bytes, version: str,
            status: int, length: Optional[int], referer: Optional[bytes], agent: Optional[bytes]) -> None:
        f = self._f
        if f is None:
            return
        f.write(
            f'{_quote(host)} {remote} - - [{self._now()}] "{method.decode("latin-1")} {uri.decode("latin-1")} '
            f'HTTP/{version}" {status} {"-" if length is None else length} "{_quote(referer)}" "{_quote(agent)}"\n'
        )
        if self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(1.0, self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        self._timer = None
        if self._f is not None:
            try:
                self._f.flush()
            except OSError:
                pass

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._f is not None:
            self.flush()
            self._f.close()
            self._f = None
