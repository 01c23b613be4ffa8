"""Lazy derived Vars and Activities: the few combinators live binding needs.

Finagle builds a bound name tree out of ``Activity.flatMap``/``Var.collect``; the
resulting graph is *lazy*: nothing upstream (a namer's watch, a DNS poll) runs unless
somebody observes the result, and when the last observer leaves every upstream
subscription is closed again. That is what lets an idle binding release its watches.

:class:`DerivedVar` is a :class:`Var` whose value is computed from sources while it is
observed: ``on_first_observer`` subscribes to the sources, ``on_last_observer``
unsubscribes. While unobserved its value is the last one it computed (possibly stale),
so callers that need a current value observe it (``Var.wait_for`` does this itself).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Optional, Sequence, TypeVar

from ..dtab.tree import NEG, NameTree, Union, Weighted
from .var import PENDING, Activity, ActivityState, Closable, Failed, Ok, Var

A = TypeVar("A")
B = TypeVar("B")


def weak_hook(method: Callable[[], None]) -> Callable[[], None]:
    """A Var hook that calls ``method`` without keeping its object alive (for code that
    must pass hooks; Var subclasses rather set ``_lazy`` and override
    ``_first_observed``/``_last_unobserved``, which costs no memory per instance)."""
    ref = weakref.WeakMethod(method)

    def hook() -> None:
        m = ref()
        if m is not None:
            m()

    return hook


class DerivedVar(Var[Any]):
    """A Var computed from other Vars only while observed.

    ``start(self)`` is called on the first observer and returns a Closable that stops the
    computation. Updates made *during* ``start`` (sources replaying their current value
    synchronously) are stored without notifying, because the only observer is the one
    being added and ``observe`` hands it the current value right afterwards; this avoids
    a duplicate first notification.
    """

    __slots__ = ("_start", "_running", "_activating")

    def __init__(self, start: Callable[["DerivedVar"], Closable], initial: Any = PENDING) -> None:
        super().__init__(initial)
        self._start = start
        self._running: Optional[Closable] = None
        self._activating = False

    _lazy = True

    def _first_observed(self) -> None:
        self._activating = True
        try:
            self._running = self._start(self)
        finally:
            self._activating = False

    def _last_unobserved(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.close()

    def update(self, value: Any) -> None:
        if same_state(value, self._value):
            return
        if self._activating:
            self._value = value
            if self._waiters:
                waiters, self._waiters = self._waiters, []
                for w in waiters:
                    if not w.done():
                        w.set_result(value)
            return
        self._value = value
        for fn in list(self._observers):
            fn(value)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(value)


def same_state(a: Any, b: Any) -> bool:
    """Equality that also notices a bound name whose address Var was replaced.

    BoundName equality is by (id, residual) — right for sharing clients, but a tree
    whose leaf now carries a *different* addr Var (another namer answering for the same
    id, a namer that rebuilt its Var) must still be published, or observers would keep
    watching the old Var.
    """
    if a is b:
        return True
    if a != b:
        return False
    if isinstance(a, Ok) and isinstance(a.value, NameTree):
        la, lb = a.value.leaves(), b.value.leaves()
        return all(getattr(x, "addr", None) is getattr(y, "addr", None) for x, y in zip(la, lb))
    return True


def _closer(*subs: Optional[Closable]) -> Closable:
    def close() -> None:
        for s in subs:
            if s is not None:
                s.close()

    return Closable(close)


def derived_activity(start: Callable[[DerivedVar], Closable]) -> Activity[Any]:
    return Activity(DerivedVar(start))


def map_var(src: Var[A], f: Callable[[A], B]) -> Var[B]:
    """``src.map(f)``, lazily (used for transformed address sets)."""

    def start(out: DerivedVar) -> Closable:
        return src.observe(lambda v: out.update(f(v)))

    dv = DerivedVar(start)
    dv._value = f(src.sample())  # a sensible sample() before anyone observes
    return dv


class HeldActivity(Activity[B]):
    """An Activity mapped (lazily) from ``source`` that keeps ``holder`` alive.

    Namers cache their lookups weakly; whoever holds the lookup holds the watch behind it
    (``holder``), so the watch lives exactly as long as someone uses the name.
    """

    __slots__ = ("__weakref__", "holder", "bound")

    def __init__(self, holder: Any, bound: Any, source: Var[A], to_state: Callable[[A], ActivityState[B]]) -> None:
        self.holder = holder
        self.bound = bound
        super().__init__(map_var(source, to_state))


def map_activity(src: Activity[A], f: Callable[[A], B]) -> Activity[B]:
    """Apply ``f`` to Ok values; an exception in ``f`` becomes Failed."""

    def on_state(out: DerivedVar, st: ActivityState[A]) -> None:
        if isinstance(st, Ok):
            try:
                out.update(Ok(f(st.value)))
            except Exception as e:  # noqa: BLE001 - a bad value fails this binding only
                out.update(Failed(e))
        else:
            out.update(st)

    def start(out: DerivedVar) -> Closable:
        return src.observe(lambda st: on_state(out, st))

    return derived_activity(start)


def flat_map(src: Activity[A], f: Callable[[A], "Activity[B] | NameTree[Any]"]) -> Activity[B]:
    """Finagle's ``Activity.flatMap``: on every Ok value switch to the activity ``f`` makes.

    ``f`` may return a plain value wrapped already as an Activity, or a NameTree meaning
    "this value, constant". The new inner activity is observed *before* the old one is
    closed, so a watch shared by both (same namer answer) is not torn down and restarted.
    """

    def start(out: DerivedVar) -> Closable:
        def step(st: ActivityState[A]) -> Optional[Closable]:
            if isinstance(st, Ok):
                try:
                    nxt = f(st.value)
                except Exception as e:  # noqa: BLE001
                    out.update(Failed(e))
                    return None
                if isinstance(nxt, Activity):
                    return nxt.observe(out.update)
                out.update(Ok(nxt))
                return None
            out.update(st)
            return None

        return observe_switching(src, step)

    return derived_activity(start)


def observe_switching(src: "Var[Any] | Activity[Any]", step: Callable[[Any], Optional[Closable]]) -> Closable:
    """Observe ``src``, calling ``step(state)`` on each of its states; ``step`` may open an
    inner observation (returned) which replaces the previous one.

    The previous inner observation is closed only *after* ``step`` opened the new one, so
    a watch shared by both is not torn down and restarted. Closing the result closes the
    outer observation and the current inner one (the "switch" of a flatMap).
    """
    inner: list[Optional[Closable]] = [None]

    def on_src(st: Any) -> None:
        old = inner[0]
        inner[0] = None  # while step runs, a re-entrant close() must not see `old` (closed below)
        inner[0] = step(st)
        if old is not None:
            old.close()

    outer = src.observe(on_src)

    def close() -> None:
        outer.close()
        if inner[0] is not None:
            inner[0].close()
            inner[0] = None

    return Closable(close)


def union_of(members: Sequence[tuple[float, Activity[NameTree[Any]]]]) -> Activity[NameTree[Any]]:
    """Finagle's union binding: Ok as soon as one member is Ok (Union of the Ok members,
    simplified, weights kept); with no Ok member the first Failed, else Pending."""

    def start(out: DerivedVar) -> Closable:
        states: list[ActivityState[Any]] = [PENDING] * len(members)
        ready = [False]

        def recompute() -> None:
            oks = [Weighted(w, st.value) for (w, _), st in zip(members, states) if isinstance(st, Ok)]
            if oks:
                out.update(Ok(Union(*oks).simplified()))
                return
            for st in states:
                if isinstance(st, Failed):
                    out.update(st)
                    return
            out.update(PENDING)

        def on_member(i: int, st: ActivityState[Any]) -> None:
            states[i] = st
            if ready[0]:
                recompute()

        subs = [act.observe(lambda st, i=i: on_member(i, st)) for i, (_, act) in enumerate(members)]
        ready[0] = True
        recompute()
        return _closer(*subs)

    return derived_activity(start)


def const(value: Any) -> Activity[Any]:
    return Activity.value(value)


def neg() -> Activity[Any]:
    return Activity.value(NEG)
