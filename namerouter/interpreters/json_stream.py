"""Incremental parser for namerd's watch streams: concatenated JSON values.

namerd writes one JSON document per state change on a chunked HTTP response. Chunk
boundaries are arbitrary (a document may arrive split over many chunks, or several in
one chunk) and the trailing newline is a courtesy, so the parser must not rely on it:
it tracks bracket depth and string state byte by byte and emits a value as soon as its
closing bracket arrives, keeping the unfinished rest for the next chunk.

When the observation fails, namerd writes the error as plain text plus a newline and
ends the stream. Anything that does not start like a JSON object, array or string is
therefore read up to the end of its line and reported as :class:`StreamErrorLine`.

Scanning bytes (not text) is safe: every JSON structural character is ASCII and UTF-8
continuation bytes are >= 0x80, so a multi-byte character split over two chunks is
never mistaken for structure; a complete value is decoded only once it is whole.
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterable, AsyncIterator, Iterator

_WS = b" \t\r\n"
_OPEN = {ord("{"), ord("[")}
_CLOSE = {ord("}"), ord("]")}
_QUOTE = ord('"')
_BACKSLASH = ord("\\")
_NL = ord("\n")


class StreamErrorLine(Exception):
    """namerd reported an error in the stream (plain text line); the stream is over."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class StreamTruncated(Exception):
    """The stream ended in the middle of a JSON value."""


class JsonStreamParser:
    """Feed bytes with :meth:`feed`; iterate the complete values it returns.

    State survives between calls, so a 100 kB document fed one byte at a time costs
    O(n), not O(n^2): scanning resumes where the previous chunk stopped.
    """

    __slots__ = ("_buf", "_pos", "_depth", "_in_string", "_escape", "_mode", "max_value_bytes", "error")

    def __init__(self, max_value_bytes: int = 64 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._depth = 0
        self._in_string = False
        self._escape = False
        # None: between values; "json": inside a value; "text": inside an error line.
        self._mode: str | None = None
        # A namerd that never closes a bracket must not make us buffer without bound.
        self.max_value_bytes = max_value_bytes
        #: Set once a plain-text error line was read: the stream is over after it.
        self.error: StreamErrorLine | None = None

    def feed(self, data: bytes) -> list[Any]:
        """Add a chunk; return the values it completed (possibly none).

        Values that precede an error line in the same chunk are still returned; the
        error is then in :attr:`error` and raised by the next ``feed``/``finish``.
        Raises ``ValueError`` for a value that is not valid JSON or exceeds the limit.
        """
        if self.error is not None:
            raise self.error
        if data:
            self._buf += data
        out: list[Any] = []
        try:
            for value in self._scan():
                out.append(value)
        except StreamErrorLine as e:
            self.error = e
        return out

    def finish(self) -> None:
        """The stream ended: complain about anything left unfinished."""
        if self.error is not None:
            raise self.error
        rest = bytes(self._buf).strip()
        if not rest:
            return
        if self._mode == "text" or (rest[:1] and rest[0] not in _OPEN and rest[0] != _QUOTE):
            raise StreamErrorLine(rest.decode("utf-8", "replace").strip())
        raise StreamTruncated(f"stream ended inside a JSON value ({len(rest)} bytes unfinished)")

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _scan(self) -> Iterator[Any]:
        buf = self._buf
        while True:
            n = len(buf)
            if self._mode is None:
                # Skip whitespace between values.
                i = self._pos
                while i < n and buf[i] in _WS:
                    i += 1
                if i:
                    del buf[:i]
                    n = len(buf)
                self._pos = 0
                if not n:
                    return
                c = buf[0]
                if c in _OPEN:
                    self._mode, self._depth, self._pos = "json", 1, 1
                elif c == _QUOTE:
                    self._mode, self._depth, self._in_string, self._pos = "json", 0, True, 1
                else:
                    self._mode = "text"
            if self._mode == "text":
                nl = buf.find(b"\n", self._pos)
                if nl < 0:
                    self._pos = n
                    if n > self.max_value_bytes:
                        raise ValueError(f"error line longer than {self.max_value_bytes} bytes")
                    return
                line = bytes(buf[:nl]).decode("utf-8", "replace").strip()
                del buf[: nl + 1]
                self._mode, self._pos = None, 0
                raise StreamErrorLine(line)
            # Inside a JSON value: find where it ends.
            end = self._find_end()
            if end < 0:
                if len(buf) > self.max_value_bytes:
                    raise ValueError(f"JSON value longer than {self.max_value_bytes} bytes")
                return
            raw = bytes(buf[:end])
            del buf[:end]
            self._mode, self._pos = None, 0
            try:
                yield json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"invalid JSON in stream: {e}") from e

    def _find_end(self) -> int:
        """Index just past the current value's end, or -1 when it is not complete yet."""
        buf = self._buf
        n = len(buf)
        i = self._pos
        depth, in_string, escape = self._depth, self._in_string, self._escape
        while i < n:
            c = buf[i]
            i += 1
            if in_string:
                if escape:
                    escape = False
                elif c == _BACKSLASH:
                    escape = True
                elif c == _QUOTE:
                    in_string = False
                    if depth == 0:  # a top-level string just closed
                        self._depth, self._in_string, self._escape = 0, False, False
                        return i
                continue
            if c == _QUOTE:
                in_string = True
            elif c in _OPEN:
                depth += 1
            elif c in _CLOSE:
                depth -= 1
                if depth == 0:
                    self._depth, self._in_string, self._escape = 0, False, False
                    return i
        self._pos, self._depth, self._in_string, self._escape = i, depth, in_string, escape
        return -1


async def iter_json_stream(chunks: AsyncIterable[bytes]) -> AsyncIterator[Any]:
    """Values of a byte stream; raises StreamErrorLine / StreamTruncated / ValueError."""
    parser = JsonStreamParser()
    async for chunk in chunks:
        for value in parser.feed(chunk):
            yield value
        if parser.error is not None:
            raise parser.error
    parser.finish()
