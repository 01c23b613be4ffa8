"""`namerd config.yaml` (the issue's seed config on a real ZooKeeper) and the
`namerd dtab` client CLI against a real namerd."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from namerd.storage.memory import InMemoryDtabStore
from namerouter.dtab import Dtab
from tests.namerd_support import start_namerd
from tests.support.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def run_cli(*args, stdin: bytes = b"", env=None):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "namerd", *args, cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    return proc.returncode, out.decode(), err.decode()


SEED = """\
admin:
  port: {admin}
storage:
  kind: io.l5d.zk
  zkAddrs:
  - host: 127.0.0.1
    port: {zk}
  pathPrefix: {prefix}
  sessionTimeoutMs: 100000000
namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: 127.0.0.1
    port: {zk}
interfaces:
- kind: io.l5d.httpController
  port: {api}
  ip: 0.0.0.0
- kind: io.l5d.thriftNameInterpreter
  port: {thrift}
"""


async def test_seed_config_runs_with_thrift_interface_admin_and_api(zk_server, tmp_path):
    admin, api, thrift = free_port(), free_port(), free_port()
    cfg = tmp_path / "namerd.yaml"
    cfg.write_text(SEED.format(admin=admin, api=api, zk=zk_server.port, prefix=f"/dtabs-{api}", thrift=thrift))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "namerd", str(cfg), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = []
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "namerd exited: " + "".join(lines)
            lines.append(line)
            if line.startswith("namerd ready"):
                break
        assert not [l for l in lines if "warning" in l], lines
        assert any(f"io.l5d.thriftNameInterpreter listening on 0.0.0.0:{thrift}" in l or
                   f"io.l5d.thriftNameInterpreter listening on 127.0.0.1:{thrift}" in l for l in lines), lines
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{admin}/admin/ping") as r:
                assert await r.text() == "pong"
            async with http.put(f"http://127.0.0.1:{api}/api/1/dtabs/default", data="/svc=>/#/io.l5d.serversets/discovery",
                                headers={"Content-Type": "application/dtab"}) as r:
                assert r.status == 204
            async with http.get(f"http://127.0.0.1:{api}/api/1/dtabs/default") as r:
                assert r.headers["ETag"] == "AAAAAA=="  # znode stat.version 0
                assert await r.json() == [{"prefix": "/svc", "dst": "/#/io.l5d.serversets/discovery"}]
            async with http.get(f"http://127.0.0.1:{admin}/admin/metrics.json") as r:
                m = await r.json()
                assert m["namerd/http/status/204"] == 1
                assert "namerd/http/streams" in m and "namerd/storage/observed_namespaces" in m
            async with http.get(f"http://127.0.0.1:{admin}/admin/metrics/prometheus") as r:
                assert r.status == 200 and "namerd" in await r.text()
            async with http.get(f"http://127.0.0.1:{admin}/config.json") as r:
                assert (await r.json())["storage"]["kind"] == "io.l5d.zk"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
    assert rc == 0


async def test_bad_config_lists_every_error_and_exits_2(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("admin:\n  port: abc\nstorage:\n  kind: io.l5d.inMemry\ninterfaces:\n"
                   "- kind: io.l5d.httpController\n  ipp: 1\n")
    rc, out, err = await run_cli(str(cfg))
    assert rc == 2
    assert "admin.port: expected an integer 0-65535, got 'abc' (line 2)" in err
    assert "did you mean 'io.l5d.inMemory'" in err
    assert "interfaces[0].ipp: unknown key; did you mean 'ip'?" in err
    cfg.write_text("storage:\n  kind: io.l5d.inMemory\n  namespaces:\n    default: /svc=>\n"
                   "interfaces:\n- kind: io.l5d.httpController\n")
    rc, out, err = await run_cli(str(cfg))
    assert rc == 2 and "storage.namespaces.default: namespace default:1:7" in err


async def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "n.yaml"
        cfg.write_text(f"admin:\n  port: {free_port()}\nstorage:\n  kind: io.l5d.inMemory\n"
                       f"interfaces:\n- kind: io.l5d.httpController\n  port: {port}\n")
        rc, out, err = await run_cli(str(cfg))
    assert rc == 1 and "cannot listen" in err


# --- namerd dtab ------------------------------------------------------------------------

@pytest.fixture
async def namerd():
    n = await start_namerd(InMemoryDtabStore({"default": Dtab.read("/svc=>/#/io.l5d.fs")}))
    yield n
    await n.close()


async def test_list_get_create_delete(namerd, tmp_path):
    env = {"NAMERD_URL": namerd.url}
    rc, out, _ = await run_cli("dtab", "list", env=env)
    assert (rc, out) == (0, "default\n")
    rc, out, _ = await run_cli("dtab", "get", "default", "--namerd", namerd.url)
    assert rc == 0
    assert out == "# namespace: default\n# version: AAAAAAAAAAE=\n/svc => /#/io.l5d.fs;\n"
    f = tmp_path / "prod.dtab"
    f.write_text("# production\n/svc => /#/io.l5d.fs/prod;\n/svc/web => /$/inet/127.1/8080;\n")
    rc, out, _ = await run_cli("dtab", "create", "prod", str(f), env=env)
    assert (rc, out) == (0, "created prod\n")
    rc, _, err = await run_cli("dtab", "create", "prod", str(f), env=env)
    assert rc == 1 and "already exists" in err
    rc, out, _ = await run_cli("dtab", "create", "stdin", "-", stdin=b"/a=>/b", env=env)
    assert rc == 0
    assert (await namerd.store.get("stdin")).dtab == Dtab.read("/a=>/b")
    rc, out, _ = await run_cli("dtab", "delete", "stdin", env=env)
    assert (rc, out) == (0, "deleted stdin\n")
    rc, _, err = await run_cli("dtab", "delete", "stdin", env=env)
    assert rc == 1 and "does not exist" in err


async def test_two_operators_cannot_overwrite_each_other(namerd, tmp_path):
    env = {"NAMERD_URL": namerd.url}
    # Both operators fetch the dtab, edit their copy, and push.
    _, alice, _ = await run_cli("dtab", "get", "default", env=env)
    _, bob, _ = await run_cli("dtab", "get", "default", env=env)
    (tmp_path / "alice").write_text(alice + "/svc/web => /#/io.l5d.fs/web-v2;\n")
    (tmp_path / "bob").write_text(bob + "/svc/api => /#/io.l5d.fs/api-v2;\n")
    rc, out, _ = await run_cli("dtab", "update", "default", str(tmp_path / "alice"), env=env)
    assert (rc, out) == (0, "updated default\n")
    rc, out, err = await run_cli("dtab", "update", "default", str(tmp_path / "bob"), env=env)
    assert rc == 1
    assert "changed by someone else" in err and "AAAAAAAAAAE=" in err and "AAAAAAAAAAI=" in err
    assert (await namerd.store.get("default")).dtab == Dtab.read(
        "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web-v2")
    # An explicit --version works the same way.
    rc, _, err = await run_cli("dtab", "update", "default", str(tmp_path / "bob"), "--version", "AAAAAAAAAAE=", env=env)
    assert rc == 1 and "changed by someone else" in err


async def test_syntax_errors_are_reported_with_line_and_column_before_sending(namerd, tmp_path):
    f = tmp_path / "broken.dtab"
    f.write_text("/svc => /a;\n/web => ;\n")
    rc, out, err = await run_cli("dtab", "apply", "default", str(f), "--namerd", namerd.url)
    assert rc == 2
    assert err.startswith(f"{f}:2:9: simple expected but ';' found")
    assert (await namerd.store.get("default")).dtab == Dtab.read("/svc=>/#/io.l5d.fs")


async def test_apply_creates_then_updates(namerd, tmp_path):
    env = {"NAMERD_URL": namerd.url}
    f = tmp_path / "x.dtab"
    f.write_text("/a=>/b;")
    assert (await run_cli("dtab", "apply", "new", str(f), env=env))[:2] == (0, "created new\n")
    f.write_text("/a=>/c;")
    assert (await run_cli("dtab", "apply", "new", str(f), env=env))[:2] == (0, "updated new\n")
    assert (await namerd.store.get("new")).dtab == Dtab.read("/a=>/c")


async def test_dry_run_shows_binding_changes_and_writes_nothing(namerd, tmp_path):
    f = tmp_path / "next.dtab"
    f.write_text("/svc => /#/io.l5d.fs;\n/svc/web => /$/inet/127.0.0.1/9000;\n")
    rc, out, err = await run_cli("dtab", "update", "default", str(f), "--dry-run",
                                 "--names", "/svc/web,/svc/api", "--namerd", namerd.url)
    assert rc == 0, err
    assert "nothing written" in out
    lines = {l.split(":")[0].strip(): l for l in out.splitlines()[1:]}
    assert "CHANGED" in lines["/svc/web"] and "/$/inet/127.0.0.1/9000" in lines["/svc/web"]
    assert "unchanged" in lines["/svc/api"]
    assert (await namerd.store.get("default")).version == (1).to_bytes(8, "big")


async def test_unreachable_namerd_is_a_clear_error():
    rc, _, err = await run_cli("dtab", "list", "--namerd", f"http://127.0.0.1:{free_port()}")
    assert rc == 1 and "cannot reach namerd" in err


async def test_without_storage_namerd_uses_the_file_store_and_says_so(tmp_path):
    api = free_port()
    cfg = f"admin:\n  port: {free_port()}\ninterfaces:\n- kind: io.l5d.httpController\n  port: {api}\n"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "namerd", "-", cwd=str(tmp_path),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(cfg.encode())
    proc.stdin.close()
    try:
        lines = []
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "namerd exited: " + "".join(lines)
            lines.append(line)
            if line.startswith("namerd ready"):
                break
        assert any("io.namerouter.file" in l and l.startswith("warning: storage") for l in lines)
        rc, out, err = await run_cli("dtab", "create", "default", "-", stdin=b"/svc=>/a",
                                     env={"NAMERD_URL": f"http://127.0.0.1:{api}"})
        assert rc == 0, err
        assert "/svc=>/a" in (tmp_path / "namerd-dtabs.json").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
