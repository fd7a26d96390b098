"""What one tick gathered (the decision core's input) and what it decided (its output)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelrollout.analysis.paired import PairedCounts
from modelrollout.analysis.types import AnalysisOutcome, Tick
from modelrollout.core.abspec import StickySplit
from modelrollout.core.phases import Event
from modelrollout.core.status import ModelRecord, RolloutStatus

# Pods and Services are labelled with these; the adapter builds Deployments with them.
LABEL_ROLLOUT = "modelrollout.dev/rollout"
LABEL_VERSION = "modelrollout.dev/version"


@dataclass(frozen=True)
class DeploymentObservation:
    """One version's Deployment as observed. A version without a Deployment is simply absent."""

    replicas: int  # spec.replicas
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    up_to_date: bool = True  # status.observedGeneration >= metadata.generation

    def is_ready_at(self, count: int) -> bool:
        """Whether the Deployment was asked for `count` pods and all of them are updated and Ready."""
        return (
            self.up_to_date
            and self.replicas == count
            and self.ready_replicas >= count
            and self.updated_replicas >= count
        )


@dataclass(frozen=True)
class PodProblem:
    """Why one pod of a version is not Ready, as the adapter read it from the pod and its model server.

    reason: a container's waiting reason (CrashLoopBackOff, ImagePullBackOff, ...) or the model server's
    load-failure code (digest_mismatch, fetch_failed, ...); detail: what it means, for a person.
    permanent: the model server stopped trying to load the model, so only a new version can fix it.
    """

    pod: str
    reason: str
    detail: str = ""
    restarts: int = 0
    permanent: bool = False

    def describe(self) -> str:
        """One line for status and Events.

        >>> PodProblem("fraud-v2-x", "CrashLoopBackOff", "exit code 1", restarts=3).describe()
        'pod fraud-v2-x: CrashLoopBackOff (exit code 1), 3 restarts'
        """
        detail = f" ({self.detail})" if self.detail else ""
        restarts = f", {self.restarts} restart{'s' if self.restarts != 1 else ''}" if self.restarts else ""
        return f"pod {self.pod}: {self.reason}{detail}{restarts}"


@dataclass(frozen=True)
class AnalysisObservation:
    """The analysis engine's verdict for this tick and its new (opaque, JSON) state."""

    outcome: AnalysisOutcome
    engine_state: Mapping[str, Any] = field(default_factory=dict)
    tick: Tick | None = None  # the increments it judged (an A/B experiment sums its arms from them)


@dataclass(frozen=True)
class RouteObservation:
    """A user's HTTPRoute as read: its rules unchanged (the router rewrites only their backend weights),
    and whether the gateway has taken in the current generation (a parent's Accepted condition)."""

    namespace: str
    name: str
    rules: tuple[Mapping[str, Any], ...]
    resource_version: str
    rollout_namespace: str  # where the rollout's Services are (backendRefs without a namespace: the route's)
    generation: int = 0
    accepted_generation: int | None = None  # None: no gateway has reported on this route yet

    @property
    def is_current(self) -> bool:
        return self.accepted_generation is not None and self.accepted_generation >= self.generation


@dataclass(frozen=True)
class ValidationJobObservation:
    """The validation Job named in status.validation, as read back: `result` is its container's termination
    message (the JSON the Job wrote, or the tail of its log when it failed without one); `waiting` why its
    pod has not started (e.g. a missing ConfigMap); `failure` the Job's own reason (DeadlineExceeded)."""

    name: str
    exists: bool = True
    finished: bool = False
    result: str | None = None
    waiting: str = ""
    failure: str = ""


@dataclass(frozen=True)
class ValidationJobIntent:
    """The validation Job this tick wants to exist (created once; an existing one is left alone)."""

    name: str
    stable: ModelRecord
    candidate: ModelRecord


@dataclass(frozen=True)
class RetrainJobIntent:
    """The retraining Job this tick wants to exist: spec.monitoring.retrain.jobTemplate under this name (created
    once; an existing one is left alone)."""

    name: str


@dataclass(frozen=True)
class ShadowObservation:
    """One look at a shadow stage: each scraped candidate pod's cumulative pair counts by pod uid (counters
    since that pod's server started), and why pods could not be read. No pod read: counts empty, errors say why."""

    version: str
    pods: Mapping[str, PairedCounts] = field(default_factory=dict)
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionDrift:
    """One version's drift evidence: the training reference its pods export (features in order, training rows per
    bin) and the live inputs per bin in the window, summed over its ready pods. `state` is the pods' reference
    state (modelserver.contract.DriftReferenceState; "" when they export none); `problem` why the version could
    not be read this look (a pod's scrape failed, no ready pod): then it is not judged."""

    version: str
    state: str = ""
    reference: tuple[tuple[str, tuple[int, ...]], ...] = ()
    live: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    window_seconds: float = 0.0
    problem: str = ""
    # Feedback labels in the window for this version's predictions (on any pod of the rollout): right / wrong.
    labels_correct: float = 0.0
    labels_incorrect: float = 0.0


@dataclass(frozen=True)
class DriftObservation:
    """One look of the drift watch (gathered only when core.driftwatch says a look is due)."""

    versions: tuple[VersionDrift, ...] = ()


@dataclass(frozen=True)
class Observations:
    name: str  # the ModelRollout's name: the value of LABEL_ROLLOUT
    generation: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    deployments: Mapping[str, DeploymentObservation] = field(default_factory=dict)  # by version
    # The pod selector of each Service the strategy routes through, by Service name; absent: no such Service yet.
    selectors: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    analysis: AnalysisObservation | None = None  # None when no analysis tick was due (or no baseline yet)
    # Why pods are not Ready, by version; a version whose pods are Ready or just starting is absent.
    pod_problems: Mapping[str, tuple[PodProblem, ...]] = field(default_factory=dict)
    route: RouteObservation | None = None  # the HTTPRoute of spec.trafficRouting.gatewayAPI; None: absent/unused
    validation: ValidationJobObservation | None = None  # the Job of a running validation gate
    shadow: ShadowObservation | None = None  # only when a shadow stage's look was due
    # The data of the rollout's mirror ConfigMap (<name>-mirror); None: it does not exist.
    mirror: Mapping[str, str] | None = None
    namespace: str = ""  # the rollout's (a mirror target names its Service by its full DNS name)
    drift: DriftObservation | None = None  # only when a drift look was due (spec.monitoring.drift)
    retrain: ValidationJobObservation | None = None  # the running retraining Job (status.retrain), read back

    def is_version_ready(self, version: str, count: int) -> bool:
        """Whether `version` runs exactly `count` Ready pods (0 pods: no Deployment also counts)."""
        seen = self.deployments.get(version)
        if seen is None:
            return count == 0
        return seen.is_ready_at(count)

    def has_ready_pods(self, version: str, count: int) -> bool:
        """Whether `version` has at least `count` updated, Ready pods (more is fine: scaling down)."""
        seen = self.deployments.get(version)
        if seen is None:
            return count == 0
        return seen.up_to_date and seen.ready_replicas >= count and seen.updated_replicas >= count

    def ready_pods(self, version: str | None) -> int:
        seen = self.deployments.get(version) if version else None
        return 0 if seen is None else seen.ready_replicas

    def unhealable_problem(self, version: str) -> PodProblem | None:
        """A pod of `version` that will never become Ready (its model cannot load), if there is one."""
        return next((p for p in self.pod_problems.get(version, ()) if p.permanent), None)

    def why_not_ready(self, version: str) -> str:
        """A suffix naming up to three pods of `version` that report a problem ("" while none does).

        >>> Observations("fraud", 1, pod_problems={"2": (PodProblem("fraud-v2-x", "fetch_failed"),)}).why_not_ready("2")
        '; pod fraud-v2-x: fetch_failed'
        """
        problems = self.pod_problems.get(version, ())
        return "".join(f"; {p.describe()}" for p in problems[:3]) + (
            f"; and {len(problems) - 3} more pod(s)" if len(problems) > 3 else "")


@dataclass(frozen=True)
class DeploymentIntent:
    """Desired state of one version's Deployment. model None: scale only, keep its template."""

    replicas: int
    model: ModelRecord | None = None


@dataclass(frozen=True)
class Preview:
    """A version reachable through its own Service, apart from the main traffic (blue-green)."""

    service: str
    version: str


@dataclass(frozen=True)
class HeaderMatch:
    """An HTTP header (exact value) that marks a request for the canary."""

    name: str
    value: str


@dataclass(frozen=True)
class ShadowTraffic:
    """A version run in the shadow: `pods` pods behind its own Service only, receiving copies of
    `mirror_percent` of the requests the stable pods answered (0: not yet, or no more)."""

    version: str
    pods: int
    mirror_percent: int = 0


@dataclass(frozen=True)
class TrafficIntent:
    """Where traffic should go, said without naming a mechanism: a strategy states it, a router
    (modelrollout.core.routers) realises it with replica counts, a Service selector, or later a route.

    The canary takes canary_weight percent of the main traffic and the stable version the rest;
    without a canary the stable version takes everything.
    """

    stable: str | None
    canary: str | None = None
    canary_weight: int = 0
    preview: Preview | None = None
    # Routers that split by request (gatewayAPI) also honour these; replica and selector routers cannot.
    canary_header: HeaderMatch | None = None  # requests with this header go to the canary at every step
    canary_pods_floor: int = 0  # keep at least this many canary pods, whatever the weight
    # An A/B experiment's sticky split: requests carrying its cookie go to the version it names (the version that
    # answered a user first sets it, told so by the rollout's mounted configuration).
    sticky: StickySplit | None = None
    # A shadow stage: no user request reaches this version, the main Service selects the stable one only.
    shadow: ShadowTraffic | None = None
    # The main Service keeps selecting the stable version alone (a shadow candidate's pods are still going).
    pin_stable: bool = False


@dataclass(frozen=True)
class RouteIntent:
    """The rules an HTTPRoute should have (the observed rules with the router's weights and header rule),
    applied only over the resourceVersion they were computed from, so a concurrent user edit wins."""

    namespace: str
    name: str
    rules: tuple[Mapping[str, Any], ...]
    resource_version: str


@dataclass(frozen=True)
class MirrorIntent:
    """The data of the rollout's mirror ConfigMap, which every version's pods mount (workloads.py): where and
    how much the stable pods copy. Turning mirroring on or off changes only this, never a pod template."""

    data: Mapping[str, str]


@dataclass(frozen=True)
class Decision:
    """Everything one tick decided. deployments None means: leave the workloads alone.

    selectors: the pod selector each Service should have, by Service name (the router's output).
    route: the HTTPRoute rules to apply (gatewayAPI router), None: no route to change.
    """

    status: RolloutStatus
    deployments: Mapping[str, DeploymentIntent] | None
    delete_versions: tuple[str, ...]
    selectors: Mapping[str, Mapping[str, str]]
    events: tuple[Event, ...]
    next_tick_at: datetime
    route: RouteIntent | None = None
    validation_job: ValidationJobIntent | None = None  # a validation gate is running: its Job
    cancel_validation_job: str | None = None  # the Job of a run nothing waits for any more: delete it
    mirror: MirrorIntent | None = None  # the mirror ConfigMap to apply; None: leave it as it is
    retrain_job: RetrainJobIntent | None = None  # a retraining Job to create (spec.monitoring.retrain)


def selector(rollout: str, version: str | None) -> dict[str, str]:
    """The pod selector for one version, or for every version of the rollout when version is None.

    >>> selector("fraud", "2")
    {'modelrollout.dev/rollout': 'fraud', 'modelrollout.dev/version': '2'}
    """
    labels = {LABEL_ROLLOUT: rollout}
    if version is not None:
        labels[LABEL_VERSION] = version
    return labels


@dataclass(frozen=True)
class StrategyPlan:
    """What a strategy module decided this tick: the new status and where traffic should go."""

    status: RolloutStatus
    events: tuple[Event, ...]
    traffic: TrafficIntent
    wake_at: tuple[datetime, ...]
