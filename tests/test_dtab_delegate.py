"""Delegation trees and their JSON (spec §9), offline and with a pluggable namer."""
from __future__ import annotations

import asyncio
import json

import pytest

from namerouter.dtab import Dentry, Dtab, MaxDepthExceeded, NameTree, Path
from namerouter.dtab.delegation import (
    DAlt, DDelegate, DEmpty, DException, DFail, DLeaf, DNeg, DTransformation, DUnion,
    delegate_gen, run_async, simplify, to_json, to_json_async,
)
from namerouter.dtab.offline import (
    OfflineBound, delegate, delegate_tree, offline_addr, offline_lookup, render_offline_bound,
)
from namerouter.dtab.system import SystemBound

P = Path.read
DE = Dentry.read
NOP = Dentry.nop

HANDLER_DTAB = Dtab.read("""
    /beh => /#/error ;
    /bah/humbug => /$/inet/127.1/8080 ;
    /foo => /bah | /beh | /$/fail ;
    /foo => /bar ;
    /boo => /foo ;
    /meh => /heh ;
    /neg => ~ ;
""")


def error_namer(path: Path) -> NameTree:
    """Like Linkerd's test `error` namer: /#/error/... fails."""
    if path.startswith(P("/#/error")):
        raise RuntimeError(f"error naming {path.show()}")
    return offline_lookup(path)


def compact(d: dict) -> str:
    return json.dumps(d, separators=(",", ":"))


def test_delegate_api_handler_response():
    expected = (
        '{"type":"delegate","path":"/boo/humbug","delegate":{'
        '"type":"alt","path":"/foo/humbug","dentry":{"prefix":"/boo","dst":"/foo"},"alt":['
        '{"type":"neg","path":"/bar/humbug","dentry":{"prefix":"/foo","dst":"/bar"}},'
        '{"type":"delegate","path":"/bah/humbug",'
        '"dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{'
        '"type":"leaf","path":"/$/inet/127.1/8080","dentry":{"prefix":"/bah/humbug",'
        '"dst":"/$/inet/127.1/8080"},'
        '"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},'
        '"id":"/$/inet/127.1/8080","path":"/"}}},'
        '{"type":"delegate","path":"/beh/humbug",'
        '"dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{'
        '"type":"exception","path":"/#/error/humbug","dentry":{"prefix":"/beh","dst":"/#/error"},'
        '"message":"error naming /#/error/humbug"}},'
        '{"type":"fail","path":"/$/fail/humbug","dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"}}]}}'
    )
    assert compact(delegate(HANDLER_DTAB, P("/boo/humbug"), lookup_namer=error_namer)) == expected


def test_delegates_to_neg_when_no_matches_found():
    assert compact(delegate(HANDLER_DTAB, P("/meh"))) == (
        '{"type":"delegate","path":"/meh","delegate":{'
        '"type":"neg","path":"/heh","dentry":{"prefix":"/meh","dst":"/heh"}}}')


def test_delegation_for_explicit_neg_is_shown():
    assert compact(delegate(HANDLER_DTAB, P("/neg"))) == (
        '{"type":"delegate","path":"/neg","delegate":{'
        '"type":"neg","path":"~","dentry":{"prefix":"/neg","dst":"~"}}}')


# DelegatorTest (Linkerd), as trees -------------------------------------------------------

DELEGATOR_DTAB = Dtab.read("""
    /bah/humbug => /$/inet/127.1/8080 ;
    /beh => /#/error ;
    /foo => /bah | /$/fail ;
    /foo => /bar ;
    /boo => /foo ;
    /meh => /heh ;
""")


def test_explain_neg_delegation():
    assert delegate_tree(DELEGATOR_DTAB, P("/nope")) == DNeg(P("/nope"), NOP)


def test_explain_delegate_delegation():
    assert delegate_tree(DELEGATOR_DTAB, P("/meh/hey")) == DDelegate(
        P("/meh/hey"), NOP, DNeg(P("/heh/hey"), DE("/meh=>/heh")))


def test_explain_alt_delegation():
    assert delegate_tree(DELEGATOR_DTAB, P("/boo/lol")) == DDelegate(P("/boo/lol"), NOP, DAlt(
        P("/foo/lol"), DE("/boo=>/foo"), (
            DNeg(P("/bar/lol"), DE("/foo=>/bar")),
            DNeg(P("/bah/lol"), DE("/foo=>/bah|/$/fail")),
            DFail(P("/$/fail/lol"), DE("/foo=>/bah|/$/fail")),
        )))


def test_explain_bound_delegation():
    bound = SystemBound(P("/$/inet/127.1/8080"), P("/ya"), "inet", "127.1", 8080)
    assert delegate_tree(DELEGATOR_DTAB, P("/boo/humbug/ya")) == DDelegate(P("/boo/humbug/ya"), NOP, DAlt(
        P("/foo/humbug/ya"), DE("/boo=>/foo"), (
            DNeg(P("/bar/humbug/ya"), DE("/foo=>/bar")),
            DDelegate(P("/bah/humbug/ya"), DE("/foo=>/bah | /$/fail"),
                      DLeaf(P("/$/inet/127.1/8080/ya"), DE("/bah/humbug=>/$/inet/127.1/8080"), bound)),
            DFail(P("/$/fail/humbug/ya"), DE("/foo=>/bah | /$/fail")),
        )))


def test_explain_error_delegation():
    t = delegate_tree(DELEGATOR_DTAB, P("/beh/humbug"), lookup_namer=error_namer)
    assert isinstance(t, DDelegate) and t.path == P("/beh/humbug") and t.dentry == NOP
    assert isinstance(t.tree, DException)
    assert (t.tree.path, t.tree.dentry, t.tree.message) == (
        P("/#/error/humbug"), DE("/beh=>/#/error"), "error naming /#/error/humbug")


def test_namer_leaf_offline():
    t = delegate_tree(Dtab.read("/nah=>/#/namer"), P("/nah/bro"))
    assert t == DDelegate(P("/nah/bro"), NOP, DLeaf(
        P("/#/namer/bro"), DE("/nah=>/#/namer"), OfflineBound(P("/#/namer/bro"))))
    j = delegate(Dtab.read("/nah=>/#/namer"), P("/nah/bro"))
    leaf = j["delegate"]
    assert leaf["bound"]["id"] == "/#/namer/bro" and leaf["bound"]["path"] == "/"
    assert leaf["bound"]["addr"]["type"] == "pending" and "offline" in leaf["bound"]["addr"]


# more shapes --------------------------------------------------------------------------------

def test_union_delegation_keeps_weights():
    d = Dtab.read("/svc/web => 9 * /srv/v1 & 1 * /srv/v2; /srv => /$/inet/127.1/8000")
    u = delegate(d, P("/svc/web"))
    # Delegate(/svc/web, nop, Union(/svc/web, dentry)) collapses (same path) and, as in
    # Linkerd, the union takes the Delegate's dentry: nop, so none is shown.
    assert u["type"] == "union" and u["path"] == "/svc/web" and "dentry" not in u
    assert [m["weight"] for m in u["union"]] == [9.0, 1.0]
    first = u["union"][0]["tree"]
    assert first["type"] == "delegate" and first["path"] == "/srv/v1"
    assert first["dentry"] == {"prefix": "/svc/web", "dst": "9.00*/srv/v1 & /srv/v2"}
    leaf = first["delegate"]
    assert leaf["type"] == "leaf" and leaf["path"] == "/$/inet/127.1/8000/v1"
    assert leaf["dentry"] == {"prefix": "/srv", "dst": "/$/inet/127.1/8000"}
    assert leaf["bound"] == {"addr": {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 8000, "meta": {}}],
                                       "meta": {}}, "id": "/$/inet/127.1/8000", "path": "/v1"}


def test_root_leaf_binding_directly():
    j = delegate(Dtab(), P("/$/inet/10.0.0.1/80"))
    assert j == {"type": "leaf", "path": "/$/inet/10.0.0.1/80", "bound": {
        "addr": {"type": "bound", "addrs": [{"ip": "10.0.0.1", "port": 80, "meta": {}}], "meta": {}},
        "id": "/$/inet/10.0.0.1/80", "path": "/"}}
    assert delegate(Dtab(), P("/$/fail/x")) == {"type": "fail", "path": "/$/fail/x"}
    assert delegate(Dtab(), P("/$/nil/x")) == {"type": "empty", "path": "/$/nil/x"}
    assert delegate(Dtab(), P("/x")) == {"type": "neg", "path": "/x"}
    assert delegate(Dtab(), P("/")) == {"type": "neg", "path": "~"}


def test_fail_and_empty_destinations():
    assert delegate(Dtab.read("/a=>!"), P("/a/b")) == {
        "type": "delegate", "path": "/a/b", "delegate": {"type": "fail", "path": "!", "dentry": {"prefix": "/a", "dst": "!"}}}
    assert delegate(Dtab.read("/a=>$"), P("/a/b")) == {
        "type": "delegate", "path": "/a/b", "delegate": {"type": "empty", "path": "/a/b", "dentry": {"prefix": "/a", "dst": "$"}}}


def test_unknown_system_namer_is_an_exception_node():
    j = delegate(Dtab.read("/a=>/$/nope"), P("/a"))
    node = j["delegate"]
    assert node["type"] == "exception" and node["path"] == "/$/nope"
    assert "namer not found" in node["message"]


def test_loop_inside_alt_becomes_exception_node():
    d = Dtab.read("/a => /loop | /$/inet/127.1/1; /loop => /loop/x")
    alt = delegate(d, P("/a"))
    assert alt["type"] == "alt" and "dentry" not in alt  # collapsed into the root Delegate
    assert alt["alt"][0] == {"type": "exception", "path": "/a", "dentry": {"prefix": "/a", "dst": "/loop | /$/inet/127.1/1"},
                             "message": "Max recursion level reached."}
    assert alt["alt"][1]["type"] == "leaf"


def test_loop_on_main_chain_fails_the_call():
    with pytest.raises(MaxDepthExceeded) as info:
        delegate(Dtab.read("/s => /s/x"), P("/s/a"))
    assert str(info.value) == "Max recursion level reached."


def test_two_matching_negs_are_both_shown():
    j = delegate(Dtab.read("/a=>~;/a=>~"), P("/a"))
    assert j == {"type": "alt", "path": "/a", "alt": [
        {"type": "neg", "path": "~", "dentry": {"prefix": "/a", "dst": "~"}},
        {"type": "neg", "path": "~", "dentry": {"prefix": "/a", "dst": "~"}}]}


def test_offline_addrs():
    assert offline_addr("127.1", 80)["addrs"][0]["ip"] == "127.0.0.1"
    assert offline_addr("10.1", 80)["addrs"][0]["ip"] == "10.0.0.1"
    assert offline_addr("1.2.3", 80)["addrs"][0]["ip"] == "1.2.0.3"
    assert offline_addr("", 80)["addrs"][0]["ip"] == "127.0.0.1"
    assert offline_addr("localhost", 80)["addrs"][0]["ip"] == "127.0.0.1"
    assert offline_addr("::1", 80)["addrs"][0]["ip"] == "0:0:0:0:0:0:0:1"
    assert offline_addr("::ffff:10.0.0.1", 80)["addrs"][0]["ip"] == "10.0.0.1"
    # checked against Java 17's IPv4/IPv6 literal parsing and getHostAddress
    assert offline_addr("017.1", 80)["addrs"][0]["ip"] == "17.0.0.1"  # decimal, not octal
    assert offline_addr("4294967295", 80)["addrs"][0]["ip"] == "255.255.255.255"
    assert offline_addr("1.2.65535", 80)["addrs"][0]["ip"] == "1.2.255.255"
    assert offline_addr("::1.2.3.4", 80)["addrs"][0]["ip"] == "0:0:0:0:0:0:102:304"
    assert offline_addr("fe80::1", 80)["addrs"][0]["ip"] == "fe80:0:0:0:0:0:0:1"
    for name in ("0x7f.1", "1.2.3.4.", "1..2", "4294967296", "1.2.65536"):
        assert offline_addr(name, 80)["type"] == "pending", name
    assert offline_addr("web.example.com", 80)["type"] == "pending"
    assert offline_addr("256.1.1.1", 80)["type"] == "pending"


def test_status_namer_rendering():
    j = delegate(Dtab.read("/x => /$/io.buoyant.http.status/404"), P("/x/a"))
    leaf = j["delegate"]
    assert leaf["type"] == "leaf"
    assert leaf["bound"] == {"addr": {"type": "bound", "addrs": [], "meta": {}},
                             "id": "/$/io.buoyant.http.status/404/a", "path": "/404/a"}


# simplify (DelegateTreeTest-style) -----------------------------------------------------------

def test_simplify_collapses_delegate_with_same_path():
    d1, d2 = DE("/a=>/b"), DE("/c=>/d")
    leaf = DLeaf(P("/x"), d2, "v")
    assert simplify(DDelegate(P("/x"), d1, leaf)) == DLeaf(P("/x"), d1, "v")
    assert simplify(DDelegate(P("/y"), d1, leaf)) == DDelegate(P("/y"), d1, leaf)
    # Neg/Fail/Empty children never collapse
    assert simplify(DDelegate(P("/x"), d1, DNeg(P("/x"), d2))) == DDelegate(P("/x"), d1, DNeg(P("/x"), d2))
    assert simplify(DDelegate(P("/x"), d1, DFail(P("/x"), d2))) == DDelegate(P("/x"), d1, DFail(P("/x"), d2))
    assert simplify(DDelegate(P("/x"), d1, DEmpty(P("/x"), d2))) == DDelegate(P("/x"), d1, DEmpty(P("/x"), d2))


def test_simplify_alt_and_union():
    d = DE("/a=>/b")
    assert simplify(DAlt(P("/p"), d, ())) == DNeg(P("/p"), d)
    assert simplify(DUnion(P("/p"), d, ())) == DNeg(P("/p"), d)
    assert simplify(DAlt(P("/p"), d, (DLeaf(P("/p"), NOP, 1),))) == DLeaf(P("/p"), d, 1)
    assert simplify(DUnion(P("/p"), d, ((2.0, DLeaf(P("/q"), NOP, 1)),))) == DDelegate(P("/p"), d, DLeaf(P("/q"), NOP, 1))
    inner = DAlt(P("/p"), NOP, (DLeaf(P("/x"), NOP, 1), DLeaf(P("/y"), NOP, 2)))
    outer = DAlt(P("/p"), d, (inner, DLeaf(P("/z"), NOP, 3)))
    assert simplify(outer) == DAlt(P("/p"), d, (DLeaf(P("/x"), NOP, 1), DLeaf(P("/y"), NOP, 2), DLeaf(P("/z"), NOP, 3)))
    other = DAlt(P("/o"), NOP, (DLeaf(P("/x"), NOP, 1), DLeaf(P("/y"), NOP, 2)))
    assert simplify(DAlt(P("/p"), d, (other, DLeaf(P("/z"), NOP, 3)))) == DAlt(P("/p"), d, (other, DLeaf(P("/z"), NOP, 3)))


def test_transformation_json():
    t = DTransformation(P("/$/inet/127.1/80"), "io.l5d.port", SystemBound(P("/$/inet/127.1/80")),
                        DLeaf(P("/%/io.l5d.port/80"), NOP, SystemBound(P("/$/inet/127.1/80"))))
    j = to_json(t, render_offline_bound)
    assert list(j) == ["type", "path", "name", "bound", "tree"]
    assert j["name"] == "io.l5d.port" and j["tree"]["type"] == "leaf"


# the hooks: async namers and async addr rendering ------------------------------------------

def test_async_driver_and_renderer_match_sync():
    async def namer(path: Path) -> NameTree:
        await asyncio.sleep(0)
        return error_namer(path)

    async def render(value, path):
        await asyncio.sleep(0)
        return render_offline_bound(value, path)

    async def go():
        tree = await run_async(delegate_gen(HANDLER_DTAB, P("/boo/humbug")), namer)
        return await to_json_async(tree, render)

    assert asyncio.run(go()) == delegate(HANDLER_DTAB, P("/boo/humbug"), lookup_namer=error_namer)


def test_custom_renderer_is_used():
    seen = []

    def render(value, path):
        seen.append((value, path))
        return {"addr": {"type": "neg"}, "id": "x", "path": "/"}

    j = delegate(Dtab.read("/a=>/$/inet/1.2.3.4/5"), P("/a"), render_bound=render)
    assert j["delegate"]["bound"]["addr"] == {"type": "neg"}
    assert seen and seen[0][1] == P("/$/inet/1.2.3.4/5")


# DelegateTreeTest (Linkerd) -------------------------------------------------------------------

def test_linkerd_simplify_collapses_nodes_with_the_same_path():
    cd = DE("/b => /c|/d")
    orig = DDelegate(P("/a"), NOP, DDelegate(P("/b"), DE("/a => /b"), DAlt(P("/b"), cd, (
        DLeaf(P("/c"), cd, P("/c")), DLeaf(P("/d"), cd, P("/d"))))))
    assert simplify(orig) == DDelegate(P("/a"), NOP, DAlt(P("/b"), DE("/a => /b"), (
        DLeaf(P("/c"), cd, P("/c")), DLeaf(P("/d"), cd, P("/d")))))


def test_linkerd_simplify_single_and_empty_branches():
    bc = DE("/b => /c")
    leaf = DLeaf(P("/c"), bc, P("/c"))
    expect = DDelegate(P("/a"), NOP, DDelegate(P("/b"), DE("/a => /b"), leaf))
    assert simplify(DDelegate(P("/a"), NOP, DDelegate(P("/b"), DE("/a => /b"), DAlt(P("/b"), bc, (leaf,))))) == expect
    assert simplify(DDelegate(P("/a"), NOP, DDelegate(P("/b"), DE("/a => /b"), DUnion(P("/b"), bc, ((1.0, leaf),))))) == expect
    neg = DE("/b => ~")
    expect_neg = DDelegate(P("/a"), NOP, DDelegate(P("/b"), DE("/a => /b"), DNeg(P("/b"), neg)))
    assert simplify(DDelegate(P("/a"), NOP, DDelegate(P("/b"), DE("/a => /b"), DAlt(P("/b"), neg, ())))) == expect_neg
    assert simplify(DDelegate(P("/a"), NOP, DDelegate(P("/b"), DE("/a => /b"), DUnion(P("/b"), neg, ())))) == expect_neg


def test_linkerd_find():
    from namerouter.dtab.delegation import find

    cd = DE("/b => /c | /d")
    tree = DDelegate(P("/a"), NOP, DAlt(P("/b"), DE("/a => /b"), (
        DLeaf(P("/c"), cd, P("/c")), DLeaf(P("/d"), cd, P("/d")))))
    assert find(tree, lambda v: v == P("/d")) == [(P("/a"), ""), (P("/b"), "/a=>/b"), (P("/d"), "/b=>/c | /d")]
    assert find(tree, lambda v: v == P("/e")) is None
    tree = DDelegate(P("/a"), NOP, DAlt(P("/b"), DE("/a => /b"), (
        DLeaf(P("/c"), cd, P("/c")),
        DTransformation(P("/d"), "Optimus Prime", P("/d"), DLeaf(P("/%/optimus/d"), cd, P("/%/optimus/d"))))))
    assert find(tree, lambda v: v == P("/%/optimus/d")) == [
        (P("/a"), ""), (P("/b"), "/a=>/b"), (P("/d"), "/b=>/c | /d"), (P("/%/optimus/d"), "Optimus Prime")]


def test_namerd_namespace_plus_request_dtab():
    # namerd's HttpControlServiceTest: namespace dtab ++ request dtab, two matching entries.
    d = Dtab.read("/yeezy => /yeezus") + Dtab.read("/yeezy=>/bar")
    assert compact(delegate(d, P("/yeezy"))) == (
        '{"type":"alt","path":"/yeezy","alt":['
        '{"type":"neg","path":"/bar","dentry":{"prefix":"/yeezy","dst":"/bar"}},'
        '{"type":"neg","path":"/yeezus","dentry":{"prefix":"/yeezy","dst":"/yeezus"}}]}')
    assert compact(delegate(Dtab.read("/foo=>/bar"), P("/foo"))) == (
        '{"type":"delegate","path":"/foo","delegate":{"type":"neg","path":"/bar",'
        '"dentry":{"prefix":"/foo","dst":"/bar"}}}')


def test_exponential_delegation_stops_at_the_lookup_budget():
    from namerouter.dtab import BindingTooLarge
    from namerouter.dtab.delegation import run_sync

    with pytest.raises(BindingTooLarge):
        delegate(Dtab.read("/x => /x & /x"), P("/x"))
    small = run_sync(delegate_gen(Dtab.read("/x => /x & /x"), P("/x"), max_depth=3), offline_lookup)
    assert isinstance(small, DUnion)  # 2**3 leaves of exceptions, shown in full
