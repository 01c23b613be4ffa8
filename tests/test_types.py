"""``mypy`` over namerouter and namerd with the config in pyproject.toml ([tool.mypy]:
``--strict`` for the whole tree): ``make test`` fails on a type error.

namerouter/proxy/'s errors are counted apart (the first test shows both counts); since
the HTTP/2 merge the data plane has none either, and the second test keeps it so."""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY = "namerouter/proxy/"
_ERROR = re.compile(r"^(?P<file>[^:\s]+\.pyi?):\d+: error: ")


@functools.lru_cache(maxsize=1)
def _mypy() -> tuple[int, list[str]]:
    """(exit status, error lines) of one mypy run, shared by the tests below."""
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if r.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        pytest.fail(f"mypy did not run (exit {r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r.returncode, [line for line in r.stdout.splitlines() if _ERROR.match(line)]


def _split() -> tuple[list[str], list[str]]:
    _, errors = _mypy()
    proxy = [e for e in errors if e.replace(os.sep, "/").startswith(PROXY)]
    return [e for e in errors if e not in proxy], proxy


def test_the_whole_tree_is_checked_strictly() -> None:
    """``strict`` for every module: dtab/ and naming/ (which every layer builds on) and the
    rest alike. (An override section cannot narrow it: mypy treats ``strict`` as global.)"""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)["tool"]["mypy"]
    assert cfg["strict"] is True and cfg["files"] == ["namerouter", "namerd"]
    assert not cfg.get("exclude"), "nothing is excluded from the type check"


def test_mypy_strict_has_no_errors_outside_the_data_plane() -> None:
    others, proxy = _split()
    print(f"mypy: {len(others)} errors outside {PROXY}, {len(proxy)} in it")
    assert not others, f"{len(others)} mypy errors:\n" + "\n".join(others)


def test_mypy_strict_has_no_errors_in_the_data_plane() -> None:
    _, proxy = _split()
    assert not proxy, f"{len(proxy)} mypy errors in {PROXY}:\n" + "\n".join(proxy)


def test_the_config_lets_mypyc_compile_the_data_plane() -> None:
    """``make native`` runs mypyc with this config over the hot modules alone; any message
    there (a type error, or even a note about an unused config section) fails that build
    and the data plane silently runs as pure Python."""
    from namerouter.proxy import native

    sources = [os.path.relpath(native._source(m), ROOT) for m in native.MODULES]
    r = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", *sources],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    messages = [line for line in r.stdout.splitlines() if not line.startswith("Success:")]
    assert r.returncode == 0 and not messages, "\n".join(messages) + r.stderr[-2000:]
