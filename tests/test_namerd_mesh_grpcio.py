"""namerd's io.l5d.mesh interface through an independent client: grpcio with stubs that
grpcio-tools generates from our .proto files at test time (tests/support/grpcio_client.py).

Every method of Interpreter, Resolver, Delegator and Codec is called (unary and
streaming) and compared with what namerd's HTTP controller answers for the same names.
Then the attacks: a malformed message, an unknown method, an over-sized message, and
a request shaped like Linkerd 1's (no ``te`` header) — each gets its status, the log
has one line for it, and namerd keeps serving.
"""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import urllib.parse
import urllib.request

import pytest

from tests.support.grpcio_client import GrpcioClient, gen_dir  # noqa: F401 (fixture)
from tests.support.namerd_proc import SAMPLE_DTAB, SAMPLE_FILES, get_json, running_namerd, write_fs

BASE = "/svc=>/#/io.l5d.fs"
ROOT = {"elems": [base64.b64encode(b"default").decode()]}


def p(*labels: str) -> dict:
    """A mesh Path in protobuf JSON (bytes are base64)."""
    return {"elems": [base64.b64encode(l.encode()).decode() for l in labels]}


def show(path: dict) -> str:
    return "/" + "/".join(base64.b64decode(e).decode() for e in path.get("elems", []))


def tree_from_http(doc: dict) -> object:
    """The HTTP bind JSON reduced to what the mesh carries (no addresses)."""
    t = doc["type"]
    if t == "leaf":
        return ("leaf", doc["bound"]["id"], doc["bound"]["path"])
    if t == "union":
        return ("union", [(w["weight"], tree_from_http(w["tree"])) for w in doc["union"]])
    if t == "alt":
        return ("alt", [tree_from_http(x) for x in doc["alt"]])
    return (t,)


def tree_from_mesh(doc: dict) -> object:
    (kind, body), = doc.items()
    if kind == "leaf":
        return ("leaf", show(body["id"]), show(body.get("residual", {})))
    if kind == "union":
        return ("union", [(w["weight"], tree_from_mesh(w["tree"])) for w in body.get("trees", [])])
    if kind == "alt":
        return ("alt", [tree_from_mesh(x) for x in body.get("trees", [])])
    return (kind,)


def addrs_from_mesh(replicas: dict) -> object:
    if "bound" not in replicas:
        return next(iter(replicas))
    out = []
    for e in replicas["bound"].get("endpoints", []):
        ip = socket.inet_ntop(socket.AF_INET if e.get("inet_af", "INET4") == "INET4" else socket.AF_INET6,
                              base64.b64decode(e["address"]))
        out.append((ip, e["port"]))
    return sorted(out)


def addrs_from_http(doc: dict) -> object:
    if doc["type"] != "bound":
        return doc["type"]
    return sorted((a["ip"], a["port"]) for a in doc["addrs"])


@pytest.fixture(scope="module")
def namerd(tmp_path_factory):
    yield from running_namerd(tmp_path_factory, "namerd-mesh", SAMPLE_FILES, SAMPLE_DTAB)


@pytest.fixture
async def client(gen_dir, namerd):
    async with GrpcioClient(gen_dir, f"127.0.0.1:{namerd.mesh}") as c:
        yield c


@pytest.mark.parametrize("name", ["/svc/web", "/svc/split", "/svc/alt", "/svc/web/extra/residual", "/nothing"])
async def test_bound_trees_match_the_http_controller(client, namerd, name):
    http = await asyncio.to_thread(get_json, namerd, "/api/1/bind/default", path=name)
    labels = name.strip("/").split("/")
    got = await client.unary("Interpreter.GetBoundTree", {"root": ROOT, "name": p(*labels)})
    assert got["end"] == "OK", got
    assert tree_from_mesh(got["msg"]["tree"]) == tree_from_http(http)
    sid = client.stream("Interpreter.StreamBoundTree", {"root": ROOT, "name": p(*labels)})
    first = await client.next(sid)
    assert tree_from_mesh(first["msg"]["tree"]) == tree_from_http(http)
    client.cancel(sid)


async def test_bound_tree_stream_follows_dtab_changes(client, namerd):
    sid = client.stream("Interpreter.StreamBoundTree", {"root": ROOT, "name": p("svc", "moving")})
    first = await client.next(sid)
    assert tree_from_mesh(first["msg"]["tree"]) == ("neg",)  # no file "moving"
    await namerd.put_dtab(f"{BASE};/svc/moving=>/#/io.l5d.fs/web2")
    second = await client.next(sid, 2)
    assert tree_from_mesh(second["msg"]["tree"]) == ("leaf", "/#/io.l5d.fs/web2", "/")
    # The router's own dtab travels in the request and is appended to the namespace's.
    local = {"dentries": [{"prefix": {"elems": [{"label": base64.b64encode(b"svc").decode()},
                                                {"label": base64.b64encode(b"moving").decode()}]},
                           "dst": {"leaf": {"id": p("#", "io.l5d.fs", "canary")}}}]}
    got = await client.unary("Interpreter.GetBoundTree", {"root": ROOT, "name": p("svc", "moving"), "dtab": local})
    assert tree_from_mesh(got["msg"]["tree"]) == ("leaf", "/#/io.l5d.fs/canary", "/")
    client.cancel(sid)


@pytest.mark.parametrize("id", ["/#/io.l5d.fs/web", "/#/io.l5d.fs/web2", "/#/io.l5d.fs/missing",
                                "/$/inet/127.0.0.1/9999", "/%/io.l5d.port/4141/#/io.l5d.fs/web"])
async def test_replicas_match_the_http_controller(client, namerd, id):
    http = await asyncio.to_thread(get_json, namerd, "/api/1/addr/default", path=id)
    labels = id.strip("/").split("/")
    got = await client.unary("Resolver.GetReplicas", {"id": p(*labels)})
    assert got["end"] == "OK", got
    assert addrs_from_mesh(got["msg"]) == addrs_from_http(http)
    sid = client.stream("Resolver.StreamReplicas", {"id": p(*labels)})
    assert addrs_from_mesh((await client.next(sid))["msg"]) == addrs_from_http(http)
    client.cancel(sid)


async def test_replica_stream_follows_address_changes(client, namerd):
    write_fs(namerd.disco, "flappy", ("127.0.0.1", 7001))
    sid = client.stream("Resolver.StreamReplicas", {"id": p("#", "io.l5d.fs", "flappy")})
    assert addrs_from_mesh((await client.next(sid))["msg"]) == [("127.0.0.1", 7001)]
    write_fs(namerd.disco, "flappy", ("127.0.0.1", 7001), ("127.0.0.2", 7002))
    assert addrs_from_mesh((await client.next(sid, 3))["msg"]) == [("127.0.0.1", 7001), ("127.0.0.2", 7002)]
    client.cancel(sid)
    got = await client.unary("Resolver.GetReplicas", {})
    assert got["msg"] == {"failed": {"message": "No ID provided"}}


async def test_dtab_get_and_stream_match_the_http_controller(client, namerd):
    await namerd.put_dtab(BASE)
    with urllib.request.urlopen(f"{namerd.url}/api/1/dtabs/default", timeout=5) as r:
        etag, http = r.headers["ETag"], json.loads(r.read())
    got = await client.unary("Delegator.GetDtab", {"root": ROOT})
    assert got["msg"]["dtab"]["version"]["id"] == etag  # both base64 of the store's version
    dentries = got["msg"]["dtab"]["dtab"]["dentries"]
    mesh = [{"prefix": show({"elems": [e["label"] for e in d["prefix"]["elems"]]}),
             "dst": show(d["dst"]["leaf"]["id"])} for d in dentries]
    assert mesh == http
    sid = client.stream("Delegator.StreamDtab", {"root": ROOT})
    assert (await client.next(sid))["msg"]["dtab"]["version"]["id"] == etag
    await namerd.put_dtab(f"{BASE};/svc/x=>/#/io.l5d.fs/web")
    nxt = await client.next(sid, 2)
    assert len(nxt["msg"]["dtab"]["dtab"]["dentries"]) == 2 and nxt["msg"]["dtab"]["version"]["id"] != etag
    client.cancel(sid)
    missing = await client.unary("Delegator.GetDtab", {"root": p("nosuchns")})
    assert missing["end"] == "NOT_FOUND" and missing["details"] == "Root not found"


def delegate_from_mesh(doc: dict) -> dict:
    """BoundDelegateTree JSON -> namerd's delegate JSON shape (for comparing)."""
    out: dict = {"path": show(doc.get("path", {}))}
    d = doc.get("dentry")
    if d and not (len(d["prefix"]["elems"]) == 1 and base64.b64decode(d["prefix"]["elems"][0]["label"]) == b"/"):
        prefix = "/" + "/".join(base64.b64decode(e["label"]).decode() if "label" in e else "*"
                                for e in d["prefix"]["elems"])
        out["dentry"] = {"prefix": prefix}
    for k in ("delegate", "alt", "union", "leaf", "neg", "fail", "empty", "exception"):
        if k in doc:
            out["type"] = k
            if k == "delegate":
                out["delegate"] = delegate_from_mesh(doc[k])
            elif k == "alt":
                out["alt"] = [delegate_from_mesh(t) for t in doc[k].get("trees", [])]
            elif k == "union":
                out["union"] = [delegate_from_mesh(w["tree"]) for w in doc[k].get("trees", [])]
            elif k == "leaf":
                out["bound"] = show(doc[k]["id"])
    return out


def delegate_from_http(doc: dict) -> dict:
    out: dict = {"path": doc["path"] if doc["path"] not in ("~", "!", "$") else "/"}
    if "dentry" in doc:
        out["dentry"] = {"prefix": doc["dentry"]["prefix"]}
    t = doc["type"]
    out["type"] = t
    if t == "delegate":
        out["delegate"] = delegate_from_http(doc["delegate"])
    elif t == "alt":
        out["alt"] = [delegate_from_http(x) for x in doc["alt"]]
    elif t == "union":
        out["union"] = [delegate_from_http(w["tree"]) for w in doc["union"]]
    elif t == "leaf":
        out["bound"] = doc["bound"]["id"]
    return out


@pytest.mark.parametrize("name", ["/svc/web", "/svc/split", "/svc/alt", "/nothing"])
async def test_delegation_matches_the_http_controller(client, namerd, name):
    await namerd.put_dtab(SAMPLE_DTAB)
    http = await asyncio.to_thread(get_json, namerd, "/api/1/delegate/default", path=name)
    labels = name.strip("/").split("/")
    req = {"root": ROOT, "tree": {"leaf": {"id": p(*labels)}}}
    got = await client.unary("Delegator.GetDelegateTree", req)
    assert got["end"] == "OK", got
    assert delegate_from_mesh(got["msg"]["tree"]) == delegate_from_http(http)
    sid = client.stream("Delegator.StreamDelegateTree", req)
    assert delegate_from_mesh((await client.next(sid))["msg"]["tree"]) == delegate_from_http(http)
    assert (await client.next(sid))["end"] == "OK"  # the deprecated stream sends one answer


async def test_codec_methods(client):
    r = await client.unary("Codec.ReadDtab", {"text": "/a => /b | ~; /c/* => 2*/d & /e"})
    shown = await client.unary("Codec.ShowDtab", {"dtab": r["msg"]["dtab"]})
    assert shown["msg"]["text"] == "/a=>/b | ~;/c/*=>2.00*/d & /e"
    r = await client.unary("Codec.ReadPath", {"text": "/a/b\\x2fc"})
    assert [base64.b64decode(e) for e in r["msg"]["path"]["elems"]] == [b"a", b"b/c"]
    assert (await client.unary("Codec.ShowPath", {"path": r["msg"]["path"]}))["msg"]["text"] == "/a/\\x62\\x2f\\x63"  # Finagle escapes every byte of such a label
    bad = await client.unary("Codec.ReadDtab", {"text": "/a =>"})
    assert bad["end"] == "INVALID_ARGUMENT" and bad["details"]


async def test_argument_errors_are_linkerds(client):
    r = await client.unary("Interpreter.GetBoundTree", {"name": p("svc", "web")})
    assert (r["end"], r["details"]) == ("INVALID_ARGUMENT", "No namespace specified")
    r = await client.unary("Interpreter.GetBoundTree", {"root": ROOT})
    assert (r["end"], r["details"]) == ("NOT_FOUND", "No name given")
    r = await client.unary("Interpreter.GetBoundTree", {"root": p("a", "b"), "name": p("svc")})
    assert r["end"] == "INVALID_ARGUMENT" and "exactly one segment" in r["details"]
    r = await client.unary("Interpreter.GetBoundTree", {"root": p("../x"), "name": p("svc")})
    assert r["end"] == "INVALID_ARGUMENT"


async def _namerd_still_serves(client: GrpcioClient) -> None:
    ok = await client.unary("Interpreter.GetBoundTree", {"root": ROOT, "name": p("svc", "web")})
    assert ok["end"] == "OK", ok


async def test_attack_malformed_message(client, namerd):
    r = await client.raw("/io.linkerd.mesh.Interpreter/GetBoundTree", b"\x0a\xff\xff\xff\xff\x0f")
    assert r["end"] == "INTERNAL" and "error parsing request proto" in r["details"], r
    await _namerd_still_serves(client)
    assert "error parsing request proto" in namerd.log()


async def test_attack_unknown_method(client, namerd):
    r = await client.raw("/io.linkerd.mesh.Interpreter/Nope", b"")
    assert r["end"] == "UNIMPLEMENTED", r
    r = await client.raw("/no.such.Service/Get", b"")
    assert r["end"] == "UNIMPLEMENTED", r
    await _namerd_still_serves(client)
    assert "no method /no.such.Service/Get" in namerd.log() or "no method /io.linkerd.mesh.Interpreter/Nope" in namerd.log()


async def test_attack_oversized_message(client, namerd):
    big = b"\x12" + b"\xff\xff\x7f" + b"\x0a\x01a" * 700_000  # a name of 2 MB (limit: 1 MiB)
    r = await client.raw("/io.linkerd.mesh.Interpreter/GetBoundTree", big, timeout=20)
    assert r["end"] == "RESOURCE_EXHAUSTED" and "larger than the limit" in r["details"], r
    await _namerd_still_serves(client)


def _h2_request_like_linkerd(port: int, path: str, body: bytes) -> tuple[dict, list[bytes], dict]:
    """One gRPC call shaped as Linkerd 1's runtime sends it: content-type
    application/grpc+proto, empty :authority, and no ``te`` header."""
    import h2.connection
    import h2.events

    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", ""),
                          ("content-type", "application/grpc+proto")])
    conn.send_data(1, struct.pack(">?I", False, len(body)) + body, end_stream=True)
    s.sendall(conn.data_to_send())
    headers: dict = {}
    trailers: dict = {}
    data = b""
    done = False
    while not done:
        chunk = s.recv(65536)
        if not chunk:
            break
        for ev in conn.receive_data(chunk):
            if isinstance(ev, h2.events.ResponseReceived):
                headers = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h2.events.DataReceived):
                data += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        s.sendall(conn.data_to_send())
    s.close()
    msgs = []
    while data:
        (_, n), data = struct.unpack(">?I", data[:5]), data[5:]
        msgs.append(data[:n])
        data = data[n:]
    return headers, msgs, trailers


async def test_a_request_without_te_header_as_linkerd_sends_it(namerd):
    # BindReq{root: /default, name: /svc/web}, hand-encoded (field 1 and 2: Path{elems})
    body = b"\x0a\x09\x0a\x07default" + b"\x12\x0a\x0a\x03svc\x0a\x03web"
    headers, msgs, trailers = await asyncio.to_thread(
        _h2_request_like_linkerd, namerd.mesh, "/io.linkerd.mesh.Interpreter/GetBoundTree", body)
    assert headers.get(":status") == "200", headers
    assert trailers.get("grpc-status") == "0", trailers
    assert len(msgs) == 1 and b"io.l5d.fs" in msgs[0] and b"web" in msgs[0]
