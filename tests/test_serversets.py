"""io.l5d.serversets namer against a real ZooKeeper: selection, watches, walk-up, errors."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from kazoo.client import KazooClient

from namerouter.dtab.path import Path
from namerouter.dtab.tree import NEG, Leaf
from namerouter.namers.serversets import MalformedMember, ServersetsNamer, parse_member, parse_segment
from namerouter.naming.addr import ADDR_NEG, AddrBound
from namerouter.naming.var import PENDING, Failed, Ok


def member(port, host="127.0.0.1", status="ALIVE", shard=None, **endpoints):
    doc = {"serviceEndpoint": {"host": host, "port": port},
           "additionalEndpoints": {k: {"host": host, "port": v} for k, v in endpoints.items()},
           "status": status}
    if shard is not None:
        doc["shard"] = shard
    return json.dumps(doc).encode()


class Writer:
    """A separate plain kazoo client (its own session) run in a thread: the test's view."""

    def __init__(self, hosts):
        self.kz = KazooClient(hosts, timeout=15)
        self.kz.start(30)

    async def add(self, path, data, ephemeral=True):
        return await asyncio.to_thread(self.kz.create, path + "/member_", data,
                                       ephemeral=ephemeral, sequence=True, makepath=True)

    async def create(self, path, data=b"", **kw):
        return await asyncio.to_thread(self.kz.create, path, data, makepath=True, **kw)

    async def set(self, path, data):
        await asyncio.to_thread(self.kz.set, path, data)

    async def delete(self, path, recursive=False):
        await asyncio.to_thread(self.kz.delete, path, recursive=recursive)

    def close(self):
        self.kz.stop()
        self.kz.close()


@pytest.fixture
def base():
    return "/t-" + uuid.uuid4().hex[:8]


@pytest.fixture
def writer(zk_server):
    w = Writer(zk_server.hosts)
    yield w
    w.close()


@pytest.fixture
async def namer(zk_server):
    n = ServersetsNamer(zk_server.hosts, linger_s=0.2)
    await n.start()
    yield n
    await n.close()


def p(text):
    return Path.of(*[s for s in text.split("/") if s])


def ports(addr):
    assert isinstance(addr, AddrBound), addr
    return sorted(a.port for a in addr.addrs)


async def bound(namer, text, timeout=5):
    act = namer.lookup(p(text))
    hold = act.observe(lambda s: None)
    tree = await act.wait_ok(timeout)
    return tree, hold


# Pure parsing ---------------------------------------------------------------------------

def test_parse_segment_forms():
    assert parse_segment("pong") == ("pong", None, None)
    assert parse_segment("pong:http") == ("pong", "http", None)
    assert parse_segment("pong#3") == ("pong", None, 3)
    assert parse_segment("pong:http#0") == ("pong", "http", 0)
    for bad in ("pong#x", "pong:", "pong#-1", ":http", "a:b:c", "pong#1#2"):
        with pytest.raises(ValueError, match="bad serverset segment"):
            parse_segment(bad)


def test_parse_member_validates_fields():
    m = parse_member(member(8002, http=8003, shard=2))
    assert (m.service.host, m.service.port, m.status, m.shard) == ("127.0.0.1", 8002, "ALIVE", 2)
    assert m.endpoint("http").port == 8003 and m.endpoint("admin") is None
    assert parse_member(b'{"serviceEndpoint":{"host":"h","port":1}}').status == "UNKNOWN"
    for bad, where in [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"status":"ALIVE"}', "serviceEndpoint"),
        (b'{"serviceEndpoint":{"host":"h","port":70000}}', "serviceEndpoint.port"),
        (b'{"serviceEndpoint":{"host":"","port":1}}', "serviceEndpoint.host"),
        (b'{"serviceEndpoint":{"host":"h","port":1},"additionalEndpoints":{"x":{"host":"h"}}}',
         "additionalEndpoints.x.port"),
        (b'{"serviceEndpoint":{"host":"h","port":1},"shard":"one"}', "shard"),
    ]:
        with pytest.raises(MalformedMember, match=where):
            parse_member(bad)


# Binding ----------------------------------------------------------------------------------

async def test_seed_layout_binds_alive_members(namer, writer, base):
    await writer.add(f"{base}/pong", member(8002))
    tree, hold = await bound(namer, f"{base}/pong")
    assert isinstance(tree, Leaf)
    b = tree.value
    assert b.id == Path.of("#", "io.l5d.serversets") + p(base) + Path.of("pong")
    assert b.residual == Path()
    assert ports(b.addr.sample()) == [8002]
    hold.close()


async def test_members_added_and_removed_shift_addr_within_200ms(namer, writer, base):
    n1 = await writer.add(f"{base}/pong", member(8002))
    tree, hold = await bound(namer, f"{base}/pong")
    addr = tree.value.addr
    t0 = time.monotonic()
    n2 = await writer.add(f"{base}/pong", member(8003))
    await addr.wait_for(lambda a: isinstance(a, AddrBound) and len(a.addrs) == 2, 0.2)
    added = time.monotonic() - t0
    t0 = time.monotonic()
    await writer.delete(n1)
    await addr.wait_for(lambda a: isinstance(a, AddrBound) and ports(a) == [8003], 0.2)
    removed = time.monotonic() - t0
    assert added < 0.2 and removed < 0.2
    # last member gone: the serverset is empty -> Neg, the lookup walks up and ends Neg
    states = []
    hold2 = namer.lookup(p(f"{base}/pong")).observe(states.append)
    await writer.delete(n2)
    await addr.wait_for(lambda a: a is ADDR_NEG, 1)
    await asyncio.sleep(0.05)
    assert states[-1] == Ok(NEG)
    hold.close()
    hold2.close()


async def test_only_alive_members_and_status_changes_are_watched(namer, writer, base):
    await writer.add(f"{base}/svc", member(1, status="STARTING"))
    await writer.add(f"{base}/svc", member(2, status="DEAD"))
    await writer.add(f"{base}/svc", b'{"serviceEndpoint":{"host":"127.0.0.1","port":3}}')  # UNKNOWN
    alive = await writer.add(f"{base}/svc", member(4))
    tree, hold = await bound(namer, f"{base}/svc")
    addr = tree.value.addr
    assert ports(addr.sample()) == [4]
    await writer.set(alive, member(4, status="STOPPING"))
    await addr.wait_for(lambda a: a is ADDR_NEG, 1)
    await writer.set(alive, member(5))
    await addr.wait_for(lambda a: isinstance(a, AddrBound) and ports(a) == [5], 1)
    hold.close()


async def test_endpoint_and_shard_suffixes(namer, writer, base):
    await writer.add(f"{base}/web", member(8000, http=8001, shard=0))
    await writer.add(f"{base}/web", member(9000, http=9001, admin=9002, shard=1))
    await writer.add(f"{base}/web", member(7000))  # no shard, no extra endpoints
    cases = {
        "web": [7000, 8000, 9000],
        "web:http": [8001, 9001],
        "web:admin": [9002],
        "web#1": [9000],
        "web#0": [8000],
        "web:http#1": [9001],
    }
    holds = []
    for last, want in cases.items():
        tree, hold = await bound(namer, f"{base}/{last}")
        holds.append(hold)
        assert tree.value.id == Path.of("#", "io.l5d.serversets") + p(base) + Path.of(last)
        assert ports(tree.value.addr.sample()) == want, last
    # no member has that endpoint / shard: Neg here, walk-up finds nothing above either
    for last in ("web:grpc", "web#7"):
        tree, hold = await bound(namer, f"{base}/{last}")
        holds.append(hold)
        assert tree == NEG, last
    for h in holds:
        h.close()


async def test_malformed_member_is_skipped_and_reported(namer, writer, base):
    good = await writer.add(f"{base}/m", member(8002))
    bad = await writer.add(f"{base}/m", b'{"serviceEndpoint": {"host": "127.0.0.1"}}')
    await writer.create(f"{base}/m/not_a_member", b"ignored")
    tree, hold = await bound(namer, f"{base}/m")
    assert ports(tree.value.addr.sample()) == [8002]
    state = namer.admin_state()["serversets"][f"{base}/m"]
    assert state["members"] == 1 and state["alive"] == 1
    assert state["errors"] == [{"member": bad.rsplit("/", 1)[1], "error": "serviceEndpoint.port: expected an integer 1-65535, got None"}]
    # fixing it makes it count, and clears the error
    await writer.set(bad, member(8003))
    await tree.value.addr.wait_for(lambda a: ports(a) == [8002, 8003], 1)
    assert namer.admin_state()["serversets"][f"{base}/m"]["errors"] == []
    assert good
    hold.close()


async def test_bad_segment_fails_with_a_clear_error(namer, base):
    act = namer.lookup(p(f"{base}/pong#x"))
    hold = act.observe(lambda s: None)
    st = act.sample()
    assert isinstance(st, Failed)
    assert "bad serverset segment 'pong#x'" in str(st.error)
    hold.close()
    act = namer.lookup(Path.of("a", ".."))
    hold = act.observe(lambda s: None)
    assert isinstance(act.sample(), Failed) and "not a valid znode name" in str(act.sample().error)
    hold.close()


async def test_host_names_are_resolved(namer, writer, base):
    await writer.add(f"{base}/named", member(8080, host="localhost"))
    await writer.add(f"{base}/named", member(8081, host="no-such-host.invalid"))
    tree, hold = await bound(namer, f"{base}/named")
    addr = await tree.value.addr.wait_for(lambda a: isinstance(a, AddrBound), 5)
    assert {(a.host, a.port) for a in addr.addrs} >= {("127.0.0.1", 8080)}
    assert all(a.port == 8080 for a in addr.addrs)  # the unresolvable one is skipped ...
    errors = namer.admin_state()["serversets"][f"{base}/named"]["errors"]
    assert any("no-such-host.invalid" in e["error"] for e in errors)  # ... and reported
    hold.close()


# Walk-up -----------------------------------------------------------------------------------

async def test_walk_up_moves_segments_into_the_residual(namer, writer, base):
    await writer.add(f"{base}/prod/web", member(8002))
    tree, hold = await bound(namer, f"{base}/prod/web/extra/more")
    assert tree.value.id == Path.of("#", "io.l5d.serversets") + p(base) + Path.of("prod", "web")
    assert tree.value.residual == Path.of("extra", "more")
    hold.close()


async def test_walk_up_is_reactive_both_ways(namer, writer, base):
    await writer.add(f"{base}/prod/web", member(8002))
    act = namer.lookup(p(f"{base}/prod/web/v2"))
    seen = []
    hold = act.observe(seen.append)
    tree = await act.wait_ok(5)
    assert tree.value.residual == Path.of("v2")
    # a serverset appears at the deeper path: it takes over (no polling, a watch)
    deeper = await writer.add(f"{base}/prod/web/v2", member(9000))
    st = await act.states.wait_for(lambda s: isinstance(s, Ok) and s.value.value.residual == Path(), 1)
    assert ports(st.value.value.addr.sample()) == [9000]
    # ... and when it empties, the parent serves again
    await writer.delete(deeper)
    st = await act.states.wait_for(lambda s: isinstance(s, Ok) and s.value.value.residual == Path.of("v2"), 1)
    assert ports(st.value.value.addr.sample()) == [8002]
    hold.close()


async def test_missing_serverset_is_neg_until_created(namer, writer, base):
    act = namer.lookup(p(f"{base}/later"))
    hold = act.observe(lambda s: None)
    assert await act.wait_ok(5) == NEG
    await writer.add(f"{base}/later", member(8002))
    st = await act.states.wait_for(lambda s: isinstance(s, Ok) and isinstance(s.value, Leaf), 1)
    assert ports(st.value.value.addr.sample()) == [8002]
    # deleting the whole serverset znode makes it Neg again
    await writer.delete(f"{base}/later", recursive=True)
    await act.states.wait_for(lambda s: s == Ok(NEG), 1)
    hold.close()


async def test_empty_path_is_neg(namer):
    assert namer.lookup(Path()).sample() == Ok(NEG)


# Lifetime ----------------------------------------------------------------------------------

async def test_watches_stop_when_unobserved(namer, writer, base):
    await writer.add(f"{base}/idle", member(8002))
    tree, hold = await bound(namer, f"{base}/idle")
    assert f"{base}/idle" in namer.admin_state()["serversets"]
    hold.close()
    await asyncio.sleep(namer.linger_s + 0.2)
    assert f"{base}/idle" not in namer.admin_state()["serversets"]
    # re-observing the same BoundName's addr restarts its watch and sees changes
    addr = tree.value.addr
    hold = addr.observe(lambda a: None)
    await writer.add(f"{base}/idle", member(8003))
    await addr.wait_for(lambda a: isinstance(a, AddrBound) and len(a.addrs) == 2, 1)
    hold.close()


async def test_lookups_share_one_watch_per_znode(namer, writer, base):
    await writer.add(f"{base}/shared", member(8002, http=8003))
    t1, h1 = await bound(namer, f"{base}/shared")
    t2, h2 = await bound(namer, f"{base}/shared:http")
    t3, h3 = await bound(namer, f"{base}/shared/residual")
    st = namer.admin_state()["serversets"][f"{base}/shared"]
    assert st["observers"] == 2  # two selections (service, :http) on one znode watch
    assert t1.value.addr is t3.value.addr
    for h in (h1, h2, h3):
        h.close()


# Through the default interpreter and the config layer ------------------------------------

async def test_default_interpreter_binds_svc_through_serversets(namer, writer, base):
    from namerouter.dtab.dtab import Dtab
    from namerouter.naming.interpreter import DefaultInterpreter

    interp = DefaultInterpreter([namer])
    dtab = Dtab.read(f"/svc => /#/io.l5d.serversets{base} | /$/inet/127.1/9999;")
    act = interp.bind(dtab, Path.read("/svc/pong/extra"))
    hold = act.observe(lambda s: None)
    # nothing registered: the serverset is Neg (walk-up too), so the Alt falls through
    tree = await act.wait_ok(5)
    assert [b.id.show() for b in tree.leaves()] == ["/$/inet/127.1/9999"]
    await writer.add(f"{base}/pong", member(8002))
    st = await act.states.wait_for(
        lambda s: isinstance(s, Ok) and s.value.leaves()[0].id.show().startswith("/#/"), 2)
    [b] = st.value.leaves()
    assert b.id.show() == f"/#/io.l5d.serversets{base}/pong" and b.residual.show() == "/extra"
    assert ports(b.addr.sample()) == [8002]
    hold.close()
    await interp.close()


async def test_config_with_port_transformer(zk_server, writer, base):
    from namerouter.config.schema import loads_linker
    from namerouter.dtab.dtab import Dtab
    from namerouter.naming.interpreter import DefaultInterpreter

    cfg = loads_linker(f"""
namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: 127.0.0.1
    port: {zk_server.port}
  transformers:
  - kind: io.l5d.port
    port: 4141
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.serversets{base};
  servers:
  - port: 4140
""").config
    n = ServersetsNamer.from_config(cfg.namers[0])
    await n.start()
    try:
        await writer.add(f"{base}/pong", member(8002))
        interp = DefaultInterpreter([n])
        act = interp.bind(Dtab.read(cfg.routers[0].dtab), Path.read("/svc/pong"))
        hold = act.observe(lambda s: None)
        tree = await act.wait_ok(5)
        [b] = tree.leaves()
        assert b.id.show() == f"/%/io.l5d.port/4141/#/io.l5d.serversets{base}/pong"
        addr = await b.addr.wait_for(lambda a: isinstance(a, AddrBound), 2)
        assert [(a.host, a.port) for a in addr.addrs] == [("127.0.0.1", 4141)]
        hold.close()
        await interp.close()
    finally:
        await n.close()


def test_config_errors_name_the_key():
    from namerouter.config import ConfigError
    from namerouter.config.schema import loads_linker

    with pytest.raises(ConfigError) as e:
        loads_linker("""
namers:
- kind: io.l5d.serversets
  zkAddrs:
  - host: 127.0.0.1
    port: abc
routers:
- protocol: http
  servers: [{port: 4140}]
""")
    assert "namers[0].zkAddrs[0].port" in str(e.value) and "line 6" in str(e.value)


async def test_reaction_latency_over_many_changes(namer, writer, base):
    """The 200 ms budget over 40 adds and 40 removes (figures: run with -s)."""
    await writer.add(f"{base}/lat", member(7000))
    tree, hold = await bound(namer, f"{base}/lat")
    addr = tree.value.addr
    adds, removes = [], []
    for i in range(40):
        t0 = time.monotonic()
        node = await writer.add(f"{base}/lat", member(8000 + i))
        t1 = time.monotonic()
        await addr.wait_for(lambda a: isinstance(a, AddrBound) and len(a.addrs) == 2, 1)
        adds.append(time.monotonic() - t1)
        await writer.delete(node)
        t2 = time.monotonic()
        await addr.wait_for(lambda a: isinstance(a, AddrBound) and len(a.addrs) == 1, 1)
        removes.append(time.monotonic() - t2)
        assert t1 - t0 < 5
    adds.sort()
    removes.sort()
    print(f"\nserversets reaction after the ZooKeeper write returned (40 each): "
          f"add p50 {adds[20] * 1000:.1f} ms max {adds[-1] * 1000:.1f} ms; "
          f"remove p50 {removes[20] * 1000:.1f} ms max {removes[-1] * 1000:.1f} ms")
    assert adds[-1] < 0.2 and removes[-1] < 0.2
    hold.close()
