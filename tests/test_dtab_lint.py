"""Lint rules (namerouter.dtab.lint): shadowed entries and self-prefix loops."""
from __future__ import annotations

from pathlib import Path as FsPath

import pytest

from namerouter.dtab import Dtab, DtabSyntaxError, MaxDepthExceeded, Path, Prefix
from namerouter.dtab.lint import covers, lint_text
from namerouter.dtab.offline import bind

ROOT = FsPath(__file__).resolve().parent.parent


def rules(text: str) -> list[tuple[int, str]]:
    return [(f.index, f.rule) for f in lint_text(text)]


@pytest.mark.parametrize("later, earlier, result", [
    ("/svc", "/svc/web", True),
    ("/svc/*", "/svc/web", True),
    ("/svc/*", "/svc/*/x", True),
    ("/", "/anything", True),
    ("/*", "/", False),
    ("/svc/web", "/svc", False),
    ("/svc/web", "/svc/*", False),  # a literal does not cover a wildcard
    ("/svc/a", "/svc/b", False),
    ("/svc", "/svc", True),
])
def test_covers(later, earlier, result):
    assert covers(Prefix.read(later), Prefix.read(earlier)) is result


@pytest.mark.parametrize("text, found", [
    # never-negative later entries shadow what they cover
    ("/svc/web => /#/fs/web; /svc => /$/inet/127.1/80", [(0, "shadowed")]),
    ("/svc/web => /#/fs/web; /svc/* => !", [(0, "shadowed")]),
    ("/svc/web => /#/fs/web; /svc/* => $", [(0, "shadowed")]),
    ("/svc/web => /#/fs/web; /svc => /$/fail", [(0, "shadowed")]),
    ("/a => /x; /a => /#/n | /$/inet/1.1.1.1/1", [(0, "shadowed")]),
    ("/a => /x; /a => /#/n & /$/nil", [(0, "shadowed")]),
    ("/a => /x; /a => /#/n | ~; /b => /y", []),
    # namer and dtab destinations may be negative: falling back is legitimate
    ("/svc => /#/io.l5d.fs; /svc/web => /#/io.l5d.k8s/prod/http/web", []),
    ("/svc/web => /#/fs/web; /svc => /#/k8s", []),
    ("/svc/web => /x; /svc => /$/fail & /$/fail", []),  # `! & !` binds to ~
    ("/svc/web => /x; /svc => /$/inet/h", []),  # not an address: the namer may fail
    # an entry that can capture /$/ paths makes inet destinations not final
    ("/svc/web => /x; /svc => /$/inet/127.1/80; /$ => ~", []),
    # order matters: only LATER entries shadow
    ("/svc => /$/inet/127.1/80; /svc/web => /#/fs/web", []),
    ("/svc/* => /$/inet/127.1/80; /svc/web/x => /y", []),
    # duplicates (same prefix, equivalent destination)
    ("/a => /#/n; /b => /c; /a => /#/n | ~", [(0, "shadowed")]),
    ("/a => /#/n; /a/* => /#/n", []),  # not the same rule: residuals differ
    # self-prefix loops
    ("/s => /s/x", [(0, "self-prefix")]),
    ("/s => /s", [(0, "self-prefix")]),
    ("/s => /s/x | /$/inet/1.1.1.1/1", [(0, "self-prefix")]),  # the first branch loops
    ("/s => /s/x & /s/y", [(0, "self-prefix")]),
    ("/s/* => /s/a/b", [(0, "self-prefix")]),
    ("/s => /$/inet/1.1.1.1/1 | /s/x", []),  # the loop is never reached first
    ("/s => /s/x & /t", []),  # the union survives without the looping member
    ("/s => /s/x; /s/x => /$/inet/1.1.1.1/1", []),  # a later entry takes the rewritten path
    ("/s# => /s/x; /s => /#/fs", []),  # the recommended handler-name style
    ("/svc => /srv; /srv => /svc", []),  # a two-step loop is not detected (documented)
])
def test_lint_rules(text, found):
    assert rules(text) == found


def test_shadowed_findings_are_real():
    # whatever path the shadowed entry matches, binding never uses it
    d = Dtab.read("/svc/web => /#/fs/web; /svc => /$/inet/127.1/80")
    assert str(bind(d, Path.read("/svc/web/x"))) == "/$/inet/127.1/80/web/x"


@pytest.mark.parametrize("text", ["/s => /s/x", "/s => /s/x | /$/inet/1.1.1.1/1", "/s/* => /s/a/b"])
def test_self_prefix_findings_are_real(text):
    with pytest.raises(MaxDepthExceeded):
        bind(Dtab.read(text), Path.read("/s/q"))


def test_finding_positions():
    fs = lint_text("# head\n/a => /x ;\n  /a => !\n;/s => /s/x")
    assert [(f.line, f.column, f.rule) for f in fs] == [(2, 1, "shadowed"), (4, 2, "self-prefix")]
    assert "line 3" in fs[0].message
    assert fs[0].format("f.dtab").startswith("f.dtab:2:1: shadowed: ")


def test_lint_raises_syntax_errors():
    with pytest.raises(DtabSyntaxError):
        lint_text("/a =>")


def test_example_dtabs_are_clean():
    files = sorted((ROOT / "dtabs").glob("*.dtab"))
    assert len(files) >= 5
    for f in files:
        text = f.read_text()
        assert text.startswith("#"), f"{f.name} needs a comment header"
        assert lint_text(text) == [], f.name
        assert len(Dtab.read(text)) >= 1
