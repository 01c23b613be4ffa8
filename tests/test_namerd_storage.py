"""The DtabStore contract on every backend: in-memory, file, real ZooKeeper, real etcd."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from namerd.storage.base import (
    InvalidNamespace,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    VersionMismatch,
)
from namerd.storage.etcd import EtcdDtabStore
from namerd.storage.file import FileDtabStore
from namerd.storage.memory import InMemoryDtabStore
from namerd.storage.zk import ZkDtabStore
from namerouter.dtab import Dtab
from namerouter.naming.var import PENDING, Ok

A = Dtab.read("/svc=>/#/io.l5d.fs")
B = Dtab.read("/svc=>/#/io.l5d.k8s/prod/http;/a=>/b")
C = Dtab.read("/svc=>/c")


@pytest.fixture(params=["memory", "file", "zk", "etcd"])
def make_store(request, tmp_path):
    """A factory of stores that share one backend (so a second one sees the first's data)."""
    kind = request.param
    uid = uuid.uuid4().hex[:8]
    if kind == "memory":
        shared = InMemoryDtabStore()
        return lambda: shared
    if kind == "file":
        return lambda: FileDtabStore(str(tmp_path / "dtabs.json"))
    if kind == "zk":
        zk = request.getfixturevalue("zk_server")
        return lambda: ZkDtabStore(zk.hosts, f"/t-{uid}/dtabs", 4000)
    etcd = request.getfixturevalue("etcd_server")
    return lambda: EtcdDtabStore(etcd.url, f"/t-{uid}/dtabs")


@pytest.fixture
async def store(make_store):
    s = make_store()
    await s.start()
    yield s
    await s.close()


async def wait_state(act, pred, timeout=3.0):
    return await act.states.wait_for(pred, timeout)


async def test_create_get_update_put_delete(store):
    assert await store.list() == []
    assert await store.get("default") is None
    await store.create("default", A)
    with pytest.raises(NamespaceAlreadyExists):
        await store.create("default", B)
    dtab, v1 = await store.get("default")
    assert dtab == A and isinstance(v1, bytes) and v1
    await store.update("default", B, v1)
    dtab, v2 = await store.get("default")
    assert dtab == B and v2 != v1
    with pytest.raises(VersionMismatch):
        await store.update("default", C, v1)  # stale version: nothing written
    assert (await store.get("default")).dtab == B
    with pytest.raises(VersionMismatch):
        await store.update("default", C, b"garbage")
    with pytest.raises(NamespaceNotFound):
        await store.update("missing", C, v2)
    await store.put("other", C)  # upsert creates
    await store.put("other", A)  # and replaces
    assert (await store.get("other")).dtab == A
    assert await store.list() == ["default", "other"]
    await store.delete("other")
    with pytest.raises(NamespaceNotFound):
        await store.delete("other")
    assert await store.list() == ["default"]
    with pytest.raises(InvalidNamespace):
        await store.create("a/b", A)


async def test_version_formats_match_linkerd(store):
    await store.create("ns", A)
    _, v = await store.get("ns")
    kind = store.kind
    if kind == "io.l5d.inMemory":
        assert v == (1).to_bytes(8, "big")
    elif kind == "io.namerouter.file":
        assert len(v) == 8
    elif kind == "io.l5d.zk":
        assert v == (0).to_bytes(4, "big")  # a new znode's stat.version
        await store.update("ns", B, v)
        assert (await store.get("ns")).version == (1).to_bytes(4, "big")
    elif kind == "io.l5d.etcd":
        assert v.decode().isdigit()  # UTF-8 text of mod_revision


async def test_concurrent_compare_and_set_has_exactly_one_winner(make_store, store):
    # Two store instances (two namerds) racing on the same version; the single-node
    # file store refuses a second opener (tested in test_namerd_file_store.py).
    other = store if store.kind == "io.namerouter.file" else make_store()
    if other is not store:
        await other.start()
    try:
        await store.create("race", A)
        _, v = await store.get("race")
        dtabs = [Dtab.read(f"/svc=>/#/w{i}") for i in range(10)]

        async def attempt(i):
            s = store if i % 2 else other
            try:
                await s.update("race", dtabs[i], v)
                return i
            except VersionMismatch:
                return None

        winners = [w for w in await asyncio.gather(*[attempt(i) for i in range(10)]) if w is not None]
        assert len(winners) == 1
        assert (await store.get("race")).dtab == dtabs[winners[0]]
    finally:
        if other is not store:
            await other.close()


async def test_observe_delivers_current_value_then_every_change(store):
    act = store.observe("w")
    seen = []
    sub = act.observe(seen.append)
    try:
        await wait_state(act, lambda s: s == Ok(None))
        await store.create("w", A)
        st = await wait_state(act, lambda s: isinstance(s, Ok) and s.value is not None)
        assert st.value.dtab == A
        _, v = await store.get("w")
        await store.update("w", B, v)
        st = await wait_state(act, lambda s: isinstance(s, Ok) and s.value is not None and s.value.dtab == B)
        await store.delete("w")
        await wait_state(act, lambda s: s == Ok(None))
        await store.create("w", C)
        await wait_state(act, lambda s: isinstance(s, Ok) and s.value is not None and s.value.dtab == C)
    finally:
        sub.close()
    values = [s.value.dtab if s.value else None for s in seen if isinstance(s, Ok)]
    assert values == [None, A, B, None, C]
    assert store.watch_count() == 0


async def test_observe_list(store):
    act = store.observe_list()
    sub = act.observe(lambda s: None)
    try:
        await wait_state(act, lambda s: s == Ok(()))
        await store.create("b", A)
        await store.create("a", A)
        await wait_state(act, lambda s: s == Ok(("a", "b")))
        await store.delete("b")
        await wait_state(act, lambda s: s == Ok(("a",)))
    finally:
        sub.close()


async def test_observing_a_missing_namespace_is_ok_none(store):
    act = store.observe("nobody-here")
    sub = act.observe(lambda s: None)
    try:
        await wait_state(act, lambda s: s is not PENDING)
        assert act.sample() == Ok(None)
    finally:
        sub.close()
