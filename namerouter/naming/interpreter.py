"""The default interpreter: Finagle's reactive binding over the dtab, the configured
namers and the system namers (Linkerd's ConfiguredNamersInterpreter, kind ``default``).

``bind(dtab, path)`` returns an ``Activity[NameTree[BoundName]]`` that stays current:

* every lookup step asks the dtab first (one rewrite, last dentry first); only when the
  answer is exactly ``~`` are the configured namers asked — each namer whose
  ``/#/<prefix>`` starts the path, in config order, falling through on ``~`` — and then
  the system namers (``/$/…``, the pure rules of ``namerouter.dtab.system``);
* namer answers are Activities. When one changes (a file appears, a member leaves) only
  the part of the tree under that answer is re-bound; everything else is kept. An Alt
  waits while its current branch is pending; a Union is Ok as soon as one member is;
* more than ``max_depth`` lookups along a branch → ``Failed(MaxDepthExceeded)``; more
  than ``max_lookups`` (10,000) lookups in one binding pass → ``Failed(LookupBudgetExceeded)``
  (our addition: a cycle with a union at every step is exponential within the depth
  limit, and request dtabs come from clients);
* the result is simplified and has no Alt nodes whose outcome is decided.

Bindings are cached per (dtab, path) in a :class:`BindingCache` (shared, bounded,
idle-evicted; see its module). Static parts of a binding (dtab rewrites, IP-literal
``/$/inet`` leaves) are computed eagerly as plain trees; only namer answers make the
reactive graph, so a purely static name costs one constant Activity.

Memory per cached name (tracemalloc, ``tests/test_naming_cache.py::test_memory_per_cached_name``,
Python 3.11, x86-64, 1,000 names): about 1.4 KB for a static ``/svc/* => /$/inet/127.1/p``
name and about 10 KB for a name bound through the fs namer with its tree and address set
observed (its file watch, lookup and address Vars included).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ..dtab.dtab import Dtab
from ..dtab.errors import BindingError, MaxDepthExceeded
from ..dtab.path import Path
from ..dtab.tree import FAIL, NEG, Alt, Leaf, NameTree, Union, Weighted
from .binding_cache import BindingCache
from .bound import BoundName
from .namer import Namer
from .reactive import flat_map, map_activity, union_of
from .system_namer import SystemNamer
from .transform import NameTreeTransformer, apply_transformers, is_fully_bound
from .var import Activity, Failed, Var

#: ``#``: the first label of every configured namer's paths.
_HASH = b"#"

# A step result is a plain NameTree (static, Ok), a Failed (static failure) or an
# Activity (dynamic). Keeping the static cases out of the reactive graph keeps binding
# cheap and the Python stack shallow for long rewrite chains.
Step = Any


def _act(r: Step) -> Activity[Any]:
    if isinstance(r, Activity):
        return r
    if isinstance(r, Failed):
        return Activity(Var(r))
    return Activity.value(r)


class DefaultInterpreter:
    """Binds names through a dtab, configured namers and the system namers."""

    kind = "default"

    def __init__(
        self,
        namers: Sequence[Namer] = (),
        transformers: Sequence[NameTreeTransformer] = (),
        max_depth: int = 100,
        max_lookups: int = 10_000,
        cache_size: int = 1000,
        idle_ttl: float = 600.0,
        system: Optional[SystemNamer] = None,
    ) -> None:
        self.namers = list(namers)
        self.transformers = list(transformers)
        self.max_depth = max_depth
        self.max_lookups = max_lookups
        self.system = system if system is not None else SystemNamer()
        self.cache = BindingCache(max_size=cache_size, idle_ttl=idle_ttl)
        # (full prefix /#/<prefix>, its length, namer), in config order.
        self._namers = [(Path([_HASH]) + n.prefix, len(n.prefix) + 1, n) for n in self.namers]

    # public API -------------------------------------------------------------------
    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[BoundName]]:
        """The live bound tree of ``path`` under ``dtab`` (cached and shared)."""
        return self.cache.get((dtab, path), lambda: self._bind_uncached(dtab, path))

    async def delegate(self, dtab: Dtab, path: Path, timeout: float = 2.0) -> dict:
        """Linkerd's delegate-tree JSON with live namers (spec §9); see ``delegate.py``."""
        from .delegate import delegate

        return await delegate(self, dtab, path, timeout=timeout)

    def cache_stats(self) -> dict[str, Any]:
        """Live counts for the admin server and metrics."""
        s = self.cache.stats()
        s["systemAddrs"] = self.system.live_count
        return s

    def register_metrics(self, metrics: Any, scope: str) -> None:
        """Gauges ``<scope>/bindcache/tree/{size,observed,hits,misses,expires,evicts}``."""
        for key in ("size", "observed", "hits", "misses", "expires", "evicts"):
            metrics.gauge(f"{scope}/bindcache/tree/{key}", lambda k=key: self.cache.stats()[k])

    def sweep(self) -> int:
        """Release idle bindings now (the cache also does it on a timer)."""
        return self.cache.sweep()

    async def start(self) -> None:
        """Nothing to start: the namers belong to (and are started by) whoever built them."""

    async def close(self) -> None:
        self.cache.clear()

    # binding ----------------------------------------------------------------------
    def _bind_uncached(self, dtab: Dtab, path: Path) -> Activity[NameTree[BoundName]]:
        r = _Binder(self, dtab, path).run(Leaf(path), 0)
        if isinstance(r, Activity):
            r = _simplified(r)
        elif not isinstance(r, Failed):
            r = r.simplified()
        if self.transformers and not isinstance(r, Failed):
            r = apply_transformers(r, self.transformers)
        return _act(r)

    def lookup(self, dtab: Dtab, path: Path) -> Step:
        """One lookup step: dtab, else namers, else system. Static tree, Failed or Activity."""
        t = dtab.lookup(path)
        if t is not NEG:
            return t
        return self.lookup_namers(path, 0)

    def lookup_namers(self, path: Path, start: int) -> Step:
        labels = path.labels
        if labels and labels[0] == _HASH:
            for i in range(start, len(self._namers)):
                prefix, n, namer = self._namers[i]
                if path.startswith(prefix):
                    return self._ask_namer(namer, path.drop(n), path, i)
        try:
            return self.system.lookup(path)
        except Exception as e:  # UnknownNamer, bad /$/ syntax: this binding fails
            return Failed(e)

    def _ask_namer(self, namer: Namer, rest: Path, path: Path, index: int) -> Step:
        try:
            act = namer.lookup(rest)
        except Exception as e:  # a namer bug fails this name only
            return Failed(e)
        transformers = namer.transformers

        def on_tree(t: NameTree[Any]) -> Any:
            if t is NEG:
                return _act(self.lookup_namers(path, index + 1))
            if transformers and is_fully_bound(t):
                return apply_transformers(t, transformers)
            return t

        return flat_map(act, on_tree)


class LookupBudgetExceeded(BindingError):
    """A binding pass needed more lookups than ``max_lookups``.

    Finagle has no such limit, but a dtab cycle with alternatives at every step (``/* =>
    /a | /b`` also captures ``/$/…`` paths) is exponential within the depth limit; a
    request dtab (``l5d-dtab``) could otherwise keep a core busy for minutes.
    """


class _Binder:
    """One binding: the dtab is fixed, depth is counted per branch, lookups per pass."""

    __slots__ = ("interp", "dtab", "max_depth", "root", "steps", "in_pass")

    def __init__(self, interp: DefaultInterpreter, dtab: Dtab, root: Path) -> None:
        self.interp = interp
        self.dtab = dtab
        self.max_depth = interp.max_depth
        self.root = root
        self.steps = 0
        self.in_pass = False

    def run(self, tree: NameTree[Any], depth: int) -> Step:
        """A binding pass: the first bind, or a re-bind after a namer's answer changed
        (with the activation it cascades into). The lookup budget is per pass."""
        if self.in_pass:
            return self.bind_tree(tree, depth)
        self.in_pass, self.steps = True, 0
        try:
            r = self.bind_tree(tree, depth)
        finally:
            self.in_pass = False
        if self.steps > self.interp.max_lookups:
            # Whatever partial answer came out, the real reason is the budget.
            return self._over_budget()
        return r

    def _over_budget(self) -> Failed:
        return Failed(LookupBudgetExceeded(
            f"binding {self.root.show()} needed more than {self.interp.max_lookups} lookups: "
            "the dtab loops through alternatives"))

    def bind_tree(self, tree: NameTree[Any], depth: int) -> Step:
        if depth > self.max_depth:
            return Failed(MaxDepthExceeded(self.max_depth))
        if isinstance(tree, Leaf):
            v = tree.value
            if isinstance(v, Path):
                return self.bind_path(v, depth)
            return tree  # a bound name
        if isinstance(tree, Alt):
            return self.bind_alt(tree.trees, 0, depth)
        if isinstance(tree, Union):
            return self.bind_union(tree, depth)
        return tree  # NEG, FAIL, EMPTY

    def bind_path(self, path: Path, depth: int) -> Step:
        self.steps += 1
        if self.steps > self.interp.max_lookups:
            return self._over_budget()
        r = self.interp.lookup(self.dtab, path)
        if isinstance(r, Activity):
            return flat_map(r, lambda t: _act(self.run(t, depth + 1)))
        if isinstance(r, Failed):
            return r
        return self.bind_tree(r, depth + 1)

    def bind_alt(self, trees: Sequence[NameTree[Any]], i: int, depth: int) -> Step:
        while i < len(trees):
            r = self.bind_tree(trees[i], depth)
            if isinstance(r, Activity):
                nxt = i + 1

                def choose(t: NameTree[Any], nxt: int = nxt) -> Any:
                    if t is NEG:
                        return _act(self.run(Alt(*trees[nxt:]), depth) if nxt < len(trees) else NEG)
                    return t

                return flat_map(r, choose)
            if isinstance(r, Failed) or r is FAIL:
                return r
            if r is NEG:
                i += 1
                continue
            return r
        return NEG

    def bind_union(self, tree: Union, depth: int) -> Step:
        ws = tree.weighted
        if not ws:
            return NEG
        if len(ws) == 1:
            return self.bind_tree(ws[0].tree, depth)
        results = [(w.weight, self.bind_tree(w.tree, depth)) for w in ws]
        if any(isinstance(r, Activity) for _, r in results):
            return union_of([(w, _act(r)) for w, r in results])
        oks = [(w, r) for w, r in results if not isinstance(r, Failed)]
        if not oks:
            return results[0][1]
        return Union(*(Weighted(w, r) for w, r in oks)).simplified()


def _simplified(act: Activity[NameTree[Any]]) -> Activity[NameTree[Any]]:
    return map_activity(act, lambda t: t.simplified())
