"""The Python modules of echo.proto, generated with grpcio-tools on first use (into a
cache directory; nothing generated is committed): ``echo_pb2, echo_pb2_grpc = load()``."""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
from types import ModuleType

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "echo.proto")


def load() -> tuple[ModuleType, ModuleType]:
    with open(PROTO, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    out = os.path.join(tempfile.gettempdir(), f"namerouter-grpc-example-{digest}-{os.getuid()}")
    if not os.path.exists(os.path.join(out, "echo_pb2_grpc.py")):
        from grpc_tools import protoc

        tmp = tempfile.mkdtemp(prefix="echo-gen-", dir=os.path.dirname(out))
        rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={tmp}", f"--grpc_python_out={tmp}", PROTO])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTO} ({rc})")
        try:
            os.rename(tmp, out)
        except OSError:  # another process generated it meanwhile
            pass
    if out not in sys.path:
        sys.path.insert(0, out)
    return importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc")
