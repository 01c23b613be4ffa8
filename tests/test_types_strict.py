"""``mypy --strict`` over the dtab language and live naming (pyproject's [tool.mypy]
overrides): the two packages every other layer builds on stay fully typed."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dtab_and_naming_pass_mypy_strict() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "namerouter/dtab", "namerouter/naming"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
