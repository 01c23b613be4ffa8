"""namerd io.l5d.consul storage against the Consul simulator: CAS writes, reads, watches."""
from __future__ import annotations

import asyncio

import pytest

from namerd.storage.base import (
    Forbidden,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    StorageUnavailable,
    VersionMismatch,
)
from namerd.storage.consul import ConsulDtabStore, ConsulStorageConfig
from namerouter.consul.client import ConsulClient
from namerouter.dtab import Dtab
from namerouter.naming.var import PENDING, Failed, Ok
from tests.sim.consul_sim import ConsulSim


@pytest.fixture
async def consul():
    sim = ConsulSim()
    await sim.start()
    yield sim
    await sim.stop()


def store_for(sim: ConsulSim, token=None, prefix="/namerd/dtabs") -> ConsulDtabStore:
    return ConsulDtabStore(ConsulClient(sim.host, sim.port, token=token), prefix, max_backoff_s=0.2)


D1 = Dtab.read("/svc=>/#/io.l5d.fs")
D2 = Dtab.read("/svc=>/#/io.l5d.consul/.local")


async def test_cas_create_update_delete(consul: ConsulSim):
    s = store_for(consul)
    try:
        assert await s.list() == [] and await s.get("default") is None
        await s.create("default", D1)
        cur = await s.get("default")
        entry = consul.dcs["dc1"].kv["namerd/dtabs/default"]
        assert entry.value == D1.show().encode()  # dtab text, as Linkerd stores it
        assert cur.dtab == D1 and cur.version == str(entry.modify_index).encode()  # ModifyIndex text
        with pytest.raises(NamespaceAlreadyExists):
            await s.create("default", D2)  # cas=0 refuses an existing key
        await s.update("default", D2, cur.version)
        new = await s.get("default")
        assert new.dtab == D2 and int(new.version) > int(cur.version)
        with pytest.raises(VersionMismatch):
            await s.update("default", D1, cur.version)  # stale ModifyIndex
        with pytest.raises(VersionMismatch):
            await s.update("default", D1, b"garbage")
        with pytest.raises(NamespaceNotFound):
            await s.update("nosuch", D1, b"5")
        await s.put("staging", D1)  # upsert
        await s.put("staging", D2)
        assert (await s.get("staging")).dtab == D2
        await consul.kv_set("namerd/dtabs/nested/deeper", b"/a=>/b")  # not a namespace
        assert await s.list() == ["default", "staging"]
        await s.delete("staging")
        with pytest.raises(NamespaceNotFound):
            await s.delete("staging")
        puts = [p for m, p, h in consul.requests if m == "PUT"]
        assert "cas=0" in puts[0] and any(f"cas={cur.version.decode()}" in p for p in puts)
    finally:
        await s.close()


async def test_watch_namespace_and_list(consul: ConsulSim):
    s = store_for(consul)
    try:
        act = s.observe("default")
        seen: list = []
        c = act.observe(seen.append)
        assert await act.wait_ok(2) is None  # absent
        lst = s.observe_list()
        lc = lst.observe(lambda _: None)
        assert await lst.wait_ok(2) == ()
        await s.create("default", D1)
        v = await act.states.wait_for(lambda st: isinstance(st, Ok) and st.value is not None, 0.5)
        assert v.value.dtab == D1
        await lst.states.wait_for(lambda st: st == Ok(("default",)), 0.5)
        await s.update("default", D2, v.value.version)
        await act.states.wait_for(lambda st: isinstance(st, Ok) and st.value and st.value.dtab == D2, 0.5)
        # Someone writes garbage into the key by hand: Failed, then fixed again.
        await consul.kv_set("namerd/dtabs/default", b"/svc => => nope")
        st = await act.states.wait_for(lambda st: isinstance(st, Failed), 0.5)
        assert "invalid dtab" in str(st.error)
        await consul.kv_set("namerd/dtabs/default", D1.show().encode())
        await act.states.wait_for(lambda st: isinstance(st, Ok) and st.value and st.value.dtab == D1, 0.5)
        # Consul restarts with its state restored from an older snapshot: the watch resets.
        await consul.restart()
        await consul.reset_index(1)
        await consul.kv_set("namerd/dtabs/default", D2.show().encode())
        await act.states.wait_for(lambda st: isinstance(st, Ok) and st.value and st.value.dtab == D2, 2)
        await s.delete("default")
        await act.states.wait_for(lambda st: st == Ok(None), 0.5)
        assert s.watch_count() == 2
        c.close()
        lc.close()
        assert s.watch_count() == 0 and act.sample() is PENDING
        assert all(not isinstance(x, Failed) or "invalid dtab" in str(x.error) for x in seen)
    finally:
        await s.close()


async def test_acl_and_outage_errors():
    sim = ConsulSim(acl_tokens={"t0k"})
    await sim.start()
    ok, anon = store_for(sim, token="t0k"), store_for(sim)
    try:
        await ok.create("default", D1)
        with pytest.raises(Forbidden):
            await anon.get("default")
        await sim.stop()
        with pytest.raises(StorageUnavailable, match="unavailable"):
            await ok.get("default")
        # a watch started during the outage stays pending, then catches up
        act = ok.observe("default")
        c = act.observe(lambda _: None)
        await asyncio.sleep(0.2)
        assert act.sample() is PENDING
        await sim.start()
        assert (await act.wait_ok(2)).dtab == D1
        c.close()
    finally:
        await ok.close()
        await anon.close()
        await sim.stop()


def test_from_config_defaults():
    s = ConsulDtabStore.from_config(ConsulStorageConfig())
    assert s.client.base == "http://localhost:8500" and s.key("default") == "namerd/dtabs/default"
