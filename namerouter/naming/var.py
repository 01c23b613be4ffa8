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


class Var(Generic[T]):
    """A mutable observable value. Updates equal to the current value are dropped."""

    __slots__ = ("_value", "_observers", "_on_first", "_on_last", "_waiters", "__weakref__")

    def __init__(
        self,
        value: T,
        on_first_observer: Optional[Callable[[], None]] = None,
        on_last_observer: Optional[Callable[[], None]] = None,
    ) -> None:
        self._value = value
        self._observers: list[Callable[[T], None]] = []
        # Lazy sources (a namer watch) start when first observed, stop when unobserved.
        self._on_first = on_first_observer
        self._on_last = on_last_observer
        self._waiters: list[asyncio.Future] = []

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
        """How many observers are attached (caches use it to tell idle entries)."""
        return len(self._observers)

    def observe(self, fn: Callable[[T], None], initial: bool = True) -> Closable:
        """Call ``fn`` with the current value (if ``initial``) and on every change."""
        first = not self._observers
        self._observers.append(fn)
        if first:
            if self._on_first is not None:
                self._on_first()
            elif self._lazy:
                self._first_observed()
        if initial:
            fn(self._value)

        def stop() -> None:
            try:
                self._observers.remove(fn)
            except ValueError:
                return
            if not self._observers:
                if self._on_last is not None:
                    self._on_last()
                elif self._lazy:
                    self._last_unobserved()

        return Closable(stop)

    # Subclasses that compute lazily (derived bindings, namer watches) set ``_lazy = True``
    # and override these two instead of passing hooks: no per-instance closures and no
    # reference cycle, so a dropped Var is freed at once.
    _lazy = False

    def _first_observed(self) -> None:
        """Called when the first observer arrives (``_lazy`` subclasses)."""

    def _last_unobserved(self) -> None:
        """Called when the last observer leaves (``_lazy`` subclasses)."""

    def update(self, value: T) -> None:
        if value == self._value:
            return
        self._value = value
        for fn in list(self._observers):
            try:
                fn(value)
            except Exception:
                # One broken observer must not starve the others (or the waiters) of
                # the update: log it and carry on.
                _log.exception("observer %r of %r raised", fn, self)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(value)

    def update_threadsafe(self, loop: asyncio.AbstractEventLoop, value: T) -> None:
        loop.call_soon_threadsafe(self.update, value)

    async def changed(self) -> T:
        """Wait for the next change and return the new value."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut

    async def wait_for(self, predicate: Callable[[T], bool], timeout: Optional[float] = None) -> T:
        """Return the first value (current included) for which ``predicate`` holds."""

        async def wait() -> T:
            v = self._value
            while not predicate(v):
                v = await self.changed()
            return v

        # Observe while waiting: a lazy Var (one with on_first_observer, e.g. a derived
        # binding or a namer watch) only computes while somebody observes it.
        hold = self.observe(_ignore, initial=False) if (self._on_first is not None or self._lazy) else None
        try:
            return await asyncio.wait_for(wait(), timeout)
        finally:
            if hold is not None:
                hold.close()

    def __repr__(self) -> str:
        return f"Var({self._value!r})"


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

    def observe(self, fn: Callable[[ActivityState[T]], None], initial: bool = True) -> Closable:
        return self.states.observe(fn, initial)

    async def wait_ok(self, timeout: Optional[float] = None) -> T:
        """The first Ok value; raises the error of a Failed state; TimeoutError if pending."""
        st = await self.states.wait_for(lambda s: s is not PENDING, timeout)
        if isinstance(st, Failed):
            raise st.error
        return st.value  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"Activity({self.states.sample()!r})"
