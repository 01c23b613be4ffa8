"""Mux framing (namerouter/mux/message.py): the byte layout Finagle documents, and the
bounds on what a peer can make us buffer."""
from __future__ import annotations

import struct

import pytest

from namerouter.mux import message as m


def test_frame_layout_and_round_trip():
    f = m.frame(m.TDISPATCH, 2, b"body")
    assert f == struct.pack(">i", 8) + b"\x02\x00\x00\x02" + b"body"
    assert list(m.FrameReader().feed(f)) == [m.Message(m.TDISPATCH, 2, b"body")]
    # Finagle's aliases: Rerr is sent as 127, Tdiscarded as -62 (0xc2)
    assert m.frame(m.BAD_RERR, 1, b"tinit check")[4] == 0x7F
    assert m.frame(m.BAD_TDISCARDED, 0, b"")[4] == 0xC2
    assert next(m.FrameReader().feed(m.frame(m.RDISPATCH, 3, b""))).typ == -2


def test_reader_handles_split_and_joined_frames():
    data = m.frame(m.TPING, 1) + m.frame(m.TDISPATCH, 9, b"x" * 100)
    r = m.FrameReader()
    got = []
    for i in range(0, len(data), 3):
        got += list(r.feed(data[i:i + 3]))
    assert got == [m.Message(m.TPING, 1, b""), m.Message(m.TDISPATCH, 9, b"x" * 100)]


def test_bodies_round_trip():
    body = m.tdispatch_body(b"payload", contexts=[(b"k", b"v")], dst="/svc/a", dtab=[("/a", "/b")])
    d = m.parse_tdispatch(body)
    assert (d.contexts, d.dst, d.dtab, d.payload) == ([(b"k", b"v")], "/svc/a", [("/a", "/b")], b"payload")
    assert m.parse_rdispatch(m.rdispatch_body(m.STATUS_ERROR, b"boom")) == (m.STATUS_ERROR, b"boom")
    assert m.parse_init(m.init_body(1, [(b"tls", b"off")])) == (1, [(b"tls", b"off")])
    assert m.parse_tdiscarded(m.tdiscarded_body(0x0A0B0C, "bye")) == (0x0A0B0C, "bye")
    assert m.parse_treq(b"\x01\x02\x01\x07rest") == b"rest"


def test_fragments_are_split_and_reassembled():
    frames = list(m.fragments(m.RDISPATCH, 5, b"abcdefghij", 4))
    assert len(frames) == 3
    r, a = m.FrameReader(), m.Reassembler()
    out = [msg for f in frames for raw in r.feed(f) if (msg := a.push(raw)) is not None]
    assert out == [m.Message(m.RDISPATCH, 5, b"abcdefghij")]


def test_bounds():
    with pytest.raises(m.MuxError, match="frame of"):
        list(m.FrameReader(max_frame=1024).feed(struct.pack(">i", 4096) + b"\x02\x00\x00\x02"))
    with pytest.raises(m.MuxError):
        list(m.FrameReader().feed(struct.pack(">i", 2) + b"\x00\x00"))
    a = m.Reassembler(max_message=10)
    with pytest.raises(m.MuxError, match="fragmented message"):
        for _ in range(5):
            a.push(m.Message(m.TDISPATCH, 7 | m.TAG_MSB, b"xxxx"))
    with pytest.raises(m.MuxError, match="ends too early"):
        m.parse_tdispatch(b"\x00\x05")
