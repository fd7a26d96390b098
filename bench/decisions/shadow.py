"""Shadow rollouts in the decision benchmark: the paired test on the same requests against the unpaired canary test.

Every request has an outcome for both versions, drawn once per rollout and tick, so the shadow and the canary
judge the same data: stable is right on 95% of requests, the candidate disagrees with stable on 5% of them (a
binary label, so a disagreement means exactly one of the two is right), and the candidate's accuracy is stable's
plus the row's difference. Labels arrive for 30% of requests, 2 ticks after the prediction.

* **Shadow**: every request is mirrored, so the candidate's copy of every request is compared with stable's
  answer, and every labelled request is a pair. The cumulative counts go tick by tick through
  `modelrollout.analysis.paired.assess_paired` exactly as the shadow strategy will call it, with its state carried
  between looks; the first Pass promotes, the first Fail rolls back.
* **Canary, unpaired**: the same requests, a quarter of them answered by the candidate, each version's labelled
  predictions counted as correct or wrong and given to the engine's accuracy rollback test (run.py's vectorised
  `engine_fails`, failureLimit 1, after 200 canary requests), as part 1's accuracy row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from streams import REQUESTS_PER_TICK, TICKS, Cell

from modelrollout.analysis.paired import PairedCounts, PairedState, assess_paired
from modelrollout.analysis.pairedconfig import PairedConfig
from modelrollout.analysis.types import Verdict

STABLE_ACCURACY, DISAGREEMENT, LABELLED, LABEL_DELAY, CANARY_SHARE = 0.95, 0.05, 0.3, 2, 0.25
# Outcome categories of a request, in this order: both right, only stable right, only candidate right, both wrong.
BOTH_RIGHT, STABLE_ONLY, CANDIDATE_ONLY, BOTH_WRONG = range(4)

# (column title, the shadow stage's analysis settings)
SHADOW_CONFIGS: tuple[tuple[str, dict[str, float]], ...] = (
    ("shadow, `margin: 0.005`", {"margin": 0.005}),
    ("shadow, `minAgreement: 0.9, margin: 0.005`", {"minAgreement": 0.9, "margin": 0.005}),
    ("shadow, `minImprovement: 0.005`", {"minImprovement": 0.005}),
)
# (row title, candidate accuracy - stable accuracy, should it be rolled back under a margin of 0.005)
CANDIDATES: tuple[tuple[str, float, bool], ...] = (
    ("equally accurate", 0.0, False),
    ("1 pt less accurate", -0.01, True),
    ("2 pts less accurate", -0.02, True),
    ("2 pts more accurate", 0.02, False),
)


def outcome_probabilities(difference: float) -> np.ndarray:
    """Per-request probabilities of the four outcome categories for a candidate `difference` more accurate.

    >>> [round(float(p), 3) for p in outcome_probabilities(-0.02)]
    [0.915, 0.035, 0.015, 0.035]
    """
    stable_only, candidate_only = (DISAGREEMENT - difference) / 2.0, (DISAGREEMENT + difference) / 2.0
    return np.array(
        [STABLE_ACCURACY - stable_only, stable_only, candidate_only, 1.0 - STABLE_ACCURACY - candidate_only]
    )


def _arrived(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Labels for LABELLED of each tick's requests, arriving LABEL_DELAY ticks later (the last ticks' never do)."""
    labelled = rng.binomial(counts, LABELLED)
    arrived = np.zeros_like(labelled)
    arrived[:, LABEL_DELAY:] = labelled[:, :-LABEL_DELAY]
    return arrived


@dataclass(frozen=True)
class PairedStreams:
    """One benchmark row: per rollout and tick, the outcome counts of all requests and of the canary's quarter."""

    requests: np.ndarray  # (runs, ticks, 4): every request's outcome category
    labelled: np.ndarray  # (runs, ticks, 4): labels arriving this tick, by the category of their request
    canary: Cell  # the same requests split between canary and stable, as the canary test sees them


def paired_streams(rng: np.random.Generator, runs: int, difference: float) -> PairedStreams:
    requests = rng.multinomial(REQUESTS_PER_TICK, outcome_probabilities(difference), (runs, TICKS))
    to_canary = rng.binomial(requests, CANARY_SHARE)  # the canary answers a quarter of each category
    to_stable = requests - to_canary
    wrong_c = _arrived(rng, to_canary[..., STABLE_ONLY] + to_canary[..., BOTH_WRONG]).astype(float)
    right_c = _arrived(rng, to_canary[..., BOTH_RIGHT] + to_canary[..., CANDIDATE_ONLY]).astype(float)
    wrong_s = _arrived(rng, to_stable[..., CANDIDATE_ONLY] + to_stable[..., BOTH_WRONG]).astype(float)
    right_s = _arrived(rng, to_stable[..., BOTH_RIGHT] + to_stable[..., STABLE_ONLY]).astype(float)
    canary_requests = to_canary.sum(axis=-1).astype(float)
    no_window_rule = np.zeros(canary_requests.shape, dtype=bool)  # the peers' rules are part 1's business
    cell = Cell(wrong_c, wrong_c + right_c, wrong_s, wrong_s + right_s, canary_requests, no_window_rule)
    labelled = np.stack([_arrived(rng, requests[..., k]) for k in range(4)], axis=-1)
    return PairedStreams(requests, labelled, cell)


def shadow_counts(requests: np.ndarray, labelled: np.ndarray) -> Iterator[PairedCounts]:
    """One rollout's cumulative counts per tick, as the candidate's pods would export them (100% mirrored)."""
    seen, pairs = np.cumsum(requests, axis=0), np.cumsum(labelled, axis=0)
    for tick in range(requests.shape[0]):
        s, p = seen[tick].astype(float), pairs[tick].astype(float)
        yield PairedCounts(
            agree=s[BOTH_RIGHT] + s[BOTH_WRONG],  # binary labels: same correctness means the same answer
            disagree=s[STABLE_ONLY] + s[CANDIDATE_ONLY],
            both_right=p[BOTH_RIGHT],
            stable_only=p[STABLE_ONLY],
            candidate_only=p[CANDIDATE_ONLY],
            both_wrong=p[BOTH_WRONG],
        )


def shadow_decisions(config: PairedConfig, streams: PairedStreams) -> tuple[np.ndarray, np.ndarray]:
    """(tick of the rollback, tick of the promotion) per rollout, -1 where it did not happen in TICKS ticks."""
    runs = streams.requests.shape[0]
    rolled_back, promoted = np.full(runs, -1), np.full(runs, -1)
    for run in range(runs):
        state = PairedState()
        for tick, counts in enumerate(shadow_counts(streams.requests[run], streams.labelled[run])):
            outcome, state = assess_paired(config, state, counts)
            if outcome.overall is not Verdict.INCONCLUSIVE:
                (rolled_back if outcome.overall is Verdict.FAIL else promoted)[run] = tick
                break
    return rolled_back, promoted


def _share(ticks: np.ndarray, show_requests: bool) -> str:
    """ "97.5% · 5,200 / 8,400": share of rollouts, then median / p90 requests until it (both versions)."""
    rate = f"{np.mean(ticks >= 0):.1%}"
    requests = (ticks[ticks >= 0] + 1) * REQUESTS_PER_TICK
    if not show_requests or requests.size < max(1, 0.05 * ticks.size):
        return rate
    return f"{rate} · {np.median(requests):,.0f} / {np.percentile(requests, 90):,.0f}"


def shadow_table(runs: int, seed: int, canary_rollback: Callable[[Cell], np.ndarray]) -> str:
    """Rows: candidates; columns: each shadow setting's rolled back / promoted, then the unpaired canary's rollbacks.

    canary_rollback maps a Cell to the tick of the canary's rollback per rollout (-1: none), as part 1 runs it.
    """
    titles = [title for title, _ in SHADOW_CONFIGS]
    head = "| candidate | " + " | ".join(f"{t}: rolled back / promoted" for t in titles)
    head = f"{head} | canary 25%, unpaired (engine's accuracy test): rolled back |"
    lines = [head, "|---|" + "---|" * (1 + len(titles))]
    rng = np.random.default_rng(seed)
    for label, difference, worse in CANDIDATES:
        streams = paired_streams(rng, runs, difference)
        columns = []
        for _, settings in SHADOW_CONFIGS:
            rolled_back, promoted = shadow_decisions(PairedConfig.from_spec(settings), streams)
            columns.append(f"{_share(rolled_back, True)} / {_share(promoted, True)}")
        canary = _share(canary_rollback(streams.canary), worse)
        title = f"**{label}**" if worse else label
        lines.append(f"| {title} | " + " | ".join(columns) + f" | {canary} |")
    return "\n".join(lines)
