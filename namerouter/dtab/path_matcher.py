"""Linkerd's PathMatcher: match a path against a pattern with ``*`` and ``{var}``
captures, and substitute the captures into another pattern.

Used by the ``io.l5d.rewrite`` namer (``pattern`` / ``name``). Semantics, as Linkerd's
``com.twitter.finagle.buoyant.PathMatcher`` (and its tests):

* the pattern is a prefix: ``/foo/bar`` matches ``/foo/bar/bas``;
* ``*`` matches any one segment;
* a segment with ``{name}`` parts is a regular expression over that one segment in
  which each ``{name}`` is a greedy ``(.*)`` and everything else is literal:
  ``{A}.{B}`` on ``www.foo.com`` gives ``A=www.foo``, ``B=com``; ``{A}-{B}`` on
  ``a-b-c`` gives ``A=a-b``, ``B=c``. Like Linkerd the segment expression is searched,
  not anchored (``{A}:http`` matches ``bas:http``);
* segments are compared in their shown (escaped) form, so captures substitute back
  into text that ``Path.read`` parses again.

Difference on purpose: every literal character is escaped for the regular expression
(Linkerd escapes only ``.``, so a ``$`` in a pattern segment would act as an anchor).
"""
from __future__ import annotations

import re
from typing import Optional

from .path import Path

_VAR = re.compile(r"\{([A-Za-z0-9.:_-]+)\}")


class PathMatcher:
    """A compiled pattern; ``extract(path)`` → captures or None."""

    __slots__ = ("pattern", "_segments")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        segs: list[tuple[str, Optional[re.Pattern[str]], tuple[str, ...]]] = []
        for seg in [s for s in pattern.split("/") if s]:
            names = tuple(_VAR.findall(seg))
            if not names:
                segs.append((seg, None, ()))
                continue
            parts = _VAR.split(seg)  # literal, name, literal, name, ..., literal
            regex = "".join(re.escape(p) if i % 2 == 0 else "(.*)" for i, p in enumerate(parts))
            segs.append((seg, re.compile(regex), names))
        self._segments = segs

    def extract(self, path: Path) -> Optional[dict[str, str]]:
        shown = [Path([label]).show()[1:] for label in path.labels]
        if len(shown) < len(self._segments):
            return None
        out: dict[str, str] = {}
        for (text, regex, names), seg in zip(self._segments, shown):
            if text == "*":
                continue
            if regex is None:
                if text != seg:
                    return None
                continue
            m = regex.search(seg)
            if m is None:
                return None
            out.update(zip(names, m.groups()))
        return out

    @staticmethod
    def substitute(captures: dict[str, str], template: str) -> str:
        for k, v in captures.items():
            template = template.replace("{" + k + "}", v)
        return template

    def substitute_path(self, path: Path, template: str) -> Optional[Path]:
        """The template with the captures of ``path`` filled in, parsed as a path; None
        when ``path`` does not match. ValueError if the result is not a valid path."""
        caps = self.extract(path)
        if caps is None:
            return None
        return Path.read(self.substitute(caps, template))

    def __repr__(self) -> str:
        return f"PathMatcher({self.pattern!r})"
