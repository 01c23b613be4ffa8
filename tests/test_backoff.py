"""namerouter.backoff: Finagle's decorrelatedJittered sequence, bounds and reset."""
import itertools
import random

import pytest

from namerouter.backoff import JitteredBackoff, decorrelated_jittered


def test_first_delay_is_the_minimum_then_within_three_times_the_previous():
    rng = random.Random(7)
    delays = list(itertools.islice(decorrelated_jittered(0.01, 2.0, rng), 200))
    assert delays[0] == 0.01
    for prev, cur in zip(delays, delays[1:]):
        assert 0.01 <= cur <= min(2.0, prev * 3)
    assert max(delays) == pytest.approx(2.0, rel=0.5)  # it grows towards the cap
    assert len(set(delays[1:])) > 100  # jittered, not a fixed ladder


def test_two_loops_failing_together_do_not_retry_in_lockstep():
    a = list(itertools.islice(decorrelated_jittered(0.05, 5.0, random.Random(1)), 10))
    b = list(itertools.islice(decorrelated_jittered(0.05, 5.0, random.Random(2)), 10))
    assert a[0] == b[0] and a[1:] != b[1:]


def test_reset_starts_again_at_the_minimum():
    b = JitteredBackoff(0.05, 1.0, random.Random(3))
    for _ in range(20):
        b.next()
    b.reset()
    assert b.next() == 0.05


def test_cap_below_the_floor_wins():
    assert list(itertools.islice(decorrelated_jittered(0.01, 0.004), 3)) == [0.004] * 3


@pytest.mark.parametrize("lo,hi", [(0, 1.0), (-1, 1.0), (0.01, 0)])
def test_bad_bounds_are_rejected_at_construction(lo, hi):
    with pytest.raises(ValueError, match="backoff: the (minimum|maximum) delay must be > 0 s"):
        JitteredBackoff(lo, hi)
