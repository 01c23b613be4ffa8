"""io.l5d.namerd.http against the fake namerd: stream handling, re-sync, fail-over,
bounded state. (The same behaviours against the real namerd process are in
test_namerd_http_interpreter_real.py.)"""
from __future__ import annotations

import asyncio
import time

import pytest

from namerouter.config.validate import validate
from namerouter.dtab import Dtab, Path
from namerouter.dtab.tree import NEG, Leaf
from namerouter.interpreters.namerd_http import (
    NamerdCacheConfig,
    NamerdError,
    NamerdHttpConfig,
    NamerdHttpInterpreter,
    NamerdRetryConfig,
)
from namerouter.metrics import MetricsRegistry
from namerouter.naming import ADDR_PENDING, AddrBound, Address, AddrFailed, Ok
from tests.support.ports import free_port
from tests.test_namerd_http_interpreter_fake import FakeNamerd, NamerdState

SVC_WEB = Path.of("svc", "web")
FS_WEB = Path.read("/#/io.l5d.fs/web")


def make_interp(dst, *, ttl: float = 600.0, inactive: int = 100, metrics=None) -> NamerdHttpInterpreter:
    cfg = NamerdHttpConfig(
        dst=dst,
        retry=NamerdRetryConfig(baseSeconds=0.05, maxSeconds=0.5, probeSeconds=0.2),
        cache=NamerdCacheConfig(bindingCacheInactive=inactive, bindingCacheInactiveTTLSecs=ttl,
                                addrCacheInactive=inactive, addrCacheInactiveTTLSecs=ttl),
    )
    return NamerdHttpInterpreter(cfg, metrics=metrics)


def leaf_ids(state) -> list[str]:
    assert isinstance(state, Ok), state
    return sorted(b.id.show() for b in state.value.leaves())


def is_tree(*ids: str):
    return lambda st: isinstance(st, Ok) and sorted(b.id.show() for b in st.value.leaves()) == sorted(ids)


@pytest.fixture
async def state():
    s = NamerdState({"default": "/svc=>/#/io.l5d.fs"})
    s.set_fs("web", [("127.0.0.1", 8080)])
    s.set_fs("web2", [("127.0.0.1", 8082)])
    return s


@pytest.fixture
async def namerd(state):
    n = await FakeNamerd(state).start()
    yield n
    await n.stop()


@pytest.fixture
async def interp(namerd):
    i = make_interp(namerd.dst)
    yield i
    await i.close()


async def test_bind_streams_tree_and_leaf_addrs_come_from_addr_streams(interp, namerd, state):
    act = interp.bind(Dtab(), SVC_WEB)
    tree = await act.wait_ok(2)
    assert isinstance(tree, Leaf) and tree.value.id == FS_WEB and tree.value.residual == Path()
    bound = tree.value
    await bound.addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.1", 8080)]), 2)
    # one bind stream for the name, one addr stream for the id, with Linkerd's parameters
    binds = [q for p, q in namerd.requests if p == "/api/1/bind/default"]
    addrs = [q for p, q in namerd.requests if p == "/api/1/addr/default"]
    assert binds == [{"path": "/svc/web", "watch": "1"}]
    assert addrs == [{"path": "/#/io.l5d.fs/web", "watch": "1"}]
    # the same name again shares the stream and the Activity
    assert interp.bind(Dtab(), SVC_WEB) is act
    # an address change flows into the BoundName's Var through the addr stream
    state.set_fs("web", [("127.0.0.1", 8080), ("127.0.0.2", 8081)])
    await bound.addr.wait_for(lambda a: isinstance(a, AddrBound) and len(a.addrs) == 2, 2)
    assert namerd.count("bind") == 1 and namerd.count("addr") == 1


async def test_dtab_change_through_the_api_is_followed_within_1s(interp, namerd, state):
    act = interp.bind(Dtab(), SVC_WEB)
    await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 2)
    import aiohttp

    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        async with s.put(f"http://127.0.0.1:{namerd.port}/api/1/dtabs/default",
                         data="/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2") as r:
            assert r.status == 204
    st = await act.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 1.0)
    assert time.monotonic() - t0 < 1.0
    leaf = st.value.value
    await leaf.addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.1", 8082)]), 1)


async def test_request_dtab_is_sent_and_keys_the_binding(interp, namerd):
    local = Dtab.read("/svc/web=>/$/inet/127.0.0.1/9999")
    act = interp.bind(local, SVC_WEB)
    tree = await act.wait_ok(2)
    assert tree.value.id == Path.read("/$/inet/127.0.0.1/9999")
    await tree.value.addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.1", 9999)]), 2)
    assert {"path": "/svc/web", "watch": "1", "dtab": "/svc/web=>/$/inet/127.0.0.1/9999"} in [
        q for p, q in namerd.requests if p.startswith("/api/1/bind/")]
    plain = await interp.bind(Dtab(), SVC_WEB).wait_ok(2)
    assert plain.value.id == FS_WEB


async def test_union_alt_and_residual_are_converted(interp, state):
    state.set_dtab("default", "/svc=>/#/io.l5d.fs;/svc/web=>3*/#/io.l5d.fs/web & 1*/#/io.l5d.fs/web2;"
                              "/svc/alt=>/#/io.l5d.fs/missing | /$/inet/127.0.0.1/7000")
    tree = await interp.bind(Dtab(), SVC_WEB).wait_ok(2)
    assert tree.show() == "3.00*/#/io.l5d.fs/web & /#/io.l5d.fs/web2"
    alt = await interp.bind(Dtab(), Path.read("/svc/alt/x/y")).wait_ok(2)
    assert alt.value.id == Path.read("/$/inet/127.0.0.1/7000") and alt.value.residual == Path.read("/x/y")
    neg = await interp.bind(Dtab(), Path.read("/nothing/here")).wait_ok(2)
    assert neg is NEG


@pytest.mark.parametrize("mode", ["byte_chunks", "no_newlines"])
async def test_documents_split_over_chunks_or_run_together(namerd, state, mode):
    setattr(namerd, mode, True)
    i = make_interp(namerd.dst)
    try:
        act = i.bind(Dtab(), SVC_WEB)
        await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 2)
        for n in range(5):  # several changes in a row, each must come through whole
            target = "web2" if n % 2 == 0 else "web"
            state.set_dtab("default", f"/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/{target}")
            await act.states.wait_for(is_tree(f"/#/io.l5d.fs/{target}"), 2)
        assert namerd.count("bind") == 1  # never had to reconnect
    finally:
        await i.close()


async def test_error_line_ends_stream_reconnects_and_keeps_last_state(interp, namerd, state):
    act = interp.bind(Dtab(), SVC_WEB)
    await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 2)
    namerd.fail_binds["default"] = "binding failed: zk session expired"
    state.changed()  # namerd notices, writes its error line and ends the stream
    await _until(lambda: namerd.count("bind") >= 3, 3)  # it keeps retrying (with backoff)
    assert leaf_ids(act.sample()) == ["/#/io.l5d.fs/web"]  # last known state still served
    # a name never bound before gets the failure, with namerd's message
    other = interp.bind(Dtab(), Path.read("/svc/web2"))
    with pytest.raises(NamerdError, match="zk session expired"):
        await other.wait_ok(2)
    # namerd recovers: both streams come back with current state
    del namerd.fail_binds["default"]
    state.set_dtab("default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
    await act.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 3)
    await other.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 3)


async def test_name_namerd_rejects_fails_at_once_without_retrying(interp, namerd):
    namerd.reject_paths.add("/svc/bad")
    act = interp.bind(Dtab(), Path.read("/svc/bad"))
    with pytest.raises(NamerdError, match="400.*Invalid path: /svc/bad"):
        await act.wait_ok(2)
    await asyncio.sleep(0.3)  # a 400 is final: no retry loop against namerd
    assert namerd.count("bind") == 1
    assert (await interp.bind(Dtab(), SVC_WEB).wait_ok(2)).value.id == FS_WEB


async def test_unknown_namespace_fails_bind_with_namerds_status(namerd):
    cfg = NamerdHttpConfig(dst=namerd.dst, namespace="nope",
                           retry=NamerdRetryConfig(baseSeconds=0.05, maxSeconds=0.1))
    i = NamerdHttpInterpreter(cfg)
    try:
        with pytest.raises(NamerdError, match="404"):
            await i.bind(Dtab(), SVC_WEB).wait_ok(2)
    finally:
        await i.close()


async def test_namerd_restart_serves_last_state_then_resyncs_within_2s(interp, namerd, state):
    web = interp.bind(Dtab(), SVC_WEB)
    web2 = interp.bind(Dtab(), Path.read("/svc/web2"))
    tree = await web.wait_ok(2)
    await web2.wait_ok(2)
    addr = tree.value.addr
    await addr.wait_for(lambda a: isinstance(a, AddrBound), 2)
    before = (web.sample(), web2.sample(), addr.sample())

    await namerd.stop()
    # while namerd is away: changes are made (e.g. through another namerd) ...
    state.set_dtab("default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
    state.set_fs("web", [("127.0.0.9", 9000)])
    state.set_fs("web2", [("127.0.0.7", 7000)])
    await _until(lambda: not interp.client.reachable, 3)
    # ... and the router keeps serving the last state it knew, unchanged
    await asyncio.sleep(0.5)
    assert (web.sample(), web2.sample(), addr.sample()) == before
    assert interp.metrics.get("interpreter/io.l5d.namerd.http/connected").value == 0

    await namerd.start()  # same port, as a restarted process
    t0 = time.monotonic()
    await web.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 2)
    await addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.9", 9000)]), 2)
    w2 = (await web2.wait_ok(1)).value
    await w2.addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.7", 7000)]), 2)
    assert time.monotonic() - t0 < 2.0
    assert interp.metrics.get("interpreter/io.l5d.namerd.http/connected").value == 1
    assert interp.metrics.get("interpreter/io.l5d.namerd.http/reconnected").value >= 1


async def test_restart_with_default_retry_settings_resyncs_quickly(namerd, state):
    """baseSeconds 5 / maxSeconds 600 (Linkerd's defaults) must not mean minutes of stale state."""
    i = NamerdHttpInterpreter(NamerdHttpConfig(dst=namerd.dst))
    try:
        act = i.bind(Dtab(), SVC_WEB)
        await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 2)
        await namerd.stop()
        await _until(lambda: not i.client.reachable, 3)
        await asyncio.sleep(3)  # a longer outage: the probe has backed off to its cap
        state.set_dtab("default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
        await namerd.start()
        t0 = time.monotonic()
        # The probe (capped at probeSeconds=1) finds namerd and re-syncs every stream. The
        # bound stays below baseSeconds=5, so it still proves nobody waited for a stream
        # backoff, with room for a loaded 2-core CI box (idle, it takes ~1 s).
        await act.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 4)
        assert time.monotonic() - t0 < 4.0
    finally:
        await i.close()


async def test_failover_between_two_namerd_addresses(state):
    a = await FakeNamerd(state).start()
    b = await FakeNamerd(state).start()  # shares the store, like two namerds on one ZooKeeper
    i = make_interp([a.dst, b.dst])
    try:
        act = i.bind(Dtab(), SVC_WEB)
        tree = await act.wait_ok(2)
        await tree.value.addr.wait_for(lambda x: isinstance(x, AddrBound), 2)
        assert a.count("bind") == 1 and b.count("bind") == 0
        await a.stop()
        state.set_dtab("default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
        t0 = time.monotonic()
        st = await act.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 2)
        assert time.monotonic() - t0 < 2.0
        await st.value.value.addr.wait_for(lambda x: x == AddrBound([Address("127.0.0.1", 8082)]), 2)
        assert b.count("bind") == 1 and b.count("addr") >= 1
        assert i.client.current.port == b.port
        assert i.metrics.get("interpreter/io.l5d.namerd.http/failover").value >= 1
        # new names go to b as well
        await i.bind(Dtab(), Path.read("/svc/web")).wait_ok(1)
        await i.bind(Dtab(), Path.read("/svc/other")).wait_ok(2)
        assert a.count("bind") == 1
    finally:
        await i.close()
        await a.stop()
        await b.stop()


async def test_failover_when_first_address_is_down_from_the_start(state):
    b = await FakeNamerd(state).start()
    i = make_interp([f"/$/inet/127.0.0.1/{free_port()}", b.dst])
    try:
        assert (await i.bind(Dtab(), SVC_WEB).wait_ok(2)).value.id == FS_WEB
    finally:
        await i.close()
        await b.stop()


async def test_junk_names_are_released_after_the_idle_ttl(namerd, state):
    metrics = MetricsRegistry()
    i = make_interp(namerd.dst, ttl=0.5, inactive=1000, metrics=metrics)
    g = lambda name: metrics.get(f"interpreter/io.l5d.namerd.http/{name}").value  # noqa: E731
    try:
        keep = i.bind(Dtab(), SVC_WEB)
        hold = keep.observe(lambda s: None)
        junk = [i.bind(Dtab(), Path.of("svc", f"scanner-{n}")) for n in range(40)]
        await asyncio.gather(*(j.wait_ok(2) for j in junk))
        await keep.wait_ok(2)
        await _until(lambda: namerd.open_streams == 42, 2)  # 41 binds + web's addr
        assert g("bind/active") == 1 and g("bind/inactive") == 40
        await asyncio.sleep(0.8)
        # junk names were never observed: closed and forgotten; the observed one lives on
        assert g("bind/inactive") == 0 and g("bind/active") == 1
        assert g("addr/active") == 1 and g("bind/evictions") == 40
        await _until(lambda: namerd.open_streams == 2, 2)
        # once the router stops observing, the binding and its addr stream go too
        hold.close()
        await _until(lambda: g("bind/active") + g("bind/inactive") == 0, 2)
        await _until(lambda: g("addr/active") + g("addr/inactive") == 0, 2)
        await _until(lambda: namerd.open_streams == 0, 2)
        # bound again later: a fresh stream with current state
        assert (await i.bind(Dtab(), SVC_WEB).wait_ok(2)).value.id == FS_WEB
    finally:
        await i.close()


async def test_inactive_capacity_bounds_open_streams(namerd):
    i = make_interp(namerd.dst, ttl=600, inactive=10)
    try:
        for n in range(50):
            i.bind(Dtab(), Path.of("svc", f"junk-{n}"))
        assert len(i._binds.entries) == 10
        await _until(lambda: namerd.open_streams <= 10, 3)
    finally:
        await i.close()


async def test_evicted_binding_still_held_comes_back_when_observed(namerd, state):
    i = make_interp(namerd.dst, ttl=0.2)
    try:
        act = i.bind(Dtab(), SVC_WEB)
        await act.wait_ok(2)
        await _until(lambda: not i._binds.entries, 2)  # evicted, stream closed
        state.set_dtab("default", "/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/web2")
        hold = act.observe(lambda s: None)  # someone kept the Activity: it re-opens
        await act.states.wait_for(is_tree("/#/io.l5d.fs/web2"), 2)
        hold.close()
    finally:
        await i.close()


async def test_delegate_and_dtab_view(interp, state):
    d = await interp.delegate(Dtab.read("/svc/web=>/$/inet/127.0.0.1/1"), SVC_WEB)
    assert d["type"] == "delegate" and d["delegate"]["bound"]["id"] == "/$/inet/127.0.0.1/1"
    view = interp.dtab()
    assert (await view.wait_ok(2)) == Dtab.read("/svc=>/#/io.l5d.fs")
    state.set_dtab("default", "/svc=>/$/inet/127.0.0.1")
    await view.states.wait_for(lambda s: isinstance(s, Ok) and s.value == Dtab.read("/svc=>/$/inet/127.0.0.1"), 2)


async def test_addr_of_unknown_namer_fails_without_prior_value(interp):
    var = interp.addr(Path.read("/#/io.l5d.nothing/x"))
    got = await var.wait_for(lambda a: a is not ADDR_PENDING, 2)
    assert isinstance(got, AddrFailed) and "no namer" in got.cause


async def test_namerd_down_from_the_start_stays_pending_then_binds(state):
    port = free_port()
    i = make_interp(f"/$/inet/127.0.0.1/{port}")
    try:
        act = i.bind(Dtab(), SVC_WEB)
        with pytest.raises(asyncio.TimeoutError):
            await act.wait_ok(0.5)
        n = await FakeNamerd(state, port=port).start()
        try:
            assert (await act.wait_ok(2)).value.id == FS_WEB
        finally:
            await n.stop()
    finally:
        await i.close()


def test_config_validation_names_the_bad_key():
    ok = validate(NamerdHttpConfig, {"dst": ["/$/inet/127.0.0.1/4180", "/$/inet/10.0.0.2/4180"],
                                     "namespace": "prod", "retry": {"baseSeconds": 1, "maxSeconds": 10}})
    assert ok.config.dst[1] == "/$/inet/10.0.0.2/4180" and ok.config.retry.maxSeconds == 10
    single = validate(NamerdHttpConfig, {"dst": "/$/inet/namerd.local/4180"}).config
    assert NamerdHttpInterpreter(single).client.endpoints[0].host == "namerd.local"
    from namerouter.config.loader import ConfigError

    with pytest.raises(ConfigError, match=r"dst\[1\]: ./#/io.l5d.fs/namerd. is not a namerd address"):
        validate(NamerdHttpConfig, {"dst": ["/$/inet/127.0.0.1/4180", "/#/io.l5d.fs/namerd"]})
    with pytest.raises(ConfigError, match="dst: required key is missing"):
        validate(NamerdHttpConfig, {"namespace": "x"})
    with pytest.raises(ConfigError, match="maxSeconds"):
        validate(NamerdHttpConfig, {"dst": "/$/inet/127.0.0.1/4180", "retry": {"baseSeconds": 10, "maxSeconds": 1}})
    with pytest.raises(ConfigError, match="port 99999"):
        validate(NamerdHttpConfig, {"dst": "/$/inet/127.0.0.1/99999"})


# -- helpers ------------------------------------------------------------------------------

async def _until(pred, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_router_side_transformers_prefix_ids_and_rewrite_addrs(namerd):
    from namerouter.linker import Runtime
    from namerouter.naming.transform import NameTreeTransformer

    cfg = validate(NamerdHttpConfig, {
        "kind": "io.l5d.namerd.http", "experimental": True, "dst": [namerd.dst],
        "transformers": [{"kind": "io.l5d.port", "port": 4141}]}).config
    metrics = MetricsRegistry()
    i = NamerdHttpInterpreter.from_config(cfg, Runtime(metrics, router_label="outgoing"))
    try:
        assert all(isinstance(t, NameTreeTransformer) for t in i.transformers)
        act = i.bind(Dtab(), SVC_WEB)
        assert i.bind(Dtab(), SVC_WEB) is act  # the derived Activity is shared too
        tree = await act.wait_ok(2)
        assert tree.value.id == Path.read("/%/io.l5d.port/4141/#/io.l5d.fs/web")
        await tree.value.addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.1", 4141)]), 2)
        # namerd is asked for the untransformed id; metrics are scoped by the router label
        assert [q["path"] for p, q in namerd.requests if p.startswith("/api/1/addr/")] == ["/#/io.l5d.fs/web"]
        assert metrics.get("rt/outgoing/interpreter/io.l5d.namerd.http/bind/inactive").value == 1
    finally:
        await i.close()
    assert metrics.get("rt/outgoing/interpreter/io.l5d.namerd.http/bind/active") is None


async def test_a_failing_observer_does_not_end_the_stream(interp, namerd, state):
    act = interp.bind(Dtab(), SVC_WEB)
    await act.states.wait_for(is_tree("/#/io.l5d.fs/web"), 2)
    seen = []
    h1 = act.observe(lambda s: seen.append(s), initial=False)

    def bad(_):
        raise RuntimeError("router bug")

    h2 = act.observe(bad, initial=False)
    for target in ("web2", "web", "web2"):
        state.set_dtab("default", f"/svc=>/#/io.l5d.fs;/svc/web=>/#/io.l5d.fs/{target}")
        await _until(lambda: seen and leaf_ids(seen[-1]) == [f"/#/io.l5d.fs/{target}"], 2)
    assert namerd.count("bind") == 1  # same stream throughout
    h1.close()
    h2.close()


async def test_no_room_for_idle_watches_means_streams_only_while_observed(namerd):
    i = make_interp(namerd.dst, inactive=0)
    try:
        act = i.bind(Dtab(), SVC_WEB)
        assert not i._binds.entries  # nobody observes it: not kept, no stream
        assert (await act.wait_ok(2)).value.id == FS_WEB  # waiting observes: streams meanwhile
        await _until(lambda: namerd.open_streams == 0, 2)
        assert i.metrics.get("interpreter/io.l5d.namerd.http/streams").value == 0
    finally:
        await i.close()


async def test_close_is_prompt_while_streams_hang_on_a_silent_namerd():
    """A namerd that accepts connections and never answers (a hung process): every stream
    is stuck waiting for response headers, and close() still returns at once and leaves
    no connection open (a hung close would hang a router reload or a test teardown)."""
    accepted: list[asyncio.StreamWriter] = []
    requests = 0
    gone = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests, gone
        accepted.append(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            requests += 1
            await reader.read()  # until the client goes away; answer nothing
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        gone += 1

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    i = make_interp(f"/$/inet/127.0.0.1/{port}")
    try:
        i.bind(Dtab(), SVC_WEB)
        i.addr(FS_WEB)
        await _until(lambda: requests == 2, 5)  # both streams wait for headers
        t0 = time.monotonic()
        await asyncio.wait_for(i.close(), 10)
        assert time.monotonic() - t0 < 2.0
        await _until(lambda: gone == len(accepted), 2)  # every connection was closed
    finally:
        server.close()
        for w in accepted:
            w.close()
        await server.wait_closed()


async def test_a_stale_connect_failure_after_a_resync_does_not_mark_namerd_down(namerd):
    """A stream whose connect attempt started before namerd came back and failed after
    the probe found it (a loaded box): the failure is stale, the stream retries at once,
    and namerd is not declared unreachable again."""
    metrics = MetricsRegistry()
    i = make_interp(namerd.dst, metrics=metrics)
    down = lambda: metrics.get("interpreter/io.l5d.namerd.http/unreachable")  # noqa: E731
    try:
        client = i.client
        before = client.generation
        client._signal_resync()  # what the probe does when namerd answers again
        t0 = time.monotonic()
        await asyncio.wait_for(client.connection_failed(client.current, OSError("refused"), before), 1)
        assert time.monotonic() - t0 < 0.5 and client.reachable
        assert client._probe_task is None and down() is None
        # The same failure, current this time: namerd counts as down and the stream waits
        # until the probe finds it again (at once: the fake namerd is running).
        await asyncio.wait_for(client.connection_failed(client.current, OSError("refused"), client.generation), 3)
        assert client.reachable and down().value == 1
    finally:
        await i.close()
