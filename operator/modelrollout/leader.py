"""Leader election on a coordination.k8s.io Lease, the way client-go's leaderelection package does it.

Only the leader runs kopf; the other replicas wait. The rules (pure, unit-tested):

- A replica takes the Lease when nobody holds it, when it holds it already, or when the holder has
  not renewed it for `lease_seconds` *as observed by this replica's own monotonic clock* (the time
  the record last changed here; comparing the record's renewTime with the local wall clock would
  trust the clocks of two machines to agree).
- The leader renews every `retry_seconds`; when it has not renewed successfully for
  `renew_deadline_seconds` (< lease_seconds) it stops acting and exits, so it has stopped before
  any other replica can see the Lease as expired.
- On a clean shutdown the leader releases the Lease (empty holder), so a standby takes over at its
  next retry instead of after a whole lease duration.

Timings: lease 12 s, renew deadline 8 s, retry 2 s (client-go's defaults are 15/10/2; ours are
shorter so a standby takes over within 12 + 2 = 14 s of a leader that died without releasing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import Enum

LEASE_SECONDS = 12
RENEW_DEADLINE_SECONDS = 8
RETRY_SECONDS = 2


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that election reads and writes."""

    holder: str  # "" when released
    lease_seconds: int
    acquire_time: dt.datetime | None
    renew_time: dt.datetime | None
    transitions: int = 0


@dataclass(frozen=True)
class Observed:
    """What this replica last saw of the Lease, and when by its own monotonic clock."""

    record: LeaseRecord | None = None
    since: float = 0.0


class Action(Enum):
    CREATE = "create"  # no Lease yet: create it holding it
    TAKE = "take"  # update it to hold it (free, expired, or ours)
    WAIT = "wait"  # someone else holds a live Lease


def observe(before: Observed, record: LeaseRecord | None, mono: float) -> Observed:
    """Restart the expiry clock only when the record changed (a renewal or a new holder)."""
    return before if record == before.record and before.record is not None else Observed(record, mono)


def decide(observed: Observed, identity: str, mono: float) -> Action:
    record = observed.record
    if record is None:
        return Action.CREATE
    if record.holder in ("", identity):
        return Action.TAKE
    expired = mono - observed.since >= record.lease_seconds
    return Action.TAKE if expired else Action.WAIT


def claimed(record: LeaseRecord | None, identity: str, now: dt.datetime, lease_seconds: int) -> LeaseRecord:
    """The record to write when taking or renewing the Lease."""
    if record is not None and record.holder == identity:
        return replace(record, renew_time=now, lease_seconds=lease_seconds)
    transitions = 0 if record is None else record.transitions + (1 if record.holder else 0)
    return LeaseRecord(holder=identity, lease_seconds=lease_seconds, acquire_time=now, renew_time=now,
                       transitions=transitions)


def released(record: LeaseRecord) -> LeaseRecord:
    """What a leader writes on a clean shutdown: nobody holds it, so a standby takes it at once."""
    return replace(record, holder="")


def must_stop(last_renewed: float, mono: float, renew_deadline: float = RENEW_DEADLINE_SECONDS) -> bool:
    """The leader stops acting when it could not renew for the renew deadline."""
    return mono - last_renewed >= renew_deadline
