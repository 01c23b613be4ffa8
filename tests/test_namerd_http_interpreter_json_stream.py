"""The concatenated-JSON stream parser used on namerd's watch streams."""
from __future__ import annotations

import json

import pytest

from namerouter.interpreters.json_stream import JsonStreamParser, StreamErrorLine, StreamTruncated, iter_json_stream

DOCS = [
    {"type": "leaf", "bound": {"id": "/#/io.l5d.fs/web", "path": "/", "addr": {"type": "pending"}}},
    [{"prefix": "/svc", "dst": "/#/io.l5d.fs"}],
    {"type": "neg", "note": "braces in strings: {[}]\\\" and ünïcödé ✓"},
    {"type": "union", "union": [{"weight": 0.5, "tree": {"type": "fail"}}]},
    "a top-level string with \\ and \"quotes\"",
]


def feed_all(chunks: list[bytes]) -> list:
    p = JsonStreamParser()
    out = []
    for c in chunks:
        out += p.feed(c)
    p.finish()
    return out


@pytest.mark.parametrize("sep", [b"", b"\n", b" \r\n\t"])
def test_every_split_point_gives_the_same_values(sep: bytes):
    data = sep.join(json.dumps(d, ensure_ascii=False).encode() for d in DOCS) + sep
    assert feed_all([data]) == DOCS
    for i in range(len(data) + 1):  # one cut anywhere, even inside a UTF-8 character
        assert feed_all([data[:i], data[i:]]) == DOCS
    assert feed_all([data[i:i + 1] for i in range(len(data))]) == DOCS  # byte by byte


def test_values_before_an_error_line_are_kept_then_the_error_is_raised():
    p = JsonStreamParser()
    got = p.feed(b'{"type":"neg"}\nbinding failed: namer exploded\n{"type":"fail"}')
    assert got == [{"type": "neg"}]
    assert isinstance(p.error, StreamErrorLine) and p.error.text == "binding failed: namer exploded"
    with pytest.raises(StreamErrorLine):
        p.feed(b"more")


def test_error_line_split_over_chunks_and_at_eof_without_newline():
    p = JsonStreamParser()
    assert p.feed(b"No such na") == [] and p.error is None
    p.feed(b"mespace\n")
    assert p.error.text == "No such namespace"
    q = JsonStreamParser()
    q.feed(b"boom")
    with pytest.raises(StreamErrorLine, match="boom"):
        q.finish()


def test_truncated_and_invalid_values():
    p = JsonStreamParser()
    p.feed(b'{"type":"le')
    with pytest.raises(StreamTruncated):
        p.finish()
    with pytest.raises(ValueError, match="invalid JSON"):
        JsonStreamParser().feed(b'{"a": tru}')


def test_size_limit_bounds_the_buffer():
    p = JsonStreamParser(max_value_bytes=100)
    with pytest.raises(ValueError, match="longer than 100"):
        p.feed(b"[" + b"1," * 100)


def test_large_document_fed_in_small_chunks_is_linear():
    big = {"type": "union", "union": [{"weight": 1.0, "tree": {"type": "leaf", "bound": {
        "id": f"/#/io.l5d.fs/s{i}", "path": "/", "addr": {"type": "neg"}}}} for i in range(3000)]}
    data = json.dumps(big).encode()
    p = JsonStreamParser()
    out = []
    for i in range(0, len(data), 7):
        out += p.feed(data[i:i + 7])
    assert out == [big]


async def test_iter_json_stream_over_async_chunks():
    async def chunks():
        yield b'{"a":1}{"b"'
        yield b':2}\n["x"]'

    assert [v async for v in iter_json_stream(chunks())] == [{"a": 1}, {"b": 2}, ["x"]]
