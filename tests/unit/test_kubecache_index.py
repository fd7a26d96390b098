"""The watch cache's index by rollout label: a rollout's objects are found without scanning every
cached object, and stay found (or stop being found) as their labels change and they are deleted."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.kubecache import Reflector

pytestmark = pytest.mark.unit
LABEL = "modelrollout.dev/rollout"


def _pod(ns: str, name: str, rollout: str, version: str = "1") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": "1",
                         "labels": {LABEL: rollout, "modelrollout.dev/version": version}}}


def _names(found: list[dict[str, Any]] | None) -> set[str]:
    assert found is not None
    return {o["metadata"]["name"] for o in found}


def _fed(*events: tuple[str, dict[str, Any]]) -> Reflector:
    reflector = Reflector("pods", lambda *a, **k: None, None, LABEL)
    reflector._copy.synced = True  # as after a list with no items
    for kind, obj in events:
        reflector._apply({"type": kind, "object": obj}, "1")
    return reflector


def test_a_rollouts_objects_are_selected_by_namespace_and_label_value() -> None:
    r = _fed(("ADDED", _pod("a", "p1", "x")), ("ADDED", _pod("a", "p2", "y")), ("ADDED", _pod("b", "p3", "x")),
             ("ADDED", _pod("a", "p4", "x", version="2")))
    assert _names(r.select("a", {LABEL: "x"})) == {"p1", "p4"}
    assert _names(r.select("a", {LABEL: "x", "modelrollout.dev/version": "2"})) == {"p4"}
    assert _names(r.select("b", {LABEL: "x"})) == {"p3"}
    assert _names(r.select("a", {})) == {"p1", "p2", "p4"}  # no rollout label asked: every object of a
    assert r.select("a", {LABEL: "z"}) == []


def test_a_relabelled_object_moves_and_a_deleted_one_leaves() -> None:
    r = _fed(("ADDED", _pod("a", "p1", "x")), ("ADDED", _pod("a", "p2", "x")), ("MODIFIED", _pod("a", "p1", "y")),
             ("DELETED", _pod("a", "p2", "x")))
    assert _names(r.select("a", {LABEL: "x"})) == set()
    assert _names(r.select("a", {LABEL: "y"})) == {"p1"}
    assert r._copy.index == {("a", "y"): {("a", "p1")}}  # nothing left behind for x


def test_nothing_is_answered_before_the_first_list() -> None:
    reflector = Reflector("pods", lambda *a, **k: None, None, LABEL)
    assert reflector.select("a", {LABEL: "x"}) is None
