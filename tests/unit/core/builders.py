"""Builders for decision-core tests, plus a tiny fake cluster that applies decisions.

`World` plays Kubernetes for the core: it sets each Deployment's replicas as decided and makes
pods Ready when a test says so, so scenarios read as Given / When / Then without YAML.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from modelrollout.analysis.types import AnalysisOutcome, MetricResult, Verdict
from modelrollout.core import (
    AnalysisObservation,
    Decision,
    DeploymentObservation,
    Observations,
    RolloutSpec,
    RolloutStatus,
    decide,
    decide_from_dicts,
)
from modelrollout.core.commands import COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION
from modelrollout.core.observations import PodProblem, ShadowObservation, ValidationJobObservation
from modelrollout.core.phases import Phase
from modelrollout.core.status import HistoryEntry, ModelRecord

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STEPS = [{"setWeight": 25}, {"pause": {"duration": "2m"}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
METRICS = [{"name": "error-rate", "type": "errorRate", "max": 0.01},
           {"name": "error-vs-stable", "type": "errorRate", "margin": 0.005}]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spec_dict(version: str = "2", replicas: int = 4, steps: list[dict[str, Any]] | None = None,
              blue_green: dict[str, Any] | None = None, analysis: dict[str, Any] | bool | None = True,
              **extra: Any) -> dict[str, Any]:
    strategy = {"blueGreen": blue_green} if blue_green is not None else {"canary": {"steps": steps or STEPS}}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "model": {"name": "fraud", "version": version, "uri": f"http://store/fraud/{version}/model.joblib"},
        "service": {"name": "fraud", "port": 80},
        "strategy": strategy,
    }
    if analysis is True:
        spec["analysis"] = {"interval": "15s", "minSamples": 200, "failureLimit": 2, "inconclusiveLimit": 3,
                            "timeout": {"after": "10m", "action": "Pause"}, "metrics": METRICS}
    elif isinstance(analysis, dict):
        spec["analysis"] = analysis
    spec.update(extra)
    return spec


def make_spec(**kwargs: Any) -> RolloutSpec:
    return RolloutSpec.from_dict(spec_dict(**kwargs))


def record(version: str) -> ModelRecord:
    return ModelRecord(version=version, uri=f"http://store/fraud/{version}/model.joblib")


def healthy_status(stable: str = "1", history: tuple[str, ...] = ()) -> RolloutStatus:
    """A settled rollout serving `stable`; `history` lists versions that were stable before it."""
    entries = [HistoryEntry(version=v, outcome="Promoted", reason="AnalysisPassed",
                            finished_at="2025-12-31T00:00:00Z", model=record(v)) for v in (*history, stable)]
    entries[0] = replace(entries[0], outcome="Deployed", reason="FirstVersion")
    return RolloutStatus(phase=Phase.HEALTHY, reason="Promoted", stable_model=record(stable),
                         observed_generation=1, history=entries)


def ready(replicas: int, ready_pods: int | None = None) -> DeploymentObservation:
    pods = replicas if ready_pods is None else ready_pods
    return DeploymentObservation(replicas=replicas, ready_replicas=pods, updated_replicas=replicas,
                                 available_replicas=pods)


def make_obs(deployments: dict[str, DeploymentObservation] | None = None, generation: int = 1,
             command: str | None = None, command_id: str = "c1",
             analysis: AnalysisObservation | None = None) -> Observations:
    annotations = {} if command is None else {COMMAND_ANNOTATION: command, COMMAND_ID_ANNOTATION: command_id}
    return Observations(name="fraud", generation=generation, annotations=annotations,
                        deployments=deployments or {}, analysis=analysis)


def outcome(verdict: Verdict, share: float | None = 0.25, message: str | None = None,
            name: str = "error-rate") -> AnalysisObservation:
    text = message or {Verdict.FAIL: "canary error rate 5.0% (40/800) above max 1.0%",
                       Verdict.PASS: "canary error rate 0.2% below max 1.0%",
                       Verdict.INCONCLUSIVE: "only 50 canary requests, minSamples 200"}[verdict]
    result = MetricResult(name=name, verdict=verdict, message=text, canary_value=0.05, stable_value=0.01,
                          estimate=0.04, interval=(0.02, 0.06), p_value=0.001, canary_samples=800,
                          stable_samples=2400)
    return AnalysisObservation(outcome=AnalysisOutcome(results=(result,), overall=verdict,
                                                       effective_canary_share=share),
                               engine_state={"ticks": 1, "error-rate": {"s": 1.0}})


@dataclass
class World:
    """Deployments and Services as a fake cluster would hold them after applying decisions."""

    deployments: dict[str, DeploymentObservation] = field(default_factory=dict)
    selectors: dict[str, dict[str, str]] = field(default_factory=dict)  # by Service name
    annotations: dict[str, str] = field(default_factory=dict)
    generation: int = 1
    pod_problems: dict[str, tuple[PodProblem, ...]] = field(default_factory=dict)  # by version
    validation: ValidationJobObservation | None = None  # the validation Job, as read back
    mirror: dict[str, str] | None = None  # the mirror ConfigMap's data; None: it does not exist

    def observe(self, analysis: AnalysisObservation | None = None,
                shadow: ShadowObservation | None = None) -> Observations:
        return Observations(name="fraud", generation=self.generation, annotations=dict(self.annotations),
                            deployments=dict(self.deployments), selectors=copy.deepcopy(self.selectors),
                            analysis=analysis, pod_problems=dict(self.pod_problems), validation=self.validation,
                            shadow=shadow, mirror=None if self.mirror is None else dict(self.mirror),
                            namespace="ml")

    def apply(self, decision: Decision, pods_ready: bool = True) -> None:
        """Scale as decided; new pods become Ready at once unless pods_ready is False."""
        for version in decision.delete_versions:
            self.deployments.pop(version)
        for version, intent in (decision.deployments or {}).items():
            before = self.deployments.get(version)
            ready_pods = intent.replicas if pods_ready else min(intent.replicas, before.ready_replicas if before else 0)
            self.deployments[version] = DeploymentObservation(
                replicas=intent.replicas, ready_replicas=ready_pods, updated_replicas=intent.replicas,
                available_replicas=ready_pods)
        if decision.deployments:  # as the adapter: Services are written once a version runs
            self.selectors.update({name: dict(sel) for name, sel in decision.selectors.items()})
            if decision.mirror is not None:
                self.mirror = dict(decision.mirror.data)

    def command(self, text: str, request_id: str) -> None:
        self.annotations.update({COMMAND_ANNOTATION: text, COMMAND_ID_ANNOTATION: request_id})


@dataclass
class Run:
    """Drives decide() tick by tick against a World, keeping the stored status as the operator would."""

    spec: RolloutSpec
    world: World = field(default_factory=World)
    status: RolloutStatus = field(default_factory=RolloutStatus)
    now: datetime = T0
    decisions: list[Decision] = field(default_factory=list)

    def tick(self, after: float = 0.0, analysis: AnalysisObservation | None = None,
             pods_ready: bool = True, shadow: ShadowObservation | None = None) -> Decision:
        self.now += timedelta(seconds=after)
        decision = decide(self.spec, self.status, self.world.observe(analysis, shadow), self.now)
        self.world.apply(decision, pods_ready=pods_ready)
        self.status = copy.deepcopy(decision.status)
        self.decisions.append(decision)
        return decision

    def tick_raw(self, spec: dict[str, Any], after: float = 0.0) -> Decision:
        """A tick from the stored dicts, as the handler calls it (the spec may be invalid)."""
        self.now += timedelta(seconds=after)
        decision = decide_from_dicts(spec, self.status.to_dict(), self.world.observe(), self.now)
        self.world.apply(decision)
        self.status = copy.deepcopy(decision.status)
        self.decisions.append(decision)
        return decision

    def tick_analysis(self, verdict: Verdict, **kwargs: Any) -> Decision:
        """Wait until the analysis tick is due, then deliver one outcome."""
        due = self.status.analysis.next_tick_at
        assert due is not None, f"no analysis scheduled in phase {self.status.phase}: {self.status.message}"
        wait = max(0.0, (due - self.now).total_seconds())
        return self.tick(after=wait, analysis=outcome(verdict, **kwargs))

    @property
    def phase(self) -> Phase | None:
        return self.status.phase


def run_from_healthy(spec: RolloutSpec, stable: str = "1", history: tuple[str, ...] = ()) -> Run:
    """A rollout where `stable` serves with all replicas Ready, about to see spec."""
    world = World(deployments={stable: ready(spec.replicas)})
    return Run(spec=spec, world=world, status=healthy_status(stable, history))
