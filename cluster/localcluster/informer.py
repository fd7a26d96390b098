"""A minimal informer: list, then watch from the list's resourceVersion, re-listing when the watch
expires or breaks. Runs in a daemon thread and hands every object (as a plain dict) to a callback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]  # (event type ADDED/MODIFIED/DELETED/SYNC, object)


def _sanitize(api: kubernetes.client.ApiClient, obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else api.sanitize_for_serialization(obj)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class _Informer:
    """List, then watch and resume the watch from the last resourceVersion seen (bookmarks included),
    re-listing only when the server says that version is gone (410) or the stream breaks. A re-list
    reports every object that vanished meanwhile as DELETED: a Service or Pod deleted between two
    watches must not live on in the proxy or the kubelet (a stale listener on a reused cluster IP)."""

    def __init__(self, api: kubernetes.client.ApiClient, list_fn: Callable[..., Any], handler: Handler,
                 stop: threading.Event, list_kwargs: dict[str, Any]) -> None:
        self.api, self.list_fn, self.handler, self.stop = api, list_fn, handler, stop
        self.list_kwargs = list_kwargs
        self.known: dict[tuple[str, str], dict[str, Any]] = {}

    def relist(self) -> str:
        listing = self.list_fn(**self.list_kwargs)
        current = {_key(obj): obj for obj in (_sanitize(self.api, item) for item in listing.items)}
        # Deletions first: a new Service may hold the cluster IP a vanished one listened on.
        for key in self.known.keys() - current.keys():
            self.handler("DELETED", self.known[key])
        for obj in current.values():
            self.handler("SYNC", obj)
        self.known = current
        return str(listing.metadata.resource_version)

    def resync(self) -> None:
        """Hand every known object to the handler again (client-go's resync period: once a minute, at
        each watch's end), so a handler retries what failed - a pod that did not start, a listen that
        was refused - without waiting for the object to change."""
        for obj in list(self.known.values()):
            if self.stop.is_set():
                return
            self.handler("SYNC", obj)

    def watch(self, version: str) -> str:
        """Watch from `version` until the server ends the stream; returns the last version seen."""
        watcher = kubernetes.watch.Watch()
        for event in watcher.stream(self.list_fn, resource_version=version, timeout_seconds=60,
                                    allow_watch_bookmarks=True, **self.list_kwargs):
            if self.stop.is_set():
                watcher.stop()
                break
            raw = event.get("raw_object") or {}
            version = (raw.get("metadata") or {}).get("resourceVersion") or version
            kind = event["type"]  # an ERROR (410 Gone) is raised by the client as an ApiException
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            obj = _sanitize(self.api, event["object"])
            if kind == "DELETED":
                self.known.pop(_key(obj), None)
            else:
                self.known[_key(obj)] = obj
            self.handler(kind, obj)
        return version

    def run(self) -> None:
        version: str | None = None
        while not self.stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                version = self.watch(version)
                self.resync()
            except Exception as exc:
                if self.stop.is_set():
                    return
                log.info("watch %s restarting after %s", getattr(self.list_fn, "__name__", "?"), exc)
                version = None  # 410 Gone or a broken stream: list again (vanished objects become DELETED)
                time.sleep(0.5)


def run_informer(
    api: kubernetes.client.ApiClient,
    list_fn: Callable[..., Any],
    handler: Handler,
    stop: threading.Event,
    **list_kwargs: Any,
) -> threading.Thread:
    """Start a daemon thread that keeps `handler` fed with the objects `list_fn` lists."""
    informer = _Informer(api, list_fn, handler, stop, list_kwargs)
    thread = threading.Thread(target=informer.run, daemon=True,
                              name=f"informer-{getattr(list_fn, '__name__', '?')}")
    thread.start()
    return thread
