"""Phrase a parse failure exactly as Finagle's recursive-descent parser would.

lark decides *whether* a text parses (see :mod:`.parser`). When it does not, this module
replays Finagle's parsing procedure (NameTreeParsers) character by character — as a
recogniser that builds nothing — to find which character Finagle rejects first and
what it expected there. The procedure is the spec of §2/§3 of dtab-semantics.md:

* whitespace is Java's ``Character.isWhitespace``; ``#`` starts a comment wherever
  whitespace may be skipped, but is a label character where a label may start/continue;
* after ``/`` a path is empty unless a label character follows; a ``/`` after a label
  commits to another label;
* a number is digits and at most one ``.``, not the lone ``.``, then parsed as a double.

``explain(kind, text)`` returns ``(message, offset)`` or ``(None, None)`` if the text is
valid (which would mean lark and Finagle disagree).
"""
from __future__ import annotations

from typing import Optional

from .tree import MAX_TREE_DEPTH

_LABEL_CHARS = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:.#$%-"
)
_HEX = frozenset("0123456789ABCDEFabcdef")

#: Java Character.isWhitespace (for chars; no supplementary char is whitespace).
JAVA_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
)


class _Illegal(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def _is_digit(c: str) -> bool:
    """Scala's ``Char.isDigit``: any Unicode decimal digit (category Nd)."""
    return c.isdecimal()


class _Finagle:
    """A recogniser with the same control flow as Finagle's NameTreeParsers."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.dentry_offsets: list[int] = []  # where each dtab entry starts (for lint)
        self.nesting = 0  # open parentheses (bounded: this recogniser recurses per level)

    # primitives ----------------------------------------------------------------
    def peek(self) -> Optional[str]:
        return self.s[self.i] if self.i < self.n else None

    @staticmethod
    def show_char(c: Optional[str]) -> str:
        return "end of input" if c is None else f"'{c}'"

    def illegal(self, expected: str, found: str) -> None:
        s, i = self.s, self.i
        shown = f"{s}[]" if i >= self.n else f"{s[:i]}[{s[i]}]{s[i + 1:]}"
        raise _Illegal(f"{expected} expected but {found} found at '{shown}'", i)

    def eat(self, c: str) -> None:
        if self.peek() != c:
            self.illegal(f"'{c}'", self.show_char(self.peek()))
        self.i += 1

    def maybe_eat(self, c: str) -> bool:
        if self.peek() == c:
            self.i += 1
            return True
        return False

    def ws(self) -> None:
        s, n = self.s, self.n
        while self.i < n and (s[self.i] in JAVA_WHITESPACE or s[self.i] == "#"):
            if s[self.i] == "#":
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
                if self.i < n:
                    self.i += 1
            else:
                self.i += 1

    def ensure_end(self) -> None:
        if self.i < self.n:
            self.illegal("end of input", self.show_char(self.peek()))

    # grammar ---------------------------------------------------------------------
    def is_label_char(self, c: Optional[str]) -> bool:
        return c is not None and (c in _LABEL_CHARS or c == "\\")

    def hex_char(self) -> None:
        c = self.peek()
        if c is None or c not in _HEX:
            self.illegal("hex char", self.show_char(c))
        self.i += 1

    def label(self) -> None:
        while True:
            c = self.peek()
            if c is not None and c in _LABEL_CHARS:
                self.i += 1
            elif c == "\\":
                self.i += 1
                self.eat("x")
                self.hex_char()
                self.hex_char()
            else:
                self.illegal("label char", self.show_char(c))
            if not self.is_label_char(self.peek()):
                return

    def prefix(self) -> None:
        self.ws()
        self.eat("/")
        c = self.peek()
        if not (self.is_label_char(c) or c == "*"):
            return
        while True:
            if self.peek() == "*":
                self.i += 1
            else:
                self.label()
            if not self.maybe_eat("/"):
                return

    def path(self) -> None:
        self.ws()
        self.eat("/")
        if not self.is_label_char(self.peek()):
            return
        while True:
            self.label()
            if not self.maybe_eat("/"):
                return

    def tree(self) -> None:
        while True:
            self.tree1()
            self.ws()
            if not self.maybe_eat("|"):
                return

    def tree1(self) -> None:
        while True:
            self.weighted()
            self.ws()
            if not self.maybe_eat("&"):
                return

    def simple(self) -> None:
        self.ws()
        c = self.peek()
        if c == "(":
            if self.nesting >= MAX_TREE_DEPTH:
                raise _Illegal(too_deep_message(self.s, self.i), self.i)
            self.nesting += 1
            self.i += 1
            self.tree()
            self.ws()
            self.eat(")")
            self.nesting -= 1
        elif c == "/":
            self.path()
        elif c in ("!", "~", "$"):
            self.i += 1
        else:
            self.illegal("simple", self.show_char(c))

    def number(self) -> None:
        start = self.i
        seen_dot = False
        while True:
            c = self.peek()
            if c is None or not (_is_digit(c) or c == "."):
                break
            if c == ".":
                if seen_dot:
                    self.illegal("number char", self.show_char(c))
                seen_dot = True
            self.i += 1
        text = self.s[start:self.i]
        if text == ".":
            self.illegal("weight", "'.'")
        if not text.isascii():
            # Java's Double.parseDouble rejects non-ASCII digits (NumberFormatException).
            raise _Illegal(f'For input string: "{text}"', start)

    def weighted(self) -> None:
        self.ws()
        c = self.peek()
        if c is not None and (_is_digit(c) or c == "."):
            self.number()
            self.ws()
            self.eat("*")
            self.ws()
        self.simple()

    def dentry(self) -> None:
        self.prefix()
        self.ws()
        self.eat("=")
        self.eat(">")
        self.tree()

    def dtab(self) -> None:
        while True:
            self.ws()
            if self.i < self.n:
                self.dentry_offsets.append(self.i)
                self.dentry()
                self.ws()
            if not self.maybe_eat(";"):
                return

    def run(self, kind: str) -> None:
        getattr(self, kind)()
        self.ws()
        self.ensure_end()


def too_deep_message(text: str, offset: int) -> str:
    """The error for a name tree nested deeper than :data:`MAX_TREE_DEPTH` levels."""
    shown = text[max(0, offset - 20):offset + 20]
    return f"name tree nested deeper than {MAX_TREE_DEPTH} levels at offset {offset} ('...{shown}...')"


def explain(kind: str, text: str) -> tuple[Optional[str], Optional[int]]:
    """Finagle's error message and offset for ``text`` parsed as ``kind``.

    ``kind`` is one of ``path``, ``prefix``, ``tree``, ``dentry``, ``dtab``.
    Returns ``(None, None)`` when Finagle would accept the text.
    """
    try:
        _Finagle(text).run(kind)
    except _Illegal as e:
        return e.message, e.offset
    return None, None


def dentry_offsets(text: str) -> list[int]:
    """Offsets where each entry of a (valid) dtab text starts."""
    f = _Finagle(text)
    f.run("dtab")
    return f.dentry_offsets


def accepts(kind: str, text: str) -> bool:
    """Whether Finagle's procedure accepts ``text`` (used by differential tests)."""
    return explain(kind, text)[0] is None
