"""The shadow stage (a `shadow` canary step): the candidate answers copies of live requests, never a user.

It runs as the first step of a canary, after the validation gate, in three stages kept in status.shadow:

    Pinning    the main Service is narrowed to the stable version (its selector names it), and the candidate's
               own Service <service>-shadow is created; the candidate has no pods yet, so it can never be an
               endpoint of the user-facing Service, whatever order the writes land in
    Starting   the candidate runs `replicas` pods behind <service>-shadow only; no copies yet
    Mirroring  the rollout's mirror ConfigMap tells the stable pods to copy `percent` of the requests they
               answered to <service>-shadow (no stable pod restarts: the file is mounted, the server watches
               it); every `interval` the candidate's pods are scraped for their agreement and labelled pairs
               and the paired analysis (analysis/paired.py) judges them:
                   Pass -> Passed: the step is done (the next step, or the promotion, follows)
                   Fail -> Failed: rolled back, the message states agreement, the discordant counts, the
                           paired difference and its interval
                   no Pass within `timeout` -> rolled back (missing data never passes)

Pure like the rest of the core: the adapter gathers the scrape (a ShadowObservation) only when
`needs_shadow_look` says a look is due, and writes the ConfigMap the Decision's MirrorIntent states.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta

from modelrollout.analysis.paired import PairedCounts, PairedOutcome, PairedState, assess_paired
from modelrollout.analysis.types import Verdict
from modelrollout.core.abspec import StickySplit
from modelrollout.core.change import Change, roll_back
from modelrollout.core.observations import MirrorIntent, Observations, ShadowObservation, ShadowTraffic
from modelrollout.core.phases import Phase
from modelrollout.core.spec import RolloutSpec, ShadowStep
from modelrollout.core.status import RolloutStatus, ShadowStatus
from modelrollout.core.steps import POLL, deadline_passed, roll_back_if_unloadable, wait_for_pods
from modelrollout.core.verdicts import metric_status
from modelrollout.durations import format_duration

PINNING, STARTING, MIRRORING, PASSED, FAILED = "Pinning", "Starting", "Mirroring", "Passed", "Failed"
ACTIVE = (PINNING, STARTING, MIRRORING)
MIRROR_CONFIG_KEY = "mirror.yaml"  # the file the pods read (workloads.MIRROR_CONFIG_PATH)


def shadow_service(spec: RolloutSpec) -> str:
    """The candidate's own Service: `fraud` -> `fraud-shadow` (never the user-facing one)."""
    return f"{spec.service.name}-shadow"


def mirror_target(spec: RolloutSpec, namespace: str) -> str:
    """The base URL the stable pods send copies to: the candidate's Service, by its full DNS name."""
    return f"http://{shadow_service(spec)}.{namespace}.svc.cluster.local:{spec.service.port}"


def current_step(spec: RolloutSpec, st: RolloutStatus) -> ShadowStep | None:
    """The shadow step in force, if the version in flight is at one."""
    if st.canary_model is None or st.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return None
    return spec.strategy.shadow_at(st.current_step_index or 0)


def traffic(spec: RolloutSpec, st: RolloutStatus) -> ShadowTraffic | None:
    """The shadow part of the traffic intent: no pods while pinning, copies only while mirroring."""
    step, run = current_step(spec, st), st.shadow
    if step is None or run is None or st.canary_model is None or run.version != st.canary_model.version:
        return None
    if run.stage not in ACTIVE:
        return None
    return ShadowTraffic(version=run.version, pods=0 if run.stage == PINNING else step.replicas,
                         mirror_percent=step.percent if run.stage == MIRRORING else 0)


def mirror_intent(spec: RolloutSpec, obs: Observations, shadow: ShadowTraffic | None,
                  sticky: StickySplit | None = None) -> MirrorIntent | None:
    """The mirror ConfigMap's data when it must change: the shadow's percentage while mirroring, 0 otherwise,
    the numeric outcomes an A/B experiment's goal needs counted, and its sticky split's cookie while it runs (the
    file is the only way to tell pods that predate the experiment: a pod template never changes). Only for
    rollouts with a shadow step or an outcome goal, or whose ConfigMap exists (a spec that dropped its shadow
    step still turns copies off).
    None: nothing to write.

    >>> from modelrollout.core.spec import CanaryStrategy, ModelSpec, ServiceSpec
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("iris"), CanaryStrategy(()))
    >>> print(mirror_intent(spec, Observations("r", 1, namespace="ml"), ShadowTraffic("2", 1, 25)).data["mirror.yaml"])
    target: http://iris-shadow.ml.svc.cluster.local:80
    percent: 25
    version: "2"
    <BLANKLINE>
    >>> mirror_intent(spec, Observations("r", 1), None) is None
    True
    >>> mirror_intent(spec, Observations("r", 1, mirror={}), None).data
    {'mirror.yaml': 'percent: 0\\n'}
    >>> mirror_intent(spec, Observations("r", 1, mirror={"mirror.yaml": "percent: 0\\n"}), None) is None
    True
    >>> from dataclasses import replace
    >>> from modelrollout.core.abspec import parse_ab_test
    >>> ab = replace(spec, strategy=parse_ab_test({"goal": {"type": "outcome", "outcome": "revenue"}}))
    >>> mirror_intent(ab, Observations("r", 1), None).data
    {'mirror.yaml': 'percent: 0\\noutcomes: [revenue]\\n'}
    """
    outcomes = spec.strategy.outcome_names
    if not spec.strategy.has_shadow and not outcomes and obs.mirror is None and shadow is None:
        return None
    if shadow is None or shadow.mirror_percent == 0:
        text = "percent: 0\n"
    else:
        text = (f"target: {mirror_target(spec, obs.namespace)}\npercent: {shadow.mirror_percent}"
                f'\nversion: "{shadow.version}"\n')
    if outcomes:
        text += f"outcomes: [{', '.join(outcomes)}]\n"
    if sticky is not None:
        text += f"sticky: {{cookie: {sticky.cookie}, maxAge: {round(sticky.max_age_seconds)}}}\n"
    data = {MIRROR_CONFIG_KEY: text}
    return None if obs.mirror is not None and dict(obs.mirror) == data else MirrorIntent(data)


def needs_shadow_look(spec: RolloutSpec, status: RolloutStatus, now: datetime) -> bool:
    """Whether the candidate's pairs should be scraped for this tick (the adapter asks before gathering)."""
    run = status.shadow
    return (current_step(spec, status) is not None and status.phase == Phase.PROGRESSING
            and run is not None and run.stage == MIRRORING
            and status.canary_model is not None and run.version == status.canary_model.version
            and status.canary_model.version == spec.model.version
            and run.next_look_at is not None and now >= run.next_look_at)


def advance(change: Change, spec: RolloutSpec, step: ShadowStep, obs: Observations, pinned: bool) -> bool:
    """Work on the shadow step; True once it passed. `pinned`: the main Service selects the stable version only."""
    st = change.status
    assert st.canary_model is not None
    version = st.canary_model.version
    if st.shadow is None or st.shadow.version != version:
        # Pinning is decided this tick and observed on a later one: never taken as done at once.
        st.shadow = ShadowStatus(version=version, stage=PINNING, started_at=change.now)
        pinned = False
    run = st.shadow
    if run.stage == PASSED:
        return True
    if run.stage == PINNING:
        if not pinned:
            _report(change, f"shadow of version {version}: narrowing Service {spec.service.name} to stable "
                            f"version {st.stable_version} before the candidate starts")
            return False
        run.stage, run.started_at = STARTING, change.now
    if run.stage == STARTING and not _started(change, spec, step, obs):
        return False
    return _mirroring(change, spec, step, obs)


def _started(change: Change, spec: RolloutSpec, step: ShadowStep, obs: Observations) -> bool:
    st, run = change.status, change.status.shadow
    assert st.canary_model is not None and run is not None
    version = st.canary_model.version
    if not obs.is_version_ready(version, step.replicas):
        if roll_back_if_unloadable(change, obs, version, "the shadow candidate"):
            run.stage = FAILED
        elif deadline_passed(change, spec):
            run.stage = FAILED
            roll_back(change, "ProgressDeadlineExceeded",
                      f"shadow pods not Ready after {format_duration(spec.progress_deadline_seconds)} "
                      f"({obs.ready_pods(version)}/{step.replicas} ready{obs.why_not_ready(version)})")
        elif st.phase == Phase.PROGRESSING:
            wait_for_pods(change, obs, version, f"shadow of version {version}: waiting for {step.replicas} pod(s) "
                          f"behind Service {shadow_service(spec)} to be Ready ({obs.ready_pods(version)} ready)")
        return False
    run.stage, run.started_at = MIRRORING, change.now
    run.next_look_at = change.now + timedelta(seconds=step.interval_seconds)
    change.note("ShadowStarted", f"mirroring {step.percent}% of the requests stable version {st.stable_version} "
                f"answers to version {version} (Service {shadow_service(spec)}); users get stable's answers only")
    return True


def _mirroring(change: Change, spec: RolloutSpec, step: ShadowStep, obs: Observations) -> bool:
    st, run = change.status, change.status.shadow
    assert run is not None
    if obs.shadow is not None and needs_shadow_look(spec, st, change.now):
        outcome = _look(change, step, obs.shadow)
        if outcome.overall == Verdict.PASS:
            run.stage = PASSED
            change.note("ShadowPassed", f"shadow of version {run.version} passed: {outcome.message}")
            return True
        if outcome.overall == Verdict.FAIL:
            run.stage = FAILED
            failed = "; ".join(r.message for r in (outcome.agreement, outcome.difference)
                               if r.verdict == Verdict.FAIL)
            roll_back(change, "ShadowFailed", f"shadow analysis failed: {failed}")
            return False
    ends = run.started_at + timedelta(seconds=step.timeout_seconds)
    if change.now >= ends:
        run.stage = FAILED
        roll_back(change, "ShadowTimeout", f"the shadow analysis did not pass within "
                  f"{format_duration(step.timeout_seconds)} ({run.message or 'no look yet'})")
        return False
    assert run.next_look_at is not None
    last = f": {run.message}" if run.message else ""
    _report(change, f"shadow of version {run.version}: mirroring {step.percent}% of stable's requests"
                    f"{last}", wake=min(run.next_look_at, ends))
    return False


def _look(change: Change, step: ShadowStep, seen: ShadowObservation) -> PairedOutcome:
    """Fold the scraped counts into status and judge the stage's cumulative pairs once."""
    run = change.status.shadow
    assert run is not None
    fold_counts(run, seen)
    reason = "; ".join(seen.errors)
    counts = run.total if seen.pods and not seen.errors else None
    outcome, state = assess_paired(step.analysis, PairedState.from_dict(run.state), counts, reason)
    run.state = state.to_dict()
    run.looks += 1
    run.last_look_at = change.now
    run.next_look_at = change.now + timedelta(seconds=step.interval_seconds)
    run.verdict = outcome.overall.value
    run.message = outcome.message
    run.results = [metric_status(r.as_metric_result()) for r in (outcome.agreement, outcome.difference)]
    return outcome


def fold_counts(run: ShadowStatus, seen: ShadowObservation) -> None:
    """Each pod's cumulative counts replace its last ones; a pod whose counters went down restarted (its
    server began again at zero), so what it had counted before is kept in `retired`.

    >>> from datetime import UTC
    >>> run = ShadowStatus("2", MIRRORING, datetime(2026, 1, 1, tzinfo=UTC))
    >>> fold_counts(run, ShadowObservation("2", {"a": PairedCounts(agree=90, disagree=10)}))
    >>> fold_counts(run, ShadowObservation("2", {"a": PairedCounts(agree=5), "b": PairedCounts(agree=7)}))
    >>> run.total.agree, run.total.disagree
    (102.0, 10.0)
    """
    for uid, counts in seen.pods.items():
        before = run.pods.get(uid)
        if before is not None and any(getattr(counts, f.name) < getattr(before, f.name) for f in fields(counts)):
            run.retired = PairedCounts(**{f.name: getattr(run.retired, f.name) + getattr(before, f.name)
                                          for f in fields(before)})
        run.pods[uid] = counts


def _report(change: Change, message: str, wake: datetime | None = None) -> None:
    """Progressing with what the stage waits for (a paused rollout keeps its pause reason)."""
    if change.status.phase == Phase.PROGRESSING:
        change.move(Phase.PROGRESSING, "Shadowing", message)
    change.wake_at.append(wake or change.now + POLL)
