"""The thrift interface's long-poll observers and their two-level cache
(namerd/iface/thrift.py): stamps, active cap, inactive eviction."""
from __future__ import annotations

import asyncio

import pytest

from namerd.iface.thrift import MaximumObservationsReached, Observer, ObserverCache, Stamper
from namerouter.naming.var import Ok, Var


def classify(st):
    return ("ok", st.value) if isinstance(st, Ok) else None


async def test_poll_answers_other_stamps_at_once_and_waits_on_the_current_one():
    var = Var(Ok(1))
    obs = Observer(var, classify, Stamper())
    obs.start()
    s1, v1 = await obs.poll(b"")
    assert v1 == ("ok", 1) and len(s1) == 8
    assert (await obs.poll(b"from another namerd"))[0] == s1
    waiting = asyncio.ensure_future(obs.poll(s1))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    var.update(Ok(1))  # same value: no new stamp
    await asyncio.sleep(0.05)
    assert not waiting.done()
    var.update(Ok(2))
    s2, v2 = await asyncio.wait_for(waiting, 1)
    assert v2 == ("ok", 2) and s2 != s1
    obs.close()
    assert var.observer_count == 0


async def test_cache_caps_active_observers_and_evicts_idle_ones():
    vars_ = {k: Var(Ok(k)) for k in range(5)}
    cache = ObserverCache("t", lambda k: Observer(vars_[k], classify, Stamper()), active=2, inactive=1, ttl=60)
    hold = []
    for k in (0, 1):  # a first poll, then a long poll that waits on the current stamp
        stamp, _ = await cache.poll(k, b"")
        hold.append(asyncio.ensure_future(cache.poll(k, stamp)))
        await asyncio.sleep(0.01)
    assert cache.active == 2
    with pytest.raises(MaximumObservationsReached):
        await cache.poll(2, b"")
    # Answered polls leave their observers inactive; only one idle observer is kept.
    vars_[0].update(Ok(10))
    vars_[1].update(Ok(11))
    await asyncio.gather(*hold)
    assert cache.active == 0 and cache.inactive == 1
    assert sum(v.observer_count for v in vars_.values()) == 1  # the evicted one stopped observing
    cache.close()
    assert sum(v.observer_count for v in vars_.values()) == 0
