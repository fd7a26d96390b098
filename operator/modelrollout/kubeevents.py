"""Events on a ModelRollout through the events.k8s.io/v1 API (part of the Kubernetes adapter layer).

Two promises users rely on when they read `kubectl describe`:

- No event is lost or doubled by an operator restart. The events of a tick are posted *before* its
  status is written, under names derived from the rollout and the status the tick started from. A
  tick that dies after posting is decided again from the same stored status, so it posts the same
  names, and the apiserver's AlreadyExists tells us the event is already there.
- A repeated event is one object with a series (count, last seen), as client-go's recorder does,
  not a new object per repeat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from modelrollout.core.phases import Event

REPORTING_CONTROLLER = "modelrollout.dev/operator"
# client-go's recorder also folds repeats seen within six minutes into one series.
SERIES_WINDOW = dt.timedelta(minutes=6)
NOTE_LIMIT = 1024  # the apiserver rejects longer notes


def tick_event_names(rollout: dict[str, Any], stored_status: dict[str, Any], events: list[Event]) -> list[str]:
    """Names for a tick's events that a replay of the same tick reproduces: the rollout, the status the
    tick started from, and each event's place and reason (not its message, whose numbers may differ
    when the tick is decided again after a restart)."""
    meta = rollout["metadata"]
    start = json.dumps({"uid": meta["uid"], "generation": meta.get("generation"), "status": stored_status},
                       sort_keys=True, default=str)
    names = []
    for index, event in enumerate(events):
        digest = hashlib.sha256(f"{start}\0{index}\0{event.reason}".encode()).hexdigest()[:16]
        names.append(f"{meta['name']}.{digest}")
    return names


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    last: dt.datetime


class EventRecorder:
    """Posts events; thread-safe because reconcile calls it from worker threads."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.events = kubernetes.client.EventsV1Api(api)
        self.instance = socket.gethostname()
        self._seen: dict[tuple[str, str, str, str], _Seen] = {}
        self._lock = threading.Lock()

    def post(self, rollout: dict[str, Any], event: Event, name: str | None = None) -> None:
        """Post `event` on `rollout`; a repeat within the series window updates the first one's series.
        `name` makes the post idempotent (see tick_event_names); None picks a fresh one."""
        meta = rollout["metadata"]
        key = (meta["uid"], event.type, event.reason, event.message)
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.last <= SERIES_WINDOW:
                seen.count += 1
                seen.last = now
                count = seen.count
            else:
                seen = None
        if seen is not None:
            self._patch_series(seen, count, now)
            return
        name = name or f"{meta['name']}.{secrets.token_hex(8)}"
        self._create(rollout, event, name, now)
        with self._lock:
            self._seen[key] = _Seen(name, meta["namespace"], 1, now)
            self._drop_old(now)

    def forget(self, uid: str) -> None:
        with self._lock:
            for key in [k for k in self._seen if k[0] == uid]:
                del self._seen[key]

    def _create(self, rollout: dict[str, Any], event: Event, name: str, now: dt.datetime) -> None:
        meta = rollout["metadata"]
        body = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "eventTime": now, "type": event.type, "reason": event.reason, "action": event.reason,
            "note": event.message[:NOTE_LIMIT],
            "reportingController": REPORTING_CONTROLLER, "reportingInstance": self.instance,
            "regarding": {"apiVersion": rollout["apiVersion"], "kind": rollout["kind"], "name": meta["name"],
                          "namespace": meta["namespace"], "uid": meta["uid"]},
        }
        try:
            self.events.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # AlreadyExists: the same tick posted it before the operator stopped; it is already shown.

    def _patch_series(self, seen: _Seen, count: int, now: dt.datetime) -> None:
        patch = {"series": {"count": count, "lastObservedTime": now}}
        try:
            self.events.patch_namespaced_event(seen.name, seen.namespace, patch,
                                               _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Events expire (an hour by default): the next repeat starts a new series.
            with self._lock:
                self._seen = {k: v for k, v in self._seen.items() if v is not seen}

    def _drop_old(self, now: dt.datetime) -> None:
        """Bound the memory: forget series nobody extended within the window."""
        if len(self._seen) > 4096:
            self._seen = {k: v for k, v in self._seen.items() if now - v.last <= SERIES_WINDOW}
