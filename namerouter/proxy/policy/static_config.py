"""Which ``service``/``client`` settings apply to a name: ``io.l5d.global`` and
``io.l5d.static`` prefix matching (Linkerd's PathMatcher) and merging.

- ``io.l5d.global``: its keys apply to every name.
- ``io.l5d.static``: every ``configs`` entry whose ``prefix`` matches applies, in order;
  a later entry overrides only the keys it sets.
- Prefixes are Linkerd's PathMatcher patterns (``dtab/path_matcher.py``): a segment
  ``*`` matches any one segment; a segment with ``{name}`` parts captures them within
  that segment (``/#/io.l5d.fs/{service}`` on ``/#/io.l5d.fs/web`` gives
  ``{"service": "web"}``; ``/#/io.l5d.serversets/{role}/{service}:https`` on
  ``…/www/example:https`` gives ``role=www``, ``service=example``); anything else must
  be equal. The prefix may be shorter than the path (it is a prefix), never longer.
  The captures fill ``{name}`` in a client ``tls.commonName``.

Blocks are the validated dataclasses of ``config.py`` (code that builds a router without a
config file validates its blocks with ``namerouter.config.validate.validate`` too).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ...dtab.path import Path
from ...dtab.path_matcher import PathMatcher

_META_KEYS = ("kind", "prefix", "configs")


def get(block: Any, key: str, default: Any = None) -> Any:
    """``block.key`` of a validated config dataclass; ``None`` (or no block) = unset."""
    v = getattr(block, key, None)
    return default if v is None else v


def set_keys(block: Any) -> dict[str, Any]:
    """The policy keys a block sets (``None`` means unset), without kind/prefix/configs."""
    if block is None:
        return {}
    if not dataclasses.is_dataclass(block):
        raise TypeError(f"expected a validated config dataclass, got {type(block).__name__}")
    items = ((f.name, getattr(block, f.name)) for f in dataclasses.fields(block))
    return {k: v for k, v in items if v is not None and k not in _META_KEYS}


def _as_path(path: Any) -> Optional[Path]:
    if isinstance(path, Path):
        return path
    try:
        return Path.read(str(path))
    except ValueError:
        return None


class StaticConfigs:
    """A ``service`` or ``client`` block compiled once per router; ``for_path`` per name."""

    def __init__(self, block: Any) -> None:
        self.kind = get(block, "kind", "io.l5d.global")
        self.entries: list[tuple[PathMatcher, dict[str, Any]]] = []
        self.global_keys: dict[str, Any] = {}
        if block is None:
            return
        if self.kind == "io.l5d.static":
            for i, entry in enumerate(get(block, "configs", []) or []):
                prefix = get(entry, "prefix")
                if not isinstance(prefix, str) or not prefix.startswith("/"):
                    raise ValueError(f"configs[{i}].prefix: expected a path starting with '/', got {prefix!r}")
                self.entries.append((PathMatcher(prefix), set_keys(entry)))
        elif self.kind == "io.l5d.global":
            self.global_keys = set_keys(block)
        else:
            raise ValueError(f"kind: expected io.l5d.global or io.l5d.static, got {self.kind!r}")

    @property
    def empty(self) -> bool:
        return not self.entries and not self.global_keys

    def for_path(self, path: Any) -> tuple[dict[str, Any], dict[str, str]]:
        """(merged keys, captured variables) for a name or bound id."""
        if self.kind != "io.l5d.static":
            return dict(self.global_keys), {}
        p = _as_path(path)
        merged: dict[str, Any] = {}
        caps: dict[str, str] = {}
        if p is None:
            return merged, caps
        for matcher, keys in self.entries:
            got = matcher.extract(p)
            if got is not None:
                merged.update(keys)
                caps.update(got)
        return merged, caps

    def sources(self, key: str) -> list[tuple[Optional[int], Any]]:
        """Every value of ``key`` in the block, with its ``configs`` index (None for an
        ``io.l5d.global`` block): what a router builds ahead of the first request (TLS
        contexts)."""
        if key in self.global_keys:
            return [(None, self.global_keys[key])]
        return [(i, keys[key]) for i, (_, keys) in enumerate(self.entries) if key in keys]

    def any_sets(self, key: str) -> bool:
        """Whether any entry (or the global block) sets ``key``."""
        if key in self.global_keys:
            return True
        return any(key in keys for _, keys in self.entries)
