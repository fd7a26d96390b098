"""The operator's watch-fed cache (kubecache.Reflector) against the real API server: it lists, then
follows creations, label changes and deletions, and resumes after the server ends a watch."""

from __future__ import annotations

import kubernetes
import pytest

from localcluster.testing import wait_until
from modelrollout.kubecache import Reflector
from tests.conftest import ClusterHandle

pytestmark = pytest.mark.e2e
LABEL = "modelrollout.dev/rollout"


def _service(name: str, labels: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}


def test_the_cache_follows_labelled_services_and_resumes_after_a_watch_ends(
        cluster: ClusterHandle, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_service(namespace, _service("before", {LABEL: "r"}))
    reflector = Reflector("services", core.list_namespaced_service, namespace, LABEL, watch_seconds=2)
    reflector.start()
    try:
        def names() -> set[str]:
            found = reflector.select(namespace, {})
            return set() if found is None else {o["metadata"]["name"] for o in found}

        wait_until(lambda: names() == {"before"}, 20, "the first list")
        core.create_namespaced_service(namespace, _service("unlabelled", {}))
        core.create_namespaced_service(namespace, _service("later", {LABEL: "r"}))
        wait_until(lambda: names() == {"before", "later"}, 20, "a created labelled Service, not the unlabelled")
        assert reflector.select(namespace, {LABEL: "other"}) == []
        core.patch_namespaced_service("before", namespace, {"metadata": {"labels": {LABEL: None}}})
        wait_until(lambda: names() == {"later"}, 20, "a Service whose label was removed leaves the cache")
        core.delete_namespaced_service("later", namespace)
        wait_until(lambda: names() == set(), 20, "a deleted Service leaves the cache")
        watches = reflector.watches
        wait_until(lambda: reflector.watches >= watches + 2, 30, "the server ending two watches (2 s each)")
        core.create_namespaced_service(namespace, _service("resumed", {LABEL: "r"}))
        wait_until(lambda: names() == {"resumed"}, 20, "a Service created after the watch was resumed")
        synced, found = reflector.get(namespace, "resumed")
        assert synced and found is not None and found["spec"]["selector"] == {"app": "resumed"}
    finally:
        reflector.stop()
