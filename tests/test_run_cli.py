"""`namerouter CONFIG` as a user runs it: bad configs exit 2 with every message, no traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "namerouter", *args], input=stdin, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


BAD = """admin:
  port: 9990
routers:
- protocol: http
  label: outging
  dtab: |
    /svc/pong => /$/inet/127.1/8002;
  servers:
  - port: abc
    ip: 0.0.0.0
  identifer: {kind: io.l5d.path}
namers:
- kind: io.l5d.nope
"""


def test_bad_config_exits_2_with_all_messages(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BAD)
    for argv in ([str(cfg)], ["run", str(cfg)]):
        p = run(*argv)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr
        assert "routers[0].servers[0].port: expected an integer 1-65535, got 'abc' (line 9)" in p.stderr
        assert "routers[0].identifer: unknown key; did you mean 'identifier'? (line 11)" in p.stderr
        assert "namers[0].kind: unknown kind 'io.l5d.nope'" in p.stderr
        assert "known kinds: io.l5d.consul, " in p.stderr and "io.l5d.fs, " in p.stderr
        assert p.stdout == ""


def test_stdin_config_and_check_mode():
    good = "routers:\n- protocol: http\n  dtab: /svc => /$/inet/127.1/1;\ntelemetry:\n- kind: io.l5d.commonMetrics\n"
    p = run("--check", "-", stdin=good)
    assert p.returncode == 0, p.stderr
    assert "config is valid" in p.stdout
    assert "warning: telemetry[0]: kind io.l5d.commonMetrics is not provided" in p.stderr
    p = run("-", stdin="routers:\n- protocol: http\n  dtab: /svc => \n")
    assert p.returncode == 2 and "routers[0].dtab: invalid dtab:" in p.stderr and "Traceback" not in p.stderr


def test_missing_file_and_unparseable_yaml(tmp_path):
    p = run(str(tmp_path / "nope.yaml"))
    assert p.returncode == 2 and "cannot read config file" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("routers:\n- protocol: http\n  servers: [\n")
    p = run(str(bad))
    assert p.returncode == 2 and "invalid YAML" in p.stderr and "(line " in p.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    p = run(str(empty))
    assert p.returncode == 2 and "config is empty" in p.stderr
