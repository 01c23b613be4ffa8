"""Behaviours Linkerd 1's own tests assert (issue 15, "Behaviours to fix"), end to end:
real router processes or servers, real backends, curl and raw sockets.

- clearContext hides internals (HttpEndToEndTest "clearContext will remove linkerd
  error headers and body"): status only to the client, the explanation in the log and on
  the admin server's recent requests.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.support.backends import Backend, RawClient, get
from tests.support.ports import free_port
from tests.test_run_seed import RouterProcess, curl


def _router_config(tmp_path: Path, admin: int, dtab: str, servers: str, extra: str = "") -> Path:
    p = tmp_path / "router.yaml"
    p.write_text(f"""admin:
  ip: 127.0.0.1
  port: {admin}
telemetry:
- kind: io.l5d.recentRequests
  sampleRate: 1.0
routers:
- protocol: http
  label: parity
  dtab: {dtab}
{extra}  servers:
{servers}""")
    return p


@pytest.fixture
async def clear_router(tmp_path):
    """A router process with two servers: one with clearContext, one without."""
    admin, hidden, plain = free_port(), free_port(), free_port()
    dead = free_port()  # nothing listens there
    cfg = _router_config(tmp_path, admin, f"/svc/down => /$/inet/127.1/{dead}", f"""  - port: {hidden}
    ip: 127.0.0.1
    clearContext: true
  - port: {plain}
    ip: 127.0.0.1
""")
    rp = RouterProcess(cfg, admin)
    await rp.start()
    try:
        yield rp, admin, hidden, plain
    finally:
        await rp.stop()


async def test_clear_context_answers_router_errors_with_the_status_only(clear_router):
    rp, admin, hidden, plain = clear_router
    # no route, and a backend that refuses connections: 502 with nothing else to read
    for host in ("ghost", "down"):
        code, out = await curl("-i", "-H", f"Host: {host}", f"http://127.0.0.1:{hidden}/x")
        assert code == 0, out
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        assert head.startswith("HTTP/1.1 502"), out
        assert "l5d-" not in head.lower(), head
        assert body == "\n502", out  # an empty body (curl -w appends the status)
    # a malformed request is refused the same way
    async with RawClient(hidden) as c:
        await c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        r = await c.read_response()
        assert r.status == 400 and r.body == b"" and r.header("l5d-err") is None
    # the same router's other server still explains
    code, out = await curl("-i", "-H", "Host: ghost", f"http://127.0.0.1:{plain}/x")
    assert "l5d-err: " in out and "/svc/ghost" in out.split("\r\n\r\n", 1)[1], out
    code, out = await curl("-i", "-H", "Host: down", f"http://127.0.0.1:{plain}/x")
    assert "l5d-retryable: true" in out, out
    # the admin server has the explanation of the hidden answers
    code, out = await curl(f"http://127.0.0.1:{admin}/requests.json")
    rows = json.loads(out.rsplit("\n", 1)[0])
    hidden_rows = [r for r in rows if str(r.get("server", "")).endswith(str(hidden))]
    errors = " ".join(str(r["error"]) for r in (hidden_rows or rows))
    assert "/svc/ghost" in errors and "down" in errors, rows
    # and so does the log
    await rp.stop()
    err = (await rp.proc.stderr.read()).decode()
    assert "without explanation (clearContext)" in err and "/svc/ghost" in err, err


async def test_clear_context_drops_the_routers_classification_headers(tmp_path):
    async with Backend("a") as a:
        admin, port = free_port(), free_port()
        cfg = _router_config(tmp_path, admin, f"/svc/a => /$/inet/127.1/{a.port}", f"""  - port: {port}
    ip: 127.0.0.1
    clearContext: true
""", extra="""  service:
    responseClassifier:
      kind: io.l5d.http.retryableRead5XX
""")
        rp = RouterProcess(cfg, admin)
        await rp.start()
        try:
            code, out = await curl("-i", "-H", "Host: a", f"http://127.0.0.1:{port}/status/503")
            assert out.startswith("HTTP/1.1 503"), out
            assert "l5d-" not in out.lower(), out
        finally:
            await rp.stop()
