"""The reactive core (namerouter/naming/var.py, reactive.py): one lazy constructor, one
publish path with per-observer error isolation."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from namerouter.naming.reactive import flat_map, map_activity, map_var
from namerouter.naming.var import PENDING, Activity, Closable, LazyVar, Ok, Var


def _raiser(_: Any) -> None:
    raise RuntimeError("observer bug")


@pytest.mark.parametrize("make", [
    lambda: Var(0),
    lambda: Var.lazy(0, lambda v: Closable()),
    lambda: map_var(Var(0), lambda x: x),
])
async def test_a_raising_observer_does_not_stop_the_others_or_the_waiters(make: Any, caplog: Any) -> None:
    v = make()
    seen: list[Any] = []
    v.observe(lambda x: seen.append(("first", x)))
    v.observe(_raiser, initial=False)
    v.observe(lambda x: seen.append(("last", x)))
    waiter = asyncio.ensure_future(v.changed())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="namerouter.naming.var"):
        v.update(1)
    assert seen == [("first", 0), ("last", 0), ("first", 1), ("last", 1)]
    assert await asyncio.wait_for(waiter, 1) == 1  # not left hanging
    assert "observer bug" in caplog.text
    v.update(2)  # the broken observer stays attached and stays harmless
    assert seen[-1] == ("last", 2)


async def test_a_raising_observer_of_a_derived_activity_does_not_stop_the_others() -> None:
    src: Var[Any] = Var(Ok(1))
    act = flat_map(Activity(src), lambda x: Activity.value(x * 10))
    mapped = map_activity(act, lambda x: x + 1)
    seen: list[Any] = []
    act.observe(_raiser, initial=False)
    mapped.observe(seen.append)
    act.observe(lambda st: seen.append(("act", st)))
    src.update(Ok(2))
    assert seen == [Ok(11), ("act", Ok(10)), Ok(21), ("act", Ok(20))]
    assert await mapped.wait_ok(1) == 21


def test_lazy_var_computes_only_while_observed() -> None:
    events: list[str] = []

    def start(v: LazyVar[int]) -> Closable:
        events.append("start")
        v.update(7)  # replayed during activation: stored, not a second notification
        return Closable(lambda: events.append("stop"))

    v = Var.lazy(PENDING, start)
    assert events == [] and v.sample() is PENDING
    got: list[Any] = []
    sub = v.observe(got.append)
    assert events == ["start"] and got == [7]
    sub.close()
    assert events == ["start", "stop"]
    v.observe(got.append).close()
    assert events == ["start", "stop", "start", "stop"]
