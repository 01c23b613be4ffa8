"""Offline binding (spec §8) and the system namers' rules (namerouter.dtab.system)."""
from __future__ import annotations

import pytest

from namerouter.dtab import (
    EMPTY, FAIL, NEG, BindingError, Dtab, Leaf, MaxDepthExceeded, NameTree, Path, UnknownNamer,
)
from namerouter.dtab import system
from namerouter.dtab.offline import OfflineBound, bind
from namerouter.dtab.system import SystemBound


def b(dtab: str, path: str, **kw) -> str:
    return str(bind(Dtab.read(dtab), Path.read(path), **kw))


@pytest.mark.parametrize("dtab, path, result", [
    ("/svc => /$/inet/127.1/8080", "/svc/foo", "/$/inet/127.1/8080/foo"),
    ("/svc => /#/io.l5d.fs", "/svc/web/x", "/#/io.l5d.fs/web/x"),
    ("/svc => /srv; /srv => /#/io.l5d.fs", "/svc/web", "/#/io.l5d.fs/web"),
    ("/svc => /srv", "/svc/web", "~"),  # matches no further dentry: negative
    ("", "/svc/web", "~"),
    ("", "/$/inet/127.0.0.1/1234", "/$/inet/127.0.0.1/1234"),
    ("", "/$/inet/1234/foobar", "/$/inet/1234/foobar"),
    ("", "/$/fail", "!"),
    ("", "/$/fail/foo/bar", "!"),
    ("", "/$/nil/foo", "$"),
    ("", "/$", "~"),
    ("", "/#/io.l5d.k8s/default/http/web", "/#/io.l5d.k8s/default/http/web"),
    ("", "/#", "~"),
    # Alt: first non-negative wins; ! stops; $ is a result
    ("/t => ! | /$/inet/1.1.1.1/1", "/t", "!"),
    ("/t => ~ | /$/fail | /$/inet/1.1.1.1/1", "/t", "!"),
    ("/t => /$/nil | /$/fail", "/t", "$"),
    ("/t => /nowhere | /$/inet/1.1.1.1/1", "/t", "/$/inet/1.1.1.1/1"),
    ("/t => /$/inet/1.1.1.1/1 | /$/inet/2.2.2.2/2", "/t", "/$/inet/1.1.1.1/1"),
    # Union: weights kept, ~ and ! members dropped, a lone survivor loses its weight
    ("/t => 3*/$/inet/1.1.1.1/1 & /$/inet/2.2.2.2/2", "/t/r", "3.00*/$/inet/1.1.1.1/1/r & /$/inet/2.2.2.2/2/r"),
    ("/t => 3*/$/inet/1.1.1.1/1 & /nowhere", "/t", "/$/inet/1.1.1.1/1"),
    ("/t => /$/fail & /$/inet/1.1.1.1/1", "/t", "/$/inet/1.1.1.1/1"),
    ("/t => /$/fail & /nowhere", "/t", "~"),
    ("/t => /$/nil & /nowhere", "/t", "$"),
    ("/t => 2*/$/nil & /$/inet/1.1.1.1/1", "/t", "2.00*$ & /$/inet/1.1.1.1/1"),
    ("/t => /u & /$/inet/3.3.3.3/3; /u => /$/inet/1.1.1.1/1 & /$/inet/2.2.2.2/2", "/t",
     "(/$/inet/1.1.1.1/1 & /$/inet/2.2.2.2/2) & /$/inet/3.3.3.3/3"),  # nested unions stay
    ("/t => (/nowhere | /$/inet/1.1.1.1/1) & /$/inet/2.2.2.2/2", "/t",
     "/$/inet/1.1.1.1/1 & /$/inet/2.2.2.2/2"),  # bound trees have no Alt
    # fall-through semantics of later entries
    ("/svc => /#/a; /svc/b => ~", "/svc/b", "/#/a/b"),
    ("/svc => /#/a; /svc/b => !", "/svc/b", "!"),
    ("/svc => /#/a; /svc/b => $", "/svc/b", "$"),
    ("/svc => /#/a; /svc/b => /nowhere", "/svc/b", "/#/a/b"),
    ("/svc/foo/bar => /#/x; /svc/* => /#/y", "/svc/foo/bar", "/#/y/bar"),
    # /$ and /# paths go through the dtab first
    ("/$ => /#/dollar", "/$/inet/1.1.1.1/1", "/#/dollar/inet/1.1.1.1/1"),
    ("/$ => ~", "/$/inet/1.1.1.1/1", "/$/inet/1.1.1.1/1"),  # a bare ~ lets the namers answer
    ("/$ => ~; /$ => ~", "/$/inet/1.1.1.1/1", "~"),  # Alt(~,~) is not ~: namers skipped
    ("/# => /$/inet/1.1.1.1/1", "/#/io.l5d.fs/x", "/$/inet/1.1.1.1/1/io.l5d.fs/x"),
    # io.buoyant rewriting namers feed back into the dtab
    ("/h => /$/io.buoyant.hostportPfx/hp; /hp/web/8080 => /$/inet/1.1.1.1/8080", "/h/web:8080/x",
     "/$/inet/1.1.1.1/8080/x"),
    ("/d => /$/io.buoyant.http.domainToPathPfx/dom; /dom/com/ex => /#/fs", "/d/a.ex.com", "/#/fs/a"),
    ("/r => /$/io.buoyant.rinet", "/r/8080/10.0.0.1/x", "/$/io.buoyant.rinet/8080/10.0.0.1/x"),
    ("/x => /$/io.buoyant.http.status/404", "/x/a", "/$/io.buoyant.http.status/404/a"),
])
def test_bind(dtab, path, result):
    assert b(dtab, path) == result


def test_bound_leaf_values():
    t = bind(Dtab.read("/svc => /$/inet/127.1/8080"), Path.read("/svc/a/b"))
    assert isinstance(t, Leaf) and isinstance(t.value, SystemBound)
    assert t.value.id == Path.read("/$/inet/127.1/8080")
    assert t.value.residual == Path.read("/a/b")
    assert (t.value.host, t.value.port) == ("127.1", 8080)
    t = bind(Dtab.read("/svc => /#/io.l5d.fs"), Path.read("/svc/web"))
    assert t == Leaf(OfflineBound(Path.read("/#/io.l5d.fs/web"), Path()))


def test_bind_accepts_text_path():
    assert str(bind(Dtab.read("/a=>/$/nil"), "/a")) == "$"


def _chain(n: int) -> Dtab:
    """n rewrites /s0 -> /s1 -> ... -> /$/inet/127.1/80."""
    lines = [f"/s{i} => /s{i + 1}" for i in range(n - 1)] + [f"/s{n - 1} => /$/inet/127.1/80"]
    return Dtab.read(";".join(lines))


def test_depth_limit_counts_the_namer_lookup():
    assert str(bind(_chain(99), Path.read("/s0"))) == "/$/inet/127.1/80"  # 99 + 1 lookups
    with pytest.raises(MaxDepthExceeded) as info:
        bind(_chain(100), Path.read("/s0"))
    assert str(info.value) == "Max recursion level: 100 reached in Namer lookup"


def test_depth_limit_is_configurable():
    with pytest.raises(MaxDepthExceeded) as info:
        bind(Dtab.read("/s => /s/srv"), Path.read("/s/foo/bar"), max_depth=2)
    assert str(info.value) == "Max recursion level: 2 reached in Namer lookup"
    assert str(bind(_chain(5), Path.read("/s0"), max_depth=6)) == "/$/inet/127.1/80"
    with pytest.raises(MaxDepthExceeded):
        bind(_chain(5), Path.read("/s0"), max_depth=5)


@pytest.mark.parametrize("dtab", ["/s => /s/x", "/ => /#/root", "/a => /b; /b => /a"])
def test_loops_hit_the_depth_limit(dtab):
    with pytest.raises(MaxDepthExceeded):
        bind(Dtab.read(dtab), Path.read("/s/a" if dtab.startswith("/s") else "/a/x"))


def test_union_member_failures_are_dropped_when_a_sibling_binds():
    assert b("/t => /loop & /$/inet/1.1.1.1/1; /loop => /loop/x", "/t") == "/$/inet/1.1.1.1/1"
    assert b("/t => /$/nope & /$/inet/1.1.1.1/1", "/t") == "/$/inet/1.1.1.1/1"
    assert b("/t => /$/nope & /nowhere", "/t") == "~"  # a negative member counts as bound


def test_union_of_only_failures_raises_the_first():
    with pytest.raises(UnknownNamer) as info:
        bind(Dtab.read("/t => /$/nope & /loop; /loop => /loop/x"), Path.read("/t"))
    assert "namer not found" in str(info.value)


def test_alt_failure_aborts_without_fallback():
    with pytest.raises(UnknownNamer):
        bind(Dtab.read("/t => /$/nope | /$/inet/1.1.1.1/1"), Path.read("/t"))
    with pytest.raises(MaxDepthExceeded):
        bind(Dtab.read("/t => /loop | /$/inet/1.1.1.1/1; /loop => /loop/x"), Path.read("/t"))
    # ... but a failure after the winning branch is never reached
    assert b("/t => /$/inet/1.1.1.1/1 | /$/nope", "/t") == "/$/inet/1.1.1.1/1"


@pytest.mark.parametrize("path", ["/$/nope", "/$/inet", "/$/inet/host", "/$/inet/host/http",
                                  "/$/com.example.Namer/x"])
def test_unknown_system_namer(path):
    with pytest.raises(UnknownNamer) as info:
        bind(Dtab(), Path.read(path))
    assert "namer not found" in str(info.value)
    assert path in str(info.value)
    assert isinstance(info.value, BindingError)


def test_custom_namer_callback():
    calls = []

    def lookup(path: Path) -> NameTree:
        calls.append(str(path))
        if path.startswith(Path.read("/#/io.l5d.fs")):
            return NameTree.read("/$/inet/10.0.0.1/80") if path[2:] == Path.read("/web") else NEG
        return system.lookup(path)

    d = Dtab.read("/svc => /#/io.l5d.fs")
    assert str(bind(d, Path.read("/svc/web"), lookup_namer=lookup)) == "/$/inet/10.0.0.1/80"
    assert str(bind(d, Path.read("/svc/db"), lookup_namer=lookup)) == "~"
    assert calls == ["/#/io.l5d.fs/web", "/$/inet/10.0.0.1/80", "/#/io.l5d.fs/db"]


# --- system namers, directly ---------------------------------------------------------------

def sl(path: str) -> str:
    return str(system.lookup(Path.read(path)))


@pytest.mark.parametrize("path, result", [
    ("/$/inet/1234", "/$/inet/1234"),
    ("/$/inet/127.0.0.1/1234", "/$/inet/127.0.0.1/1234"),
    ("/$/inet/1234/foobar", "/$/inet/1234/foobar"),
    ("/$/inet/1234/5678", "/$/inet/1234/5678"),  # host 1234, port 5678
    ("/$/inet/h/\\x2b80", "/$/inet/h/\\x2b\\x38\\x30"),  # parseInt accepts a sign: +80
    ("/$/fixedinet/127.0.0.1/1234/x", "/$/fixedinet/127.0.0.1/1234/x"),
    ("/$/fail", "!"), ("/$/fail/x", "!"), ("/$/nil", "$"), ("/$/nil/x/y", "$"),
    ("/$", "~"), ("/a/b", "~"), ("/", "~"), ("/#/io.l5d.fs/x", "~"),
    ("/$/io.buoyant.hostportPfx/pfx/web:8080/rest", "/pfx/web/8080/rest"),
    ("/$/io.buoyant.porthostPfx/pfx/web:8080/rest", "/pfx/8080/web/rest"),
    ("/$/io.buoyant.hostportPfx/pfx/web", "~"),  # no port
    ("/$/io.buoyant.hostportPfx/pfx/web:HTTP", "~"),  # port must be a lower-case DNS label
    ("/$/io.buoyant.hostportPfx/pfx/web:http", "/pfx/web/http"),
    ("/$/io.buoyant.hostportPfx/pfx/a:b:c", "~"),
    ("/$/io.buoyant.hostportPfx/pfx/web:80:", "/pfx/web/80"),  # Java split drops trailing ""
    ("/$/io.buoyant.hostportPfx/pfx", "~"),
    ("/$/io.buoyant.hostportPfx", "~"),
    ("/$/io.buoyant.http.domainToPathPfx/pfx/foo.buoyant.io/r", "/pfx/io/buoyant/foo/r"),
    ("/$/io.buoyant.http.domainToPath/foo.buoyant.io/r", "/io/buoyant/foo/r"),
    ("/$/io.buoyant.http.domainToPath/foo:8080", "/foo:8080"),
    ("/$/io.buoyant.http.subdomainOfPfx/buoyant.io/pfx/foo.buoyant.io/r", "/pfx/foo/r"),
    ("/$/io.buoyant.http.subdomainOfPfx/buoyant.io/pfx/foo.buoyant.io:8080", "/pfx/foo"),
    ("/$/io.buoyant.http.subdomainOfPfx/buoyant.io/pfx/buoyant.io", "~"),
    ("/$/io.buoyant.http.subdomainOf/service.consul/web.service.consul/x", "/web/x"),
    ("/$/io.buoyant.http.subdomainOf/service.consul/web.other", "~"),
    ("/$/io.buoyant.http.anyMethodPfx/pfx/POST/svc/x", "/pfx/svc/x"),
    ("/$/io.buoyant.http.anyMethodPfx/pfx/post/svc", "~"),
    ("/$/io.buoyant.http.anyMethod/GET/svc/x", "/svc/x"),
    ("/$/io.buoyant.http.anyHostPfx/pfx/foo.buoyant.io/r", "/pfx/r"),
    ("/$/io.buoyant.http.anyHost/foo.buoyant.io/r", "/r"),
    ("/$/io.buoyant.http.anyHost/foo\\x20bar/r", "~"),
    ("/$/io.buoyant.rinet/8080/127.0.0.1/x", "/$/io.buoyant.rinet/8080/127.0.0.1/x"),
    ("/$/io.buoyant.rinet/8080", "~"),
    ("/$/io.buoyant.http.status/404/x", "/$/io.buoyant.http.status/404/x"),
    ("/$/io.buoyant.http.status/600", "~"),
    ("/$/io.buoyant.http.status/99", "~"),
    ("/$/io.buoyant.http.status", "~"),
    ("/$/com.twitter.finagle.namer.global/$/inet/1/2", "/$/inet/1/2"),
])
def test_system_lookup(path, result):
    assert sl(path) == result


def test_system_bound_fields():
    leaf = system.lookup(Path.read("/$/inet/1234/foobar"))
    assert leaf.value == SystemBound(Path.read("/$/inet/1234"), Path.read("/foobar"), "inet", "", 1234)
    leaf = system.lookup(Path.read("/$/io.buoyant.rinet/8080/10.1.2.3/x"))
    assert leaf.value.id == Path.read("/$/io.buoyant.rinet/8080/10.1.2.3")
    assert (leaf.value.host, leaf.value.port, leaf.value.residual) == ("10.1.2.3", 8080, Path.read("/x"))
    leaf = system.lookup(Path.read("/$/io.buoyant.http.status/503/a"))
    assert (leaf.value.kind, leaf.value.status) == ("status", 503)
    assert system.lookup(Path.read("/$/fail/x")) is FAIL
    assert system.lookup(Path.read("/$/nil")) is EMPTY


def test_rinet_with_a_bad_port_fails():
    with pytest.raises(BindingError):
        system.lookup(Path.read("/$/io.buoyant.rinet/http/127.0.0.1"))


def test_java_parse_int():
    jp = system.java_parse_int
    assert jp("80") == 80 and jp("+80") == 80 and jp("-1") == -1 and jp("0080") == 80
    assert jp("\u0668\u0660") == 80  # non-ASCII decimal digits, as Character.digit
    assert jp("2147483647") == 2**31 - 1 and jp("2147483648") is None
    assert jp("") is None and jp("+") is None and jp("8 0") is None and jp("1_0") is None


def test_finagle_infinite_loop_case():
    d = Dtab.read("""
      /foo/bar => /bar/foo;
      /bar/foo => /foo/bar""")
    with pytest.raises(MaxDepthExceeded):
        bind(d, Path.read("/foo/bar"))


def _with_testnamer(path: Path) -> NameTree:
    """Finagle's DefaultInterpreterTest `testnamer` class, reachable as /$/<class>."""
    if path.labels[:2] == (b"$", b"com.twitter.finagle.naming.testnamer"):
        return NameTree.read("/rewritten/by/test/namer")
    return system.lookup(path)


def test_finagle_default_interpreter_cases():
    assert b("/foo=>/$/inet/8080", "/foo") == "/$/inet/8080"
    assert b("/foo=>/bar;/bar=>/$/inet/8080", "/foo") == "/$/inet/8080"
    d1 = Dtab.read("/foo=>/bar")
    d2 = Dtab.read("/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090")
    assert str(bind(d1 + d2, Path.read("/foo"))) == "/$/inet/8080"
    assert str(bind(d2 + d1, Path.read("/foo"))) == "/$/inet/9090"
    d = Dtab.read("/foo=>/$/com.twitter.finagle.naming.testnamer;/rewritten/by/test/namer=>/$/inet/7070")
    assert str(bind(d, Path.read("/foo"), lookup_namer=_with_testnamer)) == "/$/inet/7070"
    full = Dtab.read("""
      /foo => /bar;
      /foo => 3 * /baz & 2 * /booz & /$/com.twitter.finagle.naming.testnamer;
      /rewritten/by/test/namer => /$/inet/7070;
      /baz => 3 * /$/inet/8080 & 2 * /$/inet/9090;
      /booz => ~
    """)
    t = bind(full, Path.read("/foo"), lookup_namer=_with_testnamer)
    assert str(t) == "3.00*(3.00*/$/inet/8080 & 2.00*/$/inet/9090) & /$/inet/7070"
    assert {str(v) for v in t.eval()} == {"/$/inet/8080", "/$/inet/9090", "/$/inet/7070"}


def test_exponential_unions_are_memoised():
    # Each level doubles the tree; Finagle would explore 2**100 branches. Answers are
    # memoised per (path, depth), so this fails fast with the depth error instead.
    import time

    start = time.perf_counter()
    with pytest.raises(MaxDepthExceeded):
        bind(Dtab.read("/x => /x & /x"), Path.read("/x"))
    d = Dtab.read("/x => /y & /y; /y => /z | /z; /z => /$/inet/127.1/1")
    assert str(bind(d, Path.read("/x"))) == "/$/inet/127.1/1 & /$/inet/127.1/1"
    assert time.perf_counter() - start < 5


def test_lookup_budget():
    from namerouter.dtab import BindingTooLarge

    with pytest.raises(BindingTooLarge) as info:
        bind(Dtab.read("/x => /x/a & /x/b"), Path.read("/x"), budget=1000)
    assert str(info.value) == "Binding too large: more than 1000 lookup steps"
    # within budget, the same dtab fails as Finagle would: every branch loops
    with pytest.raises(MaxDepthExceeded):
        bind(Dtab.read("/x => /x/a & /x/b"), Path.read("/x"), max_depth=6, budget=1000)
