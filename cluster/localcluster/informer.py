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


def run_informer(
    api: kubernetes.client.ApiClient,
    list_fn: Callable[..., Any],
    handler: Handler,
    stop: threading.Event,
    **list_kwargs: Any,
) -> threading.Thread:
    """Start a daemon thread that keeps `handler` fed with the objects `list_fn` lists."""

    def loop() -> None:
        while not stop.is_set():
            try:
                listing = list_fn(**list_kwargs)
                for item in listing.items:
                    handler("SYNC", _sanitize(api, item))
                version = listing.metadata.resource_version
                watcher = kubernetes.watch.Watch()
                for event in watcher.stream(list_fn, resource_version=version, timeout_seconds=60,
                                            allow_watch_bookmarks=True, **list_kwargs):
                    if stop.is_set():
                        watcher.stop()
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        handler(event["type"], _sanitize(api, event["object"]))
            except Exception as exc:
                if not stop.is_set():
                    log.info("watch %s restarting after %s", getattr(list_fn, "__name__", "?"), exc)
                    time.sleep(0.5)

    thread = threading.Thread(target=loop, daemon=True, name=f"informer-{getattr(list_fn, '__name__', '?')}")
    thread.start()
    return thread
