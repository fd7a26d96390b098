"""Helpers the tests and the demo share: apply manifests, wait with readable failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import yaml
from kubernetes.utils import create_from_dict

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    pass


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns something truthy and return that.

    On timeout raise WaitTimeoutError saying what was awaited, the last value or exception seen,
    and (if given) `describe()` - e.g. the current object - so a failure reads like a bug report.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            extra = f"\n{describe()}" if describe else ""
            raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}{extra}")
        time.sleep(interval)


def holds(probe: Callable[[], bool], seconds: float, what: str, interval: float = 0.2) -> None:
    """Assert that `probe` stays true for `seconds` (checked every `interval`): that something does
    *not* happen, where a single look after a sleep would miss a change that came and went."""
    deadline = time.monotonic() + seconds
    while True:
        if not probe():
            raise AssertionError(f"{what} did not hold for {seconds:.0f}s")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def load_manifests(source: str | Path) -> list[dict[str, Any]]:
    text = Path(source).read_text() if isinstance(source, Path) else source
    return [doc for doc in yaml.safe_load_all(text) if doc]


def apply_manifest(api: kubernetes.client.ApiClient, obj: dict[str, Any] | str, namespace: str | None = None) -> None:
    """Create the object(s) (a dict or YAML text) with the typed client, as `kubectl create` does."""
    docs = load_manifests(obj) if isinstance(obj, str) else [obj]
    for doc in docs:
        create_from_dict(api, doc, namespace=namespace)
