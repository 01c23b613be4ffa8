"""The default interpreter: Finagle's reactive binding over the dtab, the configured
namers and the system namers (Linkerd's ConfiguredNamersInterpreter, kind ``default``).

``bind(dtab, path)`` returns an ``Activity[NameTree[BoundName]]`` that stays current.
The algorithm is the one of ``namerouter.dtab.binding`` (shared with offline binding
and delegation); this module only runs it live:

* a lookup the dtab leaves at ``~`` asks the configured namers — each namer whose
  ``/#/<prefix>`` starts the path, in config order, falling through on ``~`` — and then
  the system namers (``/$/…``). A namer's answer is an Activity: the binding observes
  every answer it used and binds again (one pass of the algorithm) when one changes, so
  the reactive graph is one level deep whatever the dtab (no recursion from input);
* a namer still pending is "waiting": an Alt waits on its current branch, a Union is Ok
  as soon as one member is;
* the budget is the algorithm's: more than ``max_depth`` lookups along a branch fail
  that branch (``MaxDepthExceeded``); more than ``budget`` steps in one pass (or a bound
  tree too large or deep) fail the binding with ``BindingTooLarge``. Bindings whose dtab
  includes a client's request dtab (``bind(..., from_request=True)``) get the much
  smaller ``request_budget``;
* the result is simplified and has no Alt nodes.

Bindings are cached per (dtab, path) in a :class:`BindingCache` (shared, bounded,
idle-evicted; see its module), failures included, so a repeated bad request costs one
cache lookup.

Memory per cached name (tracemalloc, ``tests/test_naming_cache.py::test_memory_per_cached_name``,
Python 3.11, x86-64, 1,000 names): about 1.4 KB for a static ``/svc/* => /$/inet/127.1/p``
name and about 10 KB for a name bound through the fs namer with its tree and address set
observed (its file watch, lookup and address Vars included).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from ..dtab import binding
from ..dtab.binding import BUDGET, MAX_DEPTH, REQUEST_BUDGET, WAITING, Failure, Outcome
from ..dtab.dtab import Dtab
from ..dtab.errors import BindingTooLarge
from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from .binding_cache import BindingCache
from .bound import BoundName, same_tree_state
from .namer import Namer
from .reactive import flat_map
from .system_namer import SystemNamer
from .transform import NameTreeTransformer, apply_transformers, is_fully_bound
from .var import PENDING, Activity, ActivityState, Closable, Failed, LazyVar, Ok, Var

log = logging.getLogger(__name__)

#: ``#``: the first label of every configured namer's paths.
_HASH = b"#"
#: Passes of the algorithm one change may trigger when answers keep changing under it.
_MAX_PASSES = 8
#: Distinct (name, failure) pairs remembered as logged.
_LOGGED_MAX = 4096

BoundTree = NameTree[BoundName]


class DefaultInterpreter:
    """Binds names through a dtab, configured namers and the system namers."""

    kind = "default"

    def __init__(
        self,
        namers: Sequence[Namer] = (),
        transformers: Sequence[NameTreeTransformer] = (),
        max_depth: int = MAX_DEPTH,
        budget: int = BUDGET,
        cache_size: int = 1000,
        idle_ttl: float = 600.0,
        system: Optional[SystemNamer] = None,
        request_budget: int = REQUEST_BUDGET,
        request_cache_size: int = 100,
    ) -> None:
        self.namers = list(namers)
        self.transformers = list(transformers)
        self.max_depth = max_depth
        self.budget = budget
        self.request_budget = request_budget
        self.system = system if system is not None else SystemNamer()
        self.cache = BindingCache(max_size=cache_size, idle_ttl=idle_ttl)
        #: bindings under a client's dtab, bounded apart (and smaller): a flood of unique
        #: request dtabs evicts only its own kind, never the configured names' bindings
        self.request_cache = BindingCache(max_size=request_cache_size, idle_ttl=idle_ttl)
        self._logged: dict[tuple[Path, str], None] = {}
        # (full prefix /#/<prefix>, its length, namer), in config order.
        self._namers = [(Path([_HASH]) + n.prefix, len(n.prefix) + 1, n) for n in self.namers]

    # public API -------------------------------------------------------------------
    def bind(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> Activity[BoundTree]:
        """The live bound tree of ``path`` under ``dtab`` (cached and shared).

        ``from_request``: ``dtab`` includes a client's dtab (``l5d-dtab``, namerd's
        ``dtab`` parameter), so the binding gets the smaller request budget.
        """
        if from_request:
            budget = self.request_budget
            return self.request_cache.get((dtab, path), lambda: self._bind_uncached(dtab, path, budget))
        return self.cache.get((dtab, path), lambda: self._bind_uncached(dtab, path, self.budget))

    async def delegate(self, dtab: Dtab, path: Path, timeout: float = 2.0, *,
                       from_request: bool = False) -> dict[str, Any]:
        """Linkerd's delegate-tree JSON with live namers (spec §9); see ``delegate.py``."""
        from .delegate import delegate

        budget = self.request_budget if from_request else self.budget
        return await delegate(self, dtab, path, timeout=timeout, budget=budget)

    def cache_stats(self) -> dict[str, Any]:
        """Live counts for the admin server and metrics."""
        s = self.cache.stats()
        s["request"] = self.request_cache.stats()
        s["systemAddrs"] = self.system.live_count
        return s

    def register_metrics(self, metrics: Any, scope: str) -> None:
        """Gauges ``<scope>/bindcache/tree/{size,observed,hits,misses,expires,evicts}``."""
        for key in ("size", "observed", "hits", "misses", "expires", "evicts"):
            metrics.gauge(f"{scope}/bindcache/tree/{key}", lambda k=key: self.cache.stats()[k])
            metrics.gauge(f"{scope}/bindcache/request_tree/{key}", lambda k=key: self.request_cache.stats()[k])

    def sweep(self) -> int:
        """Release idle bindings now (the cache also does it on a timer)."""
        return self.cache.sweep() + self.request_cache.sweep()

    async def start(self) -> None:
        """Nothing to start: the namers belong to (and are started by) whoever built them."""

    async def close(self) -> None:
        self.cache.clear()
        self.request_cache.clear()

    def log_failure(self, path: Path, error: BaseException) -> None:
        """Log a binding failure once per (name, message), not once per request or per
        binding: a client can make any number of failing bindings (each request dtab is
        a binding). Bounded: the set of logged keys is cleared when full."""
        key = (path, f"{type(error).__name__}: {error}")
        if key in self._logged:
            return
        if len(self._logged) >= _LOGGED_MAX:
            self._logged.clear()
        self._logged[key] = None
        log.info("binding %s failed: %s", path.show(), key[1])

    def matching_namers(self, path: Path) -> list[tuple[Namer, Path]]:
        """The configured namers whose ``/#/<prefix>`` starts ``path``, in config order,
        each with the rest of the path (what it is asked to look up)."""
        labels = path.labels
        if not labels or labels[0] != _HASH:
            return []
        return [(namer, path.drop(n)) for prefix, n, namer in self._namers if path.startswith(prefix)]

    def namer_activity(self, namer: Namer, rest: Path) -> Activity[NameTree[Any]]:
        """A namer's answer for ``rest`` with the namer's transformers applied to fully
        bound answers. Raises what ``namer.lookup`` raises."""
        act = namer.lookup(rest)
        transformers = namer.transformers
        if not transformers:
            return act

        def transform(t: NameTree[Any]) -> Any:
            return apply_transformers(t, transformers) if is_fully_bound(t) else t

        return flat_map(act, transform, same_tree_state)

    # binding ----------------------------------------------------------------------
    def _bind_uncached(self, dtab: Dtab, path: Path, budget: int) -> Activity[BoundTree]:
        act: Activity[BoundTree] = Activity(_LiveBinding(self, dtab, path, budget))
        if self.transformers:
            transformed = apply_transformers(act, self.transformers)
            assert isinstance(transformed, Activity)
            act = transformed
        return act


class _LiveBinding(LazyVar[ActivityState[BoundTree]]):
    """One (dtab, path) bound live: one pass of the binding algorithm over the namers'
    current answers; every answer it used is observed, and a change runs a new pass.

    Answers are observed before they are sampled (a lazy namer computes only while
    observed), and an answer no longer used is closed only after the new pass opened its
    own, so a watch shared by both passes is not torn down and restarted.
    """

    __slots__ = ("interp", "dtab", "path", "budget", "_sources", "_in_pass", "_dirty", "_on_answer_cb")

    def __init__(self, interp: DefaultInterpreter, dtab: Dtab, path: Path, budget: int) -> None:
        super().__init__(PENDING, same=same_tree_state)
        self.interp = interp
        self.dtab = dtab
        self.path = path
        self.budget = budget
        # path (or (namer index, path) past the first namer) -> the Var of that namer's
        # answer, observed by _on_answer_cb: no object per answer, because a request dtab
        # can make a binding use hundreds (and the garbage collector walks them all)
        self._sources: dict[Any, Var[ActivityState[NameTree[Any]]]] = {}
        self._in_pass = False
        self._dirty = False
        # One bound method shared by every observation, held only while running: kept
        # after a stop it would make this binding a reference cycle, which waits for the
        # garbage collector instead of going at once (a flood of request-dtab bindings
        # then piles up as cyclic garbage and fragments the heap).
        self._on_answer_cb: Optional[Callable[[Any], None]] = None

    def start(self) -> Closable:
        self._on_answer_cb = self._on_answer
        self._rebind()
        return Closable(self._stop)

    def _stop(self) -> None:
        sources, self._sources = self._sources, {}
        cb, self._on_answer_cb = self._on_answer_cb, None
        if cb is not None:
            for var in sources.values():
                var.unobserve(cb)

    def _on_answer(self, _: Any) -> None:
        if self._in_pass:
            self._dirty = True  # a pass is running: it runs again when done
        elif self._running is not None or self._activating:
            self._rebind()

    def _rebind(self) -> None:
        state: ActivityState[BoundTree] = PENDING
        for _ in range(_MAX_PASSES):
            used: set[Any] = set()
            self._in_pass, self._dirty = True, False
            try:
                r = binding.bind(self.dtab, self.path, lambda p: self._lookup_namer(p, used),
                                 self.interp.max_depth, self.budget)
                state = _state(r)
            except BindingTooLarge as e:
                state = Failed(e.with_traceback(None))
            finally:
                self._in_pass = False
            for key in [k for k in self._sources if k not in used]:
                self._sources.pop(key).unobserve(self._on_answer_cb or self._on_answer)
            if not self._dirty:
                break
        if isinstance(state, Failed):
            self.interp.log_failure(self.path, state.error)
        self.update(state)

    def _lookup_namer(self, path: Path, used: set[Any]) -> Outcome:
        for i, (namer, rest) in enumerate(self.interp.matching_namers(path)):
            key: Any = (i, path) if i else path
            used.add(key)
            source = self._sources.get(key)
            if source is None:
                source = self.interp.namer_activity(namer, rest).states  # raises: this branch fails
                source.observe(self._on_answer_cb or self._on_answer, initial=False)
                self._sources[key] = source
            st = source.sample()
            if isinstance(st, Ok):
                tree: NameTree[Any] = st.value
                if tree is NEG:
                    continue  # not this namer's: the next one
                return tree
            if isinstance(st, Failed):
                return Failure(st.error)
            return WAITING
        return self.interp.system.lookup(path)  # raises UnknownNamer: this branch fails


def _state(r: Outcome) -> ActivityState[BoundTree]:
    if isinstance(r, Failure):
        return Failed(r.error)
    if r is WAITING:
        return PENDING
    assert isinstance(r, NameTree)
    return Ok(r)
