"""``io.l5d.rewrite``: rewrite a whole name by a pattern (Linkerd's RewritingNamer).

::

    namers:
    - kind: io.l5d.rewrite
      prefix: /apiToSrv          # required: there is no default prefix
      pattern: "/{service}/api"
      name: "/srv/{service}"

``/#/apiToSrv/users/api/v1`` becomes the path ``/srv/users``, which is bound again
through the dtab (the answer is a path leaf, not a bound address). A name that does
not match ``pattern`` is ``~`` (neg). Pattern rules (prefix match, ``*``, greedy
``{var}`` captures inside a segment) are ``namerouter.dtab.path_matcher``'s.

This namer does no I/O, so it has no watch and no state beyond its config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..dtab.path import Path
from ..dtab.path_matcher import PathMatcher
from ..dtab.tree import NEG, Leaf, NameTree
from ..naming.namer import Namer
from ..naming.var import Activity

KIND = "io.l5d.rewrite"


def _check_path_text(value: Any) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {value!r}")


@dataclass
class RewriteConfig:
    prefix: str = field(metadata={"doc": "required (Linkerd has no default for this namer)",
                                  "check": _check_path_text})
    pattern: str = field(metadata={"check": _check_path_text})
    name: str = field(metadata={"check": _check_path_text})
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


class RewriteNamer(Namer):
    kind = KIND
    config_class = RewriteConfig

    def __init__(self, prefix: Path, pattern: str, name: str) -> None:
        super().__init__(prefix)
        self.matcher = PathMatcher(pattern)
        self.template = name

    @classmethod
    def from_config(cls, config: RewriteConfig, runtime: Any = None) -> "RewriteNamer":
        from ..naming.transform import build_transformers

        namer = cls(Path.read(config.prefix), config.pattern, config.name)
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        try:
            result = self.matcher.substitute_path(path, self.template)
        except ValueError as e:  # a capture that makes the name unparsable
            return Activity.exception(ValueError(
                f"{KIND} {self.prefix.show()}: {path.show()} rewrites to an invalid path: {e}"))
        if result is None:
            return Activity.value(NEG)
        return Activity.value(Leaf(result))

    def admin_state(self) -> dict[str, Any]:
        return {"pattern": self.matcher.pattern, "name": self.template}
