"""`namerouter dtab show|bind|delegate|lint`, run as a real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path as FsPath

import pytest

ROOT = FsPath(__file__).resolve().parent.parent
DTABS = sorted((ROOT / "dtabs").glob("*.dtab"))


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "namerouter", "dtab", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def test_show_from_file_stdin_and_text(tmp_path):
    f = tmp_path / "d.dtab"
    f.write_text("# header\n/svc => /srv ;\n/srv => 2 * /a & /b # canary\n")
    for r in (run("show", str(f)), run("show", "-", stdin=f.read_text()),
              run("show", "--dtab", f.read_text())):
        assert r.returncode == 0, r.stderr
        assert r.stdout == "/svc=>/srv;/srv=>2.00*/a & /b\n"


def test_syntax_error_has_line_and_column_and_exit_2(tmp_path):
    f = tmp_path / "bad.dtab"
    f.write_text("/a => /b;\n/c => /d;\n/e =/f\n")
    r = run("show", str(f))
    assert r.returncode == 2
    assert r.stdout == ""
    assert f"{f}:3:5: syntax error: '>' expected but '/' found" in r.stderr
    assert "/e =/f" in r.stderr


def test_bind():
    r = run("bind", "/svc/web/x", "--dtab", "/srv => /$/inet/127.1/8080; /svc => /srv")
    assert (r.returncode, r.stdout) == (0, "/$/inet/127.1/8080/web/x\n")


def test_bind_errors():
    r = run("bind", "/s/a", "--dtab", "/s => /s/x")
    assert r.returncode == 1
    assert "Max recursion level: 100 reached in Namer lookup" in r.stderr
    r = run("bind", "not-a-path", "--dtab", "/a=>/b")
    assert r.returncode == 2
    assert "'/' expected but 'n' found at '[n]ot-a-path'" in r.stderr


def test_delegate_text_explains_each_step():
    dtab = "/bah/humbug => /$/inet/127.1/8080; /foo => /bah | /$/fail; /foo => /bar; /boo => /foo"
    r = run("delegate", "/boo/humbug", "--dtab", dtab)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "/boo/humbug"
    assert lines[1].startswith("  /foo/humbug  (by /boo=>/foo)")
    assert "    /bar/humbug  (by /foo=>/bar)  => ~" in r.stdout
    assert "      /$/inet/127.1/8080  (by /bah/humbug=>/$/inet/127.1/8080)  => bound id /$/inet/127.1/8080" in r.stdout
    assert "127.0.0.1:8080" in r.stdout
    assert "/$/fail/humbug  (by /foo=>/bah | /$/fail)  => ! (fail" in r.stdout
    assert lines[-1] == "bound: /$/inet/127.1/8080"


def test_delegate_json():
    r = run("delegate", "/meh", "--json", "--dtab", "/meh => /heh")
    assert r.returncode == 0
    assert r.stdout == ('{"type":"delegate","path":"/meh","delegate":{"type":"neg","path":"/heh",'
                        '"dentry":{"prefix":"/meh","dst":"/heh"}}}\n')
    assert json.loads(r.stdout)["type"] == "delegate"


def test_usage_errors_exit_2(tmp_path):
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2
    r = run("show", str(tmp_path / "missing.dtab"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = run("show", str(tmp_path / "x"), "--dtab", "/a=>/b")
    assert r.returncode == 2 and "not both" in r.stderr


def test_lint_findings_and_exit_status():
    dtab = ("# shadowed by the later /svc/* entry\n"
            "/svc/web => /#/io.l5d.fs/web ;\n"
            "/svc/* => /$/inet/127.1/8002 ;\n"
            "/s => /s/x ;\n")
    r = run("lint", "-", stdin=dtab)
    assert r.returncode == 1
    out = r.stdout.splitlines()
    assert len(out) == 2
    assert out[0].startswith("<stdin>:2:1: shadowed: '/svc/web=>/#/io.l5d.fs/web' can never apply")
    assert "'/svc/*=>/$/inet/127.1/8002' (line 3)" in out[0]
    assert out[1].startswith("<stdin>:4:1: self-prefix: '/s=>/s/x'")


def test_lint_syntax_error_exit_2():
    r = run("lint", "--dtab", "/a => /b;\n  /c => /d/")
    assert r.returncode == 2
    assert "--dtab:2:12: syntax error: label char expected but end of input found" in r.stderr


@pytest.mark.skipif(not DTABS, reason="no example dtabs")
def test_example_dtabs_lint_clean():
    r = run("lint", *map(str, DTABS))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
