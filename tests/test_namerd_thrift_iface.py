"""namerd's io.l5d.thriftNameInterpreter through independent clients:

* thriftpy2's own client (its IDL loaded from our namer.thrift, plain framed thrift —
  which a ThriftMux server accepts) calls bind, addr, dtab and delegate and the answers
  are compared with the HTTP controller's for the same names;
* long polls: a call with the current stamp waits for the next change; a stamp from
  before a namerd restart is answered at once (re-sync);
* ThriftMux (Finagle's handshake, Tdispatch, Tdiscarded, pings) with our Mux session;
* attacks: garbage, an unknown method, a malformed argument struct, an over-sized
  frame — each answered per protocol, logged, and namerd keeps serving others.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time
import urllib.parse
import urllib.request

import pytest
import thriftpy2
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TFramedTransportFactory

from namerouter.mux import message as m
from namerouter.mux.client import MuxSession
from namerouter.mux.thrift import decode_reply, encode_call
from namerouter.thriftapi import IDL_PATH
from tests.support.namerd_proc import SAMPLE_DTAB, SAMPLE_FILES, NamerdProcess, get_json, running_namerd, write_fs

# The test's own load of the IDL (a separate module object from namerouter's).
idl = thriftpy2.load(IDL_PATH, module_name="test_namer_thrift")
BASE = "/svc=>/#/io.l5d.fs"
DTAB = SAMPLE_DTAB


@pytest.fixture(scope="module")
def namerd(tmp_path_factory):
    yield from running_namerd(tmp_path_factory, "namerd-thrift", SAMPLE_FILES, SAMPLE_DTAB)


def client(namerd: NamerdProcess, timeout_ms: int = 10_000):
    return make_client(idl.Namer, "127.0.0.1", namerd.thrift, trans_factory=TFramedTransportFactory(),
                       timeout=timeout_ms)


def labels(path: str) -> list[bytes]:
    return [l.encode() for l in path.strip("/").split("/") if l]


def show(p) -> str:
    return "/" + "/".join(l.decode() for l in (p or []))


def thrift_tree(tree, node=None):
    node = node if node is not None else tree.root
    if node.leaf is not None:
        return ("leaf", show(node.leaf.id), show(node.leaf.residual))
    if node.weighted is not None:
        return ("union", [(w.weight, thrift_tree(tree, tree.nodes[w.id])) for w in node.weighted])
    if node.alt is not None:
        return ("alt", [thrift_tree(tree, tree.nodes[i]) for i in node.alt])
    return ("neg",) if node.neg is not None else ("fail",) if node.fail is not None else ("empty",)


def http_tree(doc):
    t = doc["type"]
    if t == "leaf":
        return ("leaf", doc["bound"]["id"], doc["bound"]["path"])
    if t == "union":
        return ("union", [(w["weight"], http_tree(w["tree"])) for w in doc["union"]])
    if t == "alt":
        return ("alt", [http_tree(x) for x in doc["alt"]])
    return (t,)


def bind(c, name: str, stamp: bytes = b"", dtab: str = ""):
    return c.bind(idl.BindReq(dtab=dtab, name=idl.NameRef(stamp=stamp, name=labels(name), ns="default"), clientId=[]))


def addr(c, id: str, stamp: bytes = b""):
    return c.addr(idl.AddrReq(name=idl.NameRef(stamp=stamp, name=labels(id), ns="default"), clientId=[]))


@pytest.mark.parametrize("name", ["/svc/web", "/svc/split", "/svc/alt", "/svc/web/extra/residual", "/nothing"])
async def test_bind_matches_the_http_controller(namerd, name):
    http = await asyncio.to_thread(get_json, namerd, "/api/1/bind/default", path=name)
    got = await asyncio.to_thread(lambda: bind(client(namerd), name))
    assert thrift_tree(got.tree) == http_tree(http)
    assert got.ns == "default" and len(got.stamp) == 8


@pytest.mark.parametrize("id", ["/#/io.l5d.fs/web", "/#/io.l5d.fs/web2", "/#/io.l5d.fs/missing",
                                "/$/inet/127.0.0.1/9999", "/%/io.l5d.port/4141/#/io.l5d.fs/web"])
async def test_addr_matches_the_http_controller(namerd, id):
    http = await asyncio.to_thread(get_json, namerd, "/api/1/addr/default", path=id)
    got = await asyncio.to_thread(lambda: addr(client(namerd), id))
    if http["type"] == "bound":
        assert got.value.bound is not None
        assert sorted((socket.inet_ntoa(a.ip), a.port) for a in got.value.bound.addresses) == \
            sorted((a["ip"], a["port"]) for a in http["addrs"])
    else:
        assert http["type"] == "neg" and got.value.neg is not None


async def test_dtab_and_delegate_match_the_http_controller(namerd):
    await namerd.put_dtab(DTAB)
    c = client(namerd)
    got = await asyncio.to_thread(lambda: c.dtab(idl.DtabReq(stamp=b"", ns="default", clientId=[])))
    text_req = urllib.request.Request(f"{namerd.url}/api/1/dtabs/default", headers={"Accept": "application/dtab"})
    with urllib.request.urlopen(text_req, timeout=5) as r:
        assert got.dtab == r.read().decode().strip()
    for name in ("/svc/web", "/svc/split", "/nothing"):
        http = await asyncio.to_thread(get_json, namerd, "/api/1/delegate/default", path=name)
        req = idl.DelegateReq(dtab="", clientId=[], delegation=idl.Delegation(stamp=b"", ns="default", tree=idl.DelegateTree(
            root=idl.DelegateNode(path=labels(name), dentry="/\\x2f=>~", contents=idl.DelegateContents(pathLeaf=labels(name))),
            nodes={})))
        d = await asyncio.to_thread(lambda: client(namerd).delegate(req))
        assert _delegate(d.tree, d.tree.root) == _http_delegate(http), name


def _delegate(tree, node):
    c = node.contents
    out = {"path": show(node.path)}
    if c.delegate is not None:
        out["delegate"] = _delegate(tree, tree.nodes[c.delegate])
    elif c.alt is not None:
        out["alt"] = [_delegate(tree, tree.nodes[i]) for i in c.alt]
    elif c.weighted is not None:
        out["union"] = [_delegate(tree, tree.nodes[w.id]) for w in c.weighted]
    elif c.boundLeaf is not None:
        out["leaf"] = show(c.boundLeaf.id)
    else:
        out["other"] = "neg" if c.neg is not None else "fail" if c.fail is not None else "x"
    return out


def _http_delegate(doc):
    out = {"path": doc["path"] if doc["path"] not in ("~", "!") else "/"}
    t = doc["type"]
    if t == "delegate":
        out["delegate"] = _http_delegate(doc["delegate"])
    elif t == "alt":
        out["alt"] = [_http_delegate(x) for x in doc["alt"]]
    elif t == "union":
        out["union"] = [_http_delegate(w["tree"]) for w in doc["union"]]
    elif t == "leaf":
        out["leaf"] = doc["bound"]["id"]
    else:
        out["other"] = t
    return out


async def test_long_poll_waits_for_a_change_and_resyncs_after_restart(namerd):
    await namerd.put_dtab(DTAB)
    first = await asyncio.to_thread(lambda: bind(client(namerd), "/svc/lp"))
    assert thrift_tree(first.tree) == ("neg",)

    async def change_soon() -> None:
        await asyncio.sleep(0.3)
        await namerd.put_dtab(f"{DTAB};/svc/lp=>/#/io.l5d.fs/web")

    t0 = time.monotonic()
    changer = asyncio.ensure_future(change_soon())
    second = await asyncio.to_thread(lambda: bind(client(namerd), "/svc/lp", stamp=first.stamp))
    await changer
    assert time.monotonic() - t0 >= 0.25  # it waited for the change
    assert thrift_tree(second.tree) == ("leaf", "/#/io.l5d.fs/web", "/") and second.stamp != first.stamp
    # An address long poll follows the namer.
    a1 = await asyncio.to_thread(lambda: addr(client(namerd), "/#/io.l5d.fs/lpaddr"))
    assert a1.value.neg is not None
    write_fs(namerd.disco, "lpaddr", ("127.0.0.5", 9000))
    a2 = await asyncio.to_thread(lambda: addr(client(namerd), "/#/io.l5d.fs/lpaddr", stamp=a1.stamp))
    assert [(socket.inet_ntoa(a.ip), a.port) for a in a2.value.bound.addresses] == [("127.0.0.5", 9000)]
    # After a restart the old stamp is unknown: the current value comes back at once.
    await namerd.kill()
    await namerd.start()
    t0 = time.monotonic()
    third = await asyncio.to_thread(lambda: bind(client(namerd), "/svc/lp", stamp=second.stamp))
    assert time.monotonic() - t0 < 2.0
    assert thrift_tree(third.tree) == ("leaf", "/#/io.l5d.fs/web", "/")


async def test_failures_are_the_declared_exceptions(namerd):
    c = client(namerd)
    with pytest.raises(idl.BindFailure) as e:
        await asyncio.to_thread(lambda: bind(c, "/svc/web", dtab="/a=>"))
    assert "expected" in e.value.reason
    with pytest.raises(idl.BindFailure) as e:
        await asyncio.to_thread(lambda: bind(client(namerd), "/"))
    assert e.value.reason == "empty path"
    with pytest.raises(idl.AddrFailure):
        await asyncio.to_thread(lambda: addr(client(namerd), "/"))
    with pytest.raises(idl.DelegationFailure):
        await asyncio.to_thread(lambda: client(namerd).delegate(idl.DelegateReq(dtab="", delegation=idl.Delegation(
            stamp=b"", ns="default", tree=idl.DelegateTree(root=idl.DelegateNode(
                path=[], dentry="", contents=idl.DelegateContents(neg=idl.Void())), nodes={})))))


async def test_thriftmux_session_with_finagles_handshake_discard_and_ping(namerd):
    s = await MuxSession.connect("127.0.0.1", namerd.thrift, ping_interval=0.1, ping_timeout=2)
    try:
        assert s.negotiated
        from namerouter.thriftapi import namer

        req = namer.BindReq(dtab="", name=namer.NameRef(stamp=b"", name=[b"svc", b"web"], ns="default"), clientId=[])
        got = decode_reply(namer.Namer, "bind", await s.dispatch(encode_call(namer.Namer, "bind", 1, req=req)))
        assert got.tree.root.leaf.id == [b"#", b"io.l5d.fs", b"web"]
        # A long poll, then the client loses interest: Tdiscarded frees the tag.
        req2 = namer.BindReq(dtab="", name=namer.NameRef(stamp=got.stamp, name=[b"svc", b"web"], ns="default"))
        t = asyncio.ensure_future(s.dispatch(encode_call(namer.Namer, "bind", 2, req=req2)))
        await asyncio.sleep(0.2)
        t.cancel()
        for _ in range(100):
            if not s._discarded:
                break
            await asyncio.sleep(0.02)
        assert not s._discarded  # Rdiscarded came back
        await asyncio.sleep(0.3)
        assert s.last_rtt is not None and not s.closed  # pings answered
    finally:
        s.close()


def _raw_exchange(port: int, data: bytes, frames: int = 1) -> bytes:
    """Send ``data``; read until ``frames`` complete frames arrived or the server closed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(data)
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
            got, pos = 0, 0
            while len(out) >= pos + 4 and len(out) >= pos + 4 + struct.unpack(">i", out[pos:pos + 4])[0]:
                pos += 4 + struct.unpack(">i", out[pos:pos + 4])[0]
                got += 1
            if got >= frames:
                break
        return out
    finally:
        sock.close()


async def _still_serves(namerd) -> None:
    got = await asyncio.to_thread(lambda: bind(client(namerd), "/svc/web"))
    assert got.tree.root.leaf is not None


async def test_attack_unknown_method_and_malformed_arguments(namerd):
    from thriftpy2.protocol import TBinaryProtocol
    from thriftpy2.transport import TMemoryBuffer

    def call(name: str, body: bytes) -> bytes:
        buf = TMemoryBuffer()
        TBinaryProtocol(buf).write_message_begin(name, 1, 7)
        msg = buf.getvalue() + body
        return _raw_exchange(namerd.thrift, struct.pack(">i", len(msg)) + msg)

    def app_error(reply: bytes) -> TApplicationException:
        from thriftpy2.protocol import TBinaryProtocol as P

        buf = TMemoryBuffer(reply[4:])
        proto = P(buf)
        name, mtype, seqid = proto.read_message_begin()
        assert mtype == 3 and seqid == 7  # EXCEPTION, same seqid
        e = TApplicationException()
        proto.read_struct(e)
        return e

    e = app_error(await asyncio.to_thread(call, "launchMissiles", b"\x00"))
    assert e.type == TApplicationException.UNKNOWN_METHOD
    e = app_error(await asyncio.to_thread(call, "bind", b"\x0c\x00\x01\x0f\x00\x02\x0b\x7f\xff\xff\xff"))
    assert e.type == TApplicationException.PROTOCOL_ERROR
    await _still_serves(namerd)
    assert "unknown method 'launchMissiles'" in namerd.log() and "malformed bind message" in namerd.log()


async def test_attack_garbage_and_oversized_frames(namerd):
    # Garbage that is neither thrift nor Mux: the connection is closed.
    out = await asyncio.to_thread(_raw_exchange, namerd.thrift, struct.pack(">i", 8) + b"\x00\x00\x00\x01zzzz")
    assert out == b""
    # A Mux client announcing a 64 MB frame gets Rerr and is disconnected.
    out = await asyncio.to_thread(_raw_exchange, namerd.thrift,
                                  m.frame(m.BAD_RERR, 1, b"tinit check") + struct.pack(">i", 64 * 1024 * 1024) + b"\x02\x00\x00\x02",
                                  2)
    frames = list(m.FrameReader().feed(out))
    assert frames[0].typ == m.BAD_RERR and frames[0].body == b"tinit check"  # handshake echo
    assert frames[-1].typ == m.BAD_RERR and b"frame of" in frames[-1].body
    # A Mux message of an unknown kind (after a ping made the session Mux): Rerr, the session goes on.
    out = await asyncio.to_thread(_raw_exchange, namerd.thrift, m.frame(m.TPING, 1) + m.frame(42, 5, b""), 2)
    assert list(m.FrameReader().feed(out)) == [m.Message(m.RPING, 1, b""),
                                               m.Message(m.BAD_RERR, 5, b"Unexpected mux message type 42")]
    await _still_serves(namerd)
    assert "frame of 67108864 bytes" in namerd.log()
