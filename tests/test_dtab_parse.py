"""Parsing: values built from text, and Finagle's exact error messages (spec §2, §3)."""
from __future__ import annotations

import pytest

from namerouter.dtab import (
    EMPTY, FAIL, NEG, WILDCARD, Alt, Dentry, Dtab, DtabSyntaxError, Leaf, NameTree, Path, Prefix,
    Union, Weighted,
)
from namerouter.dtab import _explain, parser


def P(*labels: str | bytes) -> Path:
    return Path.of(*labels)


def L(*labels: str) -> Leaf:
    return Leaf(Path.of(*labels))


def U(*members: tuple[float, object]) -> Union:
    return Union(*(Weighted(w, t) for w, t in members))


# --- paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, labels", [
    ("/", ()),
    ("  /foo/bar  ", (b"foo", b"bar")),
    ("/\\x66\\x6f\\x6F", (b"foo",)),
    ("/foo#bar", (b"foo#bar",)),  # '#' is a label char inside a path
    ("/ # x", ()),  # empty path, then a comment
    ("/#", (b"#",)),
    ("/#/io.l5d.fs/web", (b"#", b"io.l5d.fs", b"web")),
    ("/$/inet/127.1/8080", (b"$", b"inet", b"127.1", b"8080")),
    ("/a_b:c.d#e$f%g-h", (b"a_b:c.d#e$f%g-h",)),
    ("/foo\\x2fbar", (b"foo/bar",)),  # one label of 7 bytes
    ("/\\x00\\xff", (b"\x00\xff",)),
    ("/\\xC3\\xA9", ("é".encode(),)),
    ("/\\x2a", (b"*",)),
    ("/a/../b", (b"a", b"..", b"b")),  # no dot-segment normalisation
    ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f /a", (b"a",)),  # Java whitespace
    ("\u2003/a\u3000", (b"a",)),
    ("/a # comment", (b"a",)),
    ("# c\n/a", (b"a",)),
])
def test_read_path(text, labels):
    assert Path.read(text).labels == labels


def test_escaped_and_plain_are_the_same_path():
    assert Path.read("/\\x61") == Path.read("/a") == P("a")


def test_path_is_case_sensitive():
    assert Path.read("/A") != Path.read("/a")


# --- exact error messages -----------------------------------------------------------------

ERRORS = [
    # from Finagle's tests
    ("path", "invalid-param", "'/' expected but 'i' found at '[i]nvalid-param'"),
    ("path", "/foo/bar/", "label char expected but end of input found at '/foo/bar/[]'"),
    ("path", "/foo^bar", "end of input expected but '^' found at '/foo[^]bar'"),
    # derived from the recursive-descent procedure
    ("path", "", "'/' expected but end of input found at '[]'"),
    ("path", "   ", "'/' expected but end of input found at '   []'"),
    ("path", "//foo", "end of input expected but '/' found at '/[/]foo'"),
    ("path", "/{}", "end of input expected but '{' found at '/[{]}'"),
    ("path", "/ foo", "end of input expected but 'f' found at '/ [f]oo'"),
    ("path", "/# x", "end of input expected but 'x' found at '/# [x]'"),
    ("path", "/\\?", "'x' expected but '?' found at '/\\[?]'"),
    ("path", "/\\x?", "hex char expected but '?' found at '/\\x[?]'"),
    ("path", "/\\x0?", "hex char expected but '?' found at '/\\x0[?]'"),
    ("path", "/\\X41", "'x' expected but 'X' found at '/\\[X]41'"),
    ("path", "/\\x4", "hex char expected but end of input found at '/\\x4[]'"),
    ("path", "/\\", "'x' expected but end of input found at '/\\[]'"),
    ("path", "/a/*", "label char expected but '*' found at '/a/[*]'"),
    ("path", "/*", "end of input expected but '*' found at '/[*]'"),
    ("path", "/a b", "end of input expected but 'b' found at '/a [b]'"),
    ("path", "/a\u00a0", "end of input expected but '\u00a0' found at '/a[\u00a0]'"),  # NBSP is not ws
    ("path", "/a\u0085", "end of input expected but '\u0085' found at '/a[\u0085]'"),
    ("path", "/a\u2007", "end of input expected but '\u2007' found at '/a[\u2007]'"),
    ("path", "/é", "end of input expected but 'é' found at '/[é]'"),
    ("path", "/a//b", "label char expected but '/' found at '/a/[/]b'"),
    # prefixes
    ("prefix", "/a/*b", "end of input expected but 'b' found at '/a/*[b]'"),
    ("prefix", "/a/b*", "end of input expected but '*' found at '/a/b[*]'"),
    ("prefix", "/**", "end of input expected but '*' found at '/*[*]'"),
    ("prefix", "/a/", "label char expected but end of input found at '/a/[]'"),
    ("prefix", "x", "'/' expected but 'x' found at '[x]'"),
    # trees
    ("tree", "", "simple expected but end of input found at '[]'"),
    ("tree", "#", "simple expected but end of input found at '#[]'"),
    ("tree", "/foo &", "simple expected but end of input found at '/foo &[]'"),
    ("tree", "/foo |", "simple expected but end of input found at '/foo |[]'"),
    ("tree", "/foo & 0.1.2 * /bar", "number char expected but '.' found at '/foo & 0.1[.]2 * /bar'"),
    ("tree", "/foo & . * /bar", "weight expected but '.' found at '/foo & .[ ]* /bar'"),
    ("tree", ".*/a", "weight expected but '.' found at '.[*]/a'"),
    ("tree", ".", "weight expected but '.' found at '.[]'"),
    ("tree", "1..2*/a", "number char expected but '.' found at '1.[.]2*/a'"),
    ("tree", "-1*/a", "simple expected but '-' found at '[-]1*/a'"),
    ("tree", "1e3*/a", "'*' expected but 'e' found at '1[e]3*/a'"),
    ("tree", "2 /a", "'*' expected but '/' found at '2 [/]a'"),
    ("tree", "2*", "simple expected but end of input found at '2*[]'"),
    ("tree", "(/a", "')' expected but end of input found at '(/a[]'"),
    ("tree", "(/a | /b", "')' expected but end of input found at '(/a | /b[]'"),
    ("tree", "/a)", "end of input expected but ')' found at '/a[)]'"),
    ("tree", "()", "simple expected but ')' found at '([)]'"),
    ("tree", "/a /b", "end of input expected but '/' found at '/a [/]b'"),
    ("tree", "*", "simple expected but '*' found at '[*]'"),
    ("tree", "/a & & /b", "simple expected but '&' found at '/a & [&] /b'"),
    ("tree", "/a||/b", "simple expected but '|' found at '/a|[|]/b'"),
    ("tree", "/a & 2 * * /b", "simple expected but '*' found at '/a & 2 * [*] /b'"),
    ("tree", "!!", "end of input expected but '!' found at '![!]'"),
    ("tree", "~x", "end of input expected but 'x' found at '~[x]'"),
    ("tree", "/a;", "end of input expected but ';' found at '/a[;]'"),
    # dentries
    ("dentry", "/&!", "'=' expected but '&' found at '/[&]!'"),
    ("dentry", "/foo/*bar/baz => !", "'=' expected but 'b' found at '/foo/*[b]ar/baz => !'"),
    ("dentry", "/a= >/b", "'>' expected but ' ' found at '/a=[ ]>/b'"),
    ("dentry", "/a=/b", "'>' expected but '/' found at '/a=[/]b'"),
    ("dentry", "/a=>", "simple expected but end of input found at '/a=>[]'"),
    ("dentry", "/a=>/b;", "end of input expected but ';' found at '/a=>/b[;]'"),
    ("dentry", "/a=>/b;/c=>/d", "end of input expected but ';' found at '/a=>/b[;]/c=>/d'"),
    ("dentry", "a=>/b", "'/' expected but 'a' found at '[a]=>/b'"),
    ("dentry", "/a/=>/b", "label char expected but '=' found at '/a/[=]>/b'"),
    ("dentry", "/a=>/b/*", "label char expected but '*' found at '/a=>/b/[*]'"),
    ("dentry", "/a => 1*", "simple expected but end of input found at '/a => 1*[]'"),
    # dtabs
    ("dtab", ";", "'/' expected but ';' found at '[;]'"),
    ("dtab", ";;", "'/' expected but ';' found at '[;];'"),
    ("dtab", "/a=>/b;;", "'/' expected but ';' found at '/a=>/b;[;]'"),
    ("dtab", "/a=>/b; ;", "'/' expected but ';' found at '/a=>/b; [;]'"),
    ("dtab", "/a=>/b\n/c=>/d", "end of input expected but '/' found at '/a=>/b\n[/]c=>/d'"),
    ("dtab", "/a=>/b # c;/c=>/d\n/e", "end of input expected but '/' found at '/a=>/b # c;/c=>/d\n[/]e'"),
    ("dtab", "/a=>/b;x", "'/' expected but 'x' found at '/a=>/b;[x]'"),
    ("dtab", "/a", "'=' expected but end of input found at '/a[]'"),
    ("dtab", "/a=>/b | ", "simple expected but end of input found at '/a=>/b | []'"),
]


@pytest.mark.parametrize("kind, text, message", ERRORS)
def test_error_message(kind, text, message):
    read = {"path": Path.read, "prefix": Prefix.read, "tree": NameTree.read,
            "dentry": Dentry.read, "dtab": Dtab.read}[kind]
    with pytest.raises(DtabSyntaxError) as info:
        read(text)
    assert str(info.value) == message


def test_error_is_a_value_error_with_position():
    with pytest.raises(ValueError) as info:
        Dtab.read("/a=>/b;\n/c => /d\n  /e =/f")
    err = info.value
    assert isinstance(err, DtabSyntaxError)
    assert (err.line, err.column) == (3, 3)
    assert err.offset == 19


def test_non_ascii_digit_weight_fails_like_java_parse_double():
    # Scala's isDigit accepts U+0663; Double.parseDouble then rejects it.
    with pytest.raises(DtabSyntaxError) as info:
        NameTree.read("\u0663*/a")
    assert str(info.value) == 'For input string: "\u0663"'


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError):
        Path.read(b"/a")  # type: ignore[arg-type]


# --- prefixes ----------------------------------------------------------------------------

def test_prefix_wildcards():
    assert Prefix.read("/foo/*/bar").elems == (b"foo", WILDCARD, b"bar")
    assert Prefix.read("/*").elems == (WILDCARD,)
    assert Prefix.read("/").elems == ()
    assert Prefix.read("/\\x2a").elems == (b"*",)  # escaped: a literal label, not a wildcard
    assert Prefix.read("/*#comment").elems == (WILDCARD,)
    assert Prefix.read("/a/* # c").elems == (b"a", WILDCARD)


# --- name trees -------------------------------------------------------------------------

@pytest.mark.parametrize("text, tree", [
    ("! | ~ | $", Alt(FAIL, NEG, EMPTY)),
    ("/foo/bar", L("foo", "bar")),
    ("  /foo & /bar  ", U((1.0, L("foo")), (1.0, L("bar")))),
    ("  /foo | /bar  ", Alt(L("foo"), L("bar"))),
    ("/foo & /bar | /bar & /baz",
     Alt(U((1.0, L("foo")), (1.0, L("bar"))), U((1.0, L("bar")), (1.0, L("baz"))))),
    ("1 * /foo & 2 * /bar | .5 * /bar & .5 * /baz",
     Alt(U((1.0, L("foo")), (2.0, L("bar"))), U((0.5, L("bar")), (0.5, L("baz"))))),
    ("2 * /a", L("a")),  # a weight outside a union is dropped
    ("2*/a | /b", Alt(L("a"), L("b"))),
    ("(/a)", L("a")),
    ("((/a|/b))", Alt(L("a"), L("b"))),
    ("(/a|/b)|/c", Alt(Alt(L("a"), L("b")), L("c"))),  # groups are not flattened
    ("/a|(/b|/c)", Alt(L("a"), Alt(L("b"), L("c")))),
    ("(/a&/b)&/c", U((1.0, U((1.0, L("a")), (1.0, L("b")))), (1.0, L("c")))),
    ("/a & (/b|/c)", U((1.0, L("a")), (1.0, Alt(L("b"), L("c"))))),
    ("3*(/a|/b) & /c", U((3.0, Alt(L("a"), L("b"))), (1.0, L("c")))),
    ("1.*/a & 007*/b", U((1.0, L("a")), (7.0, L("b")))),
    ("0*/a & 0.0*/b", U((0.0, L("a")), (0.0, L("b")))),
    ("!", FAIL), ("~", NEG), ("$", EMPTY),
    ("!#x", FAIL),
    ("/", Leaf(Path())),
    ("$ & ~", U((1.0, EMPTY), (1.0, NEG))),
    ("# lead\n/a # c1\n| # c2\n/b", Alt(L("a"), L("b"))),
    ("2\n*\n/a & /b", U((2.0, L("a")), (1.0, L("b")))),
    ("/a&/b", U((1.0, L("a")), (1.0, L("b")))),
    ("/a#x|/b", Alt(L("a#x"), L("b"))),  # `#` glued to a label is part of it
    ("/a #x|/b", L("a")),  # after whitespace it starts a comment
])
def test_read_tree(text, tree):
    assert NameTree.read(text) == tree


def test_default_weight_is_exactly_one():
    t = NameTree.read("/a & /b")
    assert [w.weight for w in t.weighted] == [1.0, 1.0]


def test_huge_weight_is_infinity_like_java():
    t = NameTree.read("1" * 400 + "*/a & /b")
    assert t.weighted[0].weight == float("inf")


# --- dentries and dtabs -----------------------------------------------------------------

def test_read_dentry():
    assert Dentry.read("/=>!") == Dentry(Prefix(), FAIL)
    assert Dentry.read("/ => !") == Dentry(Prefix(), FAIL)
    assert Dentry.read("/foo/*/bar => !") == Dentry(Prefix([b"foo", WILDCARD, b"bar"]), FAIL)
    assert Dentry.read("/foo/bar/baz => !") == Dentry(Prefix([b"foo", b"bar", b"baz"]), FAIL)
    assert Dentry.read(" # c\n /a # c\n => # c\n /b # c") == Dentry(Prefix([b"a"]), L("b"))


def test_read_dtab():
    assert Dtab.read("") == Dtab()
    assert Dtab.read("   \n\t ") == Dtab()
    assert Dtab.read("# only a comment") == Dtab()
    assert Dtab.read("# one\n# two\n") == Dtab()
    assert Dtab.read("  /=>!  ") == Dtab([Dentry(Prefix(), FAIL)])
    assert Dtab.read("/=>!;") == Dtab([Dentry(Prefix(), FAIL)])
    assert Dtab.read("/=>!;/foo=>/bar") == Dtab([Dentry(Prefix(), FAIL), Dentry(Prefix([b"foo"]), L("bar"))])
    assert Dtab.read("/a=>/b ; # trailing\n") == Dtab([Dentry(Prefix([b"a"]), L("b"))])


def test_comment_rules_in_dtabs():
    two = Dtab.read("/a=>/b#c;/c=>/d")
    assert [d.show() for d in two] == ["/a=>/b#c", "/c=>/d"]
    one = Dtab.read("/a=>/b # c;/c=>/d")
    assert [d.show() for d in one] == ["/a=>/b"]
    multi = Dtab.read("/a => /b; # first\n/c => /d; # second\n# last")
    assert multi.show() == "/a=>/b;/c=>/d"


def test_duplicates_are_kept():
    d = Dtab.read("/a=>/b;/a=>/b")
    assert len(d) == 2


def test_lark_and_finagle_procedure_agree_on_samples():
    # The explainer (Finagle's procedure) and lark must accept exactly the same texts.
    samples = ["/a", "/a=>/b", "/", "/*", "/#", "/ #", "/a#*", "/*#c", "1*/a", ".5*/a&/b",
               "(/a)", "/a/*b", "/a=>/b;", ";", "/\\x41", "/\\x4g", "/a\u2003|/b"]
    for text in samples:
        for kind in ("path", "prefix", "tree", "dentry", "dtab"):
            try:
                parser._lark.parse(text, start="start_" + kind)
                lark_ok = True
            except Exception:
                lark_ok = False
            assert lark_ok == _explain.accepts(kind, text), (kind, text)


def test_absurd_nesting_is_a_syntax_error_not_a_crash():
    with pytest.raises(DtabSyntaxError):
        NameTree.read("(" * 3000)
    assert NameTree.read("(" * 200 + "/a" + ")" * 200) == Leaf(Path.of("a"))
