"""``namerouter dtab show|bind|delegate|lint``: work with dtabs offline.

    namerouter dtab show     [FILE|-] [--dtab TEXT]        canonical form
    namerouter dtab bind     PATH [FILE|-] [--dtab TEXT]   bound tree (offline namers)
    namerouter dtab delegate PATH [FILE|-] [--dtab TEXT] [--json]
    namerouter dtab lint     [FILE|- ...] [--dtab TEXT]

The dtab comes from FILE, ``-`` (stdin) or ``--dtab TEXT`` (exactly one; no source at
all means stdin). Exit status: 0 ok (lint: clean), 1 binding error or lint findings,
2 usage or syntax error (reported on stderr as ``SOURCE:LINE:COL: message``).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, Optional, Sequence, TextIO

from .dtab import Dentry, Dtab, DtabSyntaxError, Path
from .dtab.delegation import (
    DAlt, DDelegate, DelegateTree, DEmpty, DException, DFail, DLeaf, DNeg, DTransformation, DUnion,
    to_json,
)
from .dtab.errors import BindingError
from .dtab.lint import lint_text
from .dtab.offline import bind, delegate_tree, render_offline_bound

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class _Usage(Exception):
    """A usage error: message for stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would sys.exit(2) itself
        raise _Usage(f"{self.prog}: {message}")


def _build_parser() -> _Parser:
    p = _Parser(prog="namerouter dtab", description="Show, bind, delegate and lint dtabs offline.")
    sub = p.add_subparsers(dest="cmd", metavar="{show,bind,delegate,lint}", parser_class=_Parser)
    sub.required = True

    def source(sp: argparse.ArgumentParser, many: bool = False) -> None:
        sp.add_argument("files", nargs="*" if many else "?", metavar="FILE",
                        help="dtab file, or - for stdin (default: stdin)")
        sp.add_argument("--dtab", metavar="TEXT", help="the dtab itself instead of a file")

    sp = sub.add_parser("show", help="print the dtab in canonical form")
    source(sp)
    sp = sub.add_parser("bind", help="bind PATH through the dtab (offline namers)")
    sp.add_argument("path", metavar="PATH")
    source(sp)
    sp = sub.add_parser("delegate", help="explain how PATH is delegated, step by step")
    sp.add_argument("path", metavar="PATH")
    source(sp)
    sp.add_argument("--json", action="store_true", help="Linkerd's delegator JSON")
    sp = sub.add_parser("lint", help="report syntax errors, shadowed entries and self-prefix loops")
    source(sp, many=True)
    return p


def _read_sources(files: Any, dtab_text: Optional[str], stdin: TextIO) -> list[tuple[str, str]]:
    """[(source name, text)] from FILE arguments, ``-`` or ``--dtab``."""
    if isinstance(files, str):
        files = [files]
    files = list(files or [])
    if dtab_text is not None:
        if files:
            raise _Usage("namerouter dtab: give either FILE or --dtab, not both")
        return [("--dtab", dtab_text)]
    if not files:
        files = ["-"]
    out = []
    for f in files:
        if f == "-":
            try:
                out.append(("<stdin>", stdin.read()))
            except UnicodeDecodeError as e:
                raise _Usage(f"namerouter dtab: stdin is not UTF-8 text: {e.reason}") from None
            continue
        try:
            with open(f, encoding="utf-8") as fh:
                out.append((f, fh.read()))
        except OSError as e:
            raise _Usage(f"namerouter dtab: cannot read {f}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise _Usage(f"namerouter dtab: {f} is not UTF-8 text: {e.reason}") from None
    return out


def _short(err: DtabSyntaxError) -> str:
    """Finagle's message without the echoed input (which may be a whole file)."""
    head, sep, _ = err.message.partition(" found at '")
    return head + " found" if sep else err.message


def _syntax_error(source: str, err: DtabSyntaxError, err_out: TextIO) -> None:
    err_out.write(f"{source}:{err.line}:{err.column}: syntax error: {_short(err)}\n")
    lines = err.text.split("\n")
    if 0 < err.line <= len(lines):
        err_out.write(f"  {lines[err.line - 1]}\n  {' ' * (err.column - 1)}^\n")


def _parse_path(text: str, err_out: TextIO) -> Optional[Path]:
    try:
        return Path.read(text)
    except DtabSyntaxError as e:
        err_out.write(f"namerouter dtab: invalid path: {e}\n")
        return None


# delegate: the explanation tree ------------------------------------------------------------

def _via(d: Dentry) -> str:
    if d.equiv(Dentry.nop):
        return ""
    return f"  (by {d.show()})"


def _bound_text(value: Any, path: Path) -> str:
    b = render_offline_bound(value, path)
    addr = b["addr"]
    if addr.get("type") == "bound" and addr.get("addrs"):
        where = ", ".join(f"{a['ip']}:{a['port']}" for a in addr["addrs"])
    elif addr.get("type") == "bound":
        where = "service"
    else:
        where = addr.get("offline") or addr.get("type", "?")
    return f"bound id {b['id']} residual {b['path']} -> {where}"


def explain(tree: DelegateTree, indent: int = 0) -> list[str]:
    """An indented, human-readable rendering of a DelegateTree (one node per line)."""
    pad = "  " * indent
    if isinstance(tree, DDelegate):
        return [f"{pad}{tree.path.show()}{_via(tree.dentry)}"] + explain(tree.tree, indent + 1)
    if isinstance(tree, DAlt):
        lines = [f"{pad}{tree.path.show()}{_via(tree.dentry)}  alternatives, first usable wins:"]
        for t in tree.trees:
            lines += explain(t, indent + 1)
        return lines
    if isinstance(tree, DUnion):
        lines = [f"{pad}{tree.path.show()}{_via(tree.dentry)}  union, traffic split by weight:"]
        for w, t in tree.trees:
            sub = explain(t, indent + 1)
            sub[0] = f"{'  ' * (indent + 1)}weight {w:g}: {sub[0].lstrip()}"
            lines += sub
        return lines
    if isinstance(tree, DLeaf):
        return [f"{pad}{tree.path.show()}{_via(tree.dentry)}  => {_bound_text(tree.value, tree.path)}"]
    if isinstance(tree, DNeg):
        what = "~ (no dentry or namer matches)" if tree.path else "~ (negative destination)"
        return [f"{pad}{tree.path.show() if tree.path else '~'}{_via(tree.dentry)}  => {what}"]
    if isinstance(tree, DFail):
        return [f"{pad}{tree.path.show()}{_via(tree.dentry)}  => ! (fail: no fallback)"]
    if isinstance(tree, DEmpty):
        return [f"{pad}{tree.path.show()}{_via(tree.dentry)}  => $ (empty: exists, no members)"]
    if isinstance(tree, DException):
        return [f"{pad}{tree.path.show()}{_via(tree.dentry)}  => error: {tree.message}"]
    if isinstance(tree, DTransformation):
        return [f"{pad}{tree.path.show()}  transformed by {tree.name}"] + explain(tree.tree, indent + 1)
    return [f"{pad}{tree!r}"]


# commands ----------------------------------------------------------------------------------

def _cmd_lint(sources: list[tuple[str, str]], out: TextIO, err_out: TextIO) -> int:
    status = EXIT_OK
    for name, text in sources:
        try:
            findings = lint_text(text)
        except DtabSyntaxError as e:
            _syntax_error(name, e, err_out)
            status = EXIT_USAGE
            continue
        for f in findings:
            out.write(f.format(name) + "\n")
        if findings and status == EXIT_OK:
            status = EXIT_FINDINGS
    return status


def main(argv: Optional[Sequence[str]] = None, *, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    out, err_out = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = _build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        sources = _read_sources(args.files, args.dtab, stdin or sys.stdin)
    except _Usage as e:
        err_out.write(f"{e}\n")
        return EXIT_USAGE

    if args.cmd == "lint":
        return _cmd_lint(sources, out, err_out)

    name, text = sources[0]
    try:
        dtab = Dtab.read(text)
    except DtabSyntaxError as e:
        _syntax_error(name, e, err_out)
        return EXIT_USAGE

    if args.cmd == "show":
        out.write(dtab.show() + "\n")
        return EXIT_OK

    path = _parse_path(args.path, err_out)
    if path is None:
        return EXIT_USAGE

    if args.cmd == "bind":
        try:
            out.write(bind(dtab, path).show() + "\n")
        except BindingError as e:
            err_out.write(f"namerouter dtab bind: {e}\n")
            return EXIT_FINDINGS
        return EXIT_OK

    # delegate
    try:
        tree = delegate_tree(dtab, path)
    except BindingError as e:
        err_out.write(f"namerouter dtab delegate: {e}\n")
        return EXIT_FINDINGS
    if args.json:
        out.write(json.dumps(to_json(tree, render_offline_bound), separators=(",", ":")) + "\n")
        return EXIT_OK
    for line in explain(tree):
        out.write(line + "\n")
    try:
        result = bind(dtab, path).show()
    except BindingError as e:
        result = f"error: {e}"
    out.write(f"bound: {result}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
