"""Why a version's pods are not Ready: their status (from kube.py) and their model server's own answer.

A model that cannot load leaves its container running and unready, so the pod's status says nothing;
the server's readiness answer (contract.READINESS_FIELDS) gives the load state and the failure's code,
read from the pod's IP as the metric scrape does. The result is data for the decision core
(`Observations.pod_problems`); nothing here decides.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

import aiohttp

from modelrollout.core.observations import PodProblem
from modelrollout.kube import PodState
from modelserver.contract import LoadFailure, ModelState
from modelserver.contract_parse import parse_readiness

READINESS_PATH = "/v2/health/ready"
READINESS_TIMEOUT = 1.0
STARTING = frozenset({"ContainerCreating", "PodInitializing"})  # waiting, but nothing wrong yet

# What each load-failure code means to the person reading `kubectl describe` (the pod's log has the details).
LOAD_FAILURE_HINTS = {
    LoadFailure.FETCH: "the model file cannot be fetched from spec.model.uri; the server keeps retrying",
    LoadFailure.DIGEST_MISMATCH: "the model file's sha256 differs from spec.model.digest",
    LoadFailure.MISSING_DIGEST: "a pickle-based model needs spec.model.digest",
    LoadFailure.PICKLE_NOT_ALLOWED: "a joblib/pickle model needs spec.model.allowPickle: true (or use skops)",
    LoadFailure.UNSUPPORTED_FORMAT: "the model's format is not joblib, pickle or skops",
    LoadFailure.UNTRUSTED_TYPES: "the skops file holds types not listed in MODEL_TRUSTED_TYPES",
    LoadFailure.DESERIALIZE: "the model file cannot be unpickled or read",
    LoadFailure.VALIDATION: "the model does not fit its configuration (e.g. the feature count)",
    LoadFailure.WARMUP: "the model failed a warm-up prediction",
}


def hint(code: str) -> str:
    """What a load-failure code means; "" for a code this operator does not know (a newer server).

    >>> hint("digest_mismatch"), hint("new_code")
    ("the model file's sha256 differs from spec.model.digest", '')
    """
    try:
        return LOAD_FAILURE_HINTS[LoadFailure(code)]
    except ValueError:
        return ""


def problem_from_status(pod: PodState) -> PodProblem | None:
    """A problem the pod's status alone shows: a container waiting for a bad reason, or restarts."""
    restarts = pod.restarts
    if pod.waiting is not None and pod.waiting[0] not in STARTING:
        reason, message = pod.waiting
        detail = "; ".join(part for part in (message[:200], f"last exit: {pod.last_exit}" if pod.last_exit
                                             else "") if part)
        return PodProblem(pod.name, reason or "Waiting", detail, restarts)
    if restarts > 0:
        return PodProblem(pod.name, "Restarted", f"last exit: {pod.last_exit}" if pod.last_exit else "", restarts)
    return None


def problem_from_server(pod: PodState, state: ModelState, code: str) -> PodProblem | None:
    """The model server's answer: a load failure it gave up on is permanent; a retried one is not."""
    if not code or state not in (ModelState.LOADING, ModelState.FAILED):
        return None
    return PodProblem(pod.name, code, hint(code), pod.restarts, permanent=state is ModelState.FAILED)


async def ask_server(session: aiohttp.ClientSession, pod: PodState, port: int) -> tuple[ModelState, str] | None:
    """The server's readiness answer, or None when it cannot be had (not listening yet, not our server)."""
    try:
        async with session.get(f"http://{pod.ip}:{port}{READINESS_PATH}",
                               timeout=aiohttp.ClientTimeout(total=READINESS_TIMEOUT)) as resp:
            return parse_readiness(await resp.json(content_type=None))
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def _problem(session: aiohttp.ClientSession, pod: PodState, port: int) -> PodProblem | None:
    seen = problem_from_status(pod)
    if pod.waiting is not None or not pod.ip:
        return seen  # the container does not run: there is no server to ask
    answer = await ask_server(session, pod, port)
    from_server = None if answer is None else problem_from_server(pod, *answer)
    return from_server or seen


async def pod_problems(pods: Iterable[PodState], port: int) -> dict[str, tuple[PodProblem, ...]]:
    """Why the pods that are not Ready (and not being deleted) are not, by version; only pods with a problem."""
    waiting = [p for p in pods if not p.ready and not p.deleting]
    if not waiting:
        return {}
    async with aiohttp.ClientSession() as session:
        found = await asyncio.gather(*(_problem(session, p, port) for p in waiting))
    by_version: dict[str, list[PodProblem]] = defaultdict(list)
    for pod, problem in zip(waiting, found, strict=True):
        if problem is not None:
            by_version[pod.version].append(problem)
    return {version: tuple(sorted(problems, key=lambda p: (not p.permanent, p.pod)))
            for version, problems in by_version.items()}
