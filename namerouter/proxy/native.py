"""The data plane's hot modules compiled with mypyc — optional, never stale.

``make native`` (part of ``make test`` and ``make demo``) runs ``python -m
namerouter.proxy.native build``: mypyc compiles :data:`MODULES` into extension modules
next to their sources (one shared library, ``native__mypyc``) and records a hash of each
source in ``native.json``. Without mypyc or a C compiler the build says so and the data
plane runs as pure Python; the two behave the same (the whole test suite runs on either).

Compiled modules call each other directly in C, so they are used all together or not at
all: :func:`install` (run by ``namerouter/proxy/__init__.py`` before anything else of the
package is imported) makes the import system load the ``.py`` sources of every module of
the group when any source differs from what was compiled, or when
``NAMEROUTER_PURE=1`` is set. Editing a hot module therefore never runs old code.
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from typing import Any, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MANIFEST = os.path.join(HERE, "native.json")
GROUP = "namerouter.proxy.native"

#: The hot path: what one request runs through (the rest of the package stays Python).
MODULES = (
    "namerouter.proxy.message",
    "namerouter.proxy.batch",
    "namerouter.proxy.timers",
    "namerouter.proxy.stats",
    "namerouter.proxy.phases",
    "namerouter.proxy.lifecycle",
    "namerouter.proxy.h1.heads",
    "namerouter.proxy.h1.encode",
    "namerouter.proxy.h1.server",
    "namerouter.proxy.h1.client",
    # HTTP/2's heads subclass message.py's (a compiled class cannot have interpreted
    # subclasses); the rest of the h2 codec stays Python: its time is spent in h2/hpack
    "namerouter.proxy.h2.heads",
)


def _source(module: str) -> str:
    return os.path.join(ROOT, *module.split(".")) + ".py"


def _digest(module: str) -> str:
    with open(_source(module), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _compiled_files() -> list[str]:
    """The extension files of the group (module shims and the shared library)."""
    out = []
    for d in (HERE, os.path.join(HERE, "h1"), os.path.join(HERE, "h2")):
        for name in os.listdir(d):
            if name.endswith(".so") or name.endswith(".pyd"):
                out.append(os.path.join(d, name))
    return out


def state() -> dict[str, Any]:
    """Whether the compiled modules are in use: ``{"compiled": bool, "why": str}``."""
    if os.environ.get("NAMEROUTER_PURE"):
        return {"compiled": False, "why": "NAMEROUTER_PURE is set"}
    try:
        with open(MANIFEST) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return {"compiled": False, "why": "not built (make native)"}
    if not manifest.get("compiled"):
        return {"compiled": False, "why": manifest.get("why", "not built")}
    if sys.implementation.cache_tag != manifest.get("python"):
        return {"compiled": False, "why": f"built for {manifest.get('python')}"}
    stale = [m for m in MODULES if manifest.get("sources", {}).get(m) != _digest(m)]
    if stale:
        return {"compiled": False, "why": f"sources changed since the build: {', '.join(stale)} (make native)"}
    return {"compiled": True, "why": "built by make native"}


class _PureFinder(importlib.abc.MetaPathFinder):
    """Loads the group's ``.py`` sources instead of their extension modules."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None) -> Any:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(
            fullname, _source(fullname), loader=importlib.machinery.SourceFileLoader(fullname, _source(fullname)))


_STATE: Optional[dict[str, Any]] = None


def install() -> dict[str, Any]:
    """Decide once per process: compiled modules (fresh) or the pure Python sources."""
    global _STATE
    if _STATE is None:
        _STATE = state()
        if not _STATE["compiled"] and any(_compiled_files()):
            sys.meta_path.insert(0, _PureFinder())
    return _STATE


def clean() -> None:
    for path in _compiled_files():
        os.unlink(path)
    if os.path.exists(MANIFEST):
        os.unlink(MANIFEST)


def build() -> int:
    """Compile the group in place (``make native``); fall back to pure Python, loudly."""
    clean()
    sources = {m: _digest(m) for m in MODULES}
    why = ""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        why = "mypyc is not installed (pip install mypy)"
    if not why and shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        why = "no C compiler"
    if not why:
        script = (
            "import sys\n"
            "from setuptools import setup\n"
            "from mypyc.build import mypycify\n"
            f"setup(name='namerouter-native', ext_modules=mypycify(['--follow-imports=silent'] + {[_source(m) for m in MODULES]!r}, "
            f"group_name={GROUP!r}), script_args=['build_ext', '--inplace', '--build-temp', {os.path.join(ROOT, 'build', 'native')!r}])\n")
        p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
        shutil.rmtree(os.path.join(ROOT, "build", "native"), ignore_errors=True)
        if p.returncode != 0:
            why = "mypyc failed:\n" + (p.stdout + p.stderr)[-3000:]
            clean()
    with open(MANIFEST, "w") as f:
        json.dump({"compiled": not why, "why": why, "python": sys.implementation.cache_tag,
                   "sources": sources}, f, indent=1)
    if why:
        print(f"namerouter: the data plane runs as pure Python ({why.splitlines()[0]})")
    else:
        print(f"namerouter: compiled {len(MODULES)} data-plane modules with mypyc")
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "state"
    if cmd == "build":
        sys.exit(build())
    if cmd == "clean":
        clean()
        sys.exit(0)
    print(json.dumps(state()))
