"""The ModelRollout status: every bit of progress, so a restarted operator resumes exactly.

`to_dict` writes camelCase keys, exactly the fields the CRD declares (anything else would be
pruned by the apiserver), with timestamps as RFC3339 strings; `from_dict(to_dict(s)) == s`.
stableVersion / canaryVersion are written for `kubectl get` and derived from the model records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelrollout.analysis.abtest import ArmTotals
from modelrollout.analysis.paired import PairedCounts
from modelrollout.core.phases import Phase

HISTORY_LIMIT = 10
# The status keys the core writes; anything else under status (e.g. kopf's own) is left alone.
OWNED_KEYS = frozenset({
    "phase", "reason", "message", "stableVersion", "canaryVersion", "stableModel", "canaryModel",
    "currentStepIndex", "stepStartedAt", "desiredWeight", "effectiveWeight", "rejectedVersion", "lastCommandId",
    "scaleDownAt", "observedGeneration", "conditions", "analysis", "history", "trafficRouter", "validation",
    "shadow",
    "abTest", "drift", "retrain",
})


def format_time(moment: datetime) -> str:
    """RFC3339 in UTC with a Z; fractions only when present, so parse_time(format_time(t)) == t.

    >>> format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    '2026-01-02T03:04:05Z'
    >>> format_time(datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC))
    '2026-01-02T03:04:05.600000Z'
    """
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """The inverse of format_time (also accepts offsets such as +00:00)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _opt_time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class ModelRecord:
    """Which model a version's Deployment serves; kept so the core can rebuild or undo to it."""

    version: str
    uri: str
    digest: str | None = None
    format: str | None = None
    allow_pickle: bool = False  # kept with the version, so a rebuilt Deployment keeps the opt-in
    drift_reference_digest: str | None = None  # the version's <model>.drift.json digest (spec.model)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"version": self.version, "uri": self.uri, "digest": self.digest,
                           "format": self.format, "allowPickle": self.allow_pickle or None,
                           "driftReferenceDigest": self.drift_reference_digest})

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ModelRecord | None:
        if not d:
            return None
        return cls(version=d["version"], uri=d["uri"], digest=d.get("digest"), format=d.get("format"),
                   allow_pickle=bool(d.get("allowPickle", False)),
                   drift_reference_digest=d.get("driftReferenceDigest"))


@dataclass
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"type": self.type, "status": self.status, "reason": self.reason,
                           "message": self.message, "lastTransitionTime": self.last_transition_time,
                           "observedGeneration": self.observed_generation})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Condition:
        return cls(type=d["type"], status=d["status"], reason=d.get("reason", ""),
                   message=d.get("message", ""), last_transition_time=d["lastTransitionTime"],
                   observed_generation=d.get("observedGeneration"))


@dataclass
class MetricStatus:
    """One metric's latest verdict with the numbers behind it."""

    name: str
    verdict: str
    message: str = ""
    canary_value: float | None = None
    stable_value: float | None = None
    estimate: float | None = None
    interval: list[float] | None = None  # [lo, hi]
    p_value: float | None = None
    e_value: float | None = None
    canary_samples: float = 0.0
    stable_samples: float = 0.0

    _KEYS = (("canary_value", "canaryValue"), ("stable_value", "stableValue"), ("estimate", "estimate"),
             ("interval", "interval"), ("p_value", "pValue"), ("e_value", "eValue"),
             ("canary_samples", "canarySamples"), ("stable_samples", "stableSamples"))

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "verdict": self.verdict, "message": self.message}
        d.update({key: getattr(self, attr) for attr, key in self._KEYS})
        return _drop_none(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricStatus:
        values = {attr: d[key] for attr, key in cls._KEYS if key in d}
        return cls(name=d["name"], verdict=d["verdict"], message=d.get("message", ""), **values)


@dataclass
class AnalysisStatus:
    ticks: int = 0
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    last_verdict: str | None = None
    last_tick_at: datetime | None = None
    next_tick_at: datetime | None = None  # None: no analysis running
    started_at: datetime | None = None
    sample_ratio_warning: str | None = None
    results: list[MetricStatus] = field(default_factory=list)
    engine_state: dict[str, Any] = field(default_factory=dict)  # opaque, owned by modelrollout.analysis

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({
            "ticks": self.ticks, "consecutiveFailures": self.consecutive_failures,
            "consecutiveInconclusive": self.consecutive_inconclusive, "lastVerdict": self.last_verdict,
            "lastTickAt": _opt_time(self.last_tick_at), "nextTickAt": _opt_time(self.next_tick_at),
            "startedAt": _opt_time(self.started_at), "sampleRatioWarning": self.sample_ratio_warning,
            "results": [r.to_dict() for r in self.results], "engineState": self.engine_state,
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AnalysisStatus:
        d = d or {}
        return cls(
            ticks=d.get("ticks", 0), consecutive_failures=d.get("consecutiveFailures", 0),
            consecutive_inconclusive=d.get("consecutiveInconclusive", 0), last_verdict=d.get("lastVerdict"),
            last_tick_at=parse_time(d.get("lastTickAt")), next_tick_at=parse_time(d.get("nextTickAt")),
            started_at=parse_time(d.get("startedAt")), sample_ratio_warning=d.get("sampleRatioWarning"),
            results=[MetricStatus.from_dict(r) for r in d.get("results", [])],
            engine_state=dict(d.get("engineState") or {}),
        )


@dataclass
class ValidationStatus:
    """The validation gate of one candidate version (spec.validation): its Job and, once done, each check
    with the candidate's value, the stable version's, the threshold and the verdict."""

    version: str
    state: str  # Running, Passed, Failed
    job: str
    started_at: datetime
    message: str = ""
    rows: int | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"version": self.version, "state": self.state, "job": self.job,
                           "startedAt": format_time(self.started_at), "message": self.message, "rows": self.rows,
                           "checks": [dict(c) for c in self.checks]})

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ValidationStatus | None:
        if not d:
            return None
        started = parse_time(d.get("startedAt"))
        assert started is not None
        return cls(version=d["version"], state=d["state"], job=d["job"], started_at=started,
                   message=d.get("message", ""), rows=d.get("rows"), checks=[dict(c) for c in d.get("checks", [])])


COUNT_KEYS = (("agree", "agree"), ("disagree", "disagree"), ("both_right", "bothRight"),
              ("stable_only", "stableOnly"), ("candidate_only", "candidateOnly"), ("both_wrong", "bothWrong"))


def counts_to_dict(counts: PairedCounts) -> dict[str, float]:
    return {key: getattr(counts, attr) for attr, key in COUNT_KEYS}


def counts_from_dict(d: dict[str, Any] | None) -> PairedCounts:
    d = d or {}
    return PairedCounts(**{attr: float(d.get(key, 0.0)) for attr, key in COUNT_KEYS})


@dataclass
class ShadowStatus:
    """The shadow stage of one candidate version (a `shadow` canary step).

    stage: Pinning (the main Service is being narrowed to the stable version), Starting (the candidate's pods
    start behind its own Service), Mirroring (the stable pods copy requests to it; looked at every interval),
    Passed or Failed. pods: each candidate pod's last cumulative counts by uid; retired: the counts of pods gone
    or restarted (their counters began again), so `total` never loses a pair the stage has seen.
    """

    version: str
    stage: str
    started_at: datetime
    next_look_at: datetime | None = None
    last_look_at: datetime | None = None
    looks: int = 0
    verdict: str | None = None
    message: str = ""
    results: list[MetricStatus] = field(default_factory=list)
    pods: dict[str, PairedCounts] = field(default_factory=dict)
    retired: PairedCounts = field(default_factory=PairedCounts)
    state: dict[str, Any] = field(default_factory=dict)  # analysis.paired.PairedState, as JSON

    @property
    def total(self) -> PairedCounts:
        parts = [self.retired, *self.pods.values()]
        return PairedCounts(**{attr: sum(getattr(p, attr) for p in parts) for attr, _ in COUNT_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({
            "version": self.version, "stage": self.stage, "startedAt": format_time(self.started_at),
            "nextLookAt": _opt_time(self.next_look_at), "lastLookAt": _opt_time(self.last_look_at),
            "looks": self.looks, "verdict": self.verdict, "message": self.message,
            "results": [r.to_dict() for r in self.results], "counts": counts_to_dict(self.total),
            "pods": [{"uid": uid, **counts_to_dict(c)} for uid, c in self.pods.items()],
            "retired": counts_to_dict(self.retired), "state": self.state,
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ShadowStatus | None:
        if not d:
            return None
        started = parse_time(d.get("startedAt"))
        assert started is not None
        return cls(
            version=d["version"], stage=d["stage"], started_at=started, next_look_at=parse_time(d.get("nextLookAt")),
            last_look_at=parse_time(d.get("lastLookAt")), looks=d.get("looks", 0), verdict=d.get("verdict"),
            message=d.get("message", ""), results=[MetricStatus.from_dict(r) for r in d.get("results", [])],
            pods={p["uid"]: counts_from_dict(p) for p in d.get("pods") or ()},
            retired=counts_from_dict(d.get("retired")), state=dict(d.get("state") or {}),
        )


@dataclass
class ABTestStatus:
    """The A/B experiment of one candidate version (spec.strategy.abTest): each arm's cumulative goal totals
    (A the stable version, B the candidate; for accuracy n = judged predictions, total = squares = correct),
    summed from the analysis ticks' increments (a pod's counter reset is handled by the metric source), and
    the last assessment of them (analysis.abtest.assess)."""

    version: str
    started_at: datetime
    split: float  # B's share of requests the router gives it: what the sample-ratio check expects
    goal: str = "accuracy"  # what the arms' totals are of: accuracy or the outcome's name
    a: ArmTotals = field(default_factory=ArmTotals)
    b: ArmTotals = field(default_factory=ArmTotals)
    looks: int = 0
    winner: str = "none"
    estimate: float | None = None  # mean(B) - mean(A)
    interval: list[float] | None = None
    effect_size: float | None = None
    share_b: float | None = None  # B's realised share of the judged predictions
    srm_broken: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({
            "version": self.version, "startedAt": format_time(self.started_at), "split": self.split,
            "goal": self.goal, "arms": {"A": _arm_to_dict(self.a), "B": _arm_to_dict(self.b)}, "looks": self.looks,
            "winner": self.winner, "estimate": self.estimate, "interval": self.interval,
            "effectSize": self.effect_size, "shareB": self.share_b, "srmBroken": self.srm_broken,
            "message": self.message,
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ABTestStatus | None:
        if not d:
            return None
        started = parse_time(d.get("startedAt"))
        assert started is not None
        arms = d.get("arms") or {}
        return cls(version=d["version"], started_at=started, split=float(d["split"]), goal=d.get("goal", "accuracy"),
                   a=_arm_from_dict(arms.get("A")), b=_arm_from_dict(arms.get("B")), looks=d.get("looks", 0),
                   winner=d.get("winner", "none"), estimate=d.get("estimate"), interval=d.get("interval"),
                   effect_size=d.get("effectSize"), share_b=d.get("shareB"), srm_broken=d.get("srmBroken", False),
                   message=d.get("message", ""))


def _arm_to_dict(arm: ArmTotals) -> dict[str, float]:
    return {"samples": arm.n, "total": arm.total, "squares": arm.squares}


def _arm_from_dict(d: dict[str, Any] | None) -> ArmTotals:
    d = d or {}
    return ArmTotals(float(d.get("samples", 0.0)), float(d.get("total", 0.0)), float(d.get("squares", 0.0)))


@dataclass
class DriftStatus:
    """The drift watch's last look (spec.monitoring.drift): per watched version its state (Drifted, NoDrift,
    NotJudged, NotAvailable), message and per-feature scores, as plain dicts (core/driftwatch.py writes them)."""

    next_look_at: datetime | None = None
    last_look_at: datetime | None = None
    drifted_since: datetime | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"nextLookAt": _opt_time(self.next_look_at), "lastLookAt": _opt_time(self.last_look_at),
                           "driftedSince": _opt_time(self.drifted_since),
                           "versions": [dict(v) for v in self.versions]})

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DriftStatus | None:
        if not d:
            return None
        return cls(next_look_at=parse_time(d.get("nextLookAt")), last_look_at=parse_time(d.get("lastLookAt")),
                   drifted_since=parse_time(d.get("driftedSince")), versions=[dict(v) for v in d.get("versions", [])])


@dataclass
class RetrainStatus:
    """The last retraining Job (spec.monitoring.retrain): Running, Succeeded or Failed; `runs` counts the Jobs
    this rollout created (each is named <rollout>-retrain-<runs>)."""

    job: str
    state: str
    started_at: datetime
    finished_at: datetime | None = None
    message: str = ""
    runs: int = 1

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"job": self.job, "state": self.state, "startedAt": format_time(self.started_at),
                           "finishedAt": _opt_time(self.finished_at), "message": self.message, "runs": self.runs})

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RetrainStatus | None:
        if not d:
            return None
        started = parse_time(d.get("startedAt"))
        assert started is not None
        return cls(job=d["job"], state=d["state"], started_at=started, finished_at=parse_time(d.get("finishedAt")),
                   message=d.get("message", ""), runs=int(d.get("runs", 1)))


@dataclass
class HistoryEntry:
    """A version that finished: Deployed/Promoted (became stable), RolledBack, Aborted, Superseded."""

    version: str
    outcome: str
    reason: str
    finished_at: str
    model: ModelRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"version": self.version, "outcome": self.outcome, "reason": self.reason,
                           "finishedAt": self.finished_at,
                           "model": None if self.model is None else self.model.to_dict()})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HistoryEntry:
        return cls(version=d["version"], outcome=d["outcome"], reason=d.get("reason", ""),
                   finished_at=d["finishedAt"], model=ModelRecord.from_dict(d.get("model")))


@dataclass
class RolloutStatus:
    phase: Phase | None = None
    reason: str = ""  # machine-readable cause of the phase, e.g. StepPause, AnalysisFailed, Aborted
    message: str = ""
    stable_model: ModelRecord | None = None
    canary_model: ModelRecord | None = None
    current_step_index: int | None = None
    step_started_at: datetime | None = None
    desired_weight: int | None = None
    effective_weight: float | None = None
    traffic_router: str | None = None  # the router in use (replicas, service, gatewayAPI)
    rejected_version: str | None = None  # rolled back/aborted/undone: re-applying it needs `retry`
    last_command_id: str | None = None
    scale_down_at: datetime | None = None  # blue-green: when the old version goes to 0
    route_accepted_at: datetime | None = None  # gatewayAPI: since when the gateway accepted the current route
    observed_generation: int | None = None
    conditions: list[Condition] = field(default_factory=list)
    analysis: AnalysisStatus = field(default_factory=AnalysisStatus)
    history: list[HistoryEntry] = field(default_factory=list)
    validation: ValidationStatus | None = None  # the last validation gate run (spec.validation)
    shadow: ShadowStatus | None = None  # the last shadow stage (a shadow canary step)
    ab_test: ABTestStatus | None = None  # the last A/B experiment (spec.strategy.abTest)
    drift: DriftStatus | None = None  # the drift watch (spec.monitoring.drift)
    retrain: RetrainStatus | None = None  # the last retraining Job (spec.monitoring.retrain)

    @property
    def stable_version(self) -> str | None:
        return None if self.stable_model is None else self.stable_model.version

    @property
    def canary_version(self) -> str | None:
        return None if self.canary_model is None else self.canary_model.version

    def record_history(self, entry: HistoryEntry) -> None:
        """Append, keeping only the newest HISTORY_LIMIT entries."""
        self.history = [*self.history, entry][-HISTORY_LIMIT:]

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({
            "phase": None if self.phase is None else self.phase.value, "reason": self.reason,
            "message": self.message, "stableVersion": self.stable_version,
            "canaryVersion": self.canary_version,
            "stableModel": None if self.stable_model is None else self.stable_model.to_dict(),
            "canaryModel": None if self.canary_model is None else self.canary_model.to_dict(),
            "currentStepIndex": self.current_step_index, "stepStartedAt": _opt_time(self.step_started_at),
            "desiredWeight": self.desired_weight, "effectiveWeight": self.effective_weight,
            "trafficRouter": self.traffic_router,
            "rejectedVersion": self.rejected_version, "lastCommandId": self.last_command_id,
            "scaleDownAt": _opt_time(self.scale_down_at), "observedGeneration": self.observed_generation,
            "routeAcceptedAt": _opt_time(self.route_accepted_at),
            "conditions": [c.to_dict() for c in self.conditions], "analysis": self.analysis.to_dict(),
            "history": [h.to_dict() for h in self.history],
            "validation": None if self.validation is None else self.validation.to_dict(),
            "shadow": None if self.shadow is None else self.shadow.to_dict(),
            "abTest": None if self.ab_test is None else self.ab_test.to_dict(),
            "drift": None if self.drift is None else self.drift.to_dict(),
            "retrain": None if self.retrain is None else self.retrain.to_dict(),
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RolloutStatus:
        """Read a stored status; fields written by kopf itself (e.g. `kopf`) are ignored."""
        d = d or {}
        phase = d.get("phase")
        return cls(
            phase=Phase(phase) if phase else None, reason=d.get("reason", ""), message=d.get("message", ""),
            stable_model=ModelRecord.from_dict(d.get("stableModel")),
            canary_model=ModelRecord.from_dict(d.get("canaryModel")),
            current_step_index=d.get("currentStepIndex"), step_started_at=parse_time(d.get("stepStartedAt")),
            desired_weight=d.get("desiredWeight"), effective_weight=d.get("effectiveWeight"),
            traffic_router=d.get("trafficRouter"),
            rejected_version=d.get("rejectedVersion"), last_command_id=d.get("lastCommandId"),
            scale_down_at=parse_time(d.get("scaleDownAt")), observed_generation=d.get("observedGeneration"),
            route_accepted_at=parse_time(d.get("routeAcceptedAt")),
            conditions=[Condition.from_dict(c) for c in d.get("conditions", [])],
            analysis=AnalysisStatus.from_dict(d.get("analysis")),
            history=[HistoryEntry.from_dict(h) for h in d.get("history", [])],
            validation=ValidationStatus.from_dict(d.get("validation")),
            shadow=ShadowStatus.from_dict(d.get("shadow")),
            ab_test=ABTestStatus.from_dict(d.get("abTest")),
            drift=DriftStatus.from_dict(d.get("drift")),
            retrain=RetrainStatus.from_dict(d.get("retrain")),
        )


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning `old` into `new`: removed keys become None (null).

    Needed because a status patch only touches the keys it names: without the nulls a cleared
    canaryVersion or an engineState key the engine dropped would stay in the stored status.

    >>> merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"a": 1, "b": {"c": 2}})
    {'b': {'d': None, 'c': 2}}
    """
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    return patch


def status_patch(stored: dict[str, Any] | None, new: RolloutStatus) -> dict[str, Any]:
    """The merge patch for the status subresource: `new` over what is stored, nulling dropped keys.

    Only OWNED_KEYS are compared, so fields other writers keep under status survive.

    >>> patch = status_patch({"phase": "Progressing", "canaryVersion": "2", "kopf": {"x": 1}},
    ...                      RolloutStatus(phase=Phase.HEALTHY))
    >>> patch["phase"], patch["canaryVersion"], "kopf" in patch
    ('Healthy', None, False)
    """
    owned = {k: v for k, v in (stored or {}).items() if k in OWNED_KEYS}
    return merge_patch(owned, new.to_dict())
