"""The dtab grammar (lark, LALR) and Finagle-exact parse errors.

Parsing is done by lark: an LALR(1) parser with a contextual lexer and an inline
transformer, so no parse tree is ever built. A path is ONE terminal (no whitespace may
appear inside a path, and ``#`` is a label character there), ``=>`` is one terminal,
and whitespace (Java's ``Character.isWhitespace`` set) and ``#`` comments are skipped
between terminals — folded into the end of each terminal (half the lexer work), with
``%ignore`` for leading ones. Terminal regexes use possessive repeats so the lexer never
gives back a label character (a backtracked ``#`` would otherwise become a comment).

Error messages must be Finagle's, byte for byte
(``<expected> expected but <found> found at '<input with [x] marker>'``). Finagle's
parser is recursive descent and reports the first character its *procedure* rejects,
which depends on details an LR automaton does not see (e.g. ``/foo/`` fails at
``label char`` at the end, ``/a/*b`` at ``end of input`` before ``b``). So when lark
(or token validation) rejects an input, :mod:`._explain` replays Finagle's decision
procedure over the text to phrase the message and locate the offending character.
It runs only on the error path; lark decides what parses.
"""
from __future__ import annotations

import re
from typing import Any

from lark import Lark, Transformer
from lark.exceptions import LarkError, VisitError

from . import _explain
from .dtab import Dentry, Dtab
from .errors import DtabSyntaxError
from .path import WILDCARD, Path, Prefix
from .tree import EMPTY, FAIL, MAX_TREE_DEPTH, NEG, Alt, Leaf, NameTree, Union, Weighted

# Java Character.isWhitespace: Zs/Zl/Zp except the no-break spaces U+00A0, U+2007, U+202F,
# plus \t \n \v \f \r and the four information separators U+001C..U+001F.
_JAVA_WS = (
    "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f\\x20\\u1680\\u2000-\\u2006\\u2008-\\u200a"
    "\\u2028\\u2029\\u205f\\u3000"
)
_LCHAR = r"(?:[0-9A-Za-z_:.#$%\-]|\\x[0-9A-Fa-f]{2})"
# Possessive repeats: the lexer must never give back label characters (a backtracked
# `#` would turn into a comment and let `/a#*` through).
_LABEL = _LCHAR + "++"
# A `*` element must be whole; `#` right after it starts a comment (Finagle skips
# whitespace/comments after the prefix), so it is not excluded here.
_PELEM = r"(?:\*(?![0-9A-Za-z_:.$%\-\\*])|" + _LABEL + ")"

# Whitespace and comments that a token absorbs after itself. Folding them into the
# tokens halves the lexer's work (one match per token instead of two); %ignore below
# only ever sees leading whitespace.
_IGN = rf"(?:[{_JAVA_WS}]|\#[^\n]*\n?)*+"
_PATH_BODY = rf"\/(?:{_LABEL}(?:\/{_LABEL})*+)?+(?![0-9A-Za-z_:.#$%\-\\\/])"
_PREFIX_BODY = rf"\/(?:{_PELEM}(?:\/{_PELEM})*+)?+(?![0-9A-Za-z_:.$%\-\\\/*])"

GRAMMAR = rf"""
start_path: PATH
start_prefix: PREFIX
start_tree: alts
start_dentry: dentry
start_dtab: dentries

dentries: (dentry (_SEMI dentry)* _SEMI?)?
dentry: PREFIX _ARROW alts

?alts: union (_BAR union)*         -> alts
union: weighted (_AMP weighted)*
weighted: NUMBER _STAR simple      -> weighted
        | simple                   -> unweighted
?simple: _LPAR alts _RPAR
       | PATH                      -> leaf
       | _BANG                     -> fail
       | _TILDE                    -> neg
       | _DOLLAR                   -> empty

PATH: /{_PATH_BODY}{_IGN}/
PREFIX: /{_PREFIX_BODY}{_IGN}/
NUMBER: /(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?![0-9.]){_IGN}/
_ARROW: /=>{_IGN}/
_BAR: /\|{_IGN}/
_AMP: /&{_IGN}/
_STAR: /\*{_IGN}/
_SEMI: /;{_IGN}/
_LPAR: /\({_IGN}/
_RPAR: /\){_IGN}/
_BANG: /!{_IGN}/
_TILDE: /~{_IGN}/
_DOLLAR: /\${_IGN}/

_IGNORED: /(?:[{_JAVA_WS}]|\#[^\n]*\n?)+/
%ignore _IGNORED
"""

_prefix_body = re.compile(_PREFIX_BODY).match
_number_body = re.compile(r"[0-9.]*").match


def _number(tok: str) -> str:
    m = _number_body(tok)
    assert m is not None  # `[0-9.]*` matches any text
    return m.group()



def _label(text: str) -> bytes:
    """Decode one label (label chars and ``\\xHH`` escapes) to bytes."""
    if "\\" not in text:
        return text.encode("ascii")
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out.append(ord(c))
            i += 1
    return bytes(out)


def _labels(body: str) -> tuple[bytes, ...]:
    """The labels of a path/prefix body without its leading ``/`` (hot path: one encode
    and one split in C unless the body has escapes)."""
    if "\\" not in body:
        return tuple(body.encode("ascii").split(b"/"))
    return tuple(_label(l) for l in body.split("/"))


def _body(tok: str) -> str:
    """A path/prefix token without the whitespace and comments it absorbed. Its body has
    only ASCII label characters, ``/``, ``\\`` and ``*``, and what follows it starts
    with whitespace (a ``#`` right after a label is part of the label); every Java
    whitespace character is also one for ``str.split``."""
    return tok.split(None, 1)[0]


def _path_of(tok: str) -> Path:
    body = _body(tok)
    if len(body) == 1:
        return Path.empty
    return Path._trusted(_labels(body[1:]))


#: Leaves by path text: dtabs repeat the same names (every request dtab of a client, each
#: version of a namespace), so parsed trees share their leaves instead of holding one copy
#: each. Bounded: cleared when full (values are immutable, so sharing is invisible).
_LEAVES: dict[str, Leaf[Path]] = {}
_LEAVES_MAX = 8192


def _leaf_of(tok: str) -> Leaf[Path]:
    body = _body(tok)
    leaf = _LEAVES.get(body)
    if leaf is None:
        if len(_LEAVES) >= _LEAVES_MAX:
            _LEAVES.clear()
        leaf = _LEAVES[body] = Leaf(Path.empty if len(body) == 1 else Path._trusted(_labels(body[1:])))
    return leaf


def _prefix_of(tok: str) -> Prefix:
    body = _body(tok)
    if len(body) == 1:
        return Prefix.empty
    if "*" in body:  # a wildcard element (an escaped \x2a is a literal `*` label), after
        # which a comment may start at once: the exact body rule
        m = _prefix_body(tok)
        assert m is not None  # the lexer matched this very pattern
        body = m.group()
        return Prefix._trusted(tuple(WILDCARD if l == "*" else _label(l) for l in body[1:].split("/")))
    return Prefix._trusted(_labels(body[1:]))


# Callbacks get the children of a rule: tokens (``.value`` is the text) or built values.
_Children = list[Any]


class _Build(Transformer[Any, Any]):
    """Builds the model while lark reduces (used as lark's inline ``transformer=``)."""

    def start_path(self, c: _Children) -> Path:
        return _path_of(c[0].value)

    def start_prefix(self, c: _Children) -> Prefix:
        return _prefix_of(c[0].value)

    def start_tree(self, c: _Children) -> NameTree[Path]:
        tree: NameTree[Path] = c[0]
        return tree

    def start_dentry(self, c: _Children) -> Dentry:
        d: Dentry = c[0]
        return d

    def start_dtab(self, c: _Children) -> Dtab:
        d: Dtab = c[0]
        return d

    def dentries(self, c: _Children) -> Dtab:
        return Dtab(c)

    def dentry(self, c: _Children) -> Dentry:
        return Dentry(_prefix_of(c[0].value), c[1])

    def alts(self, c: _Children) -> NameTree[Path]:
        return c[0] if len(c) == 1 else Alt(*c)

    def union(self, c: _Children) -> NameTree[Path]:
        return c[0].tree if len(c) == 1 else Union(*c)

    def weighted(self, c: _Children) -> Weighted[Path]:
        return Weighted(float(_number(c[0].value)), c[1])

    def unweighted(self, c: _Children) -> Weighted[Path]:
        return Weighted(1.0, c[0])

    def leaf(self, c: _Children) -> NameTree[Path]:
        return _leaf_of(c[0].value)

    def fail(self, c: _Children) -> NameTree[Path]:
        return FAIL

    def neg(self, c: _Children) -> NameTree[Path]:
        return NEG

    def empty(self, c: _Children) -> NameTree[Path]:
        return EMPTY


_STARTS = ["start_path", "start_prefix", "start_tree", "start_dentry", "start_dtab"]

def _plugins() -> dict[str, Any]:
    """lark-cython (lark's own compiled LALR parser and lexer, same grammar, same
    results) when it is installed: about 1.5x faster on large dtabs. Tokens are read
    through ``.value``, which both token types have."""
    try:
        import lark_cython
    except ImportError:  # pragma: no cover - a platform without its wheel
        return {}
    return {"_plugins": lark_cython.plugins}


_lark = Lark(
    GRAMMAR,
    parser="lalr",
    lexer="contextual",
    start=_STARTS,
    transformer=_Build(),
    maybe_placeholders=False,
    propagate_positions=False,
    **_plugins(),
)

def _depth(result: Any) -> int:
    """Alt/Union nesting of a parse result (O(1) per tree: nodes know their depth)."""
    if isinstance(result, NameTree):
        return result.depth
    if isinstance(result, Dentry):
        return result.dst.depth
    if isinstance(result, Dtab):
        return max((d.dst.depth for d in result.dentries), default=0)
    return 0


def _parse(kind: str, text: str) -> Any:
    """Parse ``text`` as ``kind`` with lark; on rejection raise Finagle's exact error.

    lark's LALR parser keeps its own stack, so any nesting parses without recursion;
    trees nested deeper than ``MAX_TREE_DEPTH`` are then refused (every later walk of a
    tree recurses per level), as is the same nesting in an invalid text (the error
    explainer recurses per parenthesis).
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str to parse, got {type(text).__name__}")
    try:
        result = _lark.parse(text, start="start_" + kind)
    except (LarkError, VisitError, ValueError, OverflowError) as e:
        lark_error: Exception = e
    else:
        if _depth(result) <= MAX_TREE_DEPTH:
            return result
        offset = _too_deep_offset(text)
        raise DtabSyntaxError(_explain.too_deep_message(text, offset), text, offset)
    message, where = _explain.explain(kind, text)
    if message is None:  # pragma: no cover - the two procedures disagree: a bug
        raise DtabSyntaxError(
            f"invalid {kind} at '{text}': {lark_error}", text, 0
        ) from None
    raise DtabSyntaxError(message, text, where or 0) from None


def _too_deep_offset(text: str) -> int:
    """Where a valid but too deep text first opens one parenthesis too many (best
    effort: comments are not skipped; only used to point at the problem)."""
    depth = 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
            if depth > MAX_TREE_DEPTH - 2:  # an Alt of Unions nests two levels per group
                return i
        elif c == ")":
            depth -= 1
    return 0


def parse_path(text: str) -> Path:
    """``/svc/web`` -> Path; raises DtabSyntaxError with Finagle's message."""
    result: Path = _parse("path", text)
    return result


def parse_prefix(text: str) -> Prefix:
    """A dentry prefix (``*`` allowed as a whole element)."""
    result: Prefix = _parse("prefix", text)
    return result


def parse_tree(text: str) -> NameTree[Path]:
    result: NameTree[Path] = _parse("tree", text)
    return result


def parse_dentry(text: str) -> Dentry:
    """One dentry; a trailing ``;`` is an error (as in Finagle's Dentry.read)."""
    result: Dentry = _parse("dentry", text)
    return result


def parse_dtab(text: str) -> Dtab:
    result: Dtab = _parse("dtab", text)
    return result


__all__ = ["parse_path", "parse_prefix", "parse_tree", "parse_dentry", "parse_dtab", "GRAMMAR"]
