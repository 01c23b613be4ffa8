"""The layering of docs/architecture.md, checked: every module of namerouter/ and namerd/
belongs to a layer of the table below, and none imports a module of a higher layer (every
import counts: at the top, inside a function, under ``TYPE_CHECKING``). The table is the
one in docs/architecture.md ("Layers"); a test below keeps the two the same.

A module belongs to the most specific entry that covers it (``namerouter/`` itself, the
package's ``__init__``, is layer 1 and may only import layer 1)."""
from __future__ import annotations

import ast
import os
import re
from typing import Iterator, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "architecture.md")

#: layer -> the packages (``dir/``) and modules (``file.py``) in it, as the doc's table lists them
LAYERS: dict[int, list[str]] = {
    1: ["namerouter/__init__.py", "namerouter/dtab/", "namerouter/metrics.py", "namerouter/backoff.py",
        "namerouter/plugins.py", "namerouter/fswatch.py", "namerouter/tls/", "namerouter/tracing/"],
    2: ["namerouter/naming/", "namerouter/zk/", "namerouter/consul/", "namerouter/k8s/", "namerouter/mesh/",
        "namerouter/mux/", "namerouter/thriftapi/", "namerouter/ratelog.py"],
    3: ["namerouter/namers/", "namerouter/interpreters/", "namerouter/transformers/", "namerouter/announcers/",
        "namerouter/announce.py"],
    4: ["namerouter/proxy/"],
    5: ["namerouter/admin/", "namerouter/telemetry/"],
    6: ["namerouter/config/"],
    7: ["namerouter/linker.py", "namerouter/workers.py", "namerouter/cli.py", "namerouter/cli_announce.py",
        "namerouter/cli_dtab.py", "namerouter/cli_run.py", "namerouter/demo.py", "namerouter/__main__.py",
        "namerd/"],
}

#: narrower rules the table states: these may import only the listed parts of the tree
ONLY: dict[str, list[str]] = {
    "namerouter/dtab/": ["namerouter/dtab/"],  # the language: pure
    "namerouter/tls/": ["namerouter/tls/", "namerouter/metrics.py", "namerouter/fswatch.py"],
    "namerouter/tracing/": ["namerouter/tracing/", "namerouter/metrics.py"],
}
#: ... and these never import the listed parts
NEVER: dict[str, list[str]] = {
    "namerd/": ["namerouter/proxy/"],  # namerd reuses layers 1-3 and 5-6, not the data plane
}
#: the dtab language does no I/O: no module of these (standard library or not) in it
DTAB_PURE_DENIED = ("asyncio", "socket", "ssl", "selectors", "subprocess", "threading", "concurrent", "os",
                    "io", "http", "urllib", "aiohttp", "uvloop", "kazoo")


def _entries() -> list[tuple[str, int]]:
    return [(e, n) for n, entries in LAYERS.items() for e in entries]


def _entry_of(path: str) -> Optional[tuple[str, int]]:
    """The most specific table entry covering ``path`` (a repo-relative ``.py`` path)."""
    best: Optional[tuple[str, int]] = None
    for entry, n in _entries():
        hit = path == entry if entry.endswith(".py") else path.startswith(entry)
        if hit and (best is None or len(entry) > len(best[0])):
            best = (entry, n)
    return best


def _modules() -> Iterator[str]:
    for top in ("namerouter", "namerd"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in sorted(files):
                if f.endswith(".py"):
                    yield os.path.relpath(os.path.join(d, f), ROOT).replace(os.sep, "/")


def _path_of(module: str) -> Optional[str]:
    """``namerouter.naming.var`` -> ``namerouter/naming/var.py`` (or the package's ``__init__.py``)."""
    base = module.replace(".", "/")
    for p in (base + ".py", base + "/__init__.py"):
        if os.path.exists(os.path.join(ROOT, p)):
            return p
    return None


def imports(path: str, text: Optional[str] = None) -> Iterator[tuple[int, str]]:
    """(line, module name) of every import in the file at ``path`` (or of ``text`` as that
    file), relative ones resolved."""
    if text is None:
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
    tree = ast.parse(text, path)
    package = path[:-3].replace("/", ".")
    if not path.endswith("/__init__.py"):
        package = package.rsplit(".", 1)[0]
    else:
        package = package[: -len(".__init__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for a in node.names:  # ``from pkg import submodule``
                if _path_of(f"{mod}.{a.name}") is not None:
                    yield node.lineno, f"{mod}.{a.name}"


def _internal_targets(path: str, text: Optional[str] = None) -> Iterator[tuple[int, str]]:
    for line, mod in imports(path, text):
        if mod.split(".")[0] in ("namerouter", "namerd"):
            target = _path_of(mod)
            if target is not None:
                yield line, target


def test_every_module_is_in_a_layer() -> None:
    missing = [p for p in _modules() if _entry_of(p) is None]
    assert not missing, f"add these to the layer table (docs/architecture.md and LAYERS here): {missing}"


def upward_imports(path: str, text: Optional[str] = None) -> list[str]:
    """The imports of the module at ``path`` from a higher layer than its own."""
    entry = _entry_of(path)
    assert entry is not None, path
    bad = []
    for line, target in _internal_targets(path, text):
        other = _entry_of(target)
        assert other is not None, target
        if other[1] > entry[1]:
            bad.append(f"{path}:{line} (layer {entry[1]}) imports {target} (layer {other[1]})")
    return bad


def test_no_module_imports_a_higher_layer() -> None:
    bad = [b for path in _modules() for b in upward_imports(path)]
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def test_narrower_rules_of_the_table() -> None:
    bad = []
    for path in _modules():
        for scope, allowed in ONLY.items():
            if path.startswith(scope):
                bad += [f"{path}:{line} imports {t} (only {allowed})"
                        for line, t in _internal_targets(path) if not any(t.startswith(a) for a in allowed)]
        for scope, denied in NEVER.items():
            if path.startswith(scope):
                bad += [f"{path}:{line} imports {t}"
                        for line, t in _internal_targets(path) if any(t.startswith(d) for d in denied)]
        if path.startswith("namerouter/dtab/"):
            bad += [f"{path}:{line} imports {mod} (the dtab language does no I/O)"
                    for line, mod in imports(path) if mod.split(".")[0] in DTAB_PURE_DENIED]
    assert not bad, "\n".join(bad)


def _doc_table() -> dict[int, list[str]]:
    """The "Layers" table of docs/architecture.md: layer -> the backticked paths of its
    second column."""
    with open(DOC) as f:
        text = f.read()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    out: dict[int, list[str]] = {}
    for row in section.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", row)
        if m:
            out.setdefault(int(m.group(1)), []).extend(re.findall(r"`([^`]+)`", m.group(2)))
    return out


def test_the_doc_states_the_same_table() -> None:
    assert _doc_table() == LAYERS


def test_the_check_catches_upward_imports_wherever_they_are() -> None:
    """The checker itself, on a module written for it: relative, absolute, lazy (inside a
    function) and TYPE_CHECKING-only imports of a higher layer are all reported."""
    text = """
from typing import TYPE_CHECKING
from ..dtab import Path
from . import var
from ..proxy import routing
if TYPE_CHECKING:
    from namerouter.admin.app import AdminServer
def f():
    import namerouter.config.validate
"""
    assert upward_imports("namerouter/naming/probe.py", text) == [
        "namerouter/naming/probe.py:5 (layer 2) imports namerouter/proxy/__init__.py (layer 4)",
        "namerouter/naming/probe.py:5 (layer 2) imports namerouter/proxy/routing.py (layer 4)",
        "namerouter/naming/probe.py:7 (layer 2) imports namerouter/admin/app.py (layer 5)",
        "namerouter/naming/probe.py:9 (layer 2) imports namerouter/config/validate.py (layer 6)",
    ]
