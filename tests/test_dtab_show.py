"""Printing (spec §4): paths, prefixes, trees at three precedence levels, weights, dtabs."""
from __future__ import annotations

import pytest

from namerouter.dtab import (
    EMPTY, FAIL, NEG, WILDCARD, Alt, Dentry, Dtab, Leaf, NameTree, Path, Prefix, Union, Weighted,
)
from namerouter.dtab.tree import format_weight


def L(*labels: str) -> Leaf:
    return Leaf(Path.of(*labels))


@pytest.mark.parametrize("path, shown", [
    (Path(), "/"),
    (Path.of("foo", "bar"), "/foo/bar"),
    (Path([b"foo/bar"]), "/\\x66\\x6f\\x6f\\x2f\\x62\\x61\\x72"),  # every byte of the label
    (Path([b"a", b"b c"]), "/a/\\x62\\x20\\x63"),  # only the offending label is escaped
    (Path(["é"]), "/\\xc3\\xa9"),
    (Path([b"*"]), "/\\x2a"),
    (Path([b"#", b"$", b"%"]), "/#/$/%"),
    (Path([b"a_b:c.d-e"]), "/a_b:c.d-e"),
])
def test_path_show(path, shown):
    assert path.show() == str(path) == shown


@pytest.mark.parametrize("text, shown", [
    ("/foo\\x2fbar", "/\\x66\\x6f\\x6f\\x2f\\x62\\x61\\x72"),
    ("/\\xC3\\xA9", "/\\xc3\\xa9"),
    ("/\\x41BC", "/ABC"),  # escapes of label chars are normalised away
    ("  /a/b  ", "/a/b"),
])
def test_path_show_after_read(text, shown):
    assert str(Path.read(text)) == shown


def test_prefix_show():
    assert str(Prefix()) == "/"
    assert str(Prefix([b"a", WILDCARD, b"c"])) == "/a/*/c"
    assert str(Prefix.read("/\\x2a/*")) == "/\\x2a/*"


@pytest.mark.parametrize("text, shown", [
    ("1 * /foo & 2 * /bar | .5 * /bar & .5 * /baz", "/foo & 2.00*/bar | 0.50*/bar & 0.50*/baz"),
    ("(/a & /b) | /c", "/a & /b | /c"),
    ("(/a|/b)|/c", "(/a | /b) | /c"),
    ("/a & (/b|/c)", "/a & (/b | /c)"),
    ("/a|(/b|/c)", "/a | (/b | /c)"),
    ("(/a&/b)&/c", "(/a & /b) & /c"),
    ("/a & (/b & /c)", "/a & (/b & /c)"),
    ("3 * (/a | /b) & /c", "3.00*(/a | /b) & /c"),
    ("2 * (/a & /b) & /c", "2.00*(/a & /b) & /c"),
    ("! | ~ | $", "! | ~ | $"),
    ("$ & ~ & !", "$ & ~ & !"),
    ("((/a))", "/a"),
    ("2 * /a", "/a"),
    ("/", "/"),
    ("1.0*/a & 1*/b", "/a & /b"),  # weight 1.0 is not printed
    ("0*/a & /b", "0.00*/a & /b"),
    ("1.004*/a & /b", "1.00*/a & /b"),  # printed rounded, so not recognised as default
    ("0.125*/a & 2.675*/b & 1.005*/c", "0.13*/a & 2.68*/b & 1.01*/c"),  # Java HALF_UP
    ("100000000000000000000*/a & /b", "100000000000000000000.00*/a & /b"),
])
def test_tree_show(text, shown):
    assert str(NameTree.read(text)) == shown


def test_show_of_built_trees_with_degenerate_nodes():
    # 1-child Alt/Union print as their child at every level; empty ones as Finagle does.
    assert str(Alt(L("a"))) == "/a"
    assert str(Union(Weighted(5.0, L("a")))) == "/a"
    assert str(Union(Weighted(1.0, Alt(L("a"))), Weighted(2.0, Union(Weighted(3.0, L("b")))))) == "/a & 2.00*/b"
    assert str(Alt()) == ""
    assert str(Union()) == ""
    assert str(Union(Weighted(1.0, Alt()), Weighted(1.0, L("a")))) == "() & /a"
    assert str(Alt(Union(), L("a"))) == " | /a"
    assert str(Alt(Alt(), L("a"))) == "() | /a"
    assert str(Union(Weighted(1.0, Alt(L("a"), L("b"))), Weighted(1.0, L("c")))) == "(/a | /b) & /c"
    assert str(Alt(Alt(L("a"), L("b")), L("c"))) == "(/a | /b) | /c"
    assert str(FAIL) == "!" and str(NEG) == "~" and str(EMPTY) == "$"


@pytest.mark.parametrize("w, shown", [
    (1.0, "1.00"), (0.5, "0.50"), (2.0, "2.00"), (0.125, "0.13"), (2.675, "2.68"),
    (1.005, "1.01"), (0.005, "0.01"), (0.004, "0.00"), (1e20, "100000000000000000000.00"),
    (1e-7, "0.00"), (123.456, "123.46"), (float("inf"), "Infinity"),
])
def test_format_weight_is_java_percent_2f(w, shown):
    assert format_weight(w) == shown


def test_dentry_and_dtab_show():
    assert str(Dentry.read("/a => /b | /c")) == "/a=>/b | /c"
    assert str(Dtab.read("/a => /b; /c => /d;")) == "/a=>/b;/c=>/d"
    assert str(Dtab()) == ""
    assert str(Dentry.read("/ => !")) == "/=>!"
    assert str(Dentry.read("/s/* => 2*/a & /b")) == "/s/*=>2.00*/a & /b"


def test_dtab_print_debug_form():
    assert Dtab.read("/a=>/b;/c=>/d | /e").print() == "Dtab(2)\n\t/a => /b\n\t/c => /d | /e\n"
    assert Dtab().print() == "Dtab(0)\n"


def test_dentry_nop():
    nop = Dentry.nop
    assert str(nop) == "/\\x2f=>~"
    assert nop.prefix == Prefix([b"/"]) and nop.dst is NEG


@pytest.mark.parametrize("text", [
    "/foo & 2.00*/bar | 0.50*/bar & 0.50*/baz", "(/a | /b) | /c", "/a & (/b | /c)",
    "! | ~ | $", "3.00*(/a | /b) & /c", "/\\x66\\x2f", "(/a & /b) & /c",
])
def test_show_read_round_trip(text):
    t = NameTree.read(text)
    assert NameTree.read(str(t)) == t
    assert str(NameTree.read(str(t))) == str(t)


def test_round_trip_rounds_weights():
    t = NameTree.read("1.004*/a & /b")
    again = NameTree.read(str(t))
    assert again.weighted[0].weight == 1.0
    assert str(again) == "/a & /b"
