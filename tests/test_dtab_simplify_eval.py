"""simplify (spec §5) and eval (spec §6)."""
from __future__ import annotations

import pytest

from namerouter.dtab import EMPTY, FAIL, NEG, Alt, Leaf, NameTree, Path, Union, Weighted


def T(text: str) -> NameTree:
    return NameTree.read(text)


def L(*labels: str) -> Leaf:
    return Leaf(Path.of(*labels))


@pytest.mark.parametrize("text, simplified", [
    ("/a", "/a"),
    ("~ | /a", "/a"),
    ("/a | ~", "/a"),
    ("~ | ~", "~"),
    ("/a | ! | /b", "/a | !"),  # a Fail ends the fail-over chain
    ("! | /a", "!"),
    ("~ | ! | /a", "!"),
    ("$ | /a", "$ | /a"),  # $ does not stop the scan
    ("/a | $ | ~ | /b", "/a | $ | /b"),
    ("/a & ~", "/a"),
    ("/a & !", "/a"),  # since finagle 19.5 a failed member is dropped
    ("! & !", "~"),
    ("~ & ~", "~"),
    ("! & ~", "~"),
    ("/a & $", "/a & $"),
    ("$ & ~", "$"),
    ("2*/a & ~ & 3*/b", "2.00*/a & 3.00*/b"),
    ("2*/a & ~", "/a"),  # a single survivor loses its weight
    ("(/a | /b) | /c", "(/a | /b) | /c"),  # no flattening
    ("(~ | /b) | /c", "/b | /c"),
    ("(/a & /b) & /c", "(/a & /b) & /c"),
    ("(~ & ~) & /c", "/c"),
    ("(~ | ~) | !", "!"),
    ("/a & (~ | !)", "/a"),
    ("(! | /x) | /y", "!"),
    ("((/a | ~) & ~) | /b", "/a | /b"),
])
def test_simplify(text, simplified):
    s = T(text).simplified()
    assert str(s) == simplified
    assert s.simplified() == s  # idempotent


def test_simplify_degenerate_nodes():
    assert Alt().simplified() is NEG
    assert Union().simplified() is NEG
    assert Alt(L("a")).simplified() == L("a")
    assert Union(Weighted(3.0, L("a"))).simplified() == L("a")
    assert Alt(Alt(NEG)).simplified() is NEG
    assert FAIL.simplified() is FAIL and EMPTY.simplified() is EMPTY


def test_alt_with_nested_fail_keeps_fail_and_drops_rest():
    t = Alt(L("a"), Alt(NEG, FAIL), L("b"))
    assert t.simplified() == Alt(L("a"), FAIL)


def test_union_keeps_weights_in_order():
    t = Union(Weighted(2.0, L("a")), Weighted(1.0, NEG), Weighted(0.5, Alt(NEG, L("b"))))
    assert t.simplified() == Union(Weighted(2.0, L("a")), Weighted(0.5, L("b")))


P = Path.of


@pytest.mark.parametrize("text, result", [
    ("/a", {P("a")}),
    ("$", set()),
    ("~", None),
    ("!", None),
    ("/a | /b", {P("a")}),
    ("~ | /b", {P("b")}),
    ("! | /b", None),  # failure does not fall through
    ("~ | ! | /b", None),
    ("~ | ~", None),
    ("$ | /b", set()),
    ("/a & /b", {P("a"), P("b")}),
    ("/a & ~", {P("a")}),
    ("/a & !", {P("a")}),
    ("! & ~", None),
    ("$ & ~", set()),  # $ makes the union non-negative
    ("0*/a & 0*/b", {P("a"), P("b")}),  # weights are ignored, even 0
    ("(~ | /a) & (/b | /c)", {P("a"), P("b")}),
    ("/a & /a", {P("a")}),
])
def test_eval(text, result):
    assert T(text).eval() == result


def test_eval_degenerate_nodes():
    assert Alt().eval() is None
    assert Union().eval() is None
    assert Alt(L("a")).eval() == {P("a")}
    assert Union(Weighted(1.0, NEG)).eval() is None


def test_simplify_preserves_eval_on_samples():
    for text in ["~ | /a & ! | /b", "(/a | ~) & (! | /c) & $", "! & ! | $", "(~|~)|(/x&~)"]:
        t = T(text)
        assert t.simplified().eval() == t.eval(), text


# Finagle's NameTreeTest "NameTree.eval/simplified" cases.
FINAGLE_EVAL_CASES = [
    ("~", None),
    ("/ok", {"/ok"}),
    ("/ok & /ok1", {"/ok", "/ok1"}),
    ("/ok & ~ & /blah & $", {"/ok", "/blah"}),
    ("$ & $ & $", set()),
    ("~ & ~ & (~ | ~)", None),
    ("~ | /foo | /bar", {"/foo"}),
    ("~ | $ | /blah", set()),
    ("~ | (~ | $) | /blah", set()),
    ("(~|$|/foo) & (/bar|/blah) & ~ & /FOO", {"/bar", "/FOO"}),
    ("! | /ok", None),
    ("/ok & !", {"/ok"}),
    ("! & ! & !", None),
    ("~ | /ok | !", {"/ok"}),
]


@pytest.mark.parametrize("text, result", FINAGLE_EVAL_CASES)
def test_finagle_eval_and_simplified_cases(text, result):
    expect = None if result is None else {Path.read(p) for p in result}
    assert T(text).eval() == expect
    assert T(text).simplified().eval() == expect
