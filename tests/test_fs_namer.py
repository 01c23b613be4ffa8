"""io.l5d.fs namer with real files on disk: format, errors, nesting, live changes."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from namerouter.dtab import Path
from namerouter.dtab.tree import NEG, Leaf
from namerouter.namers.fs import FsConfig, FsNamer, MalformedAddress, parse_addresses
from namerouter.naming.addr import ADDR_NEG, ADDR_PENDING, WEIGHT_KEY, AddrBound, AddrFailed, Address
from namerouter.naming.var import Ok


@pytest.fixture
async def fs(tmp_path):
    n = FsNamer(tmp_path)
    yield n
    await n.close()


async def bound(fs: FsNamer, name: str):
    """Look ``name`` up, observe it as a router would, return (tree, bound name or None)."""
    act = fs.lookup(Path.read(name))
    act.observe(lambda st: None)
    st = act.sample()
    assert isinstance(st, Ok)
    t = st.value
    return t, (t.value if isinstance(t, Leaf) else None)


async def settled(var, timeout=2.0):
    return await var.wait_for(lambda a: a is not ADDR_PENDING, timeout)


async def eventually(cond, timeout=2.0):
    """Wait until ``cond()`` holds (polled every 10 ms); fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_host_names_are_re_resolved_while_observed(tmp_path, monkeypatch):
    from namerouter.naming import dns

    calls = []
    real = dns.resolve

    async def counting(host):
        calls.append(host)
        return await real(host)

    monkeypatch.setattr(dns, "resolve", counting)
    (tmp_path / "web").write_text("localhost 8080\n")
    os.utime(tmp_path / "web", (time.time() - 10, time.time() - 10))  # not "fresh"
    fs = FsNamer(tmp_path, dns_refresh_s=0.1)
    try:
        act = fs.lookup(Path.read("/web"))
        sub = act.observe(lambda st: None)
        b = act.sample().value.value
        hold = b.addr.observe(lambda a: None)
        await eventually(lambda: len(calls) >= 3)
        hold.close()
        sub.close()
        n = len(calls)
        await asyncio.sleep(0.3)
        assert len(calls) == n  # unobserved: no more DNS traffic
    finally:
        await fs.close()


def test_parse_formats_comments_weights():
    text = "# web tier\n10.0.1.20 8080\n\n  10.0.1.21   8080   # trailing comment\n10.0.1.22 8080 * 0.25\n"
    assert parse_addresses(text, "f") == [
        ("10.0.1.20", 8080, None, 2), ("10.0.1.21", 8080, None, 4), ("10.0.1.22", 8080, 0.25, 5)]


@pytest.mark.parametrize("line, what", [
    ("10.0.0.1", "malformed address"),
    ("10.0.0.1 http", "bad port"),
    ("10.0.0.1 0", "bad port"),
    ("10.0.0.1 65536", "bad port"),
    ("10.0.0.1 80 * x", "bad weight"),
    ("10.0.0.1 80 * -1", "bad weight"),
    ("10.0.0.1 80 x 2", "malformed address"),
    ("10.0.0.1 80 extra", "malformed address"),
])
def test_parse_errors_name_file_and_line(line, what):
    with pytest.raises(MalformedAddress) as e:
        parse_addresses(f"10.0.0.9 1\n{line}\n", "/disco/web")
    assert str(e.value).startswith("/disco/web line 2: " + what)


async def test_file_binds_with_weights_and_residual(fs, tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 8080\n127.0.0.2 8081 * 2.5\n")
    t, b = await bound(fs, "/web/extra/path")
    assert b.id == Path.read("/#/io.l5d.fs/web") and b.residual == Path.read("/extra/path")
    assert await settled(b.addr) == AddrBound([
        Address("127.0.0.1", 8080), Address("127.0.0.2", 8081, {WEIGHT_KEY: 2.5})])


async def test_missing_file_is_neg_empty_file_bound_empty(fs, tmp_path):
    t, _ = await bound(fs, "/nope")
    assert t is NEG
    (tmp_path / "empty").write_text("# nobody home\n\n")
    _, b = await bound(fs, "/empty")
    assert await settled(b.addr) == AddrBound([])


async def test_malformed_line_fails_the_service_with_reason(fs, tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 8080\n127.0.0.1 nope\n")
    _, b = await bound(fs, "/web")
    a = await settled(b.addr)
    assert isinstance(a, AddrFailed)
    assert f"{tmp_path}/web line 2: bad port 'nope'" in a.cause
    state = fs.admin_state()
    assert state["files"]["web"]["error"] == a.cause


async def test_file_over_500kb_fails(fs, tmp_path):
    (tmp_path / "big").write_text("127.0.0.1 8080\n" * 40000)  # 600 KB
    _, b = await bound(fs, "/big")
    a = await settled(b.addr)
    assert isinstance(a, AddrFailed) and "500 KB" in a.cause


async def test_subdirectories_nest(fs, tmp_path):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "web").write_text("127.0.0.3 80\n")
    _, b = await bound(fs, "/team/web/x")
    assert b.id == Path.read("/#/io.l5d.fs/team/web") and b.residual == Path.read("/x")
    t, _ = await bound(fs, "/team")  # a directory alone names nothing
    assert t is NEG


async def test_host_names_are_resolved(fs, tmp_path):
    (tmp_path / "web").write_text("localhost 8080\n")
    _, b = await bound(fs, "/web")
    a = await settled(b.addr, 5)
    assert isinstance(a, AddrBound) and {x.port for x in a.addrs} == {8080}
    assert {x.host for x in a.addrs} & {"127.0.0.1", "::1"}


async def test_unresolvable_host_fails_with_line(fs, tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 1\nno-such-host.invalid 8080\n")
    _, b = await bound(fs, "/web")
    a = await settled(b.addr, 10)
    assert isinstance(a, AddrFailed) and "line 2" in a.cause and "no-such-host.invalid" in a.cause


@pytest.mark.parametrize("name", ["/..", "/.", "/a\\x2fb", "/\\x00"])
async def test_paths_cannot_escape_root(fs, name):
    t, _ = await bound(fs, name)
    assert t is NEG


async def test_change_reaches_the_var_promptly(fs, tmp_path, record_property):
    """The acceptance figure: a file edit is visible through the bound name's Var."""
    f = tmp_path / "web"
    f.write_text("127.0.0.1 8080\n")
    _, b = await bound(fs, "/web")
    await settled(b.addr)
    latencies = []
    for port in range(9001, 9006):
        changed = asyncio.Event()
        want = AddrBound([Address("127.0.0.1", port)])
        sub = b.addr.observe(lambda a, want=want: changed.set() if a == want else None)
        t0 = time.monotonic()
        f.write_text(f"127.0.0.1 {port}\n")
        await asyncio.wait_for(changed.wait(), 2.0)
        latencies.append(time.monotonic() - t0)
        sub.close()
    # Not a timing assertion (the machine is shared): the awaited event above has a
    # generous timeout; the figure is recorded for the report (target: under 200 ms).
    record_property("fs_change_latency_ms", [round(x * 1000, 1) for x in latencies])
    print(f"\nfs change -> Var latency ms: {[round(x * 1000, 1) for x in latencies]}")


async def test_same_size_rewrite_inside_one_mtime_tick_is_seen(fs, tmp_path):
    f = tmp_path / "web"
    f.write_text("127.0.0.1 8080\n")
    _, b = await bound(fs, "/web")
    await settled(b.addr)
    st = os.stat(f)
    f.write_text("127.0.0.2 8080\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the very same mtime
    await b.addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.2", 8080)]), 2)


async def test_file_appears_later_and_deletion_is_neg(fs, tmp_path):
    act = fs.lookup(Path.read("/web"))
    act.observe(lambda st: None)
    assert act.sample() == Ok(NEG)
    (tmp_path / "web").write_text("127.0.0.1 1\n")
    st = await act.states.wait_for(lambda s: s != Ok(NEG), 2)
    b = st.value.value
    b.addr.observe(lambda a: None)
    await b.addr.wait_for(lambda a: isinstance(a, AddrBound), 2)
    (tmp_path / "web").unlink()
    await act.states.wait_for(lambda s: s == Ok(NEG), 2)
    await b.addr.wait_for(lambda a: a == ADDR_NEG, 2)


async def test_nothing_observed_means_no_watching(fs, tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 1\n")
    act = fs.lookup(Path.read("/web"))
    sub = act.observe(lambda st: None)
    assert fs._watcher.watching and fs.admin_state()["watchedDirectories"] == [str(tmp_path)]
    sub.close()
    assert not fs._active
    await eventually(lambda: not fs._watcher.watching)  # the watch stops with the last observer


async def test_enumerate_and_admin_state(fs, tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 1\n")
    (tmp_path / ".hidden").write_text("127.0.0.1 1\n")
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "api").write_text("127.0.0.1 2\n")
    assert [p.show() for p in fs.enumerate()] == ["/#/io.l5d.fs/web", "/#/io.l5d.fs/team/api"]
    _, b = await bound(fs, "/web")
    await settled(b.addr)
    state = fs.admin_state()
    assert state["rootDir"] == str(tmp_path) and state["prefix"] == "/io.l5d.fs"
    assert state["files"]["web"]["addr"]["addrs"] == [{"ip": "127.0.0.1", "port": 1, "meta": {}}]


async def test_from_config_prefix_and_bad_root(tmp_path):
    n = FsNamer.from_config(FsConfig(rootDir=str(tmp_path), prefix="/disco"))
    assert n.prefix == Path.read("/disco") and n.bound_id(Path.read("/web")) == Path.read("/#/disco/web")
    with pytest.raises(ValueError, match="is not a directory"):
        FsNamer.from_config(FsConfig(rootDir=str(tmp_path / "missing")))
