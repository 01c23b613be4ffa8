"""Property tests (hypothesis): round trips, parser robustness, algebraic laws."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from namerouter.dtab import (
    EMPTY, FAIL, NEG, WILDCARD, Alt, Dentry, Dtab, DtabSyntaxError, Leaf, NameTree, Path, Prefix,
    Union, Weighted,
)
from namerouter.dtab import _explain, parser

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

label_chars = st.sampled_from(list(b"abcxyz019_:.#$%-"))
labels = st.one_of(
    st.binary(min_size=1, max_size=6),  # arbitrary bytes, escaped when shown
    st.lists(label_chars, min_size=1, max_size=6).map(bytes),  # printable labels
)
paths = st.lists(labels, max_size=5).map(Path)
prefix_elems = st.one_of(labels, st.just(WILDCARD))
prefixes = st.lists(prefix_elems, max_size=4).map(Prefix)
# weights that survive Java's %.2f exactly (k/100); 1.0 is printed as the default
weights = st.integers(min_value=0, max_value=100000).map(lambda k: k / 100)


def trees(max_leaves: int = 6):
    base = st.one_of(paths.map(Leaf), st.sampled_from([FAIL, NEG, EMPTY]))

    def extend(children):
        alts = st.lists(children, min_size=2, max_size=3).map(lambda ts: Alt(*ts))
        unions = st.lists(st.tuples(weights, children), min_size=2, max_size=3).map(
            lambda ws: Union(*(Weighted(w, t) for w, t in ws)))
        return st.one_of(alts, unions)

    return st.recursive(base, extend, max_leaves=max_leaves)


dentries = st.builds(Dentry, prefixes, trees(3))
dtabs = st.lists(dentries, max_size=4).map(Dtab)


@SETTINGS
@given(paths)
def test_path_round_trip(p):
    assert Path.read(p.show()) == p


@SETTINGS
@given(prefixes)
def test_prefix_round_trip(pre):
    assert Prefix.read(pre.show()) == pre


@SETTINGS
@given(trees())
def test_tree_round_trip(t):
    assert NameTree.read(t.show()) == t


@SETTINGS
@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), trees(3), trees(3))
def test_any_weight_round_trips_after_rounding(w, a, b):
    t = Union(Weighted(w, a), Weighted(1.0, b))
    once = NameTree.read(t.show())
    assert NameTree.read(once.show()) == once
    assert once.show() == t.show() or once.weighted[0].weight == 1.0


@SETTINGS
@given(dentries)
def test_dentry_round_trip(d):
    assert Dentry.read(d.show()) == d


@SETTINGS
@given(dtabs)
def test_dtab_round_trip(d):
    assert Dtab.read(d.show()) == d
    if len(d):
        assert Dtab.read(d.show() + ";") == d  # one trailing `;` is allowed


KINDS = {"path": Path.read, "prefix": Prefix.read, "tree": NameTree.read,
         "dentry": Dentry.read, "dtab": Dtab.read}

dtab_alphabet = st.sampled_from(list("/ab*\\x4F=>;|&()!~$#.12 \n\t") + ["\\x41", "=>", "# c\n", "\u0663", "\u00a0", "\u2003", "é"])
dtabish = st.lists(dtab_alphabet, max_size=20).map("".join)


def _parses_or_raises_syntax_error(text: str) -> None:
    for kind, read in KINDS.items():
        try:
            read(text)
        except DtabSyntaxError as e:
            assert str(e)  # always a message
            assert 0 <= e.offset <= len(text)


@SETTINGS
@given(st.text(max_size=40))
def test_parser_raises_only_syntax_errors_on_any_text(text):
    _parses_or_raises_syntax_error(text)


@SETTINGS
@given(dtabish)
def test_parser_raises_only_syntax_errors_on_dtab_like_text(text):
    _parses_or_raises_syntax_error(text)


@settings(max_examples=400, deadline=None)
@given(dtabish, st.sampled_from(sorted(KINDS)))
def test_lark_and_finagle_procedure_accept_the_same_texts(text, kind):
    try:
        parser._lark.parse(text, start="start_" + kind)
        lark_ok = True
    except Exception:
        lark_ok = False
    assert lark_ok == _explain.accepts(kind, text)


@SETTINGS
@given(trees())
def test_simplify_is_idempotent_and_keeps_eval(t):
    s = t.simplified()
    assert s.simplified() == s
    assert s.eval() == t.eval()


@SETTINGS
@given(dtabs, paths)
def test_lookup_matches_the_naive_definition(d, p):
    matches = []
    for e in reversed(d.dentries):
        if e.prefix.matches(p):
            rest = p.drop(len(e.prefix))
            matches.append(e.dst.map(lambda q: q + rest))
    expected = NEG if not matches else matches[0] if len(matches) == 1 else Alt(*matches)
    assert d.lookup(p) == expected


@SETTINGS
@given(dtabs, dtabs)
def test_concatenation_and_strip_prefix(a, b):
    assert (a + b).strip_prefix(a) == b
    assert len(a + b) == len(a) + len(b)


# A value-building reference: Finagle's recursive-descent parser transcribed literally
# (only used here, to check what lark builds, not just what it accepts).

class _Ref:
    LABEL = set(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:.#$%-".decode())

    def __init__(self, s: str) -> None:
        self.s, self.i = s, 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else None

    def ws(self):
        while self.i < len(self.s) and (self.s[self.i] in _explain.JAVA_WHITESPACE or self.s[self.i] == "#"):
            if self.s[self.i] == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            self.i += 1

    def eat(self, c):
        assert self.peek() == c
        self.i += 1

    def label(self) -> bytes:
        out = bytearray()
        while True:
            c = self.peek()
            if c == "\\":
                out.append(int(self.s[self.i + 2:self.i + 4], 16))
                self.i += 4
            else:
                out.append(ord(c))
                self.i += 1
            if not (self.peek() in self.LABEL or self.peek() == "\\"):
                return bytes(out)

    def path(self) -> Path:
        self.ws()
        self.eat("/")
        labels = []
        if self.peek() in self.LABEL or self.peek() == "\\":
            labels.append(self.label())
            while self.peek() == "/":
                self.i += 1
                labels.append(self.label())
        return Path(labels)

    def prefix(self) -> Prefix:
        self.ws()
        self.eat("/")
        elems: list = []
        if self.peek() in self.LABEL or self.peek() in ("\\", "*"):
            while True:
                if self.peek() == "*":
                    self.i += 1
                    elems.append(WILDCARD)
                else:
                    elems.append(self.label())
                if self.peek() != "/":
                    break
                self.i += 1
        return Prefix(elems)

    def tree(self):
        trees = []
        while True:
            trees.append(self.tree1())
            self.ws()
            if self.peek() != "|":
                break
            self.i += 1
        return trees[0] if len(trees) == 1 else Alt(*trees)

    def tree1(self):
        ws = []
        while True:
            ws.append(self.weighted())
            self.ws()
            if self.peek() != "&":
                break
            self.i += 1
        return ws[0].tree if len(ws) == 1 else Union(*ws)

    def weighted(self):
        self.ws()
        w = 1.0
        if self.peek() is not None and (self.peek().isdecimal() or self.peek() == "."):
            start = self.i
            while self.peek() is not None and (self.peek().isdecimal() or self.peek() == "."):
                self.i += 1
            w = float(self.s[start:self.i])
            self.ws()
            self.eat("*")
            self.ws()
        return Weighted(w, self.simple())

    def simple(self):
        self.ws()
        c = self.peek()
        if c == "(":
            self.i += 1
            t = self.tree()
            self.ws()
            self.eat(")")
            return t
        if c == "/":
            return Leaf(self.path())
        self.i += 1
        return {"!": FAIL, "~": NEG, "$": EMPTY}[c]

    def dentry(self):
        p = self.prefix()
        self.ws()
        self.eat("=")
        self.eat(">")
        return Dentry(p, self.tree())

    def dtab(self):
        out = []
        while True:
            self.ws()
            if self.i < len(self.s):
                out.append(self.dentry())
                self.ws()
            if self.peek() != ";":
                return Dtab(out)
            self.i += 1


@settings(max_examples=400, deadline=None)
@given(dtabish, st.sampled_from(sorted(KINDS)))
def test_lark_builds_what_finagle_builds(text, kind):
    if not _explain.accepts(kind, text):
        return
    expected = getattr(_Ref(text), kind)()
    assert KINDS[kind](text) == expected


gaps = st.sampled_from(["", " ", "\n", "\t ", " # note\n", "\u2003", "\r\n  ", " #\n"])  # `#` glued to a path would extend its label


@SETTINGS
@given(dtabs, st.lists(gaps, min_size=8, max_size=8), st.booleans())
def test_whitespace_and_comments_between_tokens(d, gs, trailing):
    text = gs[0] + (gs[1] + ";" + gs[2]).join(
        e.prefix.show() + gs[3] + "=>" + gs[4] + e.dst.show().replace(" ", gs[5] or " ")
        for e in d.dentries
    ) + gs[6] + (";" + gs[7] if trailing and len(d) else "")
    parsed = Dtab.read(text)
    assert parsed == d
    assert parsed == _Ref(text).dtab()
