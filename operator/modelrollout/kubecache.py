"""Watch-fed copies of the objects a tick reads: the rollouts' pods, Deployments and Services.

Listing them every tick cost each rollout three to four API round trips a second; with 30 rollouts
the API server answered in 0.5 s on average and a tick took 4 s (`make bench-reconcile`, where the
per-call timings are printed). As client-go's informers do, one list and then one watch per kind and
namespace keep an in-memory copy up to date, and a tick reads that copy. Only objects carrying the
rollout label are watched (a user's Service is read directly until it is adopted and labelled).

A copy can be a few milliseconds behind the API server. Every write the operator makes is an
idempotent server-side apply or a delete with a uid precondition, so acting on a copy that is one
event behind at worst repeats a write; until a kind's first list has arrived (and after a failed
watch, until the next list succeeds) readers get None and fall back to calling the API.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiException

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Obj = dict[str, Any]
WATCH_SECONDS = 240  # the server ends a watch after this; it is resumed from the last version seen
RETRY_SECONDS = (0.5, 1, 2, 5, 10)


class CacheMiss(Exception):
    """A read the cache cannot answer: the API server would have to be asked."""


class Expired(Exception):
    """The resourceVersion is too old (HTTP 410): list again."""


@dataclass
class _Copy:
    """The objects by key, and their keys by (namespace, value of the indexed label): a tick asks for
    one rollout's objects, and scanning every cached pod for them was linear in the number of rollouts
    (with 1,000 rollouts the reads queued behind each other, `make bench-operator`)."""
    label: str
    objects: dict[Key, Obj] = field(default_factory=dict)
    index: dict[Key, set[Key]] = field(default_factory=dict)
    synced: bool = False

    def put(self, obj: Obj) -> None:
        key = _key(obj)
        self.drop(key)
        self.objects[key] = obj
        self.index.setdefault(self._slot(key, obj), set()).add(key)

    def drop(self, key: Key) -> None:
        old = self.objects.pop(key, None)
        if old is None:
            return
        slot = self._slot(key, old)
        keys = self.index.get(slot)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.index[slot]

    def _slot(self, key: Key, obj: Obj) -> Key:
        return key[0], str(((obj.get("metadata") or {}).get("labels") or {}).get(self.label, ""))

    def candidates(self, namespace: str, labels: dict[str, str]) -> list[Obj]:
        if self.label in labels:
            return [self.objects[k] for k in self.index.get((namespace, labels[self.label]), ())]
        return [o for (ns, _), o in self.objects.items() if ns == namespace]


class Reflector:
    """One kind in one namespace (or all): list, then watch from the list's version, forever.

    `lister(namespace_or_None, **kwargs)` is the client's list call (list_namespaced_pod or
    list_pod_for_all_namespaces, chosen by the caller)."""

    def __init__(self, kind: str, lister: Callable[..., Any], namespace: str | None, label_selector: str,
                 on_call: Callable[[str, float], None] | None = None, watch_seconds: int = WATCH_SECONDS) -> None:
        self.kind, self.lister, self.namespace, self.selector = kind, lister, namespace, label_selector
        self.watch_seconds = watch_seconds
        self.watches = 0  # watch requests made (each resumes from the last version seen)
        self.on_call = on_call or (lambda verb, seconds: None)
        self._lock = threading.Lock()
        self._copy = _Copy(label_selector)
        self._stop = threading.Event()

    # --- readers (any thread) ---
    def synced(self) -> bool:
        with self._lock:
            return self._copy.synced

    def select(self, namespace: str, labels: dict[str, str]) -> list[Obj] | None:
        """The objects of `namespace` whose labels include `labels`; None while not synced."""
        with self._lock:
            if not self._copy.synced:
                return None
            return [o for o in self._copy.candidates(namespace, labels)
                    if labels.items() <= ((o.get("metadata") or {}).get("labels") or {}).items()]

    def get(self, namespace: str, name: str) -> tuple[bool, Obj | None]:
        """(synced, the object or None)."""
        with self._lock:
            return self._copy.synced, self._copy.objects.get((namespace, name))

    # --- the feeding thread ---
    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"watch-{self.kind}-{self.namespace or 'all'}",
                                  daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                failures = 0
                while not self._stop.is_set():
                    version = self._watch(version)
            except Expired:
                log.info("watch of %s expired; listing again", self.kind)
            except Exception as exc:  # any failure: readers fall back to the API while we retry
                with self._lock:
                    self._copy.synced = False
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("watch of %s failed (%s: %s); retrying in %s s", self.kind, type(exc).__name__,
                            exc, delay)
                self._stop.wait(delay)

    def _call(self, verb: str, **kwargs: Any) -> Any:
        args = () if self.namespace is None else (self.namespace,)
        started = time.monotonic()
        try:
            return self.lister(*args, label_selector=self.selector, _preload_content=False, **kwargs)
        finally:
            self.on_call(verb, time.monotonic() - started)

    def _list(self) -> str:
        answer = json.loads(self._call("list").data)
        fresh = _Copy(self.selector, synced=True)
        for obj in answer.get("items") or []:
            fresh.put(obj)
        with self._lock:
            self._copy = fresh
        return str(answer["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        """Apply the events of one watch request; the version to resume from when it ends."""
        self.watches += 1
        response = self._call("watch", watch=True, resource_version=version, allow_watch_bookmarks=True,
                              timeout_seconds=self.watch_seconds, _request_timeout=self.watch_seconds + 30)
        try:
            for event in _lines(response):
                version = self._apply(json.loads(event), version)
        finally:
            response.release_conn()
        return version

    def _apply(self, event: Obj, version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired(obj.get("message"))
            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return new_version
        with self._lock:
            if kind == "DELETED":
                self._copy.drop(_key(obj))
            else:
                self._copy.put(obj)
        return new_version


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-separated JSON events from a streamed answer."""
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


class Cache:
    """Reflectors by (kind, namespace); namespace None watches all namespaces."""

    def __init__(self, reflectors: list[Reflector]) -> None:
        self._by_key = {(r.kind, r.namespace): r for r in reflectors}

    def reflector(self, kind: str, namespace: str) -> Reflector | None:
        return self._by_key.get((kind, namespace)) or self._by_key.get((kind, None))

    def select(self, kind: str, namespace: str, labels: dict[str, str]) -> list[Obj] | None:
        reflector = self.reflector(kind, namespace)
        return None if reflector is None else reflector.select(namespace, labels)

    def get(self, kind: str, namespace: str, name: str) -> tuple[bool, Obj | None]:
        reflector = self.reflector(kind, namespace)
        return (False, None) if reflector is None else reflector.get(namespace, name)

    def start(self) -> None:
        for reflector in self._by_key.values():
            reflector.start()

    def stop(self) -> None:
        for reflector in self._by_key.values():
            reflector.stop()
