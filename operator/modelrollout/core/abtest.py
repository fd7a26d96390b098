"""A/B experiment (spec.strategy.abTest): the stable version (A) and the new one (B) serve side by side at a
fixed split until the goal names a winner.

    B's pods start      B takes `weight` percent of the pods (the replicas router; the Service selects both),
                        or of the requests exactly (trafficRouting.gatewayAPI: the HTTPRoute's weights);
                        Progressing until they are Ready (a model that cannot load is rolled back at once)
    experimenting       every analysis tick (spec.analysis.interval) judges the guard-rails (spec.analysis
                        metrics, as in a canary: failureLimit Fails roll back, keeping A) and, from the
                        second one on (the first marks where the counters stand), adds the tick's
                        feedback increments to each arm's totals in status.abTest; analysis/abtest.assess then
                        gives the difference B - A with an always-valid interval, so looking every tick
                        inflates no error:
                            B wins -> Promoting ("B wins: ...")
                            A wins -> rolled back, A stays ("A wins: ...")
                            maxSamples judged predictions or maxDuration without a winner -> rolled back, A
                            stays ("no significant difference: ..." with the interval)
    Promoting           B scales to all replicas and becomes stable once Ready

Paused (by a person or the guard-rails' inconclusiveLimit) the arms keep counting and nothing is decided;
`kubectl modelrollout promote` ends the experiment by promoting B. Pure like the rest of the core.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.analysis.abtest import ABConfig, ABResult, ArmTotals, Winner, assess
from modelrollout.analysis.types import VersionCounts
from modelrollout.core.abspec import OUTCOME, ABGoal, ABTestStrategy
from modelrollout.core.change import Change, roll_back
from modelrollout.core.observations import Observations, StrategyPlan, TrafficIntent
from modelrollout.core.phases import Phase
from modelrollout.core.routers import TrafficRouter
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import ABTestStatus, RolloutStatus
from modelrollout.core.steps import (
    POLL,
    deadline_passed,
    promote_if_ready,
    roll_back_if_unloadable,
    start_analysis,
    wait_for_pods,
)
from modelrollout.durations import format_duration

ROUTER = "replicas"


def plan(spec: RolloutSpec, status: RolloutStatus, obs: Observations, now: datetime,
         router: TrafficRouter) -> StrategyPlan:
    """Run the experiment as far as the observations allow within this tick."""
    assert isinstance(spec.strategy, ABTestStrategy)
    change = Change.of(status, now)
    if change.status.phase in (Phase.PROGRESSING, Phase.PAUSED) and change.status.canary_model is not None:
        _experiment(change, spec, spec.strategy, obs, router)
    if change.status.phase == Phase.PROMOTING:
        promote_if_ready(change, spec, obs)
    return StrategyPlan(status=change.status, events=tuple(change.events), traffic=traffic(spec, change.status),
                        wake_at=tuple(change.wake_at))


def traffic(spec: RolloutSpec, st: RolloutStatus) -> TrafficIntent:
    """B at the experiment's weight while it runs, everything once Promoting, A alone otherwise."""
    assert isinstance(spec.strategy, ABTestStrategy)
    if st.canary_model is None or st.stable_version is None:
        return TrafficIntent(stable=st.stable_version)
    promoting = st.phase == Phase.PROMOTING
    sticky = spec.strategy.sticky
    return TrafficIntent(stable=st.stable_version, canary=st.canary_model.version,
                         canary_weight=100 if promoting else spec.strategy.weight,
                         sticky=None if promoting else sticky)


def entry_services(spec: RolloutSpec) -> tuple[str, ...]:
    return (spec.service.name,)


def promote(change: Change, spec: RolloutSpec) -> None:
    """A person ends the experiment in B's favour, whatever the numbers say so far."""
    change.move(Phase.PROMOTING, "ManualPromote",
                f"promoting version {change.status.canary_version} by request (the A/B experiment ends)")


def split_of(spec: RolloutSpec, router: TrafficRouter, st: RolloutStatus) -> float:
    """B's share of requests the router gives the experiment: the split the sample-ratio check expects
    (of the pods with the replicas router, exactly the weight with the gateway's).

    >>> from modelrollout.core.abspec import OUTCOME, ABGoal, ABTestStrategy
    >>> from modelrollout.core.routers import ROUTERS
    >>> from modelrollout.core.spec import ModelSpec, ServiceSpec
    >>> from modelrollout.core.status import ModelRecord
    >>> spec = RolloutSpec(ModelSpec("m", "2", "u"), ServiceSpec("s"), ABTestStrategy(weight=30), replicas=4)
    >>> st = RolloutStatus(phase=Phase.PROGRESSING, stable_model=ModelRecord("1", "u"),
    ...                    canary_model=ModelRecord("2", "u"))
    >>> split_of(spec, ROUTERS["replicas"], st)  # 30% of 4 pods is 1 pod of 4
    0.25
    >>> split_of(spec, ROUTERS["gatewayAPI"], st)
    0.3
    """
    return router.share(spec, traffic(spec, st))


def config_for(strategy: ABTestStrategy, split: float) -> ABConfig:
    """The statistics' settings: tightest at maxSamples (fixed before the data); accuracy is a 0/1 outcome."""
    return ABConfig(alpha=strategy.goal.alpha, min_effect=strategy.goal.min_effect,
                    min_samples=strategy.min_samples_per_arm, planned_samples=strategy.max_samples,
                    split=split, binary=strategy.goal.is_binary)


ACCURACY_GOAL = ABGoal()


def arm_increment(counts: VersionCounts | None, goal: ABGoal = ACCURACY_GOAL) -> ArmTotals | None:
    """One tick's goal totals of an arm, or None when its pods do not count the goal's outcome at all.

    Accuracy: n = judged predictions, total = squares = correct ones (0/1). An outcome: the tick's increments
    of its count, sum and sum of squares, over every pod (counted under the predicting version).

    >>> arm_increment(VersionCounts(feedback_correct=9, feedback_incorrect=1))
    ArmTotals(n=10.0, total=9.0, squares=9.0)
    >>> revenue = ABGoal(type="outcome", outcome="revenue")
    >>> arm_increment(VersionCounts(outcomes={"revenue": ArmTotals(2, 15.0, 125.0)}), revenue)
    ArmTotals(n=2, total=15.0, squares=125.0)
    >>> arm_increment(VersionCounts(), revenue) is None
    True
    """
    if counts is None:
        return ArmTotals()
    if goal.type == OUTCOME:
        return counts.outcomes.get(goal.outcome)
    correct = float(max(counts.feedback_correct, 0.0))
    return ArmTotals(correct + float(max(counts.feedback_incorrect, 0.0)), correct, correct)


def _experiment(change: Change, spec: RolloutSpec, strategy: ABTestStrategy, obs: Observations,
                router: TrafficRouter) -> None:
    st = change.status
    assert st.canary_model is not None
    version = st.canary_model.version
    st.desired_weight = strategy.weight  # what `kubectl get` shows beside the measured share
    pods = router.pods(spec, traffic(spec, st))
    wanted = pods.get(version, 0)
    goal = goal_name(strategy)
    if st.ab_test is None or st.ab_test.version != version or st.ab_test.goal != goal or (
            st.step_started_at is not None and st.ab_test.started_at < st.step_started_at):  # a retry starts anew
        st.ab_test = ABTestStatus(version=version, started_at=change.now, split=split_of(spec, router, st), goal=goal)
    if not obs.is_version_ready(version, wanted) and st.analysis.next_tick_at is None:
        _wait_for_b(change, spec, obs, version, wanted)
        return
    if st.analysis.next_tick_at is None:
        if not (_is_split(obs, pods) and router.is_routed(spec, traffic(spec, st), obs)):
            change.wake_at.append(change.now + POLL)  # A's scale-down is applied after this tick
            return
        start_analysis(change, spec)
        st.ab_test.started_at = change.now  # the experiment's clock starts once both arms serve
        change.note("ABTestStarted", f"A/B experiment: version {version} (B) on {wanted} pod(s), "
                    f"{100 * st.ab_test.split:.0f}% of them, beside stable version {st.stable_version} (A); "
                    f"goal: {_goal_text(strategy)}")
    if _is_new_tick(change, obs):
        _look(change, strategy, obs)
    if st.phase == Phase.PROGRESSING:
        _decide(change, strategy)


def _is_split(obs: Observations, pods: dict[str, int]) -> bool:
    """Whether every version runs the pods the split wants (A's scale-down waits for B's pods to be Ready), so
    the first interval is measured at the experiment's split, as the sample-ratio check expects (the caller
    also waits for the router: a gateway's route at the weight). Ready pods too, not only the asked-for count:
    A's pod leaving is Ready (and behind the Service) until it is terminating, and an experiment started
    while A still had two pods of three measured A at two thirds, which the sample-ratio check then flagged
    as a broken split and no winner could be declared (tests/e2e/test_ab_test.py, on a loaded machine)."""
    return all(v in obs.deployments and obs.deployments[v].replicas == n == obs.deployments[v].ready_replicas
               for v, n in pods.items())


def _wait_for_b(change: Change, spec: RolloutSpec, obs: Observations, version: str, wanted: int) -> None:
    if roll_back_if_unloadable(change, obs, version, "version B"):
        return
    if deadline_passed(change, spec):
        roll_back(change, "ProgressDeadlineExceeded",
                  f"version B's pods not Ready after {format_duration(spec.progress_deadline_seconds)} "
                  f"({obs.ready_pods(version)}/{wanted} ready{obs.why_not_ready(version)})")
        return
    if change.status.phase == Phase.PROGRESSING:
        wait_for_pods(change, obs, version, f"A/B experiment: waiting for {wanted} pod(s) of version {version} "
                      f"(B) to be Ready ({obs.ready_pods(version)} ready)")


def _is_new_tick(change: Change, obs: Observations) -> bool:
    """Whether this tick's analysis was counted just now (record_outcome ran before the strategy)."""
    seen = obs.analysis
    return seen is not None and seen.tick is not None and change.status.analysis.last_tick_at == change.now


def _look(change: Change, strategy: ABTestStrategy, obs: Observations) -> None:
    """Add the tick's increments to each arm and assess the totals; a tick missing an arm adds nothing."""
    run = change.status.ab_test
    assert run is not None and obs.analysis is not None and obs.analysis.tick is not None
    tick = obs.analysis.tick
    if run.looks == 0:
        # The first look only marks where the counters stand: its increments reach back to before the
        # experiment (A's pods were read while B's started and the split took effect, B's pods were not), so
        # counting them gave A a thousand extra samples in the sticky e2e test and the sample-ratio check
        # flagged the split as broken.
        pass
    elif tick.stable is not None and tick.canary is not None:
        a, b = arm_increment(tick.stable, strategy.goal), arm_increment(tick.canary, strategy.goal)
        if a is None or b is None:  # missing data is no sample: the arms stay as they were, and we say why
            change.note("ABTestOutcomeMissing", _missing_outcome(strategy, run.version, a is None, b is None),
                        warning=True)
        else:
            run.a, run.b = _plus(run.a, a), _plus(run.b, b)
    result = assess(run.a, run.b, config_for(strategy, run.split))
    run.looks += 1
    run.winner = result.winner.value
    run.estimate = _finite(result.estimate)
    run.interval = None if result.interval[0] == float("-inf") else [result.interval[0], result.interval[1]]
    run.effect_size = _finite(result.effect_size)
    run.share_b = _finite(result.share_b)
    run.srm_broken = result.srm_broken
    run.message = result.describe(config_for(strategy, run.split))


def goal_name(strategy: ABTestStrategy) -> str:
    """What the arms' totals are of: `accuracy`, or the outcome's name (`revenue`)."""
    return strategy.goal.outcome if strategy.goal.type == OUTCOME else strategy.goal.type


def _goal_text(strategy: ABTestStrategy) -> str:
    goal = strategy.goal
    return f"the mean of outcome '{goal.outcome}'" if goal.type == OUTCOME else goal.type


def _missing_outcome(strategy: ABTestStrategy, version: str, a: bool, b: bool) -> str:
    arms = " and ".join(arm for arm, missing in (("A", a), ("B", b)) if missing)
    return (f"A/B experiment on version {version}: the pods of {arms} expose no '{strategy.goal.outcome}' outcome "
            "series (their server does not count it: not this project's model server, or the rollout's mounted "
            "configuration not read yet); this look adds no sample")


def _decide(change: Change, strategy: ABTestStrategy) -> None:
    """End the experiment when the last assessment named a winner or a limit passed; else report it."""
    run = change.status.ab_test
    assert run is not None
    result = assess(run.a, run.b, config_for(strategy, run.split))
    described = result.describe(config_for(strategy, run.split), final=True)
    ends = run.started_at + timedelta(seconds=strategy.max_duration_seconds)
    if result.winner != Winner.NONE or run.a.n + run.b.n >= strategy.max_samples or change.now >= ends:
        run.message = described  # the result, no longer "yet"
    if result.winner == Winner.B:
        change.move(Phase.PROMOTING, "ABTestWinner", f"promoting version {run.version}: {described}")
    elif result.winner == Winner.A:
        roll_back(change, "ABTestLost", described)
    elif run.a.n + run.b.n >= strategy.max_samples:
        roll_back(change, "ABTestNoWinner", f"{described}; maxSamples {strategy.max_samples} reached")
    elif change.now >= ends:
        roll_back(change, "ABTestNoWinner",
                  f"{described}; maxDuration {format_duration(strategy.max_duration_seconds)} passed")
    else:
        change.move(Phase.PROGRESSING, "Experimenting", f"A/B experiment: {_progress(result, run, strategy)}")
        change.wake_at.append(ends)


def _progress(result: ABResult, run: ABTestStatus, strategy: ABTestStrategy) -> str:
    if run.looks <= 1:
        return (f"version {run.version} (B) serves beside the stable version (A); the arms count from the first "
                "look on")
    return result.describe(config_for(strategy, run.split))


def _plus(a: ArmTotals, b: ArmTotals) -> ArmTotals:
    return ArmTotals(a.n + b.n, a.total + b.total, a.squares + b.squares)


def _finite(value: float) -> float | None:
    """NaN (an empty arm) is not JSON: absent from status instead."""
    return None if value != value else value

