"""Lazy derived Vars and Activities: the few combinators live naming needs.

Finagle builds live values out of ``Var.async``, ``map`` and ``flatMap``; the resulting
graph is *lazy*: nothing upstream (a namer's watch, a DNS poll) runs unless somebody
observes the result, and when the last observer leaves every upstream subscription is
closed again. That is what lets an idle binding release its watches.

Everything here is built on the one lazy constructor, :meth:`Var.lazy`
(:class:`~.var.LazyVar`), and publishes through the one publish path of
:class:`~.var.Var`. Nothing here knows about name trees: binding is
``namerouter.dtab.binding``, run live by ``interpreter.py``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar, Union, cast

from .var import PENDING, Activity, ActivityState, Closable, Failed, LazyVar, Ok, Var

A = TypeVar("A")
B = TypeVar("B")

#: ``same(new, old)``: which updates a derived value drops (default ``==``).
Same = Optional[Callable[[Any, Any], bool]]


def map_var(src: Var[A], f: Callable[[A], B], same: Same = None) -> Var[B]:
    """``src.map(f)``, lazily; its sample before anyone observes is ``f(src.sample())``."""

    def start(out: LazyVar[B]) -> Closable:
        return src.observe(lambda v: out.update(f(v)))

    return LazyVar(f(src.sample()), start, same)


def map_activity(src: Activity[A], f: Callable[[A], B], same: Same = None) -> Activity[B]:
    """Apply ``f`` to Ok values; an exception in ``f`` becomes Failed."""

    def on_state(out: LazyVar[ActivityState[B]], st: ActivityState[A]) -> None:
        if isinstance(st, Ok):
            try:
                out.update(Ok(f(st.value)))
            except Exception as e:  # noqa: BLE001 - a bad value fails this value only
                out.update(Failed(e))
        else:
            out.update(cast(ActivityState[B], st))  # PENDING or Failed: no value of type A

    def start(out: LazyVar[ActivityState[B]]) -> Closable:
        return src.observe(lambda st: on_state(out, st))

    return Activity(LazyVar(PENDING, start, same))


def flat_map(src: Activity[A], f: Callable[[A], Union[Activity[B], B]], same: Same = None) -> Activity[B]:
    """Finagle's ``Activity.flatMap``: on every Ok value switch to the activity ``f`` makes.

    ``f`` may also return a plain value, meaning "this value, constant". The new inner
    activity is observed *before* the old one is closed, so a watch shared by both
    (same namer answer) is not torn down and restarted.
    """

    def start(out: LazyVar[ActivityState[B]]) -> Closable:
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
            out.update(cast(ActivityState[B], st))  # PENDING or Failed: no value of type A
            return None

        return observe_switching(src, step)

    return Activity(LazyVar(PENDING, start, same))


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


__all__ = ["map_var", "map_activity", "flat_map", "observe_switching", "HeldActivity", "Same"]
