"""Every phase transition the state machine allows, each driven through decide() by what causes it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelrollout.core.decide import decide
from modelrollout.core.observations import Decision
from modelrollout.core.phases import ALLOWED, NEW_RESOURCE, Phase, TransitionError, transition
from modelrollout.core.verdicts import needs_analysis

from .builders import T0, Run, World, make_obs, make_spec, run_from_healthy, spec_dict

pytestmark = pytest.mark.unit
P = Phase
INVALID = spec_dict(version="2", replicas=0)  # spec.replicas must be >= 1


def settle(run: Run, limit: int = 6) -> Decision:
    """Tick (pods becoming Ready) until the phase changes; the decision that changed it."""
    before = run.phase
    for _ in range(limit):
        decision = run.tick(after=1)
        if decision.status.phase != before:
            return decision
    raise AssertionError(f"stayed {before}: {run.status.message}")


def command(text: str) -> Callable[[Run], Decision]:
    def act(run: Run) -> Decision:
        run.world.command(text, f"id-{text}-{run.now.timestamp()}")
        return run.tick(after=1)
    return act


def new_spec(version: str, **kwargs: object) -> Callable[[Run], Decision]:
    def act(run: Run) -> Decision:
        run.spec = make_spec(version=version, **kwargs)
        run.world.generation += 1
        return run.tick(after=1)
    return act


def invalid_spec(run: Run) -> Decision:
    return run.tick_raw(INVALID, after=1)


def pending() -> Run:
    run = Run(spec=make_spec(version="1", progressDeadlineSeconds=60))
    run.tick(pods_ready=False)
    return run


def failed_first() -> Run:
    run = pending()
    run.tick(after=61, pods_ready=False)
    return run


def progressing(**kwargs: object) -> Run:
    run = run_from_healthy(make_spec(version="2", **kwargs), history=("0",))
    run.tick(pods_ready=False)
    return run


def paused() -> Run:
    run = progressing()
    command("pause")(run)
    return run


def promoting() -> Run:
    run = progressing(analysis=None, steps=[{"setWeight": 50}])
    run.world.command("promote-full", "full")
    run.tick(after=1, pods_ready=False)  # the canary's full set of pods is still starting
    return run


def healthy() -> Run:
    return run_from_healthy(make_spec(version="1"), history=("0",))


def rolled_back() -> Run:
    run = progressing()
    command("abort")(run)
    return run


def failed_invalid() -> Run:
    run = healthy()
    invalid_spec(run)
    return run


SCENARIOS: dict[tuple[Phase, Phase], tuple[Callable[[], Run], Callable[[Run], Decision]]] = {
    (P.PENDING, P.PENDING): (pending, new_spec("9")),
    (P.PENDING, P.HEALTHY): (pending, settle),
    (P.PENDING, P.FAILED): (pending, lambda r: r.tick(after=61, pods_ready=False)),
    (P.PROGRESSING, P.PROGRESSING): (progressing, new_spec("3")),
    (P.PROGRESSING, P.PAUSED): (progressing, command("pause")),
    (P.PROGRESSING, P.PROMOTING): (progressing, command("promote-full")),
    (P.PROGRESSING, P.HEALTHY): (progressing, new_spec("1")),
    (P.PROGRESSING, P.ROLLED_BACK): (progressing, command("abort")),
    (P.PROGRESSING, P.FAILED): (progressing, invalid_spec),
    (P.PAUSED, P.PROGRESSING): (paused, command("resume")),
    (P.PAUSED, P.PROMOTING): (paused, command("promote-full")),
    (P.PAUSED, P.HEALTHY): (paused, new_spec("1")),
    (P.PAUSED, P.ROLLED_BACK): (paused, command("abort")),
    (P.PAUSED, P.FAILED): (paused, invalid_spec),
    (P.PROMOTING, P.PROGRESSING): (promoting, new_spec("3")),
    (P.PROMOTING, P.HEALTHY): (promoting, settle),
    (P.PROMOTING, P.ROLLED_BACK): (promoting, command("abort")),
    (P.PROMOTING, P.FAILED): (promoting, invalid_spec),
    (P.HEALTHY, P.PROGRESSING): (healthy, new_spec("2")),
    (P.HEALTHY, P.PROMOTING): (healthy, command("undo")),
    (P.HEALTHY, P.FAILED): (healthy, invalid_spec),
    (P.ROLLED_BACK, P.PROGRESSING): (rolled_back, command("retry")),
    (P.ROLLED_BACK, P.PROMOTING): (rolled_back, command("undo")),
    (P.ROLLED_BACK, P.HEALTHY): (rolled_back, new_spec("1")),
    (P.ROLLED_BACK, P.FAILED): (rolled_back, invalid_spec),
    (P.FAILED, P.PENDING): (failed_first, command("retry")),
    (P.FAILED, P.PROGRESSING): (failed_invalid, new_spec("2")),
    (P.FAILED, P.HEALTHY): (failed_first, settle),
    (P.FAILED, P.FAILED): (failed_first, invalid_spec),
}


def test_the_table_covers_every_allowed_transition() -> None:
    allowed = {(a, b) for a, targets in ALLOWED.items() for b in targets}
    assert set(SCENARIOS) == allowed


@pytest.mark.parametrize(("source", "target"), list(SCENARIOS), ids=[f"{a.value}->{b.value}" for a, b in SCENARIOS])
def test_transition(source: Phase, target: Phase) -> None:
    given, when = SCENARIOS[(source, target)]
    run = given()
    assert run.phase == source, run.status.message
    decision = when(run)
    assert decision.status.phase == target, decision.status.message
    assert decision.events, "every transition is announced with an Event"
    assert decision.status.message


@pytest.mark.parametrize("target", sorted(NEW_RESOURCE))
def test_a_new_resource_starts_pending_or_failed(target: Phase) -> None:
    run = Run(spec=make_spec(version="1"))
    decision = run.tick() if target == P.PENDING else run.tick_raw(INVALID)
    assert decision.status.phase == target
    if target == P.FAILED:
        assert "spec.replicas" in decision.status.message
        assert decision.deployments is None  # an invalid spec never touches workloads


def test_disallowed_transition_is_refused() -> None:
    with pytest.raises(TransitionError):
        transition(P.HEALTHY, P.ROLLED_BACK, "x", "y")
    with pytest.raises(TransitionError):
        transition(None, P.HEALTHY, "x", "y")


def test_first_version_becomes_healthy_without_analysis() -> None:
    world = World()
    spec = make_spec(version="1")
    first = decide(spec, Run(spec=spec).status, make_obs(), T0)
    assert first.deployments is not None and first.deployments["1"].replicas == 4
    world.apply(first)
    second = decide(spec, first.status, world.observe(), T0)
    assert (second.status.phase, second.status.stable_version) == (P.HEALTHY, "1")
    assert second.status.history[-1].outcome == "Deployed"
    assert not needs_analysis(spec, second.status, T0) and second.status.analysis.ticks == 0
