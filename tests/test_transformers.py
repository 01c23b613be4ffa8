"""Transformers io.l5d.port, localhost, specificHost, replace, const: on an interpreter and
on a namer, with the /%/ id prefixing, live updates and delegate transformation nodes."""
from __future__ import annotations

import pytest

from namerouter import plugins
from namerouter.config.validate import validate
from namerouter.dtab import Dtab, Path
from namerouter.dtab.tree import NEG, Union
from namerouter.interpreters.default import DefaultInterpreterConfig, DefaultInterpreterPlugin
from namerouter.namers.fs import FsConfig, FsNamer
from namerouter.naming.addr import ADDR_NEG, ADDR_PENDING, WEIGHT_KEY, AddrBound, Address
from namerouter.naming.delegate import DelegationUnsupported
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.naming.transform import build_transformers
from namerouter.proxy.config import BindingCacheConfig
from namerouter.transformers.basic import (
    ConstTransformer,
    LocalhostTransformer,
    PortTransformer,
    ReplaceTransformer,
    SpecificHostTransformer,
    local_ips,
)


def P(t):
    return Path.read(t)


@pytest.fixture
async def disco(tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 8080\n10.9.9.9 8081 * 3\n")
    n = FsNamer(tmp_path)
    yield tmp_path, n
    await n.close()


async def addr_of(b):
    b.addr.observe(lambda a: None)
    return await b.addr.wait_for(lambda a: a is not ADDR_PENDING, 2)


async def test_port_transformer_rewrites_ports_and_prefixes_ids(disco):
    root, fs = disco
    it = DefaultInterpreter([fs], transformers=[PortTransformer(4141)])
    act = it.bind(Dtab.read("/svc => /#/io.l5d.fs"), P("/svc/web/x"))
    (b,) = (await act.wait_ok(1)).leaves()
    assert b.id == P("/%/io.l5d.port/4141/#/io.l5d.fs/web") and b.residual == P("/x")
    assert await addr_of(b) == AddrBound([
        Address("127.0.0.1", 4141), Address("10.9.9.9", 4141, {WEIGHT_KEY: 3.0})])
    # the underlying file still drives it
    (root / "web").write_text("127.0.0.5 8080\n")
    await b.addr.wait_for(lambda a: a == AddrBound([Address("127.0.0.5", 4141)]), 2)


async def test_transformers_chain_in_config_order(disco):
    _, fs = disco
    it = DefaultInterpreter([fs], transformers=[PortTransformer(4141),
                                                SpecificHostTransformer("127.0.0.1")])
    (b,) = (await it.bind(Dtab.read("/svc => /#/io.l5d.fs"), P("/svc/web")).wait_ok(1)).leaves()
    assert b.id == P("/%/io.l5d.specificHost/%/io.l5d.port/4141/#/io.l5d.fs/web")
    assert await addr_of(b) == AddrBound([Address("127.0.0.1", 4141)])


async def test_localhost_keeps_only_local_addresses(disco):
    root, fs = disco
    assert "127.0.0.1" in local_ips()
    it = DefaultInterpreter([fs], transformers=[LocalhostTransformer()])
    (b,) = (await it.bind(Dtab.read("/svc => /#/io.l5d.fs"), P("/svc/web")).wait_ok(1)).leaves()
    assert b.id == P("/%/io.l5d.localhost/#/io.l5d.fs/web")
    assert await addr_of(b) == AddrBound([Address("127.0.0.1", 8080)])
    (root / "web").write_text("10.9.9.9 1\n")  # nothing local left: Neg, as Linkerd
    await b.addr.wait_for(lambda a: a == ADDR_NEG, 2)


async def test_replace_swaps_bound_names_but_neg_stays_neg(disco):
    _, fs = disco
    t = ReplaceTransformer.from_config(plugins_config("io.l5d.replace", path="/$/inet/127.1/7777"))
    it = DefaultInterpreter([fs], transformers=[t])
    dtab = Dtab.read("/svc => /#/io.l5d.fs")
    (b,) = (await it.bind(dtab, P("/svc/web")).wait_ok(1)).leaves()
    assert b.id == P("/%/io.l5d.replace/$/inet/127.1/7777")
    assert await addr_of(b) == AddrBound([Address("127.0.0.1", 7777)])
    assert await it.bind(dtab, P("/svc/missing")).wait_ok(1) is NEG
    with pytest.raises(DelegationUnsupported):
        await it.delegate(dtab, P("/svc/web"))


async def test_const_always_answers_its_path(disco):
    _, fs = disco
    t = ConstTransformer.from_config(plugins_config("io.l5d.const", path="/$/inet/127.1/7778"))
    it = DefaultInterpreter([fs], transformers=[t])
    for name in ("/svc/web", "/svc/missing"):
        (b,) = (await it.bind(Dtab.read("/svc => /#/io.l5d.fs"), P(name)).wait_ok(1)).leaves()
        assert b.id == P("/%/io.l5d.const/$/inet/127.1/7778")


async def test_namer_level_transformers_from_config(tmp_path):
    (tmp_path / "web").write_text("127.0.0.1 8080\n")
    cfg = validate(FsConfig, {"rootDir": str(tmp_path),
                              "transformers": [{"kind": "io.l5d.port", "port": 4141}]}).config
    fs = FsNamer.from_config(cfg)
    try:
        it = DefaultInterpreter([fs])
        # Union of the transformed namer leaf and a plain inet leaf: only the namer's changes.
        act = it.bind(Dtab.read("/svc => /#/io.l5d.fs/web & /$/inet/127.1/1"), P("/svc"))
        t = await act.wait_ok(1)
        assert isinstance(t, Union)
        assert [b.id.show() for b in t.leaves()] == ["/%/io.l5d.port/4141/#/io.l5d.fs/web", "/$/inet/127.1/1"]
        assert await addr_of(t.leaves()[0]) == AddrBound([Address("127.0.0.1", 4141)])
    finally:
        await fs.close()


async def test_default_interpreter_plugin_validates_and_builds(disco):
    _, fs = disco
    v = validate(DefaultInterpreterConfig, {"transformers": [{"kind": "io.l5d.port", "port": 4141},
                                                            {"kind": "io.l5d.localhost"}]})
    assert not v.warnings

    class Runtime:
        namers = [fs]
        binding_cache = BindingCacheConfig(trees=7, idleTtlSecs=30)

    it = DefaultInterpreterPlugin.from_config(v.config, Runtime())
    assert it.cache.max_size == 7 and it.cache.idle_ttl == 30.0
    (b,) = (await it.bind(Dtab.read("/svc => /#/io.l5d.fs"), P("/svc/web")).wait_ok(1)).leaves()
    assert b.id == P("/%/io.l5d.localhost/%/io.l5d.port/4141/#/io.l5d.fs/web")


def test_config_errors_name_the_key():
    from namerouter.config.loader import ConfigError

    with pytest.raises(ConfigError) as e:
        validate(DefaultInterpreterConfig, {"transformers": [{"kind": "io.l5d.port", "port": "x"}]})
    assert "transformers[0].port" in str(e.value)
    with pytest.raises(ConfigError) as e:
        validate(DefaultInterpreterConfig, {"transformers": [{"kind": "io.l5d.nope"}]})
    assert "io.l5d.port" in str(e.value)  # the known kinds are listed


async def test_delegate_shows_transformation_nodes(disco):
    _, fs = disco
    it = DefaultInterpreter([fs], transformers=[PortTransformer(4141)])
    doc = await it.delegate(Dtab.read("/svc => /#/io.l5d.fs"), P("/svc/web"))
    assert doc["type"] == "delegate" and doc["path"] == "/svc/web"
    tr = doc["delegate"]
    assert tr["type"] == "transformation" and tr["name"] == "PortTransformer"
    assert tr["path"] == "/#/io.l5d.fs/web"
    assert tr["bound"]["id"] == "/#/io.l5d.fs/web"
    assert {a["port"] for a in tr["bound"]["addr"]["addrs"]} == {8080, 8081}
    leaf = tr["tree"]
    assert leaf["type"] == "leaf" and leaf["path"] == "/%/io.l5d.port/4141/#/io.l5d.fs/web"
    assert leaf["bound"]["id"] == "/%/io.l5d.port/4141/#/io.l5d.fs/web"
    assert {a["port"] for a in leaf["bound"]["addr"]["addrs"]} == {4141}


def test_every_basic_kind_is_registered():
    for kind, cls in [("io.l5d.port", PortTransformer), ("io.l5d.localhost", LocalhostTransformer),
                      ("io.l5d.specificHost", SpecificHostTransformer), ("io.l5d.replace", ReplaceTransformer),
                      ("io.l5d.const", ConstTransformer)]:
        assert plugins.load(plugins.TRANSFORMERS, kind) is cls
        assert cls.kind == kind


def test_specific_host_that_does_not_resolve_is_a_clear_error():
    with pytest.raises(ValueError, match="io.l5d.specificHost: cannot resolve host"):
        SpecificHostTransformer("no-such-host.invalid")


def plugins_config(kind, **kw):
    """A validated transformer config, as the config layer would hand it over."""
    cls = plugins.load(plugins.TRANSFORMERS, kind)
    return validate(cls.config_class, kw).config


def test_build_transformers_takes_validated_configs_only():
    configs = validate(DefaultInterpreterConfig, {"transformers": [{"kind": "io.l5d.port", "port": 1}]}).config
    ts = build_transformers(configs.transformers, None)
    assert isinstance(ts[0], PortTransformer) and ts[0].port == 1
    # run-time code gets the validator's objects, never plain mappings
    with pytest.raises(TypeError, match="validated plugin config"):
        build_transformers([{"kind": "io.l5d.port", "port": 1}], None)
