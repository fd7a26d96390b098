"""The adapter reads why pods are not Ready: the pod's status, and the model server's readiness answer
(read from a real server app, so the operator is proven to read what the server writes)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from modelrollout.core.observations import PodProblem
from modelrollout.kube import PodState
from modelrollout.podstates import pod_problems, problem_from_status
from modelserver.contract import LoadFailure, ModelState
from modelserver.dataplane import DataPlane
from modelserver.metrics import ServerMetrics
from modelserver.server import build_app
from modelserver.settings import Settings

pytestmark = pytest.mark.unit


def pod(name: str = "fraud-v2-a", **kwargs: object) -> PodState:
    values: dict[str, object] = {"version": "2", "ip": None, "ready": False, "deleting": False, **kwargs}
    return PodState(name=name, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("state", "expected"), [
    (pod(waiting=("ContainerCreating", "")), None),
    (pod(waiting=("ImagePullBackOff", "Back-off pulling image x")),
     PodProblem("fraud-v2-a", "ImagePullBackOff", "Back-off pulling image x")),
    (pod(waiting=("CrashLoopBackOff", "back-off 10s"), restarts=3, last_exit="OOMKilled, exit code 137"),
     PodProblem("fraud-v2-a", "CrashLoopBackOff", "back-off 10s; last exit: OOMKilled, exit code 137", 3)),
    (pod(restarts=1, last_exit="Error, exit code 1"),
     PodProblem("fraud-v2-a", "Restarted", "last exit: Error, exit code 1", 1)),
    (pod(), None),
])
def test_problems_the_pod_status_shows(state: PodState, expected: PodProblem | None) -> None:
    assert problem_from_status(state) == expected


async def _problems_from_server(plane: DataPlane, pods: list[PodState]) -> dict[str, tuple[PodProblem, ...]]:
    runner = web.AppRunner(build_app(plane))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await pod_problems(pods, port)
    finally:
        await runner.cleanup()


def failed_plane(state: ModelState, reason: LoadFailure) -> DataPlane:
    plane = DataPlane(Settings(model_name="fraud", model_version="2"), ServerMetrics("fraud", "2"))
    plane.state, plane.failure_reason = state, reason.value
    return plane


def test_a_load_failure_the_server_gave_up_on_is_permanent_with_its_code_and_a_hint() -> None:
    running = pod(ip="127.0.0.1")
    found = asyncio.run(_problems_from_server(failed_plane(ModelState.FAILED, LoadFailure.DIGEST_MISMATCH),
                                              [running, pod("fraud-v1-a", version="1", ip="127.0.0.1", ready=True)]))
    assert found == {"2": (PodProblem("fraud-v2-a", "digest_mismatch",
                                      "the model file's sha256 differs from spec.model.digest", permanent=True),)}


def test_a_retried_fetch_failure_is_reported_but_not_permanent() -> None:
    found = asyncio.run(_problems_from_server(failed_plane(ModelState.LOADING, LoadFailure.FETCH),
                                              [pod(ip="127.0.0.1")]))
    problem = found["2"][0]
    assert (problem.reason, problem.permanent) == ("fetch_failed", False)


def test_a_server_still_loading_or_gone_is_no_problem_and_pods_being_deleted_are_not_asked() -> None:
    loading = failed_plane(ModelState.LOADING, LoadFailure.FETCH)
    loading.failure_reason = ""
    assert asyncio.run(_problems_from_server(loading, [pod(ip="127.0.0.1")])) == {}
    failed = failed_plane(ModelState.FAILED, LoadFailure.DIGEST_MISMATCH)
    assert asyncio.run(_problems_from_server(failed, [pod(ip="127.0.0.1", deleting=True)])) == {}
    # Nothing listens on port 9 here: no answer is no problem (the pod may still be starting).
    assert asyncio.run(pod_problems([pod(ip="127.0.0.1")], 9)) == {}


def test_the_metric_source_reads_only_ready_addressed_pods_that_are_not_going_away() -> None:
    from modelrollout.kube import ready_targets

    pods = [pod("a", ready=True, ip="10.244.0.2", uid="u-a", started_at="2026-12-07T01:00:00+00:00"),
            pod("b", ready=True, ip=None, uid="u-b"), pod("c", ready=False, ip="10.244.0.3", uid="u-c"),
            pod("d", ready=True, ip="10.244.0.4", deleting=True, uid="u-d")]
    [only] = ready_targets(pods)
    assert (only.name, only.uid, only.ip, only.version, only.started_at) == (
        "a", "u-a", "10.244.0.2", "2", "2026-12-07T01:00:00+00:00")
