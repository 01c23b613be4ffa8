"""Linkerd's ``httpAccessLog``: one line per request, Apache common-log style.

    <Host> <client ip> - - [21/Nov/2026:05:52:01 +0000] "GET /pong HTTP/1.1" 200 4 "-" "curl/7.88.1"

Lines go to a buffered file and are flushed once a second (and on close) so that the
data plane never waits on disk; nothing at all is done per request when the key is
absent. ``httpAccessLogAppend: false`` truncates the file at start.

**Rotation** (``httpAccessLogRollPolicy`` / ``h2AccessLogRollPolicy``, Linkerd's values:
``never`` (default), ``hourly``, ``daily``, ``weekly(n)`` with n the day of the week as
Java's Calendar numbers it (1 = Sunday … 7 = Saturday), or a size such as
``3.megabytes``, ``1.gigabyte``; ``…RotateCount``: rotated files kept, -1 = all) is done
by Python's ``logging.handlers`` (TimedRotatingFileHandler / RotatingFileHandler): the
log writes to the handler's file and, at each once-a-second flush, asks the handler
whether to roll over and lets it rename and prune. Rotated files are
``access.log.2026-11-21`` (time) or ``access.log.1`` … (size). With a size policy, "all"
means up to 10,000 files (RotatingFileHandler needs a number), and a file may pass
its size by what one second of traffic writes (the check runs at the flush).
"""
from __future__ import annotations

import asyncio
import logging
import logging.handlers
import re
import time
from dataclasses import dataclass
from typing import IO, Optional, Union

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _quote(v: Optional[bytes]) -> str:
    if not v:
        return "-"
    return v.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')


_UNITS = {"byte": 1, "kilobyte": 1 << 10, "megabyte": 1 << 20, "gigabyte": 1 << 30, "terabyte": 1 << 40}
_SIZE = re.compile(r"(\d+)\.(byte|kilobyte|megabyte|gigabyte|terabyte)s?")
_WEEKLY = re.compile(r"weekly\(([1-7])\)")
#: "keep all" for size rotation (RotatingFileHandler needs a count)
SIZE_KEEP_ALL = 10_000


@dataclass(frozen=True)
class RollPolicy:
    """A parsed roll policy: ``when`` (TimedRotatingFileHandler's) or ``max_bytes``."""

    when: Optional[str] = None
    max_bytes: int = 0

    @property
    def never(self) -> bool:
        return self.when is None and not self.max_bytes


def parse_roll_policy(text: str) -> RollPolicy:
    """Linkerd's (twitter-util's) roll policy text; ValueError with the accepted forms."""
    t = text.strip().lower()
    if t == "never":
        return RollPolicy()
    if t == "hourly":
        return RollPolicy(when="H")
    if t == "daily":
        return RollPolicy(when="midnight")
    m = _WEEKLY.fullmatch(t)
    if m:  # Calendar: 1 = Sunday … 7 = Saturday; Python: W0 = Monday … W6 = Sunday
        return RollPolicy(when=f"W{(int(m.group(1)) + 5) % 7}")
    m = _SIZE.fullmatch(t)
    if m and int(m.group(1)) > 0:
        return RollPolicy(max_bytes=int(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"{text!r} is not a roll policy (never, hourly, daily, weekly(1-7), or a size like "
                     "3.megabytes, 1.gigabyte)")


def check_roll_policy(text: Optional[str]) -> None:
    if text is not None:
        parse_roll_policy(text)


def check_rotate_count(n: Optional[int]) -> None:
    if n is not None and n == 0:
        raise ValueError("0 would keep no rotated file: use -1 (keep all) or a positive count")


Rotator = Union[logging.handlers.TimedRotatingFileHandler, logging.handlers.RotatingFileHandler]


def _rotator(path: str, policy: RollPolicy, count: int) -> Rotator:
    if policy.when is not None:
        return logging.handlers.TimedRotatingFileHandler(path, when=policy.when, backupCount=max(0, count),
                                                         encoding="utf-8", utc=True)
    return logging.handlers.RotatingFileHandler(path, maxBytes=policy.max_bytes, encoding="utf-8",
                                                backupCount=count if count > 0 else SIZE_KEEP_ALL)


class AccessLog:
    def __init__(self, path: str, append: bool = True, roll_policy: str = "never", rotate_count: int = -1) -> None:
        self.path = path
        policy = parse_roll_policy(roll_policy)
        #: the logging handler that rotates the file (None: never rotated)
        self.rotator: Optional[Rotator] = None
        self._probe = logging.makeLogRecord({"msg": ""})
        try:
            if policy.never:
                self._f: Optional[IO[str]] = open(path, "a" if append else "w", buffering=64 * 1024,
                                                  encoding="utf-8")
            else:
                if not append:
                    open(path, "w").close()
                self.rotator = _rotator(path, policy, rotate_count)
                self._f = self.rotator.stream
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
                r = self.rotator
                if r is not None and r.shouldRollover(self._probe):
                    r.doRollover()
                    self._f = r.stream
            except OSError:
                pass

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._f is not None:
            self.flush()
            if self.rotator is not None:
                self.rotator.close()
            else:
                self._f.close()
            self._f = None
