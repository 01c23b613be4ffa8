"""The committed *_pb2.py modules of namerouter/mesh (and their *_pb2.pyi type stubs) are
what grpcio-tools makes of our .proto files today (run ``make protos`` after editing a
.proto), and they carry the wire facts of Linkerd 1.7's API: packages, services, methods,
field numbers and types."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

from google.protobuf import descriptor_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ["codec", "dtab", "interpreter", "resolver", "delegator", "linkerd2.net", "linkerd2.destination"]


def _without_json_names(f: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc's descriptor sets carry json_name; the generated modules leave it out."""
    def strip(msgs):
        for msg in msgs:
            for fld in msg.field:
                fld.ClearField("json_name")
            strip(msg.nested_type)

    strip(f.message_type)
    return f


def test_generated_modules_match_the_proto_files(tmp_path):
    protos = [f"namerouter/mesh/{n.replace('.', '/')}.proto" for n in MODULES]
    out = tmp_path / "fds.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}", f"--descriptor_set_out={out}", *protos],
                   check=True, cwd=ROOT)
    fresh = {f.name: _without_json_names(f) for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    for n in MODULES:
        mod = importlib.import_module(f"namerouter.mesh.{n}_pb2")
        committed = descriptor_pb2.FileDescriptorProto.FromString(mod.DESCRIPTOR.serialized_pb)
        assert committed == fresh[committed.name], f"{n}_pb2.py is stale: run `make protos`"


def test_committed_type_stubs_match_the_proto_files(tmp_path):
    """The *_pb2.pyi stubs mypy reads (make test type-checks the code using them)."""
    protos = [f"namerouter/mesh/{n.replace('.', '/')}.proto" for n in MODULES]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}", f"--pyi_out={tmp_path}", *protos],
                   check=True, cwd=ROOT)
    for n in MODULES:
        rel = f"namerouter/mesh/{n.replace('.', '/')}_pb2.pyi"
        with open(os.path.join(ROOT, rel)) as committed:
            assert committed.read() == (tmp_path / rel).read_text(), f"{rel} is stale: run `make protos`"


def test_wire_facts():
    from namerouter.mesh import delegator_pb2, interpreter_pb2, resolver_pb2
    from namerouter.mesh.linkerd2 import destination_pb2

    def methods(mod, svc):
        s = mod.DESCRIPTOR.services_by_name[svc]
        return s.full_name, {m.name: (m.input_type.full_name, m.output_type.full_name, m.server_streaming)
                             for m in s.methods}

    assert methods(interpreter_pb2, "Interpreter") == ("io.linkerd.mesh.Interpreter", {
        "GetBoundTree": ("io.linkerd.mesh.BindReq", "io.linkerd.mesh.BoundTreeRsp", False),
        "StreamBoundTree": ("io.linkerd.mesh.BindReq", "io.linkerd.mesh.BoundTreeRsp", True)})
    assert methods(resolver_pb2, "Resolver")[1]["StreamReplicas"] == \
        ("io.linkerd.mesh.ReplicasReq", "io.linkerd.mesh.Replicas", True)
    assert set(methods(delegator_pb2, "Delegator")[1]) == {"GetDtab", "StreamDtab", "GetDelegateTree",
                                                             "StreamDelegateTree"}
    assert methods(destination_pb2, "Destination") == ("io.linkerd.proxy.destination.Destination", {
        "Get": ("io.linkerd.proxy.destination.GetDestination", "io.linkerd.proxy.destination.Update", True)})
    ep = resolver_pb2.Endpoint.DESCRIPTOR.fields_by_name
    assert [(f, ep[f].number) for f in ("inet_af", "address", "port", "meta", "metadata")] == \
        [("inet_af", 1), ("address", 2), ("port", 3), ("meta", 4), ("metadata", 5)]
    # Linkerd's decoder needs the weight present even when it is 0.0: it is written.
    w = interpreter_pb2.BoundNameTree.Union.Weighted(weight=0.0)
    assert w.SerializeToString() == b"\x09" + b"\x00" * 8
    # ...and an endpoint's family even for INET4 (= 0).
    assert resolver_pb2.Endpoint(inet_af=0).SerializeToString() == b"\x08\x00"
