"""Observable values: Var (a current value with observers) and Activity.

This is Finagle's ``Var``/``Activity`` reduced to what a single asyncio loop needs.
Observers run synchronously on the loop that updates the Var; code on other threads
(kazoo callbacks) must use :meth:`Var.update_threadsafe`.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Generic, Optional, TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)


class Closable:
    """Handle returned by ``observe``; ``close()`` stops the observation."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Optional[Callable[[], None]] = None) -> None:
        self._fn = fn

    def close(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class Observation(Closable):
    """What ``Var.observe`` returns: two references, no closure (a binding holds one per
    namer answer it uses, so this is the most numerous object of live naming).
    ``sample()`` is the observed Var's current value."""

    __slots__ = ("_var", "_observer")

    def __init__(self, var: "Var[Any]", observer: Callable[[Any], None]) -> None:
        super().__init__()
        self._var: Optional[Var[Any]] = var
        self._observer = observer

    def close(self) -> None:
        var, self._var = self._var, None
        if var is not None:
            var.unobserve(self._observer)

    def sample(self) -> Any:
        if self._var is None:
            raise RuntimeError("sample() of a closed observation")
        return self._var.sample()


class Var(Generic[T]):
    """A mutable observable value. Updates equal to the current value are dropped.

    There is one publish path (:meth:`_notify_observers`): every observer is called in turn, one
    that raises is logged and skipped (the others and the waiters still get the value),
    then the waiters of :meth:`changed` are woken.
    """

    __slots__ = ("_value", "_observers", "_waiters", "__weakref__")

    def __init__(self, value: T) -> None:
        self._value = value
        # observer -> how many times it observes (O(1) to remove: a namer answer can
        # have thousands of observers, one per binding using it)
        self._observers: dict[Callable[[T], None], int] = {}
        self._waiters: list[asyncio.Future[T]] = []

    @staticmethod
    def lazy(initial: T, start: "Callable[[LazyVar[T]], Closable]",
             same: "Optional[Callable[[T, T], bool]]" = None) -> "LazyVar[T]":
        """Finagle's ``Var.async``: a Var whose value ``start(var)`` computes (by calling
        ``var.update``) only while somebody observes it. ``start`` runs when the first
        observer arrives and returns a Closable that stops the computation when the last
        one leaves. ``same(new, old)`` decides which updates are dropped (default ``==``)."""
        return LazyVar(initial, start, same)

    def sample(self) -> T:
        return self._value

    @property
    def value(self) -> T:
        return self._value

    @property
    def observed(self) -> bool:
        return bool(self._observers)

    @property
    def observer_count(self) -> int:
        """How many observations are open (caches use it to tell idle entries)."""
        return sum(self._observers.values())

    def observe(self, fn: Callable[[T], None], initial: bool = True) -> Observation:
        """Call ``fn`` with the current value (if ``initial``) and on every change."""
        first = not self._observers
        self._observers[fn] = self._observers.get(fn, 0) + 1
        if first:
            self._first_observer()
        if initial:
            fn(self._value)
        return Observation(self, fn)

    def unobserve(self, fn: Callable[[T], None]) -> None:
        """Close one observation by ``fn`` (what closing ``observe``'s handle does; for
        holders of many observations that keep the Vars rather than the handles)."""
        n = self._observers.get(fn)
        if n is None:
            return
        if n > 1:
            self._observers[fn] = n - 1
            return
        del self._observers[fn]
        if not self._observers:
            self._no_observers()

    def _first_observer(self) -> None:
        """The first observer arrived (:class:`LazyVar` starts computing here)."""

    def _no_observers(self) -> None:
        """The last observer left (:class:`LazyVar` stops computing here)."""

    def update(self, value: T) -> None:
        if value == self._value:
            return
        self._value = value
        self._notify_observers(value)

    def _notify_observers(self, value: T) -> None:
        for fn, n in list(self._observers.items()):
            for _ in range(n):
                try:
                    fn(value)
                except Exception:
                    # One broken observer must not starve the others (or the waiters)
                    # of the update: log it and carry on.
                    _log.exception("observer %r of %r raised", fn, self)
        self._wake_waiters(value)

    def _wake_waiters(self, value: T) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(value)

    def update_threadsafe(self, loop: asyncio.AbstractEventLoop, value: T) -> None:
        loop.call_soon_threadsafe(self.update, value)

    async def changed(self) -> T:
        """Wait for the next change and return the new value."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut

    async def wait_for(self, predicate: Callable[[T], bool], timeout: Optional[float] = None) -> T:
        """Return the first value (current included) for which ``predicate`` holds."""

        async def wait() -> T:
            v = self._value
            while not predicate(v):
                v = await self.changed()
            return v

        # Observe while waiting: a lazy Var only computes while somebody observes it.
        hold = self.observe(_ignore, initial=False)
        try:
            return await asyncio.wait_for(wait(), timeout)
        finally:
            hold.close()

    def __repr__(self) -> str:
        return f"Var({self._value!r})"


class LazyVar(Var[T]):
    """A Var computed only while observed (Finagle's ``Var.async``; see :meth:`Var.lazy`).

    Subclasses may override :meth:`start` instead of passing a function: no per-instance
    closure and no reference cycle, so a dropped Var is freed at once (namers cache their
    Vars weakly). While unobserved the value is the last one computed, possibly stale.
    Updates made *during* ``start`` (sources replaying their current value) are stored
    without notifying, because the only observer is the one being added and ``observe``
    hands it the current value right afterwards (no duplicate first notification).
    """

    __slots__ = ("_start_fn", "_running", "_activating", "_same")

    def __init__(self, initial: T, start: Optional[Callable[["LazyVar[T]"], Closable]] = None,
                 same: Optional[Callable[[T, T], bool]] = None) -> None:
        super().__init__(initial)
        self._start_fn = start
        self._same = same
        self._running: Optional[Closable] = None
        self._activating = False

    def start(self) -> Closable:
        """Begin computing; the returned Closable stops it."""
        if self._start_fn is None:
            raise NotImplementedError("LazyVar needs a start function or a start() override")
        return self._start_fn(self)

    def _first_observer(self) -> None:
        self._activating = True
        try:
            self._running = self.start()
        finally:
            self._activating = False

    def _no_observers(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.close()

    def update(self, value: T) -> None:
        same = self._same
        if value is self._value or (same(value, self._value) if same is not None else value == self._value):
            return
        self._value = value
        if self._activating:
            self._wake_waiters(value)
        else:
            self._notify_observers(value)

    def __repr__(self) -> str:
        return f"LazyVar({self._value!r})"


def start_stop(start: Callable[[], None], stop: Callable[[], None]) -> Callable[[LazyVar[Any]], Closable]:
    """Adapt a ``start()``/``stop()`` method pair (a watch loop) to :meth:`Var.lazy`."""

    def run(_: LazyVar[Any]) -> Closable:
        start()
        return Closable(stop)

    return run


def _ignore(_: Any) -> None:
    pass


# Activity: a Var of Pending | Ok(value) | Failed(error) -------------------------------

class ActivityState(Generic[T]):
    __slots__ = ()


class _Pending(ActivityState[Any]):
    __slots__ = ()

    def __repr__(self) -> str:
        return "Pending"


PENDING: ActivityState[Any] = _Pending()


class Ok(ActivityState[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ok) and self.value == other.value

    def __hash__(self) -> int:
        return hash(("Ok", self.value))

    def __repr__(self) -> str:
        return f"Ok({self.value!r})"


class Failed(ActivityState[Any]):
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Failed)
            and type(self.error) is type(other.error)
            and str(self.error) == str(other.error)
        )

    def __hash__(self) -> int:
        return hash(("Failed", str(self.error)))

    def __repr__(self) -> str:
        return f"Failed({self.error!r})"


class Activity(Generic[T]):
    """An observable computation that is pending, ok with a value, or failed."""

    __slots__ = ("states",)

    def __init__(self, states: Optional[Var[ActivityState[T]]] = None) -> None:
        self.states: Var[ActivityState[T]] = states if states is not None else Var(PENDING)

    @classmethod
    def value(cls, v: T) -> "Activity[T]":
        return cls(Var(Ok(v)))

    @classmethod
    def exception(cls, e: BaseException) -> "Activity[T]":
        return cls(Var(Failed(e)))

    @classmethod
    def pending(cls) -> "Activity[T]":
        return cls(Var(PENDING))

    def sample(self) -> ActivityState[T]:
        return self.states.sample()

    def observe(self, fn: Callable[[ActivityState[T]], None], initial: bool = True) -> Observation:
        return self.states.observe(fn, initial)

    async def wait_ok(self, timeout: Optional[float] = None) -> T:
        """The first Ok value; raises the error of a Failed state; TimeoutError if pending."""
        st = await self.states.wait_for(lambda s: s is not PENDING, timeout)
        if isinstance(st, Failed):
            raise st.error
        assert isinstance(st, Ok)
        value: T = st.value
        return value

    def __repr__(self) -> str:
        return f"Activity({self.states.sample()!r})"
