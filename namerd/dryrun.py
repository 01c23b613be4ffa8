"""The dry run of a dtab change: which names would go somewhere else.

One definition for ``namerd dtab update --dry-run`` (``cli_dtab.py``, which asks namerd
over HTTP) and the namerd UI (``ui.py``, which asks the binder in-process): a name's
destination is its delegation tree summarized to one line (:func:`summarize`: the bound
ids, ``|`` for alternatives, ``&`` with weights for unions, ``~``/``!``/``$``), computed
under the current dtab and under the proposed one; a row is ``CHANGED`` when the two
lines differ.

For the UI the names are those namerd currently has bound with the namespace's dtab
(:func:`bound_names`: the interpreter's binding cache, keyed by (dtab, path); a router
using ``io.l5d.namerd.http`` binds with the namespace's dtab followed by its own, so each
name keeps that extra part, and the dry run delegates with it too).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable, Optional

from namerouter.dtab import Dtab, Path

#: at most this many names are compared per dry run (the rest are counted, not shown)
MAX_NAMES = 200
CONCURRENCY = 8


def summarize(node: Any) -> str:
    """A delegate-tree JSON node as one line: leaves' ids, ``|`` alternatives, ``&`` unions."""
    if not isinstance(node, dict):
        return "?"
    t = node.get("type")
    if t == "delegate":
        return summarize(node.get("delegate"))
    if t == "leaf":
        return str((node.get("bound") or {}).get("id") or node.get("path", "?"))
    if t == "alt":
        parts = [summarize(c) for c in node.get("alt", [])]
        parts = [p for p in parts if p != "~"] or ["~"]
        return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"
    if t == "union":
        return "(" + " & ".join(f"{u.get('weight', 1)}*{summarize(u.get('tree'))}"
                                for u in node.get("union", [])) + ")"
    if t == "transformation":
        return summarize(node.get("tree"))
    if t == "neg":
        return "~"
    if t == "fail":
        return "!"
    if t == "empty":
        return "$"
    if t == "exception":
        return f"error({node.get('message', '')})"
    return str(t)


def change_row(name: str, before: str, after: str) -> dict[str, Any]:
    return {"name": name, "before": before, "after": after, "changed": before != after}


def format_row(row: dict[str, Any]) -> str:
    """The CLI's line for one name."""
    mark = "CHANGED" if row["changed"] else "unchanged"
    return f"  {row['name']}: {row['before']} -> {row['after']}  [{mark}]"


def bound_names(interpreter: Any, ns_dtab: Dtab) -> list[tuple[Path, Dtab]]:
    """(name, extra dtab) of every binding in the interpreter's cache made with
    ``ns_dtab`` (+ a router's dtab after it), sorted by name."""
    cache = getattr(interpreter, "cache", None)
    keys = cache.keys() if cache is not None and hasattr(cache, "keys") else []
    n = len(ns_dtab)
    out: set[tuple[Path, Dtab]] = set()
    for key in keys:
        if not (isinstance(key, tuple) and len(key) == 2):
            continue
        dtab, path = key
        if isinstance(dtab, Dtab) and isinstance(path, Path) and len(dtab) >= n and dtab[:n] == ns_dtab:
            out.add((path, dtab[n:]))
    return sorted(out, key=lambda e: (e[0].show(), e[1].show()))


async def compare(names: Iterable[tuple[Path, Dtab]], before: Dtab, after: Dtab,
                  delegate: Callable[[Dtab, Path], Awaitable[dict[str, Any]]],
                  limit: int = MAX_NAMES) -> dict[str, Any]:
    """Delegate every name under ``before ++ extra`` and ``after ++ extra``; at most
    ``limit`` names, ``CONCURRENCY`` at a time. A delegation that fails is shown as
    ``error(<message>)`` on its side."""
    todo = list(names)
    shown = todo[:limit]
    sem = asyncio.Semaphore(CONCURRENCY)

    async def side(dtab: Dtab, path: Path) -> str:
        try:
            async with sem:
                return summarize(await delegate(dtab, path))
        except Exception as e:  # one name's failure is that row's answer, not the dry run's
            return f"error({str(e) or type(e).__name__})"

    async def row(path: Path, extra: Dtab) -> dict[str, Any]:
        b, a = await asyncio.gather(side(before + extra, path), side(after + extra, path))
        r = change_row(path.show(), b, a)
        if len(extra):
            r["extraDtab"] = extra.show()
        return r

    rows = list(await asyncio.gather(*(row(p, x) for p, x in shown)))
    return {"names": rows, "changed": sum(1 for r in rows if r["changed"]),
            "total": len(todo), "truncated": len(todo) > len(shown)}


def parse_names(raw: Optional[Iterable[Any]]) -> list[Path]:
    """Names typed by a user (strings); ValueError names the bad one."""
    out = []
    for n in raw or ():
        if not isinstance(n, str) or not n.strip():
            continue
        try:
            out.append(Path.read(n.strip()))
        except Exception as e:
            raise ValueError(f"invalid name {n.strip()[:100]!r}: {e}") from None
    return out
