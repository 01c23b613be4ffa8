"""Live delegate: the dtab layer's algorithm with real namers and addresses."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from namerouter.dtab import Dtab, Path, offline
from namerouter.dtab.errors import MaxDepthExceeded
from namerouter.dtab.tree import Leaf
from namerouter.namers.fs import FsNamer
from namerouter.naming.addr import ADDR_PENDING, AddrBound, Address
from namerouter.naming.bound import BoundName
from namerouter.naming.delegate import DelegateTimeout
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.naming.namer import Namer
from namerouter.naming.var import PENDING, Activity, Failed, Ok, Var


class ManualNamer(Namer):
    kind = "manual"

    def __init__(self) -> None:
        super().__init__(Path.of("manual"))
        self.states: dict[Path, Var[Any]] = {}

    def var(self, name: str) -> Var[Any]:
        return self.states.setdefault(Path.read(name), Var(PENDING))

    def lookup(self, path: Path) -> Activity[Any]:
        return Activity(self.states.setdefault(path.take(1), Var(PENDING)))


@pytest.fixture
async def fs(tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 8080\n")
    n = FsNamer(tmp_path)
    yield n
    await n.close()


@pytest.mark.parametrize("dtab, path", [
    ("/svc/pong => /$/inet/127.1/8002", "/svc/pong"),
    ("/boo=>/foo; /foo=>/bar | /bah | /$/fail; /bah/humbug=>/$/inet/127.1/8080", "/boo/humbug"),
    ("/svc => 3 * /$/inet/127.1/1 & /$/inet/10.0.0.1/2; /svc/x => ~", "/svc/x/y"),
    ("/svc => /$/nil | /$/inet/127.1/1", "/svc/a"),
    ("/svc => /$/no.such.Namer", "/svc/a"),
    ("/hp=>/$/inet; /svc=>/$/io.buoyant.hostportPfx/hp", "/svc/127.0.0.1:9/r"),
    ("/a=>/b", "/c"),
])
async def test_live_equals_offline_without_configured_namers(dtab, path):
    d, p = Dtab.read(dtab), Path.read(path)
    assert await DefaultInterpreter().delegate(d, p) == offline.delegate(d, p)


async def test_fs_namer_leaf_has_real_addresses_and_neg_for_missing(fs):
    dtab = Dtab.read("/svc => /#/io.l5d.fs")
    doc = await DefaultInterpreter([fs]).delegate(dtab, Path.read("/svc/web/rest"))
    assert doc == {
        "type": "delegate", "path": "/svc/web/rest",
        "delegate": {
            "type": "leaf", "path": "/#/io.l5d.fs/web/rest",
            "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
            "bound": {"addr": {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 8080, "meta": {}}],
                               "meta": {}},
                      "id": "/#/io.l5d.fs/web", "path": "/rest"}}}
    doc = await DefaultInterpreter([fs]).delegate(dtab, Path.read("/svc/missing"))
    assert doc["delegate"] == {"type": "neg", "path": "/#/io.l5d.fs/missing",
                               "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"}}


async def test_failed_namer_is_an_exception_node():
    m = ManualNamer()
    m.var("/web").update(Failed(RuntimeError("zk session expired")))
    doc = await DefaultInterpreter([m]).delegate(
        Dtab.read("/svc => /#/manual | /$/inet/127.1/1"), Path.read("/svc/web"))
    assert doc["type"] == "alt"
    assert doc["alt"][0]["type"] == "exception" and doc["alt"][0]["message"] == "zk session expired"
    assert doc["alt"][1]["type"] == "leaf"


async def test_pending_namer_times_out():
    m = ManualNamer()
    with pytest.raises(DelegateTimeout, match="Request timed out."):
        await DefaultInterpreter([m]).delegate(Dtab.read("/svc => /#/manual"), Path.read("/svc/web"),
                                               timeout=0.2)


async def test_waits_for_a_pending_address_then_answers():
    m = ManualNamer()
    addr = Var(ADDR_PENDING)
    m.var("/web").update(Ok(Leaf(BoundName(Path.read("/#/manual/web"), addr))))
    task = asyncio.ensure_future(DefaultInterpreter([m]).delegate(Dtab.read("/svc => /#/manual"),
                                                                  Path.read("/svc/web")))
    await asyncio.sleep(0.05)
    assert not task.done()
    addr.update(AddrBound([Address("127.0.0.1", 1)]))
    doc = await asyncio.wait_for(task, 1)
    assert doc["delegate"]["bound"]["addr"]["addrs"] == [{"ip": "127.0.0.1", "port": 1, "meta": {}}]


async def test_pending_address_times_out():
    m = ManualNamer()
    m.var("/web").update(Ok(Leaf(BoundName(Path.read("/#/manual/web"), Var(ADDR_PENDING)))))
    with pytest.raises(DelegateTimeout):
        await DefaultInterpreter([m]).delegate(Dtab.read("/svc => /#/manual"), Path.read("/svc/web"),
                                               timeout=0.2)


async def test_main_chain_loop_fails_the_call():
    with pytest.raises(MaxDepthExceeded, match="Max recursion level reached."):
        await DefaultInterpreter().delegate(Dtab.read("/s => /s/x"), Path.read("/s/a"))
