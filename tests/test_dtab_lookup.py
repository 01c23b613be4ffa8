"""Dtab lookup (spec §7), concatenation, strip_prefix, simplified, equivalence."""
from __future__ import annotations

import pytest

from namerouter.dtab import NEG, Alt, Dentry, Dtab, Leaf, NameTree, Path, Prefix, WILDCARD


def D(text: str) -> Dtab:
    return Dtab.read(text)


def lookup(dtab: str, path: str) -> str:
    return str(D(dtab).lookup(Path.read(path)))


@pytest.mark.parametrize("dtab, path, result", [
    ("/a/*/c => /d", "/a/b/c/e/f", "/d/e/f"),  # the wildcard's label is consumed
    ("/svc => /srv", "/svc/web/x", "/srv/web/x"),
    ("/svc => /srv", "/svc", "/srv"),
    ("/svc => /srv", "/svcfoo", "~"),  # whole labels only
    ("/s => /t", "/s#/x", "~"),
    ("/svc/web => /x", "/svc", "~"),  # prefix longer than the path
    ("/ => /root", "/a/b", "/root/a/b"),  # the empty prefix matches everything
    ("/ => /root", "/", "/root"),
    ("/* => /any", "/", "~"),
    ("/* => /any", "/x/y", "/any/y"),
    ("/a=>/b;/a=>/c", "/a/x", "/c/x | /b/x"),  # last-defined first
    ("/svc/foo/bar=>/x;/svc/*=>/y", "/svc/foo/bar", "/y/bar | /x"),  # no longest-prefix rule
    ("/svc/*=>/y;/svc/foo/bar=>/x", "/svc/foo/bar", "/x | /y/bar"),
    ("/a=>/b & 2*/c;/z=>/q", "/a/r", "/b/r & 2.00*/c/r"),
    ("/a=>/b | ~ | ! | $", "/a/r", "/b/r | ~ | ! | $"),  # constants stay
    ("/a=>~", "/a", "~"),
    ("/a=>~;/a=>~", "/a", "~ | ~"),
    ("/a=>/x;/b=>/y", "/c", "~"),
    ("", "/a", "~"),
    ("/$=>/#/dollar", "/$/inet/h/1", "/#/dollar/inet/h/1"),  # /$ paths are not exempt
    ("/\\x61=>/b", "/a/c", "/b/c"),
    ("/a=>/", "/a/b", "/b"),
    ("/a=>/;/a=>/c", "/a", "/c | /"),
])
def test_lookup(dtab, path, result):
    assert lookup(dtab, path) == result


def test_lookup_shapes():
    d = D("/a=>/x;/a/b=>/y;/*=>/z")
    t = d.lookup(Path.read("/a/b/c"))
    assert t == Alt(Leaf(Path.read("/z/b/c")), Leaf(Path.read("/y/c")), Leaf(Path.read("/x/b/c")))
    assert D("/a=>~").lookup(Path.read("/a")) is NEG  # a single bare ~ destination is Neg itself
    assert D("/a=>/b").lookup(Path.read("/q")) is NEG


def test_lookup_of_many_dentries_with_wildcards_matches_the_naive_rule():
    d = D(";".join(f"/{a}/{b}=>/d{i}" for i, (a, b) in enumerate(
        [("x", "*"), ("*", "y"), ("x", "y"), ("*", "*"), ("y", "x"), ("x", "y")])))
    for path in ["/x/y", "/x/z", "/y/x", "/z/y/q", "/x", "/"]:
        p = Path.read(path)
        naive = [e for e in reversed(d.dentries) if e.prefix.matches(p)]
        assert [m for m, _ in d.matches(p)] == naive, path


def test_prefix_matches():
    pre = Prefix([b"a", WILDCARD])
    assert pre.matches(Path.read("/a/b"))
    assert pre.matches(Path.read("/a/b/c"))
    assert not pre.matches(Path.read("/a"))
    assert not pre.matches(Path.read("/b/b"))
    assert Prefix().matches(Path())


def test_concatenation():
    d1 = D("/foo => /bar")
    d2 = D("/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090")
    assert d1 + d2 == D("/foo=>/bar;/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090")
    assert d1 + Dtab() == d1
    assert Dtab() + d1 == d1
    assert d1 + Dentry.read("/a=>/b") == D("/foo=>/bar;/a=>/b")
    # the later dtab wins in lookup
    assert str((d1 + d2).lookup(Path.read("/foo"))) == "/biz | /bar"


def test_strip_prefix():
    d1 = D("/foo=>/bar;/baz=>/xxx/yyy")
    d2 = D("/foo=>/bar;/baz=>/xxx/yyy")
    assert len(d1.strip_prefix(d1)) == 0
    assert len(d1.strip_prefix(d2)) == 0
    assert (d1 + Dentry.read("/foo => /123")).strip_prefix(d1) == D("/foo=>/123")
    assert d1.strip_prefix(d1 + Dentry.read("/s => /b")) == d1
    assert len(Dtab().strip_prefix(d1)) == 0
    assert d1.strip_prefix(Dtab()) == d1
    assert d1.strip_prefix(D("/baz=>/xxx/yyy")) == d1  # not leading entries
    assert d1.strip_prefix(D("/foo=>/other")) == d1


def test_dtab_simplified():
    d = D("/a=>~ | ~;/b=>/x & ~;/c=>! | /y;/d=>~")
    assert str(d.simplified()) == "/b=>/x;/c=>!"


def test_equivalence():
    assert Dentry.read("/a=>/b | ~").equiv(Dentry.read("/a=>/b"))
    assert not Dentry.read("/a=>/b").equiv(Dentry.read("/a/*=>/b"))
    assert Dentry.read("/a=>/b | ~") != Dentry.read("/a=>/b")  # == is structural


def test_dtab_is_a_sequence_of_dentries():
    d = D("/a=>/b;/c=>/d")
    assert len(d) == 2 and d[0] == Dentry.read("/a=>/b") and list(d)[1] == Dentry.read("/c=>/d")
    assert d[1:] == D("/c=>/d")
    assert hash(d) == hash(D("/a => /b ; /c => /d"))


def test_dtab_with_comments_from_finagle():
    text = """
# a comment
      /#foo => /biz  # another comment
             | ( /bliz & # yet another comment
                 /bluth ) # duh bluths
             ; #finalmente
      #/ignore=>/me;
    """
    assert D(text) == Dtab([Dentry(Prefix([b"#foo"]), NameTree.read("/biz | /bliz & /bluth"))])


def test_to_json():
    assert D("/a=>/b | /c").to_json() == [{"prefix": "/a", "dst": "/b | /c"}]


def test_finagle_aliases():
    d = D("/a=>/b")
    assert d.concat(D("/c=>/d")) == D("/a=>/b;/c=>/d")
    assert d.append(Dentry.read("/c=>/d")) == D("/a=>/b;/c=>/d")
    assert str(Dtab.fail) == "/=>!" and len(Dtab.empty) == 0
