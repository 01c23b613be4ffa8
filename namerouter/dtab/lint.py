"""Static checks of a dtab: entries that can never apply, and rewrites that always loop.

Both rules are conservative: a finding is reported only when it holds for every path
and every namer answer, so a clean dtab may still misbehave at run time, but a finding
is always real.

**Shadowed entry.** Lookup tries the matching entries last-defined first, and binding an
Alt falls through to the next (earlier) entry only when the later one binds to ``~``.
An entry E is dead when a later entry L

* matches every path E matches: L's prefix is not longer than E's, and at every position
  L has ``*`` or the same literal label as E (``/svc/*`` covers ``/svc/web``; ``/svc/web``
  does not cover ``/svc/*``), and
* can never bind to ``~`` (:func:`never_negative`): ``!``, ``$``, an inet address
  (``/$/inet/<host>/<port>``, ``/$/fixedinet/…``, ``/$/io.buoyant.rinet/<port>/<host>``),
  ``/$/fail``, ``/$/nil`` — provided no entry of the dtab can capture those ``/$/`` paths —
  an Alt with such a branch, or a Union with a member that is neither ``~`` nor ``!``
  and never negative. Leaves that go through namers (``/#/…``) or other names may be
  negative, so they never shadow anything: falling back from ``/#/io.l5d.k8s/…`` to an
  earlier ``/#/io.l5d.fs/…`` is normal Linkerd practice.

A later entry with the same prefix and an equivalent destination (a duplicate) also makes
the earlier one dead: falling through to it gives the same answer again.

**Self-prefix loop.** An entry whose destination (the branch binding tries first: an
Alt's first non-``~`` branch, every member of a Union) is matched again by the entry's
own prefix, e.g. ``/s => /s/x``, rewrites ``/s/a`` to ``/s/x/a`` to ``/s/x/x/a``… until
the depth limit (100), unless a *later* entry can match the rewritten path first — so it
is reported only when no later entry's prefix is compatible with the destination.
Finagle's docs suggest a distinct handler label (``/s#``) instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from . import _explain
from .dtab import Dtab
from .path import WILDCARD, Path, Prefix
from .system import java_parse_int
from .tree import EMPTY, FAIL, NEG, Alt, Leaf, NameTree, Union
from .parser import parse_dtab


@dataclass(frozen=True)
class Finding:
    """One lint finding, located at the start of the entry it is about."""

    line: int
    column: int
    index: int  # position of the dentry in the dtab (0-based)
    rule: str  # "shadowed" or "self-prefix"
    message: str

    def format(self, source: str) -> str:
        return f"{source}:{self.line}:{self.column}: {self.rule}: {self.message}"


def covers(later: Prefix, earlier: Prefix) -> bool:
    """Whether ``later`` matches every path that ``earlier`` matches."""
    if len(later.elems) > len(earlier.elems):
        return False
    for l, e in zip(later.elems, earlier.elems):
        if l is WILDCARD:
            continue
        if e is WILDCARD or l != e:
            return False
    return True


def _compatible(prefix: Prefix, path: Path) -> bool:
    """Whether ``prefix`` could match ``path`` or some extension of it."""
    for e, l in zip(prefix.elems, path.labels):
        if e is not WILDCARD and e != l:
            return False
    return True


def _captures_system(dtab: Dtab) -> bool:
    """Whether some entry could rewrite a ``/$/…`` path before the system namers see it."""
    return any(
        not d.prefix.elems or d.prefix.elems[0] is WILDCARD or d.prefix.elems[0] == b"$"
        for d in dtab.dentries
    )


def _terminal_system_leaf(path: Path) -> bool:
    """A /$/ path the system namers answer with something that is never ``~``."""
    ls = path.labels
    if len(ls) < 2 or ls[0] != b"$":
        return False
    kind = ls[1]
    if kind in (b"fail", b"nil"):
        return True
    if kind in (b"inet", b"fixedinet"):
        s = [l.decode("utf-8", "replace") for l in ls]
        return (len(s) >= 4 and java_parse_int(s[3]) is not None) or (
            len(s) >= 3 and java_parse_int(s[2]) is not None
        )
    if kind == b"io.buoyant.rinet":
        return len(ls) >= 4 and java_parse_int(ls[2].decode("utf-8", "replace")) is not None
    return False


def never_negative(tree: NameTree[Any], dtab: Dtab) -> bool:
    """True when binding ``tree`` can never produce ``~`` (see the module doc)."""
    if tree is FAIL or tree is EMPTY:
        return True
    if tree is NEG:
        return False
    if isinstance(tree, Leaf):
        return _terminal_system_leaf(tree.value) and not _captures_system(dtab)
    if isinstance(tree, Alt):
        return any(never_negative(t, dtab) for t in tree.trees)
    if isinstance(tree, Union):
        return any(w.tree is not FAIL and _solid(w.tree, dtab) for w in tree.weighted)
    return False


def _solid(tree: NameTree[Any], dtab: Dtab) -> bool:
    """Never ``~`` and never ``!`` (so a Union keeps it)."""
    if tree is EMPTY:
        return True
    if isinstance(tree, Leaf):
        p = tree.value
        return (
            _terminal_system_leaf(p) and p.labels[1] != b"fail" and not _captures_system(dtab)
        )
    if isinstance(tree, Alt):
        # The first branch that is not `~` decides; it must itself be solid.
        for t in tree.trees:
            if t is NEG:
                continue
            return _solid(t, dtab)
        return False
    if isinstance(tree, Union):
        return any(_solid(w.tree, dtab) for w in tree.weighted)
    return False


def _first_leaves(tree: NameTree[Any]) -> Optional[list[Path]]:
    """The leaves binding necessarily tries first (None if none is forced)."""
    if isinstance(tree, Leaf):
        return [tree.value]
    if isinstance(tree, Alt):
        for t in tree.trees:
            if t is NEG:
                continue
            return _first_leaves(t)
        return None
    if isinstance(tree, Union):
        if not tree.weighted:
            return None
        out: list[Path] = []
        for w in tree.weighted:
            leaves = _first_leaves(w.tree)
            if leaves is None:
                return None  # a member that cannot loop keeps the union alive
            out.extend(leaves)
        return out
    return None


def lint_dtab(dtab: Dtab, offsets: Optional[list[int]] = None, text: str = "") -> list[Finding]:
    """Findings for a parsed dtab; ``offsets``/``text`` locate entries (line, column)."""

    def where(i: int) -> tuple[int, int]:
        if offsets is None or i >= len(offsets):
            return (i + 1, 1)
        off = offsets[i]
        before = text[:off]
        return before.count("\n") + 1, off - (before.rfind("\n") + 1) + 1

    ds = dtab.dentries
    findings: list[Finding] = []
    for i, d in enumerate(ds):
        for j in range(len(ds) - 1, i, -1):
            later = ds[j]
            if not covers(later.prefix, d.prefix):
                continue
            if never_negative(later.dst, dtab):
                why = "matches every path it matches and never falls through"
            elif later.prefix == d.prefix and later.dst.simplified() == d.dst.simplified():
                why = "is the same rule, so falling through to this one changes nothing"
            else:
                continue
            line, col = where(i)
            lline, _ = where(j)
            findings.append(Finding(
                line, col, i, "shadowed",
                f"'{d.show()}' can never apply: the later entry '{later.show()}' (line {lline}) {why}",
            ))
            break
    for i, d in enumerate(ds):
        leaves = _first_leaves(d.dst)
        if not leaves:
            continue
        if all(d.prefix.matches(leaf) for leaf in leaves):
            rescued = any(
                _compatible(ds[j].prefix, leaf) for j in range(i + 1, len(ds)) for leaf in leaves
            )
            if not rescued:
                line, col = where(i)
                findings.append(Finding(
                    line, col, i, "self-prefix",
                    f"'{d.show()}' rewrites every path under {d.prefix.show()} to one it "
                    f"matches again, so binding loops until the depth limit (100); "
                    f"use a distinct label such as {d.prefix.show()}#",
                ))
    findings.sort(key=lambda f: (f.line, f.column, f.rule))
    return findings


def lint_text(text: str) -> list[Finding]:
    """Parse and lint a dtab text; raises DtabSyntaxError for a syntax error."""
    dtab = parse_dtab(text)
    return lint_dtab(dtab, _explain.dentry_offsets(text), text)


__all__ = ["Finding", "lint_dtab", "lint_text", "covers", "never_negative"]
