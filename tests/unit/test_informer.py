"""The local cluster's informer (the service proxy's and the kubelet's view of the API): a watch
that ends is resumed from the last version seen, and a re-list reports what vanished meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest

from localcluster import informer

pytestmark = pytest.mark.unit


def svc(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version}}


def listing(version: str, *items: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(items=list(items), metadata=SimpleNamespace(resource_version=version))


class FakeWatch:
    """Each stream() plays the next scripted list of events (or raises it); an empty script stops the run."""

    script: list[Any] = []
    started_from: list[str] = []
    done = threading.Event()

    def stream(self, _fn: Any, resource_version: str, **_kw: Any) -> Iterator[dict[str, Any]]:
        if not FakeWatch.script:
            FakeWatch.done.set()
            return
        FakeWatch.started_from.append(resource_version)
        step = FakeWatch.script.pop(0)
        if isinstance(step, Exception):
            raise step
        for kind, obj in step:
            yield {"type": kind, "object": obj, "raw_object": obj}

    def stop(self) -> None:
        pass


def run(monkeypatch: pytest.MonkeyPatch, lists: list[SimpleNamespace], script: list[Any]) -> list[tuple[str, str]]:
    """The events the handler got until the scripted watches run out."""
    FakeWatch.script, FakeWatch.started_from, FakeWatch.done = script, [], threading.Event()
    monkeypatch.setattr(informer.kubernetes.watch, "Watch", FakeWatch)
    monkeypatch.setattr(informer.time, "sleep", lambda _s: None)
    seen: list[tuple[str, str]] = []
    informer._Informer(kubernetes.client.ApiClient(), lambda **_kw: lists.pop(0),
                       lambda kind, obj: seen.append((kind, obj["metadata"]["name"])), FakeWatch.done, {}).run()
    return seen


def test_a_watch_that_ends_resumes_from_the_last_version_without_listing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    lists = [listing("10", svc("a", "9"))]
    script = [[("ADDED", svc("b", "11")), ("BOOKMARK", svc("", "15"))], [("DELETED", svc("a", "16"))]]
    seen = run(monkeypatch, lists, script)
    # At each watch's end every known object is handed over again (a resync), without a new list.
    assert seen == [("SYNC", "a"), ("ADDED", "b"), ("SYNC", "a"), ("SYNC", "b"), ("DELETED", "a"), ("SYNC", "b")]
    assert FakeWatch.started_from == ["10", "15"]  # the bookmark's version, not a new list
    assert lists == []


def test_after_a_broken_watch_the_relist_reports_objects_deleted_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = kubernetes.client.ApiException(status=410, reason="Expired")
    lists = [listing("10", svc("a", "9"), svc("b", "9")), listing("30", svc("b", "9"), svc("c", "25"))]
    seen = run(monkeypatch, lists, [gone, []])
    # "a" was deleted while no watch ran: the re-list says so, as a watch would have.
    assert seen == [("SYNC", "a"), ("SYNC", "b"), ("DELETED", "a"), ("SYNC", "b"), ("SYNC", "c"),
                    ("SYNC", "b"), ("SYNC", "c")]
    assert FakeWatch.started_from == ["10", "30"]
