"""namerd's io.l5d.destination interface (Linkerd 2's Destination.Get) through an
independent grpcio client generated from our .proto files at test time."""
from __future__ import annotations

import socket
import struct

import pytest

from tests.support.grpcio_client import GrpcioClient, gen_dir  # noqa: F401 (fixture)
from tests.support.namerd_proc import running_namerd, write_fs


@pytest.fixture(scope="module")
def namerd(tmp_path_factory):
    yield from running_namerd(tmp_path_factory, "namerd-dest", {"web": [("127.0.0.1", 8081)]},
                              "/svc=>/#/io.l5d.fs;/svc/both=>/#/io.l5d.fs/web & /#/io.l5d.fs/other")


@pytest.fixture
async def client(gen_dir, namerd):
    async with GrpcioClient(gen_dir, f"127.0.0.1:{namerd.destination}") as c:
        yield c


def addrs(update: dict) -> list[tuple[str, int]]:
    (kind, body), = update.items()
    items = body.get("addrs", [])
    tcps = [a["addr"] if kind == "add" else a for a in items]
    return sorted((socket.inet_ntoa(struct.pack(">I", t["ip"]["ipv4"])), t["port"]) for t in tcps)


async def test_get_streams_the_full_set_then_differences(client, namerd):
    sid = client.stream("Destination.Get", {"scheme": "k8s", "path": "web.default.svc.cluster.local:8081"})
    first = (await client.next(sid))["msg"]
    assert "add" in first and addrs(first) == [("127.0.0.1", 8081)]
    assert first["add"]["addrs"][0]["weight"] == 10000
    write_fs(namerd.disco, "web", ("127.0.0.1", 8081), ("127.0.0.2", 8082))
    nxt = (await client.next(sid, 3))["msg"]
    assert "add" in nxt and addrs(nxt) == [("127.0.0.2", 8082)]
    write_fs(namerd.disco, "web", ("127.0.0.2", 8082))
    rm = (await client.next(sid, 3))["msg"]
    assert "remove" in rm and addrs(rm) == [("127.0.0.1", 8081)]
    client.cancel(sid)


async def test_union_leaves_are_merged_and_unknown_names_say_so(client, namerd):
    write_fs(namerd.disco, "web", ("127.0.0.1", 8081))
    write_fs(namerd.disco, "other", ("127.0.0.9", 9000))
    sid = client.stream("Destination.Get", {"scheme": "k8s", "path": "both.prod.svc.cluster.local"})
    assert addrs((await client.next(sid))["msg"]) == [("127.0.0.1", 8081), ("127.0.0.9", 9000)]
    client.cancel(sid)
    sid = client.stream("Destination.Get", {"scheme": "k8s", "path": "nosuch.default.svc.cluster.local:80"})
    assert (await client.next(sid))["msg"] == {"no_endpoints": {}}  # exists: false (proto3 default omitted)
    client.cancel(sid)


async def test_bad_requests(client):
    sid = client.stream("Destination.Get", {"scheme": "dns", "path": "web.default:80"})
    end = await client.next(sid)
    assert end["end"] == "UNIMPLEMENTED" and "Unknown scheme" in end["details"]
    sid = client.stream("Destination.Get", {"scheme": "k8s", "path": ""})
    assert (await client.next(sid))["end"] == "UNIMPLEMENTED"
