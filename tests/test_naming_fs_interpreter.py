"""Interpreter kind io.l5d.fs: the default interpreter with its dtab in a watched file."""
from __future__ import annotations

import pytest

from namerouter import plugins
from namerouter.config.validate import validate
from namerouter.dtab import Dtab, Path
from namerouter.dtab.errors import DtabSyntaxError
from namerouter.interpreters.fs import FsInterpreter
from namerouter.naming.var import PENDING, Failed, Ok


def ids(x):
    tree = x.value if isinstance(x, Ok) else x
    return [b.id.show() for b in tree.leaves()]


@pytest.fixture
async def interp(tmp_path):
    it = FsInterpreter(str(tmp_path / "dtab"))
    yield it, tmp_path / "dtab"
    await it.close()


async def test_binds_through_the_file_dtab_and_follows_changes(interp):
    it, f = interp
    f.write_text("/svc => /$/inet/127.1/1;\n")
    act = it.bind(Dtab(), Path.read("/svc/web"))
    assert ids(await act.wait_ok(1)) == ["/$/inet/127.1/1"]
    f.write_text("/svc => /$/inet/127.1/2;\n")
    await act.states.wait_for(lambda st: isinstance(st, Ok) and ids(st) == ["/$/inet/127.1/2"], 2)


async def test_router_dtab_comes_after_the_file(interp):
    it, f = interp
    f.write_text("/svc => /$/inet/127.1/1")
    act = it.bind(Dtab.read("/svc/web => /$/inet/127.1/9"), Path.read("/svc/web"))
    assert ids(await act.wait_ok(1)) == ["/$/inet/127.1/9"]


async def test_missing_file_is_pending_then_binds_when_it_appears(interp):
    it, f = interp
    act = it.bind(Dtab(), Path.read("/svc/web"))
    act.observe(lambda st: None)
    assert act.sample() is PENDING
    f.write_text("/svc => /$/inet/127.1/3")
    await act.states.wait_for(lambda st: isinstance(st, Ok), 2)


async def test_malformed_file_fails_with_file_and_line(interp):
    it, f = interp
    f.write_text("/svc => /$/inet/127.1/1;\n/bad => =>\n")
    act = it.bind(Dtab(), Path.read("/svc/web"))
    st = await act.states.wait_for(lambda s: s is not PENDING, 1)
    assert isinstance(st, Failed) and isinstance(st.error, DtabSyntaxError)
    assert f"dtabFile {f} line 2:" in str(st.error)
    f.write_text("/svc => /$/inet/127.1/1;\n")  # fixed: bindings recover
    await act.states.wait_for(lambda s: isinstance(s, Ok), 2)


async def test_delegate_uses_the_file(interp):
    it, f = interp
    f.write_text("/svc => /$/inet/127.1/1")
    doc = await it.delegate(Dtab(), Path.read("/svc/x"))
    assert doc["type"] == "delegate" and doc["path"] == "/svc/x"
    leaf = doc["delegate"]
    assert leaf["type"] == "leaf" and leaf["dentry"] == {"prefix": "/svc", "dst": "/$/inet/127.1/1"}


async def test_registered_and_built_from_config(tmp_path):
    (tmp_path / "dtab").write_text("/svc => /$/inet/127.1/1")
    cls = plugins.load(plugins.INTERPRETERS, "io.l5d.fs")
    cfg = validate(cls.config_class, {"dtabFile": str(tmp_path / "dtab"),
                                      "transformers": [{"kind": "io.l5d.port", "port": 4141}]}).config
    it = cls.from_config(cfg, None)
    try:
        st = await it.bind(Dtab(), Path.read("/svc/a")).wait_ok(1)
        assert [b.id.show() for b in st.leaves()] == ["/%/io.l5d.port/4141/$/inet/127.1/1"]
    finally:
        await it.close()
