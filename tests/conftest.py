"""Fixtures: a session-scoped local cluster, a fresh namespace per test, the CRDs applied.

e2e tests need the run's network namespace; `make test` runs pytest through hack/in-netns.
A missing binary or namespace fails the e2e tests (never a skip)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml

from localcluster import netns
from localcluster.binaries import bin_dir
from localcluster.cluster import LocalCluster
from localcluster.testing import wait_until

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.sharding"]  # --shard K/N (make test's side-by-side shards)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test sits in exactly one tier, so `-m unit` and `-m e2e` together run everything.
    for item in items:
        tiers = {m.name for m in item.iter_markers()} & {"unit", "e2e"}
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: mark it with exactly one of @pytest.mark.unit / e2e")


class ClusterHandle:
    """What tests get: the running cluster, its kubeconfig and an admin ApiClient."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.kubeconfig = cluster.kubeconfig
        self.api = cluster.api_client()
        self.workdir = cluster.workdir

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, check=check, input=input).stdout


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterHandle]:
    bin_dir()  # raises with how to build them
    if not netns.is_inside():
        pytest.fail("e2e tests must run inside the cluster's network namespace: use `make test` "
                    "or `hack/in-netns .venv/bin/pytest ...`", pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="localcluster-"))
    local = LocalCluster(workdir)
    local.start()
    try:
        yield ClusterHandle(local)
    finally:
        local.stop()
        # A failed run keeps the cluster's logs (kubelet, proxy, pods): the test's own output rarely
        # says why a pod never became ready.
        if request.session.testsfailed:
            print(f"\nlocal cluster logs kept in {workdir}")
        elif os.environ.get("KEEP_CLUSTER_LOGS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def namespace(cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    # Pods are refused until the serviceaccount controller has made `default`.
    wait_until(lambda: core.read_namespaced_service_account("default", name), 30, f"default SA in {name}")
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def apply_crds(cluster: ClusterHandle) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    # Polled through the API: `kubectl wait` fails at once (not after its timeout) on a transient error.
    ext = kubernetes.client.ApiextensionsV1Api(cluster.api)
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted((ROOT / "crds").glob("*.yaml"))]

    def established(name: str) -> bool:
        conditions = ext.read_custom_resource_definition_status(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    for name in names:
        wait_until(lambda name=name: established(name), 60, f"CRD {name} Established")
