"""An independent gRPC client for namerd's io.l5d.mesh and io.l5d.destination interfaces.

It is grpcio (the reference implementation, C core) with stubs that grpcio-tools
generates at test time from our ``.proto`` files — nothing of namerouter's own gRPC or
protobuf code. It runs in a subprocess (the generated modules would clash with
namerouter's in the test process) and is driven by JSON lines:

  in : {"op": "unary"|"stream"|"raw"|"cancel", "id": .., "method": "Interpreter.GetBoundTree",
        "req": {...protobuf JSON...} | "hex": "..."}
  out: {"id": .., "msg": {...}} per message, then {"id": .., "end": "OK"|<status>, "details": ".."}

``GrpcioClient`` is the asyncio side used by the tests.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from typing import Any, Optional

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIRS = ["namerouter/mesh", "namerouter/mesh/linkerd2"]


def generate(dest: str) -> str:
    """Compile the .proto files into ``dest`` with grpcio-tools (python + grpc stubs)."""
    src = os.path.join(dest, "src")
    files = []
    for d in PROTO_DIRS:
        os.makedirs(os.path.join(src, d), exist_ok=True)
        os.makedirs(os.path.join(dest, d), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(ROOT, d))):
            if f.endswith(".proto"):
                shutil.copy(os.path.join(ROOT, d, f), os.path.join(src, d, f))
                files.append(f"{d}/{f}")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"--python_out={dest}",
                    f"--grpc_python_out={dest}", *files], check=True, cwd=src)
    for d in ["namerouter"] + PROTO_DIRS:
        open(os.path.join(dest, d, "__init__.py"), "a").close()
    return dest


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory: Any) -> str:
    """The generated stubs, once per test module (import this fixture)."""
    return generate(str(tmp_path_factory.mktemp("grpcio-gen")))


class GrpcioClient:
    """Async driver of the subprocess (one channel to ``target``)."""

    def __init__(self, gen_dir: str, target: str) -> None:
        self.gen_dir = gen_dir
        self.target = target
        self.proc: Optional[asyncio.subprocess.Process] = None
        self._queues: dict[str, asyncio.Queue] = {}
        self._reader: Optional[asyncio.Task] = None
        self._n = 0

    async def __aenter__(self) -> "GrpcioClient":
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), self.gen_dir, self.target,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd="/")
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            doc = json.loads(line)
            self._queues.setdefault(doc["id"], asyncio.Queue()).put_nowait(doc)

    def _send(self, doc: dict) -> str:
        self._n += 1
        doc["id"] = doc.get("id") or f"c{self._n}"
        self._queues.setdefault(doc["id"], asyncio.Queue())
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(doc) + "\n").encode())
        return doc["id"]

    async def next(self, id: str, timeout: float = 5.0) -> dict:
        return await asyncio.wait_for(self._queues[id].get(), timeout)

    async def unary(self, method: str, req: Optional[dict] = None, timeout: float = 10.0) -> dict:
        """{"msg": ...} then {"end": "OK"}, or {"end": <status>, "details": ...}; returns
        {"msg": m, "end": "OK"} or the error document."""
        id = self._send({"op": "unary", "method": method, "req": req or {}})
        first = await self.next(id, timeout)
        if "msg" in first:
            end = await self.next(id, timeout)
            return {**first, **end}
        return first

    async def raw(self, method: str, payload: bytes, timeout: float = 10.0) -> dict:
        id = self._send({"op": "raw", "method": method, "hex": payload.hex()})
        return await self.next(id, timeout)

    def stream(self, method: str, req: Optional[dict] = None) -> str:
        return self._send({"op": "stream", "method": method, "req": req or {}})

    def cancel(self, id: str) -> None:
        self._send({"op": "cancel", "id": id})


# -- the subprocess -------------------------------------------------------------------------------

def _main(gen_dir: str, target: str) -> None:  # pragma: no cover - runs in the subprocess
    sys.path.insert(0, gen_dir)
    import importlib

    import grpc
    from google.protobuf import json_format

    modules = {
        "io.linkerd.mesh": ["codec", "interpreter", "resolver", "delegator"],
        "io.linkerd.proxy.destination": ["linkerd2.destination"],
    }
    services: dict[str, tuple[Any, Any]] = {}  # "Interpreter" -> (pb2 module, pb2_grpc module)
    for names in modules.values():
        for n in names:
            pb2 = importlib.import_module(f"namerouter.mesh.{n}_pb2")
            grpc_mod = importlib.import_module(f"namerouter.mesh.{n}_pb2_grpc")
            for sname in pb2.DESCRIPTOR.services_by_name:
                services[sname] = (pb2, grpc_mod)
    channel = grpc.insecure_channel(target)
    out_lock = threading.Lock()
    calls: dict[str, Any] = {}

    def emit(doc: dict) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(doc) + "\n")
            sys.stdout.flush()

    def to_dict(msg: Any) -> dict:
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)

    def method_of(spec: str) -> tuple[Any, Any]:
        sname, mname = spec.split(".")
        pb2, grpc_mod = services[sname]
        stub = getattr(grpc_mod, f"{sname}Stub")(channel)
        from google.protobuf import message_factory

        m = pb2.DESCRIPTOR.services_by_name[sname].methods_by_name[mname]
        return getattr(stub, mname), message_factory.GetMessageClass(m.input_type)

    def run(doc: dict) -> None:
        id = doc["id"]
        try:
            if doc["op"] == "raw":  # method: a full path such as /io.linkerd.mesh.Interpreter/GetBoundTree
                call = channel.unary_unary(doc["method"], request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
                rsp = call(bytes.fromhex(doc["hex"]), timeout=10)
                emit({"id": id, "msg": {"raw": rsp.hex()}, "end": "OK"})
                return
            fn, req_cls = method_of(doc["method"])
            req = json_format.ParseDict(doc.get("req") or {}, req_cls())
            if doc["op"] == "unary":
                emit({"id": id, "msg": to_dict(fn(req, timeout=15))})
                emit({"id": id, "end": "OK"})
                return
            it = fn(req)
            calls[id] = it
            for msg in it:
                emit({"id": id, "msg": to_dict(msg)})
            emit({"id": id, "end": "OK"})
        except grpc.RpcError as e:
            emit({"id": id, "end": e.code().name, "details": e.details()})
        except Exception as e:
            emit({"id": id, "end": "CLIENT_ERROR", "details": f"{type(e).__name__}: {e}"})

    for line in sys.stdin:
        doc = json.loads(line)
        if doc["op"] == "cancel":
            c = calls.get(doc["id"])
            if c is not None:
                c.cancel()
            continue
        threading.Thread(target=run, args=(doc,), daemon=True).start()
    channel.close()


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1], sys.argv[2])
