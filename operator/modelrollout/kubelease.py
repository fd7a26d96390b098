"""The Lease adapter for leader election (Kubernetes calls only; the rules are in leader.py).

Writes use the Lease's resourceVersion (optimistic concurrency): two standbys racing for an expired
Lease cannot both win, the loser gets a 409 Conflict and keeps waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

import kubernetes
from kubernetes.client import ApiException

from modelrollout import leader
from modelrollout.leader import Action, LeaseRecord, Observed

log = logging.getLogger(__name__)


@dataclass
class LeaseStore:
    api: kubernetes.client.ApiClient
    namespace: str
    name: str

    def __post_init__(self) -> None:
        self.coordination = kubernetes.client.CoordinationV1Api(self.api)

    def read(self) -> tuple[LeaseRecord, str] | None:
        """The record and its resourceVersion; None when there is no Lease."""
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        spec = lease.spec
        record = LeaseRecord(holder=spec.holder_identity or "", lease_seconds=spec.lease_duration_seconds or 0,
                             acquire_time=spec.acquire_time, renew_time=spec.renew_time,
                             transitions=spec.lease_transitions or 0)
        return record, lease.metadata.resource_version

    def write(self, record: LeaseRecord, resource_version: str | None) -> bool:
        """Create (no resourceVersion) or replace the Lease; False when another replica wrote first."""
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             **({"resourceVersion": resource_version} if resource_version else {})},
                "spec": {"holderIdentity": record.holder, "leaseDurationSeconds": record.lease_seconds,
                         "acquireTime": _micro(record.acquire_time), "renewTime": _micro(record.renew_time),
                         "leaseTransitions": record.transitions}}
        try:
            if resource_version is None:
                self.coordination.create_namespaced_lease(self.namespace, body)
            else:
                self.coordination.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True


def _micro(moment: dt.datetime | None) -> str | None:
    # MicroTime: RFC 3339 with exactly six fractional digits.
    return None if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Acquires, renews and releases the Lease; blocking calls run in threads."""

    def __init__(self, store: LeaseStore, identity: str, lease_seconds: int = leader.LEASE_SECONDS,
                 renew_deadline: float = leader.RENEW_DEADLINE_SECONDS,
                 retry_seconds: float = leader.RETRY_SECONDS) -> None:
        self.store, self.identity = store, identity
        self.lease_seconds, self.renew_deadline, self.retry_seconds = lease_seconds, renew_deadline, retry_seconds
        self.observed = Observed()
        self.last_contact: float | None = None  # monotonic time of the last successful API call

    async def _try(self) -> bool:
        """One attempt to take or renew the Lease; True when this replica holds it now."""
        found = await asyncio.to_thread(self.store.read)
        record, version = (None, None) if found is None else found
        mono = time.monotonic()
        self.last_contact = mono
        self.observed = leader.observe(self.observed, record, mono)
        action = leader.decide(self.observed, self.identity, mono)
        if action is Action.WAIT:
            return False
        claim = leader.claimed(record, self.identity, dt.datetime.now(dt.UTC), self.lease_seconds)
        won = await asyncio.to_thread(self.store.write, claim, None if action is Action.CREATE else version)
        if won:
            self.observed = Observed(claim, time.monotonic())
        return won

    async def acquire(self) -> None:
        """Wait until this replica leads."""
        holder = None
        while True:
            try:
                if await self._try():
                    log.info("leader election: %s leads (Lease %s/%s)", self.identity, self.store.namespace,
                             self.store.name)
                    return
            except (ApiException, OSError) as exc:
                log.warning("leader election: cannot read or write the Lease: %s", exc)
            current = self.observed.record.holder if self.observed.record else None
            if current != holder:
                holder = current
                log.info("leader election: standby; %s leads", holder or "nobody")
            await asyncio.sleep(self.retry_seconds)

    async def keep(self) -> None:
        """Renew until that fails for the renew deadline, then return: the caller must stop acting."""
        last_renewed = time.monotonic()
        while not leader.must_stop(last_renewed, time.monotonic(), self.renew_deadline):
            await asyncio.sleep(self.retry_seconds)
            try:
                if await asyncio.wait_for(self._try(), timeout=self.retry_seconds):
                    last_renewed = time.monotonic()
                elif self.observed.record is not None and self.observed.record.holder != self.identity:
                    log.error("leader election: %s took the Lease", self.observed.record.holder)
                    return
            except (ApiException, OSError, TimeoutError) as exc:
                log.warning("leader election: renewal failed: %s", exc)
        log.error("leader election: could not renew the Lease for %.0f s; stopping", self.renew_deadline)

    def release(self) -> None:
        """Give the Lease up (blocking; called on a clean shutdown of the leader)."""
        found = self.store.read()
        if found is not None and found[0].holder == self.identity:
            self.store.write(leader.released(found[0]), found[1])
            log.info("leader election: released the Lease")

    def contacted_within(self, seconds: float) -> bool:
        return self.last_contact is not None and time.monotonic() - self.last_contact <= seconds
