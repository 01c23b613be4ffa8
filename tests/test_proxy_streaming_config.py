"""``streamAfterContentLengthKB`` does what namerouter/proxy/config.py says: it loads from a
Linkerd config; with streaming (the default) bodies are streamed with their framing kept
(Content-Length stays Content-Length, small or large; chunked stays chunked) and nothing
is logged about it. ``streamingEnabled: false`` is tests/test_streaming_disabled.py."""
from __future__ import annotations

import hashlib
import json
import logging

from namerouter.config.schema import loads_linker
from namerouter.linker import Linker
from tests.support.backends import Backend, curl
from tests.support.ports import free_port


def config(router_port: int, admin_port: int, backend_port: int, streaming: bool) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: {admin_port}}}
routers:
- protocol: http
  label: outgoing
  dtab: /svc => /$/inet/127.1/{backend_port};
  streamingEnabled: {str(streaming).lower()}
  streamAfterContentLengthKB: 1
  servers:
  - {{port: {router_port}, ip: 127.0.0.1}}
"""


def _header(got: dict, name: str) -> list[str]:
    return [v for k, v in got["headers"] if k.lower() == name]


async def _post(port: int, body: bytes, *extra: str) -> dict:
    import os
    import tempfile

    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(body)
    try:
        code, out, err = await curl("-H", "Host: web", *extra, "--data-binary", f"@{f.name}",
                                    f"http://127.0.0.1:{port}/echo")
    finally:
        os.unlink(f.name)
    assert code == 0, err
    return json.loads(out)


async def test_framing_is_kept_when_streaming(caplog):
    for streaming in (True,):
        router_port, admin_port = free_port(), free_port()
        async with Backend("web") as b:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="namerouter.proxy"):
                linker = Linker(loads_linker(config(router_port, admin_port, b.port, streaming)))
                await linker.start()
            try:
                warned = [r.getMessage() for r in caplog.records if "streamingEnabled" in r.getMessage()]
                assert warned == []
                # below and above streamAfterContentLengthKB (1 KB): Content-Length kept
                for size in (100, 200_000):
                    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                    got = await _post(router_port, body)
                    assert _header(got, "content-length") == [str(size)]
                    assert _header(got, "transfer-encoding") == []
                    assert (got["body_len"], got["sha256"]) == (size, hashlib.sha256(body).hexdigest())
                # chunked stays chunked
                body = b"c" * 5000
                got = await _post(router_port, body, "-H", "Transfer-Encoding: chunked")
                assert _header(got, "transfer-encoding") == ["chunked"]
                assert _header(got, "content-length") == []
                assert (got["body_len"], got["sha256"]) == (5000, hashlib.sha256(body).hexdigest())
            finally:
                await linker.close()
