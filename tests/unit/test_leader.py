"""Leader election rules (operator/modelrollout/leader.py), as client-go's elector applies them."""

from __future__ import annotations

import datetime as dt

import pytest

from modelrollout import leader
from modelrollout.leader import Action, LeaseRecord, Observed

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def held_by(holder: str, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder=holder, lease_seconds=12, acquire_time=T0, renew_time=T0, transitions=transitions)


def test_no_lease_is_created_and_a_free_or_own_lease_is_taken() -> None:
    assert leader.decide(Observed(), "a", 0.0) is Action.CREATE
    assert leader.decide(Observed(held_by(""), 0.0), "a", 0.0) is Action.TAKE
    assert leader.decide(Observed(held_by("a"), 0.0), "a", 0.0) is Action.TAKE


def test_another_holders_lease_expires_by_the_local_clock_since_it_last_changed() -> None:
    seen = leader.observe(Observed(), held_by("b"), 100.0)
    assert leader.decide(seen, "a", 111.9) is Action.WAIT
    assert leader.decide(seen, "a", 112.0) is Action.TAKE
    renewed = LeaseRecord("b", 12, T0, T0 + dt.timedelta(seconds=2), 0)
    later = leader.observe(seen, renewed, 110.0)  # a renewal restarts the clock
    assert later.since == 110.0 and leader.decide(later, "a", 121.0) is Action.WAIT
    assert leader.observe(later, renewed, 115.0).since == 110.0  # an unchanged record does not


def test_taking_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    now = T0 + dt.timedelta(seconds=30)
    taken = leader.claimed(held_by("b", transitions=3), "a", now, 12)
    assert (taken.holder, taken.transitions, taken.acquire_time, taken.renew_time) == ("a", 4, now, now)
    renewed = leader.claimed(taken, "a", now + dt.timedelta(seconds=2), 12)
    assert renewed.acquire_time == now and renewed.renew_time == now + dt.timedelta(seconds=2)
    assert renewed.transitions == 4
    assert leader.claimed(None, "a", now, 12).transitions == 0
    assert leader.claimed(leader.released(taken), "b", now, 12).transitions == 4  # a released Lease was free


def test_the_leader_stops_before_a_standby_can_see_the_lease_expire() -> None:
    assert leader.RENEW_DEADLINE_SECONDS + leader.RETRY_SECONDS <= leader.LEASE_SECONDS
    assert not leader.must_stop(100.0, 107.9)
    assert leader.must_stop(100.0, 108.0)
